#!/usr/bin/env python3
"""`make bench`: what the cache costs and saves, measured side by side in one run.

One stack (tests/stack.py: Redis 8, semcache-bridge, semcache-embedder, semcache-mock-llm at 0 ms,
Envoy with the filter, `--concurrency 2`) and one load generator, `wrk` (Debian's package,
installed with apt-get when missing and root), driven by scripts/bench/wrk.lua, at the same fixed
concurrency for every HTTP row, each row warmed up first:

  baseline      POST /nofilter/v1/chat/completions: the filter is disabled on that route
                (route FilterConfig disabled), Envoy -> mock LLM
  passthrough   POST /v1/chat/completions with `cache-control: no-store`: the filter runs on the
                request and lets it through uncached (x-semcache-status: bypass)
  exact_hit     one stored prompt, hammered (x-semcache-match: exact); the shipped config, so
                the local tier (Envoy shared data, on by default) answers the repeats
  exact_hit_redis  the same through a route whose overlay switches the local tier off, so
                every hit is a lookup in Redis through the bridge
  semantic_hit  paraphrases of stored prompts (testdata/eval paraphrase pairs that hit), rotating,
                so each request is an exact miss + embedding + vector search + hit; on /sem,
                whose overlay keeps semantic hits out of the local tier
                (local_cache.semantic_hits: false), else the repeats of the 64 paraphrases would
                be local-tier hits
  miss          a new prompt per request (random words, so they miss semantically too): exact
                lookup, embedding, vector search, upstream at 0 ms, store

Every HTTP row runs twice: at the fixed concurrency (-c, default 16) and at concurrency 1 (the
latency without queueing). Then:

  embedder      POST /v1/embeddings straight to semcache-embedder, one input per request:
                concurrency 1 (single-input latency) and the fixed concurrency (embeddings/s)
  bridge        the commands an exact hit (through Redis) and a semantic hit made Redis run,
                captured with MONITOR, sent sequentially through the bridge (HTTP/1.1
                keep-alive) and directly to Redis (RESP), interleaved; the difference is the
                bridge's overhead
  redis memory  N entries with ~1 KB answers stored through the real filter (`cache-control:
                no-cache`, so each one is stored), INFO used_memory before/after, / N; minus
                the mean answer size
  wasm memory   each V8 wasm instance's linear memory (committed and resident, from
                /proc/<envoy>/smaps) and Envoy's RSS against an Envoy without the filter
  CPU           per row, CPU time per request of each process (from /proc/<pid>/stat)

Output: target/bench/report.json, target/bench/report.md (also printed). The exit code is 0
whether or not the targets are met (this is a measurement); non-zero only when the bench could
not run.

Usage:
    python scripts/bench.py [--quick] [--concurrency 16] [--duration S] [--entries N] [--out DIR]
"""

from __future__ import annotations

import argparse
import concurrent.futures
import datetime
import http.client
import io
import json
import os
import random
import re
import resource
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.parse
import zlib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "scripts"))

from stack import Stack, _resp_encode, _resp_read, default_plugin_config  # noqa: E402

WRK_LUA = ROOT / "scripts" / "bench" / "wrk.lua"
EVAL_SINGLE = ROOT / "testdata" / "eval" / "single.jsonl"
MODEL = "gpt-4o"
TENANT = "x-semcache-tenant"
CLK_TCK = os.sysconf("SC_CLK_TCK")

EXACT_PROMPT = "What is Redis and when should I use it as a cache in front of a database?"
# The semantic rows measure a paraphrase's whole path (embedding, vector search). The local tier
# answers a repeated paraphrase by default (local_cache.semantic_hits), and the rows rotate 64
# paraphrases, so they run on a route whose overlay keeps semantic hits out of the local tier.
FRESH_SEMANTIC = {"local_cache": {"semantic_hits": False}}

# Targets of issue 8 (ms, ratios, bytes).
TARGET_PASSTHROUGH_MS = 0.1
TARGET_EXACT_P50_MS = 1.0
TARGET_EXACT_P99_MS = 3.0
TARGET_SEMANTIC_MS = 1.5
TARGET_RPS_RATIO = 0.5
TARGET_ENTRY_OVERHEAD_BYTES = 1200


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------
# tools


def ensure_debian_tool(command: str, package: str) -> str:
    """A command from a Debian package; installed with apt-get when missing (as root)."""
    found = shutil.which(command)
    if found:
        return found
    if os.geteuid() == 0 and shutil.which("apt-get"):
        log(f"installing {command} (apt-get install {package})")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-qq"], env=env, check=False,
                       stdout=subprocess.DEVNULL)
        subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", package],
                       env=env, check=True, stdout=subprocess.DEVNULL)
        found = shutil.which(command)
        if found:
            return found
    sys.exit(f"bench: {command} is not installed (apt-get install {package}) and cannot be "
             "installed here")


def ensure_wrk() -> str:
    return ensure_debian_tool("wrk", "wrk")


EMPTY_FILTER_DIR = ROOT / "scripts" / "bench" / "empty_filter"


def ensure_empty_filter(read_path: bool = False) -> Path:
    """Builds the filter that does nothing (row 2c), or that reads one request header and
    nothing else (`read_path`, row 2d); cargo skips it when up to date."""
    target_dir = ROOT / "target/bench" / ("empty-filter-read" if read_path else "empty-filter")
    cargo = os.environ.get("CARGO", "cargo")
    subprocess.run([cargo, "build", "--quiet", "--manifest-path", str(EMPTY_FILTER_DIR / "Cargo.toml"),
                    "--target", "wasm32-wasip1", "--release", "--target-dir", str(target_dir)]
                   + (["--features", "read-path"] if read_path else []), check=True)
    return target_dir / "wasm32-wasip1" / "release" / "semcache_empty_filter.wasm"


def git_rev() -> str:
    try:
        rev = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=ROOT,
                             capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=ROOT, capture_output=True, text=True).stdout.strip()
        return rev + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


def wasm_identity() -> dict:
    import hashlib
    p = ROOT / "target" / "wasm32-wasip1" / "wasm" / "semcache.wasm"
    try:
        data = p.read_bytes()
    except OSError:
        return {}
    return {"sha256": hashlib.sha256(data).hexdigest()[:16], "bytes": len(data),
            "mtime": datetime.datetime.fromtimestamp(p.stat().st_mtime).isoformat(timespec="seconds")}


def proc_cpu_s(pid: int | None) -> float:
    """utime + stime of a process (all its threads), seconds."""
    if not pid:
        return 0.0
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    f = stat[stat.rfind(")") + 2:].split()
    return (int(f[11]) + int(f[12])) / CLK_TCK


def proc_rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def wasm_memories(pid: int) -> list[dict]:
    """V8's wasm linear memories in a process: V8 reserves 8 GiB (+ guard) per memory and makes
    the used part read-write; the read-write mapping right before such a reservation is the
    memory's current size. Returns [{committed_kib, rss_kib}] per memory."""
    maps = []
    cur = None
    for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
        f = line.split()
        if f and "-" in f[0] and ":" not in f[0]:
            a, b = f[0].split("-")
            cur = {"start": int(a, 16), "end": int(b, 16), "perm": f[1], "rss": 0}
            maps.append(cur)
        elif f and f[0] == "Rss:" and cur is not None:
            cur["rss"] = int(f[1])
    out = []
    for i, m in enumerate(maps):
        if m["end"] - m["start"] >= 4 << 30 and m["perm"].startswith("---") and i > 0:
            prev = maps[i - 1]
            if prev["end"] == m["start"] and prev["perm"].startswith("rw"):
                out.append({"committed_kib": (prev["end"] - prev["start"]) // 1024,
                            "rss_kib": prev["rss"]})
    return out


# ---------------------------------------------------------------------------------------------
# request bodies


def chat_body(content: str, messages: list | None = None) -> str:
    return json.dumps({"model": MODEL, "messages": messages or [{"role": "user", "content": content}]},
                      separators=(",", ":"))


def vocabulary() -> list[str]:
    """Words for random prompts: every alphabetic word of the eval set (a few thousand)."""
    words = set()
    for line in EVAL_SINGLE.read_text().splitlines():
        d = json.loads(line)
        for side in ("cached", "query"):
            for m in d[side]["messages"]:
                words.update(w.lower() for w in re.findall(r"[A-Za-z]{3,}", m["content"]))
    return sorted(words)


def random_prompts(n: int, seed: int) -> list[str]:
    """Prompts of 10 random words: unrelated to each other, so they miss semantically as well.
    About 150 characters, so the mock's answers are near the top of their 300-1000 byte range."""
    rng = random.Random(seed)
    vocab = vocabulary()
    out = []
    for _ in range(n):
        words = rng.sample(vocab, 10)
        out.append("Question {N} about " + " ".join(words) + "?")
    return out


def paraphrase_pairs() -> list[tuple[list, list]]:
    pairs = []
    for line in EVAL_SINGLE.read_text().splitlines():
        d = json.loads(line)
        if d["category"] == "paraphrase" and d["should_hit"]:
            pairs.append((d["cached"]["messages"], d["query"]["messages"]))
    return pairs


# ---------------------------------------------------------------------------------------------
# a small HTTP client for setup requests (not for measuring)


class Client:
    def __init__(self, base: str, timeout: float = 30.0):
        u = urllib.parse.urlsplit(base)
        self.host, self.port, self.timeout = u.hostname, u.port, timeout
        self.conn: http.client.HTTPConnection | None = None

    def post(self, path: str, body: str | bytes, headers: dict[str, str]) -> tuple[int, dict, bytes]:
        data = body.encode() if isinstance(body, str) else body
        for attempt in range(2):
            if self.conn is None:
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
            try:
                self.conn.request("POST", path, body=data,
                                  headers={"content-type": "application/json", **headers})
                r = self.conn.getresponse()
                return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
            except (OSError, http.client.HTTPException):
                self.conn.close()
                self.conn = None
                if attempt:
                    raise
        raise AssertionError("unreachable")


_local = threading.local()


def post(base: str, path: str, body: str, headers: dict[str, str]) -> tuple[int, dict, bytes]:
    c = getattr(_local, "clients", None)
    if c is None:
        c = _local.clients = {}
    if base not in c:
        c[base] = Client(base)
    return c[base].post(path, body, headers)


# ---------------------------------------------------------------------------------------------
# wrk


class Wrk:
    def __init__(self, exe: str, workdir: Path, quick: bool):
        self.exe = exe
        self.workdir = workdir
        self.quick = quick
        self.files: dict[str, Path] = {}
        self.offsets: dict[str, int] = {}

    def bodies(self, name: str, lines: list[str]) -> str:
        p = self.workdir / f"bodies-{name}.txt"
        p.write_text("\n".join(lines) + "\n")
        self.files[name] = p
        self.offsets[name] = 0
        return name

    def run(self, url: str, bodies: str, *, concurrency: int, duration: float,
            mode: str = "rotate", headers: dict[str, str] | None = None,
            pids: dict[str, int | None] | None = None, delay_ms: int = 0) -> dict:
        """One wrk run; returns its numbers plus CPU seconds per process during the run.
        `delay_ms`: a pause before each request (scripts/bench/wrk.lua)."""
        nonce = secrets.token_hex(4)
        start = self.offsets[bodies]
        argv = [self.exe, "-t1", f"-c{concurrency}", f"-d{max(1, round(duration))}s",
                "--timeout", "30s", "--latency", "-s", str(WRK_LUA), url, "--",
                str(self.files[bodies]), mode, nonce, str(start)]
        argv += [f"{k}: {v}" for k, v in (headers or {}).items()]
        before = {k: proc_cpu_s(p) for k, p in (pids or {}).items()}
        ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.monotonic()
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env={**os.environ, "SEMCACHE_WRK_DELAY_MS": str(delay_ms)})
        try:
            out, err = proc.communicate(timeout=duration + 60)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
            raise RuntimeError(f"wrk did not finish: {err[-500:]}")
        wall = time.monotonic() - t0
        cpu = {k: proc_cpu_s(p) - before[k] for k, p in (pids or {}).items()}
        # wrk's own CPU, from the rusage of reaped children (wrk is the only one reaped here)
        ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        if pids:
            cpu["wrk"] = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
        m = re.search(r"^BENCHJSON (\{.*\})$", out, re.M)
        if proc.returncode != 0 or not m:
            raise RuntimeError(f"wrk failed (status {proc.returncode}):\n{out[-1500:]}\n{err[-1500:]}")
        r = json.loads(m.group(1))
        # The next run of this body set starts after every line this one may have used.
        self.offsets[bodies] = start + r["requests"] + concurrency + 100
        lat = r["latency_us"]
        secs = r["duration_us"] / 1e6
        errors = sum(r["errors"].values())
        res = {
            "concurrency": concurrency,
            "duration_s": round(secs, 2),
            "requests": r["requests"],
            "errors": r["errors"],
            "error_count": errors,
            "rps": round(r["requests"] / secs, 1) if secs else 0.0,
            "p50_ms": lat["p50"] / 1000, "p90_ms": lat["p90"] / 1000,
            "p99_ms": lat["p99"] / 1000, "p999_ms": lat["p999"] / 1000,
            "mean_ms": round(lat["mean"] / 1000, 3), "max_ms": lat["max"] / 1000,
            "wall_s": round(wall, 2),
        }
        if pids:
            n = max(1, r["requests"])
            res["cpu_s"] = {k: round(v, 4) for k, v in cpu.items()}
            res["cpu_us_per_req"] = {k: round(v * 1e6 / n, 1) for k, v in cpu.items()}
            res["cpu_util"] = {k: round(v / secs, 3) for k, v in cpu.items()} if secs else {}
        return res


# ---------------------------------------------------------------------------------------------
# the bridge against Redis


def _resp_reply_count(body: bytes, n: int) -> list:
    f = io.BufferedReader(io.BytesIO(body))
    return [_resp_read(f) for _ in range(n)]


class RawHttp:
    """HTTP/1.1 keep-alive POST over a plain socket: the least client work per request."""

    def __init__(self, port: int, path: str, headers: dict[str, str]):
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.f = self.sock.makefile("rb")
        self.head = (f"POST {path} HTTP/1.1\r\nhost: bridge\r\n"
                     + "".join(f"{k}: {v}\r\n" for k, v in headers.items())).encode()

    def post(self, body: bytes) -> tuple[int, bytes]:
        self.sock.sendall(self.head + b"content-length: %d\r\n\r\n" % len(body) + body)
        status = int(self.f.readline().split()[1])
        length = 0
        while True:
            line = self.f.readline()
            if line in (b"\r\n", b""):
                break
            k, _, v = line.partition(b":")
            if k.strip().lower() == b"content-length":
                length = int(v)
        return status, self.f.read(length)

    def close(self) -> None:
        self.f.close()
        self.sock.close()


class RawRedis:
    def __init__(self, port: int):
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.f = self.sock.makefile("rb")

    def pipeline(self, body: bytes, n: int) -> list:
        self.sock.sendall(body)
        return [_resp_read(self.f) for _ in range(n)]

    def close(self) -> None:
        self.f.close()
        self.sock.close()


def pct(samples: list[float], p: float) -> float:
    s = sorted(samples)
    return s[min(len(s) - 1, int(round((len(s) - 1) * p)))]


_MONITOR_ESCAPES = {ord("n"): 10, ord("r"): 13, ord("t"): 9, ord("a"): 7, ord("b"): 8,
                    ord('"'): ord('"'), ord("\\"): ord("\\")}


def monitor_args(line: bytes) -> list[bytes]:
    """The arguments of one `MONITOR` line (`<time> [<db> <client>] "ARG" "ARG" ...`), undoing
    Redis's quoting (sdscatrepr: \\xHH for bytes that are not printable, \\n, \\" ...)."""
    i = line.index(b"] ") + 2
    args = []
    while i < len(line):
        if line[i] != ord('"'):
            raise ValueError(f"unexpected MONITOR line {line[:120]!r}")
        i += 1
        buf = bytearray()
        while line[i] != ord('"'):
            if line[i] == ord("\\"):
                if line[i + 1] == ord("x"):
                    buf.append(int(line[i + 2:i + 4], 16))
                    i += 4
                    continue
                buf.append(_MONITOR_ESCAPES[line[i + 1]])
                i += 2
                continue
            buf.append(line[i])
            i += 1
        args.append(bytes(buf))
        i += 2  # the closing quote and the space after it
    return args


def commands_of(s: Stack, send) -> list[list[bytes]]:
    """The commands Redis ran while `send()` ran, in order, as `MONITOR` saw them. The capture
    ends at a marker sent after `send()` returns, so nothing is timed."""
    marker = f"semcache-bench-{secrets.token_hex(8)}"
    sock = socket.create_connection(("127.0.0.1", s.redis_port), timeout=10)
    try:
        f = sock.makefile("rb")
        sock.sendall(_resp_encode(["MONITOR"]))
        if f.readline().strip() != b"+OK":
            raise RuntimeError("MONITOR refused")
        send()
        s.redis_cli("ECHO", marker)
        out = []
        while True:
            line = f.readline()
            if not line:
                raise RuntimeError("MONITOR connection closed before the marker")
            args = monitor_args(line[1:].rstrip(b"\r\n"))
            if args == [b"ECHO", marker.encode()]:
                return out
            out.append(args)
    finally:
        sock.close()


def bench_bridge(s: Stack, requests: dict, rounds: int) -> dict:
    """The commands one request of each kind made Redis run (captured with `MONITOR` while the
    request went through Envoy, so they are exactly what the filter sends, with its `EF`,
    `EPSILON` and the fold as configured), replayed as one pipeline through the bridge and
    directly to Redis. `requests`: name -> (path, body, headers, the `x-semcache-match` it must
    get). A request whose lookup has not settled into its steady form (the exact lookup first,
    once exact hits are no longer rare on that worker) is sent again, at most 50 times."""
    pipelines = {}
    for name, (path, body, headers, match) in requests.items():
        for _ in range(50):
            got = {}

            def send():
                got["r"] = post(s.envoy_url, path, body, headers)

            cmds = commands_of(s, send)
            st, h, _ = got["r"]
            if st != 200 or h.get("x-semcache-match") != match:
                raise RuntimeError(f"bridge row {name}: {st} {h}")
            pipelines[name] = cmds
            if match != "exact" or [c[0] for c in cmds] == [b"VGETATTR"]:
                break
        else:
            raise RuntimeError(f"bridge row {name}: never a lone exact lookup: {cmds}")
    out = {}
    http = RawHttp(s.procs["bridge"].port, "/v1/resp",
                   {"authorization": f"Bearer {s.token}",
                    "content-type": "application/x-redis-resp"})
    redis = RawRedis(s.redis_port)
    try:
        for name, cmds in pipelines.items():
            body = b"".join(_resp_encode(c) for c in cmds)
            n = len(cmds)
            # sanity: the same replies both ways
            st, b = http.post(body)
            if st != 200:
                raise RuntimeError(f"bridge answered {st}: {b[:200]!r}")
            via_bridge = _resp_reply_count(b, n)
            direct = redis.pipeline(body, n)
            if repr(via_bridge) != repr(direct):
                raise RuntimeError(f"bridge and Redis replies differ for {name}")
            d, v = [], []
            warm = max(100, rounds // 10)
            for i in range(rounds + warm):
                t = time.perf_counter()
                redis.pipeline(body, n)
                t1 = time.perf_counter()
                st, b = http.post(body)
                _resp_reply_count(b, n)
                t2 = time.perf_counter()
                if i >= warm:
                    d.append((t1 - t) * 1000)
                    v.append((t2 - t1) * 1000)
            out[name] = {
                "commands": n, "command_names": [c[0].decode() for c in cmds],
                "request_bytes": len(body), "reply_bytes": len(b),
                "direct_p50_ms": round(pct(d, 0.5), 4), "direct_p99_ms": round(pct(d, 0.99), 4),
                "bridge_p50_ms": round(pct(v, 0.5), 4), "bridge_p99_ms": round(pct(v, 0.99), 4),
                "overhead_p50_ms": round(pct(v, 0.5) - pct(d, 0.5), 4),
                "overhead_p99_ms": round(pct(v, 0.99) - pct(d, 0.99), 4),
            }
    finally:
        http.close()
        redis.close()
    return out


# ---------------------------------------------------------------------------------------------
# Redis memory


def redis_info_memory(s: Stack) -> dict[str, int]:
    text = s.redis_cli("INFO", "memory").decode()
    out = {}
    for line in text.splitlines():
        k, _, v = line.partition(":")
        if v.strip().isdigit():
            out[k] = int(v)
    return out


def redis_keys(s: Stack, pattern: str = "*") -> list[str]:
    keys, cursor = [], "0"
    while True:
        cursor_b, batch = s.redis_cli("SCAN", cursor, "MATCH", pattern, "COUNT", "1000")
        keys += [k.decode() for k in batch]
        cursor = cursor_b.decode()
        if cursor == "0":
            return keys


def fill_entries(s: Stack, n: int, tenant: str, seed: int, workers: int = 8) -> dict:
    """Store n entries through the real filter (`cache-control: no-cache`: no lookup, always
    stored), each answer about MEMORY_ANSWER_BYTES long. Returns the answer sizes seen by the
    client."""
    prompts = [p.replace("{N}", f"f{seed}-{i}") for i, p in enumerate(random_prompts(n, seed))]
    headers = {TENANT: tenant, "cache-control": "no-cache",
               "x-mock-answer-bytes": str(MEMORY_ANSWER_BYTES)}
    sizes = []
    failures = 0

    def one(p: str) -> int | None:
        st, h, b = post(s.envoy_url, "/v1/chat/completions", chat_body(p), headers)
        if st != 200:
            return None
        return len(json.loads(b)["choices"][0]["message"]["content"].encode())

    with concurrent.futures.ThreadPoolExecutor(workers) as ex:
        for r in ex.map(one, prompts):
            if r is None:
                failures += 1
            else:
                sizes.append(r)
    return {"sent": n, "failed": failures, "answer_bytes_mean": statistics.mean(sizes) if sizes else 0}


# The "typical 1 KB answer": the mock lengthens its answers with distinct sentences.
MEMORY_ANSWER_BYTES = 1000


def stored_entry_json(attr: bytes) -> bytes:
    """The entry JSON of a stored attribute (crates/core/src/packed.rs: JSON, or `Z` + raw
    DEFLATE of it)."""
    return zlib.decompress(attr[1:], -15) if attr[:1] == b"Z" else attr


def bench_memory(s: Stack, n: int, tenant: str) -> dict:
    s.redis_cli("MEMORY", "PURGE")
    before = redis_info_memory(s)
    keys_before = set(redis_keys(s))
    t = time.monotonic()
    stats0 = s.stats()
    fill = fill_entries(s, n, tenant, seed=8)
    fill_s = time.monotonic() - t
    fill["filter_counters"] = {k: v for k, v in stats_delta(stats0, s.stats()).items() if v}
    skipped = {k: s.stats().get(k, 0) - stats0.get(k, 0) for k in stats0
               if k.startswith("semcache.store_skipped.") and isinstance(stats0[k], int)}
    fill["filter_counters"].update({k.split(".", 1)[1]: v for k, v in skipped.items() if v})
    time.sleep(0.5)
    s.redis_cli("MEMORY", "PURGE")
    after = redis_info_memory(s)
    new_keys = sorted(set(redis_keys(s)) - keys_before)
    vs = [k for k in new_keys if k.endswith(":vs")]
    xs = [k for k in new_keys if k.endswith(":x")]
    if len(vs) != 1 or len(xs) != 1:
        raise RuntimeError(f"expected one partition from the fill, found keys {new_keys}")
    vs_key, x_key = vs[0], xs[0]
    count = int(s.redis_cli("VCARD", vs_key))
    # what one stored entry holds: its attribute (entry JSON), answer and prompt lengths
    sample = s.redis_cli("VRANDMEMBER", vs_key, "200") if count else []
    attr_len, json_len, ans_len, prompt_len, id_len = [], [], [], [], []
    for el in sample or []:
        a = s.redis_cli("VGETATTR", vs_key, el)
        if a:
            j = stored_entry_json(a)
            e = json.loads(j)
            attr_len.append(len(a))
            json_len.append(len(j))
            ans_len.append(len(e["r"].encode()))
            prompt_len.append(len(e["q"].encode()))
            id_len.append(len(el))
    try:
        mu_vs = s.redis_cli("MEMORY", "USAGE", vs_key, "SAMPLES", "0")
        mu_x = s.redis_cli("MEMORY", "USAGE", x_key, "SAMPLES", "0")
    except Exception:  # noqa: BLE001 (not every type reports it)
        mu_vs = mu_x = None
    delta = after["used_memory"] - before["used_memory"]
    per = delta / count if count else 0
    answer = statistics.mean(ans_len) if ans_len else fill["answer_bytes_mean"]
    info = s.redis_cli("VINFO", vs_key)
    vinfo = {}
    if isinstance(info, list):
        for k, v in zip(info[::2], info[1::2]):
            vinfo[k.decode() if isinstance(k, bytes) else str(k)] = \
                v.decode() if isinstance(v, bytes) else v
    return {
        "entries": count, "fill_requests": fill["sent"], "fill_failed": fill["failed"],
        "fill_filter_counters": fill["filter_counters"],
        "fill_seconds": round(fill_s, 1),
        "used_memory_before": before["used_memory"], "used_memory_after": after["used_memory"],
        "used_memory_delta": delta,
        "bytes_per_entry": round(per, 1),
        "answer_bytes_mean": round(answer, 1),
        "overhead_bytes_per_entry": round(per - answer, 1),
        "entry_json_bytes_mean": round(statistics.mean(json_len), 1) if json_len else None,
        "stored_attribute_bytes_mean": round(statistics.mean(attr_len), 1) if attr_len else None,
        "stored_deflated_share": round(sum(a < j for a, j in zip(attr_len, json_len))
                                       / len(attr_len), 3) if attr_len else None,
        "prompt_bytes_mean": round(statistics.mean(prompt_len), 1) if prompt_len else None,
        "id_bytes": round(statistics.mean(id_len), 1) if id_len else None,
        "memory_usage_vs_key": mu_vs, "memory_usage_x_key": mu_x,
        "memory_usage_per_entry": round(((mu_vs or 0) + (mu_x or 0)) / count, 1)
        if count and mu_vs else None,
        "vinfo": vinfo,
        "vs_key": vs_key, "x_key": x_key,
    }


def memory_breakdown(s: Stack, vs_key: str, limit: int) -> dict:
    """Where an entry's bytes go: the stored entries' own vectors, ids and attributes re-added
    piece by piece under scratch keys, `used_memory` measured after each piece."""
    import struct
    ids = [b.decode() for b in (s.redis_cli("VRANDMEMBER", vs_key, str(limit)) or [])]
    r = RawRedis(s.redis_port)
    try:
        def pipe(cmds: list[list]) -> None:
            for i in range(0, len(cmds), 200):
                chunk = cmds[i:i + 200]
                r.pipeline(b"".join(_resp_encode(c) for c in chunk), len(chunk))

        def used() -> int:
            s.redis_cli("MEMORY", "PURGE")
            return redis_info_memory(s)["used_memory"]

        vecs, attrs = [], []
        for i in range(0, len(ids), 200):
            chunk = ids[i:i + 200]
            cmds = [["VEMB", vs_key, e] for e in chunk] + [["VGETATTR", vs_key, e] for e in chunk]
            rep = r.pipeline(b"".join(_resp_encode(c) for c in cmds), len(cmds))
            vecs += [struct.pack(f"<{len(v)}f", *[float(x) for x in v]) for v in rep[:len(chunk)]]
            attrs += rep[len(chunk):]
        n = len(ids)
        out: dict = {"entries": n}
        steps = [
            ("vector_q8_m16_and_id", lambda k: [["VADD", k, "FP32", v, e, "Q8"] for e, v in zip(ids, vecs)], "bench:vs"),
            ("attribute", lambda k: [["VSETATTR", k, e, a] for e, a in zip(ids, attrs)], "bench:vs"),
            ("expiry_zset", lambda k: [["ZADD", k, "1900000000", e] for e in ids], "bench:x"),
            ("vector_q8_m8_and_id", lambda k: [["VADD", k, "FP32", v, e, "Q8", "M", "8"] for e, v in zip(ids, vecs)], "bench:vs8"),
            ("vector_bin_m16_and_id", lambda k: [["VADD", k, "FP32", v, e, "BIN"] for e, v in zip(ids, vecs)], "bench:vsb"),
        ]
        for name, make, key in steps:
            before = used()
            pipe(make(key))
            out[name] = round((used() - before) / n, 1) if n else None
            if name == "attribute" and n:
                # the same attributes as plain JSON, over the stored ones: what DEFLATE saves
                before = used()
                pipe([["VSETATTR", key, e, stored_entry_json(a)] for e, a in zip(ids, attrs)])
                out["attribute_as_json"] = round(out[name] + (used() - before) / n, 1)
        s.redis_cli("DEL", "bench:vs", "bench:x", "bench:vs8", "bench:vsb")
        out["attribute_bytes_mean"] = round(statistics.mean(len(a) for a in attrs), 1) if attrs else None
        out["attribute_json_bytes_mean"] = round(statistics.mean(len(stored_entry_json(a)) for a in attrs), 1) if attrs else None
        return out
    finally:
        r.close()


# ---------------------------------------------------------------------------------------------
# the run


def embedder_paced(wrk: "Wrk", url: str, runs: dict, pids: dict, duration: float) -> dict:
    """The embedder alone at c=1 with a pause before each request as long as the rest of this
    round's semantic hit (its p50 minus the embedder's, whole ms, at least 1): inside the path
    the embedder idles that long between requests, and an idle 2-vCPU VM is slower to start
    the next one (docs/bench.md, finding 4). Not a target; it shows how much of the semantic
    row's excess over the embedder is that idle."""
    gap = runs[("semantic_hit", 1)][-1]["p50_ms"] - runs[("embedder", 1)][-1]["p50_ms"]
    delay = max(1, round(gap))
    wrk.run(url, "embed", concurrency=1, duration=1.0, delay_ms=delay)
    r = wrk.run(url, "embed", concurrency=1, duration=duration, pids=pids, delay_ms=delay)
    r["loadavg"] = round(os.getloadavg()[0], 2)
    r["delay_ms"] = delay
    return r


def merge_runs(rs: list[dict]) -> dict:
    """Rounds of one row: latency percentiles and rates are the median over the rounds; counts,
    CPU and outcomes are summed (CPU per request over all rounds)."""
    med = statistics.median
    out = {k: round(med(r[k] for r in rs), 3) for k in
           ("p50_ms", "p90_ms", "p99_ms", "p999_ms", "mean_ms", "rps")}
    out["max_ms"] = max(r["max_ms"] for r in rs)
    out["concurrency"] = rs[0]["concurrency"]
    out["rounds"] = len(rs)
    out["duration_s"] = round(sum(r["duration_s"] for r in rs), 2)
    out["requests"] = sum(r["requests"] for r in rs)
    out["error_count"] = sum(r["error_count"] for r in rs)
    for key in ("filter_counters", "upstream", "cpu_s"):
        acc: dict = {}
        for r in rs:
            for k, v in r.get(key, {}).items():
                acc[k] = acc.get(k, 0) + v
        out[key] = acc
    n = max(1, out["requests"])
    out["cpu_us_per_req"] = {k: round(v * 1e6 / n, 1) for k, v in out["cpu_s"].items()}
    out["per_round"] = [{k: r[k] for k in ("p50_ms", "p99_ms", "rps", "requests", "loadavg")}
                        for r in rs]
    return out


def stats_delta(a: dict, b: dict) -> dict:
    # errors.store_cancelled: a miss whose client left before its store finished (wrk closes
    # its connections with requests in flight when a run ends).
    keys = ("hits.exact", "hits.local", "hits.semantic", "misses", "bypasses", "stores", "errors.embeddings",
            "errors.lookup", "errors.store", "errors.store_cancelled")
    out = {}
    for k in keys:
        full = "semcache." + k
        va, vb = a.get(full, 0), b.get(full, 0)
        if isinstance(va, int) and isinstance(vb, int):
            out[k] = vb - va
    vetoes = sum((b.get(k, 0) - a.get(k, 0)) for k in b
                 if k.startswith("semcache.vetoes.") and isinstance(b.get(k), int))
    out["vetoes"] = vetoes
    return out


def upstream_requests(s: Stack) -> dict[str, int]:
    """Envoy's counters of requests and connections to the LLM upstream."""
    st = s.stats("cluster.llm_upstream.upstream_")
    return {k.split(".", 2)[2]: v for k, v in st.items()
            if isinstance(v, int) and k.split(".", 2)[2] in ("upstream_rq_total", "upstream_cx_total")}


def seed_semantic(s: Stack, tenant: str, want: int) -> tuple[list[str], dict]:
    """Store the cached side of the eval set's paraphrase pairs, then keep the queries that come
    back as semantic hits."""
    pairs = paraphrase_pairs()
    headers = {TENANT: tenant}

    def store(pair):
        st, h, _ = post(s.envoy_url, "/v1/chat/completions", chat_body("", pair[0]), headers)
        return st == 200 and h.get("x-semcache-status") in ("miss", "hit")

    with concurrent.futures.ThreadPoolExecutor(8) as ex:
        stored = sum(ex.map(store, pairs))

    def probe(pair):
        st, h, _ = post(s.envoy_url, "/v1/chat/completions", chat_body("", pair[1]), headers)
        return st == 200 and h.get("x-semcache-match") == "semantic"

    with concurrent.futures.ThreadPoolExecutor(8) as ex:
        hits = list(ex.map(probe, pairs))
    bodies = [chat_body("", q) for (c, q), ok in zip(pairs, hits) if ok]
    return bodies[:want], {"pairs": len(pairs), "stored": stored, "semantic_hits": sum(hits),
                           "used": min(want, len(bodies))}


def run(args) -> dict:
    quick = args.quick
    rounds = args.rounds or (1 if quick else 3)
    dur = args.duration or (5.0 if quick else 7.0)
    dur1 = max(2.0, round(dur / 2.5))   # concurrency-1 rows
    warm = 2.0 if quick else 5.0
    entries = args.entries or (500 if quick else 2000)
    conc = args.concurrency
    out_dir = Path(args.out)
    work = out_dir / "work"
    work.mkdir(parents=True, exist_ok=True)
    wrk_exe = ensure_wrk()
    wrk = Wrk(wrk_exe, work, quick)

    started = time.time()
    report: dict = {
        "conditions": {
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "git_rev": git_rev(), "quick": quick, "cpus": os.cpu_count(), "cpu": cpu_model(),
            "loadavg_start": [round(x, 2) for x in os.getloadavg()],
            "generator": subprocess.run([wrk_exe, "--version"], capture_output=True,
                                        text=True).stdout.splitlines()[0].strip(),
            "concurrency": conc, "duration_s": dur, "duration_c1_s": dur1, "warmup_s": warm,
            "rounds": rounds,
            "envoy_concurrency": 2, "mock_latency_ms": 0,
            "wasm": wasm_identity(),
        },
    }
    load = os.getloadavg()[0]
    if load > 1.0:
        log(f"WARNING: load average {load:.2f} on {os.cpu_count()} CPUs: figures will be noisy")

    env = {"RUST_LOG": "warn",
           "mock": {"SEMCACHE_MOCK_LLM_CHUNK_DELAY_MS": "0", "SEMCACHE_MOCK_LLM_LOG": "warn"}}
    empty_filter, read_filter = ensure_empty_filter(), ensure_empty_filter(read_path=True)
    log("starting the stack")
    # /redis: the same plugin config with the local tier (Envoy shared data) switched off.
    redis_only = {"local_cache": {"entries": 0}}
    with Stack(mock_latency_ms=0, route_overlays=[("nofilter", None), ("pt", {}), ("redis", redis_only),
                                                  ("sem", FRESH_SEMANTIC)],
               env=env,
               concurrency=2) as s, \
            Stack(mock_latency_ms=0, wasm=empty_filter, embeddings="mock", env=env,
                  concurrency=2) as floor, \
            Stack(mock_latency_ms=0, wasm=read_filter, embeddings="mock", env=env,
                  concurrency=2) as floor_read:
        # Rows 2c and 2d: more Envoys, same configuration, whose filter does nothing or reads
        # one header. They idle while the other rows run.
        pids = {name: p.pid for name, p in s.procs.items()}
        stack_of = {"floor": floor, "floor_read": floor_read}
        pids_of = {n: {name: p.pid for name, p in st.procs.items()} for n, st in stack_of.items()}
        report["conditions"]["plugin_config"] = default_plugin_config()

        # --- bodies
        exact_body = chat_body(EXACT_PROMPT)
        wrk.bodies("fixed", [exact_body])
        wrk.bodies("embed_stub", [json.dumps({"model": "m", "input": EXACT_PROMPT})])
        miss_prompts = random_prompts(60000 if not quick else 20000, seed=1)
        wrk.bodies("miss", [chat_body(p) for p in miss_prompts])

        # --- embedder alone
        log("embedder alone")
        emb_inputs = []
        for c, q in paraphrase_pairs():
            emb_inputs.append(q[-1]["content"])
        # The request the filter sends (crates/core/src/embeddings.rs): base64 vectors.
        wrk.bodies("embed", [json.dumps({"model": "all-MiniLM-L6-v2", "input": t,
                                         "encoding_format": "base64"}) for t in emb_inputs])
        # Measured in the rounds below, next to the semantic row it is the reference for.
        emb_url = s.embedder_url + "/v1/embeddings"

        # --- exact-hit entry and semantic seeds (stored before any load row)
        log("seeding the exact-hit entry and the semantic partition")
        st, h, _ = post(s.envoy_url, "/v1/chat/completions", exact_body, {TENANT: "exact"})
        st, h, _ = post(s.envoy_url, "/v1/chat/completions", exact_body, {TENANT: "exact"})
        if h.get("x-semcache-match") != "exact":
            raise RuntimeError(f"the exact-hit prompt is not served from cache: {st} {h}")
        # The default route's repeats come from the local tier, /redis's from Redis.
        before = s.stats().get("semcache.hits.local", 0)
        for _ in range(3):
            post(s.envoy_url, "/v1/chat/completions", exact_body, {TENANT: "exact"})
        if s.stats().get("semcache.hits.local", 0) <= before:
            raise RuntimeError("the local tier answered none of the exact hits")
        before = s.stats().get("semcache.hits.local", 0)
        st, h, _ = post(s.envoy_url, "/redis/v1/chat/completions", exact_body, {TENANT: "exact"})
        if h.get("x-semcache-match") != "exact" or s.stats().get("semcache.hits.local", 0) != before:
            raise RuntimeError(f"/redis did not answer from Redis: {st} {h}")

        # --- Redis memory per entry: N entries in the semantic partition's tenant, so the
        # semantic row searches a realistically sized vector set.
        log(f"Redis memory: storing {entries} entries through the filter")
        report["redis_memory"] = mem = bench_memory(s, entries, tenant="sem")
        mem["breakdown"] = memory_breakdown(s, mem["vs_key"], mem["entries"])
        log(f"  {mem['entries']} entries, {mem['bytes_per_entry']:.0f} B/entry, "
            f"answers {mem['answer_bytes_mean']:.0f} B")
        sem_bodies, seed_info = seed_semantic(s, "sem", 64)
        if not sem_bodies:
            raise RuntimeError("no paraphrase came back as a semantic hit")
        wrk.bodies("semantic", sem_bodies)
        report["semantic_seed"] = seed_info

        # --- bridge overhead
        log("bridge vs direct Redis")
        report["bridge"] = bench_bridge(s, {
            "exact hit": ("/redis/v1/chat/completions", exact_body, {TENANT: "exact"}, "exact"),
            "semantic hit": ("/sem/v1/chat/completions", sem_bodies[0], {TENANT: "sem"}, "semantic"),
        }, rounds=1000 if quick else 3000)

        # --- HTTP rows
        # Row 2 and its floors (2c, 2d) send the same request.
        no_store = {"cache-control": "no-store", TENANT: "pt"}
        rows = {
            "baseline": ("/nofilter/v1/chat/completions", "fixed", "rotate", {}),
            "passthrough": ("/v1/chat/completions", "fixed", "rotate", no_store),
            # The same request through the floor Envoys: their filter does nothing (what any
            # proxy-wasm filter pays here) or reads one header (what one that looks pays).
            "floor": (floor.envoy_url + "/v1/chat/completions", "fixed", "rotate", no_store),
            "floor_read": (floor_read.envoy_url + "/v1/chat/completions", "fixed", "rotate", no_store),
            # The filter's cheapest exit: active on the route, but the path is no completion.
            "baseline_path": ("/nofilter/v1/embeddings", "embed_stub", "rotate", {}),
            "passthrough_path": ("/pt/v1/embeddings", "embed_stub", "rotate", {}),
            "exact_hit": ("/v1/chat/completions", "fixed", "rotate", {TENANT: "exact"}),
            "exact_hit_redis": ("/redis/v1/chat/completions", "fixed", "rotate", {TENANT: "exact"}),
            # The embedder alone, straight (no Envoy), right before the semantic row: the
            # semantic target compares the two, so both see the same host conditions.
            "embedder": (emb_url, "embed", "rotate", {}),
            "semantic_hit": ("/sem/v1/chat/completions", "semantic", "rotate", {TENANT: "sem"}),
            "miss": ("/v1/chat/completions", "miss", "unique", {TENANT: "miss"}),
        }
        # Rounds interleave the rows, so a change in the machine's background load spreads over
        # every row instead of landing on one; each figure is the median over the rounds.
        runs: dict[tuple[str, int], list[dict]] = {}
        for rnd in range(rounds):
            for name, (path, bodies, mode, headers) in rows.items():
                url = path if path.startswith("http") else s.envoy_url + path
                rs = stack_of.get(name, s)
                for c, d in ((conc, dur), (1, dur1)):
                    w = warm if rnd == 0 else 1.0
                    log(f"round {rnd + 1}/{rounds} {name} c={c}: warm-up {w:.0f}s, measure {d:.0f}s")
                    wrk.run(url, bodies, concurrency=c, duration=w, mode=mode, headers=headers)
                    before, up0 = rs.stats(), upstream_requests(rs)
                    r = wrk.run(url, bodies, concurrency=c, duration=d, mode=mode,
                                headers=headers, pids=pids_of.get(name, pids))
                    r["filter_counters"] = stats_delta(before, rs.stats())
                    up1 = upstream_requests(rs)
                    r["upstream"] = {k: up1[k] - up0.get(k, 0) for k in up1}
                    r["loadavg"] = round(os.getloadavg()[0], 2)
                    runs.setdefault((name, c), []).append(r)
                    log(f"  p50 {r['p50_ms']:.3f} ms  p99 {r['p99_ms']:.3f} ms  {r['rps']:.0f} rps  "
                        f"errors {r['error_count']}  {r['filter_counters']}  upstream {r['upstream']}")
                if name == "semantic_hit":
                    paced = embedder_paced(wrk, emb_url, runs, pids, dur1)
                    runs.setdefault(("embedder_paced", 1), []).append(paced)
                    log(f"round {rnd + 1}/{rounds} embedder paced ({paced['delay_ms']} ms between "
                        f"requests): p50 {paced['p50_ms']:.3f} ms")
        paced = runs.pop(("embedder_paced", 1))
        report["embedder"] = {"c1": merge_runs(runs.pop(("embedder", 1))),
                              "c1_paced": {**merge_runs(paced),
                                           "delay_ms": [r["delay_ms"] for r in paced]},
                              f"c{conc}": merge_runs(runs.pop(("embedder", conc))),
                              "inputs_per_request": 1, "distinct_inputs": len(emb_inputs)}
        del rows["embedder"]
        report["rows"] = {}
        for name, (path, bodies, mode, headers) in rows.items():
            res = {"path": path, "headers": headers, "mode": mode,
                   "distinct_bodies": len(wrk.files[bodies].read_text().splitlines())
                   if mode == "rotate" else "one per request"}
            for c in (conc, 1):
                res[f"c{c}"] = merge_runs(runs[(name, c)])
            report["rows"][name] = res

        # --- wasm memory
        mems = wasm_memories(s.procs["envoy"].pid)
        report["wasm_memory"] = {
            "vms": mems,
            "vm_count": len(mems),
            "wasm_stats": {k: v for k, v in s.stats("wasm.").items()
                           if isinstance(v, int)},
            "envoy_rss_kib_with_filter": proc_rss_kib(s.procs["envoy"].pid),
        }

    # Envoy without the filter, same load (baseline), for the RSS comparison.
    log("Envoy without the filter (RSS comparison)")
    with Stack(mock_latency_ms=0, filter=False, embeddings="mock", env=env, concurrency=2) as s2:
        url = s2.envoy_url + "/v1/chat/completions"
        wrk.run(url, "fixed", concurrency=conc, duration=warm)
        wrk.run(url, "fixed", concurrency=conc, duration=warm)
        rss = proc_rss_kib(s2.procs["envoy"].pid)
        report["wasm_memory"]["envoy_rss_kib_without_filter"] = rss
        report["wasm_memory"]["envoy_rss_delta_kib"] = \
            report["wasm_memory"]["envoy_rss_kib_with_filter"] - rss

    report["conditions"]["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    report["conditions"]["elapsed_s"] = round(time.time() - started, 1)
    return report


# ---------------------------------------------------------------------------------------------
# summary keys, targets, markdown


def summarise(report: dict) -> dict:
    rows = report["rows"]
    conc = report["conditions"]["concurrency"]
    c = f"c{conc}"
    flat = {}
    for name, r in rows.items():
        flat[f"{name}_p50_ms"] = r[c]["p50_ms"]
        flat[f"{name}_p99_ms"] = r[c]["p99_ms"]
        flat[f"{name}_rps"] = r[c]["rps"]
        flat[f"{name}_c1_p50_ms"] = r["c1"]["p50_ms"]
        flat[f"{name}_c1_p99_ms"] = r["c1"]["p99_ms"]
        flat[f"{name}_c1_rps"] = r["c1"]["rps"]
    emb = report["embedder"]
    flat["embedder_p50_ms"] = emb["c1"]["p50_ms"]
    flat["embedder_p99_ms"] = emb["c1"]["p99_ms"]
    flat["embedder_eps"] = emb[c]["rps"]
    flat["embedder_paced_p50_ms"] = emb["c1_paced"]["p50_ms"]
    flat[f"embedder_{c}_p50_ms"] = emb[c]["p50_ms"]
    br = report["bridge"]
    flat["bridge_overhead_p50_ms"] = br["semantic hit"]["overhead_p50_ms"]
    flat["bridge_overhead_p99_ms"] = br["semantic hit"]["overhead_p99_ms"]
    flat["bridge_overhead_exact_p50_ms"] = br["exact hit"]["overhead_p50_ms"]
    mem = report["redis_memory"]
    flat["redis_bytes_per_entry"] = mem["bytes_per_entry"]
    flat["redis_overhead_bytes_per_entry"] = mem["overhead_bytes_per_entry"]
    flat["redis_answer_bytes_mean"] = mem["answer_bytes_mean"]
    wm = report["wasm_memory"]
    if wm["vms"]:
        flat["wasm_linear_memory_kib_per_vm_max"] = max(v["committed_kib"] for v in wm["vms"])
        flat["wasm_resident_kib_per_vm_max"] = max(v["rss_kib"] for v in wm["vms"])
    flat["envoy_rss_delta_kib"] = wm.get("envoy_rss_delta_kib")
    return flat


def targets(flat: dict, conc: int) -> list[dict]:
    t = []

    def add(row, what, value, limit, met):
        t.append({"row": row, "target": what, "value": value, "limit": limit, "met": bool(met)})

    for cc, pre in ((conc, ""), (1, "c1_")):
        b50, b99 = flat[f"baseline_{pre}p50_ms"], flat[f"baseline_{pre}p99_ms"]
        v = flat[f"passthrough_{pre}p50_ms"]
        add("passthrough", f"p50 ≤ baseline p50 + {TARGET_PASSTHROUGH_MS} ms (c={cc})",
            v, round(b50 + TARGET_PASSTHROUGH_MS, 3), v <= b50 + TARGET_PASSTHROUGH_MS)
        bp, v = flat[f"baseline_path_{pre}p50_ms"], flat[f"passthrough_path_{pre}p50_ms"]
        add("passthrough_path", f"p50 ≤ its baseline (1b) p50 + {TARGET_PASSTHROUGH_MS} ms (c={cc})",
            v, round(bp + TARGET_PASSTHROUGH_MS, 3), v <= bp + TARGET_PASSTHROUGH_MS)
    # The exact-hit targets apply to both exact rows: as shipped (the local tier), and with
    # every hit a lookup in Redis.
    for row in ("exact_hit", "exact_hit_redis"):
        for cc, pre in ((conc, ""), (1, "c1_")):
            b50, b99 = flat[f"baseline_{pre}p50_ms"], flat[f"baseline_{pre}p99_ms"]
            v = flat[f"{row}_{pre}p50_ms"]
            add(row, f"p50 ≤ baseline p50 + {TARGET_EXACT_P50_MS} ms (c={cc})",
                v, round(b50 + TARGET_EXACT_P50_MS, 3), v <= b50 + TARGET_EXACT_P50_MS)
            v = flat[f"{row}_{pre}p99_ms"]
            add(row, f"p99 ≤ baseline p99 + {TARGET_EXACT_P99_MS} ms (c={cc})",
                v, round(b99 + TARGET_EXACT_P99_MS, 3), v <= b99 + TARGET_EXACT_P99_MS)
        add(row, f"rps ≥ {TARGET_RPS_RATIO} × baseline rps (c={conc})",
            flat[f"{row}_rps"], round(TARGET_RPS_RATIO * flat["baseline_rps"], 1),
            flat[f"{row}_rps"] >= TARGET_RPS_RATIO * flat["baseline_rps"])
    e_c = flat[f"embedder_c{conc}_p50_ms"]
    add("semantic_hit", f"p50 ≤ embedder p50 + {TARGET_SEMANTIC_MS} ms, both at c={conc}",
        flat["semantic_hit_p50_ms"], round(e_c + TARGET_SEMANTIC_MS, 3),
        flat["semantic_hit_p50_ms"] <= e_c + TARGET_SEMANTIC_MS)
    add("semantic_hit", f"p50 ≤ embedder p50 + {TARGET_SEMANTIC_MS} ms, both at c=1",
        flat["semantic_hit_c1_p50_ms"], round(flat["embedder_p50_ms"] + TARGET_SEMANTIC_MS, 3),
        flat["semantic_hit_c1_p50_ms"] <= flat["embedder_p50_ms"] + TARGET_SEMANTIC_MS)
    add("redis memory", f"bytes/entry − answer < {TARGET_ENTRY_OVERHEAD_BYTES} B",
        flat["redis_overhead_bytes_per_entry"], TARGET_ENTRY_OVERHEAD_BYTES,
        flat["redis_overhead_bytes_per_entry"] < TARGET_ENTRY_OVERHEAD_BYTES)
    return t


ROW_TITLES = {
    "baseline": "1. baseline: Envoy → mock LLM, no filter",
    "passthrough": "2. filter on, request not cached (pass-through)",
    "floor": "2c. the floor: row 2 through a second Envoy whose proxy-wasm filter does nothing",
    "floor_read": "2d. the floor of a filter that looks at the request: the same, reading one header",
    "exact_hit": "3. exact hit (as shipped: the local tier answers repeats)",
    "exact_hit_redis": "3b. exact hit through Redis (`local_cache.entries: 0`)",
    "semantic_hit": "4. semantic hit (paraphrases, local embedder)",
    "miss": "5. miss (+ store), mock LLM at 0 ms",
    "baseline_path": "1b. baseline for 2b: POST /v1/embeddings (mock stub), no filter",
    "passthrough_path": "2b. filter on, path that is no completion (its cheapest exit)",
}


def fmt(v, d=2):
    return "—" if v is None else f"{v:.{d}f}"


def markdown(report: dict) -> str:
    cond = report["conditions"]
    conc = cond["concurrency"]
    c = f"c{conc}"
    flat = report["summary"]
    tg = report["targets"]
    by_row: dict[str, list] = {}
    for t in tg:
        by_row.setdefault(t["row"], []).append(t)
    L = []
    L.append(f"Measured {cond['date']} at `{cond['git_rev']}` on {cond['cpus']} CPUs ({cond['cpu']}), "
             f"load average {cond['loadavg_start'][0]} at the start, {cond['loadavg_end'][0]} at the end"
             f"{' — QUICK mode' if cond['quick'] else ''}. Generator: `{cond['generator']}` "
             f"(one thread, {conc} connections; {cond['rounds']} interleaved round(s) of "
             f"{cond['duration_s']:.0f} s per row after a {cond['warmup_s']:.0f} s warm-up, c=1 rows "
             f"{cond['duration_c1_s']:.0f} s; figures are medians over the rounds). "
             "Envoy `--concurrency 2`, mock LLM at 0 ms.")
    L.append("")
    L.append(f"| row | p50 ms | p99 ms | req/s | c=1 p50 ms | c=1 p99 ms | target | met? |")
    L.append("|---|---:|---:|---:|---:|---:|---|---|")
    for name, r in report["rows"].items():
        ts = by_row.get(name, [])
        target = "<br>".join(f"{t['target']}: limit {fmt(t['limit'], 3) if isinstance(t['limit'], float) else t['limit']}"
                             for t in ts) or "(reference)"
        if name in ("floor", "floor_read"):
            over = [(flat[f"{n}_{pre}p50_ms"] - flat[f"baseline_{pre}p50_ms"]) for n in (name, "passthrough")
                    for pre in ("", "c1_")]
            target = (f"(reference: p50 over the baseline {over[0]:+.3f} ms at c={conc}, {over[1]:+.3f} "
                      f"at c=1; row 2: {over[2]:+.3f} and {over[3]:+.3f})")
        met = "<br>".join("yes" if t["met"] else "**no**" for t in ts) or "—"
        L.append(f"| {ROW_TITLES[name]} | {fmt(r[c]['p50_ms'])} | {fmt(r[c]['p99_ms'])} | "
                 f"{r[c]['rps']:.0f} | {fmt(r['c1']['p50_ms'])} | {fmt(r['c1']['p99_ms'])} | "
                 f"{target} | {met} |")
    emb = report["embedder"]
    L.append(f"| embedder alone, 1 input per request | {fmt(emb[c]['p50_ms'])} | "
             f"{fmt(emb[c]['p99_ms'])} | {emb[c]['rps']:.0f} emb/s | {fmt(emb['c1']['p50_ms'])} | "
             f"{fmt(emb['c1']['p99_ms'])} | (reference) | — |")
    ep = emb["c1_paced"]
    L.append(f"| embedder alone, c=1 paced like inside row 4 ({'/'.join(str(x) for x in ep['delay_ms'])} ms "
             f"before each request) | | | | {fmt(ep['p50_ms'])} | {fmt(ep['p99_ms'])} | "
             f"(diagnostic: row 4 at c=1 is {flat['semantic_hit_c1_p50_ms'] - ep['p50_ms']:+.2f} ms "
             f"over it) | — |")
    L.append("")
    L.append("Outcomes during each measured run at c={} (filter counters; requests Envoy sent to "
             "the LLM upstream): ".format(conc) + "; ".join(
                 f"{n}: " + ", ".join([f"{k} {v}" for k, v in r[c]["filter_counters"].items() if v]
                                      + [f"upstream {r[c].get('upstream', {}).get('upstream_rq_total', '?')}"])
                 for n, r in report["rows"].items()) + ". Non-2xx or socket errors: " + ", ".join(
        f"{n} {r[c]['error_count']}" for n, r in report["rows"].items()) + ".")
    L.append("")
    br = report["bridge"]
    L.append("**Bridge vs direct Redis** (one client, sequential, interleaved; the commands one "
             "request of each kind made Redis run, captured with `MONITOR`):")
    L.append("")
    L.append("| pipeline | direct p50 ms | bridge p50 ms | overhead p50 ms | direct p99 ms | bridge p99 ms |")
    L.append("|---|---:|---:|---:|---:|---:|")
    for name, b in br.items():
        L.append(f"| {name} ({' + '.join(b['command_names'])}; reply {b['reply_bytes']} B) | {b['direct_p50_ms']:.3f} | "
                 f"{b['bridge_p50_ms']:.3f} | {b['overhead_p50_ms']:.3f} | {b['direct_p99_ms']:.3f} | "
                 f"{b['bridge_p99_ms']:.3f} |")
    L.append("")
    m = report["redis_memory"]
    met = [t for t in tg if t["row"] == "redis memory"][0]
    L.append(f"**Redis memory**: {m['entries']} entries stored through the filter into one "
             f"partition (384-dim vectors, Q8): `used_memory` grew {m['used_memory_delta']} B, "
             f"**{m['bytes_per_entry']:.0f} B per entry**, of which the answer is "
             f"{m['answer_bytes_mean']:.0f} B on average (the mock's answers lengthened to about "
             f"{MEMORY_ANSWER_BYTES} B, the typical answer of issue 8) → "
             f"**{m['overhead_bytes_per_entry']:.0f} B per entry besides the answer** "
             f"(target < {TARGET_ENTRY_OVERHEAD_BYTES} B: {'met' if met['met'] else '**not met**'}). "
             f"The entry JSON averages {fmt(m['entry_json_bytes_mean'], 0)} B (answer, prompt "
             f"{fmt(m['prompt_bytes_mean'], 0)} B, model, usage, times) and is stored DEFLATE-compressed "
             f"in {fmt(m['stored_attribute_bytes_mean'], 0)} B on average; the id is "
             f"{fmt(m['id_bytes'], 0)} B and is kept twice (vector set element, expiry zset member). "
             f"`MEMORY USAGE` of the two keys: {fmt(m['memory_usage_per_entry'], 0)} B per entry.")
    L.append("")
    bd = m.get("breakdown") or {}
    if bd.get("entries"):
        L.append(f"Where the bytes go ({bd['entries']} of the stored entries re-added piece by piece "
                 "under scratch keys, `used_memory` per entry):")
        L.append("")
        L.append("| piece | B/entry |")
        L.append("|---|---:|")
        id_len = fmt(m.get("id_bytes"), 0)
        for k, title in (("vector_q8_m16_and_id", f"vector set node: Q8 vector, HNSW links (M=16), {id_len}-char id"),
                         ("attribute", f"attribute: the entry as stored ({fmt(bd.get('attribute_bytes_mean'), 0)} B on average, DEFLATE)"),
                         ("attribute_as_json", f"alternative: the attribute as plain JSON ({fmt(bd.get('attribute_json_bytes_mean'), 0)} B)"),
                         ("expiry_zset", "expiry index: sorted-set member (id) and score"),
                         ("vector_q8_m8_and_id", "alternative: vector set node with `M 8`"),
                         ("vector_bin_m16_and_id", "alternative: vector set node with `BIN` quantisation")):
            L.append(f"| {title} | {fmt(bd.get(k), 0)} |")
        L.append("")
    wm = report["wasm_memory"]
    vms = ", ".join(f"{v['committed_kib']} KiB ({v['rss_kib']} KiB resident)" for v in wm["vms"])
    L.append(f"**Filter memory**: {wm['vm_count']} V8 wasm instances in Envoy (one per worker, "
             f"plus the main thread's); linear memory after the run: {vms}. Envoy RSS "
             f"{wm['envoy_rss_kib_with_filter'] / 1024:.1f} MiB with the filter vs "
             f"{wm['envoy_rss_kib_without_filter'] / 1024:.1f} MiB without it under the same "
             f"baseline load (Δ {wm['envoy_rss_delta_kib'] / 1024:.1f} MiB for all instances, "
             "V8 code and heap included).")
    L.append("")
    L.append(f"**CPU per request** (µs, all threads of each process, c={conc}):")
    L.append("")
    procs = ["envoy", "bridge", "redis", "embedder", "mock"]
    L.append("| row | " + " | ".join(procs) + " | total | (wrk) |")
    L.append("|---|" + "---:|" * (len(procs) + 2))
    for name, r in report["rows"].items():
        cpu = r[c].get("cpu_us_per_req", {})
        L.append(f"| {name} | " + " | ".join(f"{cpu.get(p, 0):.0f}" for p in procs)
                 + f" | {sum(cpu.get(p, 0) for p in procs):.0f} | {cpu.get('wrk', 0):.0f} |")
    L.append("")
    return "\n".join(L)


DOCS = ROOT / "docs" / "bench.md"
BEGIN, END = "<!-- bench results: begin (scripts/bench.py --update-docs) -->", "<!-- bench results: end -->"


def update_docs(md: str) -> None:
    text = DOCS.read_text()
    a, b = text.find(BEGIN), text.find(END)
    if a < 0 or b < a:
        log(f"{DOCS} has no results markers; not updated")
        return
    DOCS.write_text(text[:a + len(BEGIN)] + "\n" + md.rstrip() + "\n" + text[b:])
    log(f"updated {DOCS}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", default=os.environ.get("QUICK") not in (None, "", "0"),
                    help="short runs (about 2 minutes); also QUICK=1 in the environment")
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--duration", type=float, default=None,
                    help="seconds per row and round at the fixed concurrency (7, quick 5)")
    ap.add_argument("--rounds", type=int, default=None, help="interleaved rounds (3, quick 1)")
    ap.add_argument("--entries", type=int, default=None, help="entries for Redis memory (2000, quick 500)")
    ap.add_argument("--out", default=str(ROOT / "target" / "bench"))
    ap.add_argument("--update-docs", action="store_true",
                    help="also replace the results block of docs/bench.md with this run's table")
    args = ap.parse_args()

    report = run(args)
    flat = summarise(report)
    report["summary"] = flat
    report["targets"] = targets(flat, args.concurrency)
    out = Path(args.out)
    md = markdown(report)
    final = {**flat, **{k: v for k, v in report.items() if k != "summary"}}
    (out / "report.json").write_text(json.dumps(final, indent=2) + "\n")
    (out / "report.md").write_text(md)
    print(md)
    if args.update_docs:
        update_docs(md)
    met = sum(t["met"] for t in report["targets"])
    log(f"{met}/{len(report['targets'])} targets met; wrote {out / 'report.json'} and {out / 'report.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
