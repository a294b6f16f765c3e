#!/usr/bin/env python3
"""`make run`: the whole stack in the foreground on the fixed ports of docs/conventions.md.

    scripts/run.py [--config FILE] [--mock-latency-ms N] [--backend vector_sets|redisearch]

Environment:
    SEMCACHE_UPSTREAM_URL          a real OpenAI-compatible base URL (e.g. https://api.openai.com)
                                   instead of the mock LLM
    OPENAI_API_KEY                 its key (or SEMCACHE_UPSTREAM_KEY); sent by Envoy on the routes
    SEMCACHE_UPSTREAM_AUTH_HEADER  "authorization" (Bearer, default) or "api-key" (Azure)

Ctrl-C or SIGTERM stops every process it started. Logs are in .run/logs/.
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import signal
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
from stack import Stack, StackError  # noqa: E402

RUN_DIR = ROOT / ".run"


class Stop(Exception):
    pass


def _raise_stop(signum, _frame):
    raise Stop(signal.Signals(signum).name)


def bridge_token() -> str:
    RUN_DIR.mkdir(exist_ok=True)
    path = RUN_DIR / "bridge-token"
    token = secrets.token_hex(24)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(token + "\n")
    return token


def read_config(arg: str) -> str:
    p = Path(arg)
    if not p.is_absolute() and not p.exists():
        p = ROOT / arg
    try:
        text = p.read_text()
    except OSError as e:
        sys.exit(f"run: cannot read CONFIG={arg}: {e}")
    if not text.strip():
        sys.exit(f"run: CONFIG={arg} is empty")
    return text.strip()


def follow(path: Path, stop: threading.Event) -> None:
    """Print the Envoy access log as it grows (one line per request)."""
    while not path.exists() and not stop.is_set():
        stop.wait(0.2)
    if stop.is_set():
        return
    with open(path, "r", errors="replace") as f:
        f.seek(0, os.SEEK_END)
        while not stop.is_set():
            line = f.readline()
            if line:
                print(f"  envoy | {line.rstrip()}", flush=True)
            else:
                stop.wait(0.2)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--config", help="plugin configuration file (JSON or APIM XML)")
    ap.add_argument("--mock-latency-ms", type=int, help="the mock LLM's latency")
    ap.add_argument("--backend", default="vector_sets", choices=["vector_sets", "redisearch"])
    ap.add_argument("--no-filter", action="store_true",
                    help="Envoy without the wasm filter (checks the plumbing only)")
    args = ap.parse_args()

    filter_config = read_config(args.config) if args.config else None
    upstream_url = os.environ.get("SEMCACHE_UPSTREAM_URL") or None
    upstream_key = os.environ.get("SEMCACHE_UPSTREAM_KEY") or os.environ.get("OPENAI_API_KEY") or None
    if not upstream_url:
        upstream_key = None  # the mock needs none; never hand a real key to it

    log_dir = RUN_DIR / "logs"
    shutil.rmtree(log_dir, ignore_errors=True)
    log_dir.mkdir(parents=True)

    signal.signal(signal.SIGINT, _raise_stop)
    signal.signal(signal.SIGTERM, _raise_stop)
    stack = Stack(
        filter_config, fixed_ports=True, mock_latency_ms=args.mock_latency_ms,
        backend_redis=args.backend, bridge_token=bridge_token(),
        upstream_url=upstream_url, upstream_key=upstream_key,
        upstream_auth_header=os.environ.get("SEMCACHE_UPSTREAM_AUTH_HEADER", "authorization"),
        log_dir=log_dir, keep_logs=True, filter=not args.no_filter,
    )
    stop_follow = threading.Event()
    status = 0
    try:
        print("semcache: starting Redis 8, semcache-bridge, "
              + ("" if upstream_url else "semcache-mock-llm, ")
              + "semcache-embedder and Envoy ...", flush=True)
        stack.start()
        print()
        width = max(len(r[0]) for r in stack.describe())
        for what, where, notes in stack.describe():
            print(f"  {what:<{width}}  {where:<28} {notes}")
        print(f"\n  logs: {log_dir.relative_to(ROOT)}/   rendered Envoy config: "
              f"{stack.envoy_config_path.relative_to(ROOT)}")
        if filter_config is not None:
            print(f"  filter config: {args.config}")
        print("\nTry it (run it twice; the second answer comes from the cache, see x-semcache-status):\n")
        print(f"  curl -s -D- {stack.envoy_url}/v1/chat/completions -H 'content-type: application/json' \\\n"
              "    -d '{\"model\":\"gpt-4o-mini\",\"messages\":[{\"role\":\"user\","
              "\"content\":\"What is the capital of France?\"}]}'\n")
        print(f"  curl -s {stack.admin_url}/stats?filter=wasmcustom.semcache   # the filter's counters\n")
        print("READY  (Ctrl-C stops everything)", flush=True)

        t = threading.Thread(target=follow, args=(stack.access_log, stop_follow), daemon=True)
        t.start()
        # Watch the children: if one dies, say which and stop the rest.
        while True:
            for name, proc in stack.procs.items():
                if not proc.alive():
                    print(f"\nsemcache: {name} exited unexpectedly "
                          f"(status {proc.popen.returncode}); stopping.\n{proc.log_tail(20)}",
                          file=sys.stderr, flush=True)
                    status = 1
                    raise Stop("child exited")
            time.sleep(0.5)
    except Stop as e:
        if status == 0:
            print(f"\nsemcache: {e}, stopping ...", flush=True)
    except StackError as e:
        print(f"\nsemcache: {e}", file=sys.stderr, flush=True)
        status = 1
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        stop_follow.set()
        stack.stop()
        left = stack.leftovers()
        if left:
            print(f"semcache: still running: {', '.join(left)}", file=sys.stderr)
            status = 1
        else:
            print("semcache: stopped.", flush=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
