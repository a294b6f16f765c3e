"""The stack launcher and the plumbing around the filter: processes, ports, Envoy routing,
restarts, stopping. The filter's behaviour is tested in test_filter_*.py."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time

import pytest
import yaml

import stack as stacklib
from stack import ROOT, Stack, StackError


def test_plumbing_without_filter(make_stack, client):
    """Envoy (no filter), bridge, embedder, mock and Redis come up; Envoy routes to the mock;
    everything stops and exits cleanly."""
    s = make_stack(filter=False, route_overlays=[("tenant-a", {"ttl_seconds": 5})])

    # Envoy forwards /v1/models to the mock LLM: same answer as asking the mock directly.
    direct = client.get(s.mock_url + "/v1/models")
    via = client.get(s.envoy_url + "/v1/models")
    assert via.status_code == direct.status_code
    assert via.content == direct.content
    assert "x-envoy-upstream-service-time" in via.headers  # an upstream answered, not Envoy
    # An overlay route: prefix rewritten to the real path.
    overlay = client.get(s.envoy_url + "/tenant-a/v1/models")
    assert overlay.content == direct.content

    # The admin API is reachable and saw the requests on llm_upstream.
    assert client.get(s.admin_url + "/ready").text.strip() == "LIVE"
    assert s.stats("cluster.llm_upstream.upstream_rq_total")["cluster.llm_upstream.upstream_rq_total"] >= 2

    # The other servers answer their health checks.
    for url in (s.bridge_url, s.embedder_url, s.mock_url):
        assert client.get(url + "/healthz").status_code == 200, url

    # Redis 8 with vector sets.
    assert s.redis_cli("SET", "k", "v") == "OK"
    assert s.redis_cli("GET", "k") == b"v"
    assert s.redis_cli("VADD", "vs", "VALUES", 2, 1, 0, "e1") == 1
    s.flush()
    assert s.redis_cli("DBSIZE") == 0

    pids = s.pids()
    codes = s.stop()
    assert s.leftovers() == []
    for pid in pids:
        assert not os.path.exists(f"/proc/{pid}") or _zombie(pid), pid
    # Every server stops gracefully on SIGTERM (docs/conventions.md).
    assert codes == {name: 0 for name in codes}, codes


def _zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def test_kill_and_restart_on_same_port(make_stack, client):
    s = make_stack(filter=False)
    mock_url, bridge_url = s.mock_url, s.bridge_url
    s.kill("mock")
    assert client.get(s.envoy_url + "/v1/models").status_code == 503  # no upstream
    s.restart("mock")
    assert s.mock_url == mock_url
    assert client.get(s.envoy_url + "/v1/models").status_code == client.get(mock_url + "/v1/models").status_code

    s.redis_cli("SET", "k", "v")
    s.restart("redis")  # comes back empty, on the same port
    assert s.redis_cli("GET", "k") is None
    s.restart("bridge")
    assert s.bridge_url == bridge_url
    assert client.get(bridge_url + "/healthz").status_code == 200


def test_stack_with_filter(stack, client):
    """The real filter is loaded by Envoy and the request paths reach the mock through it."""
    vm = stack.stats("wasm.")
    active = {k: v for k, v in vm.items() if k.endswith(".active")}
    assert active and all(v >= 1 for v in active.values()), vm
    # Filter disabled on /v1/models: straight to the mock.
    assert client.get(stack.envoy_url + "/v1/models").content == client.get(stack.mock_url + "/v1/models").content
    r = client.post(stack.envoy_url + "/v1/chat/completions", json={
        "model": "gpt-4o-mini", "messages": [{"role": "user", "content": "smoke test"}]})
    assert r.status_code == 200, r.text
    assert r.json()["choices"][0]["message"]["content"]


def test_fixed_port_conflict_names_the_holder():
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(StackError) as e:
            stacklib.check_ports_free({"bridge": port})
    msg = str(e.value)
    assert f"127.0.0.1:{port} (bridge)" in msg
    assert f"pid {os.getpid()}" in msg


def test_start_failure_stops_what_started(tmp_path):
    """A stack whose Envoy cannot start reports Envoy's error and leaves nothing behind."""
    bad = tmp_path / "bad.wasm"
    bad.write_bytes(b"\0asm\1\0\0\0")
    s = Stack(wasm=bad)
    with pytest.raises(StackError, match="envoy"):
        s.start()
    assert s.procs["redis"].pid and s.leftovers() == []


# -- make run ---------------------------------------------------------------------------------


def _fixed_ports_busy() -> list[int]:
    busy = []
    for port in stacklib.FIXED_PORTS.values():
        with socket.socket() as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                busy.append(port)
    return busy


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_run_script(sig, filter_ready, client, tmp_path):
    """scripts/run.py (what `make run` executes): prints what runs where and READY, serves on
    the fixed ports, and stops everything on Ctrl-C / SIGTERM."""
    busy = _fixed_ports_busy()
    if busy:
        pytest.skip(f"fixed ports {busy} in use (a `make run` on this machine?)")
    argv = [sys.executable, str(ROOT / "scripts" / "run.py"), "--mock-latency-ms", "0"]
    if filter_ready is not None:
        argv.append("--no-filter")
    config = None
    if sig == signal.SIGTERM:  # this run also takes another plugin config (make run CONFIG=...)
        config = json.dumps({**stacklib.default_plugin_config(), "score_threshold": 0.11})
        (tmp_path / "config.json").write_text(config)
        argv += ["--config", str(tmp_path / "config.json")]
    out = open(tmp_path / "run.out", "w+b")
    p = subprocess.Popen(argv, cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, start_new_session=True)
    try:
        lines = []
        deadline = time.monotonic() + stacklib.START_TIMEOUT
        for raw in iter(p.stdout.readline, b""):
            out.write(raw)
            lines.append(raw.decode())
            if raw.startswith(b"READY") or time.monotonic() > deadline:
                break
        text = "".join(lines)
        assert "READY" in text, text
        for where in ("http://127.0.0.1:10000", "http://127.0.0.1:9901", "redis://127.0.0.1:6380",
                      "http://127.0.0.1:8081", "http://127.0.0.1:8082", "http://127.0.0.1:8083"):
            assert where in text, text
        assert "curl -s -D- http://127.0.0.1:10000/v1/chat/completions" in text
        rendered = yaml.safe_load((ROOT / ".run" / "logs" / "envoy.yaml").read_text())
        wasm = stacklib._wasm_filter(rendered)
        if config is not None and wasm is not None:
            assert wasm["typed_config"]["config"]["configuration"]["value"] == config
        token = (ROOT / ".run" / "bridge-token").read_text().strip()
        assert len(token) >= 32 and token not in text

        assert client.get("http://127.0.0.1:10000/v1/models").status_code == \
            client.get("http://127.0.0.1:8083/v1/models").status_code
        # the bridge accepts the token of .run/bridge-token (and refuses anything else)
        assert client.post("http://127.0.0.1:8081/v1/resp", content=b"*1\r\n$4\r\nPING\r\n",
                           headers={"authorization": "Bearer nope"}).status_code == 401
        r = client.post("http://127.0.0.1:8081/v1/resp", content=b"*1\r\n$4\r\nPING\r\n",
                        headers={"authorization": f"Bearer {token}",
                                 "content-type": "application/x-redis-resp"})
        assert r.status_code == 200 and r.content == b"+PONG\r\n"

        os.kill(p.pid, sig)
        rest, _ = p.communicate(timeout=30)
        out.write(rest)
        assert p.returncode == 0, rest.decode()
        assert b"semcache: stopped." in rest
        assert _fixed_ports_busy() == []
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()


def test_run_script_reports_busy_port(filter_ready):
    if _fixed_ports_busy():
        pytest.skip("fixed ports in use")
    with socket.socket() as busy:
        busy.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        busy.bind(("127.0.0.1", stacklib.FIXED_PORTS["bridge"]))
        busy.listen()
        r = subprocess.run([sys.executable, str(ROOT / "scripts" / "run.py"), "--no-filter"],
                           cwd=ROOT, stdin=subprocess.DEVNULL, capture_output=True, timeout=60)
    assert r.returncode == 1
    assert re.search(rb"127\.0\.0\.1:8081 \(bridge\) is taken by pid \d+", r.stderr), r.stderr


def test_make_run_passes_its_variables():
    r = subprocess.run(["make", "-n", "run", "CONFIG=some dir/c.json", "MOCK_LATENCY_MS=0",
                        "BACKEND=redisearch"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    line = next(l for l in r.stdout.splitlines() if "scripts/run.py" in l)
    assert "--config 'some dir/c.json'" in line
    assert "--mock-latency-ms 0" in line and "--backend redisearch" in line


def test_real_upstream_wiring(make_stack, client, filter_ready):
    """SEMCACHE_UPSTREAM_URL / OPENAI_API_KEY: llm_upstream becomes a DNS cluster to the given
    host, the base path is prefixed, the host rewritten and the key sent as a bearer token. Here
    the "real" upstream is a local recorder (no network)."""
    import http.server
    import threading

    seen = []

    class Recorder(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            seen.append((self.path, self.headers.get("host"), self.headers.get("authorization")))
            self.send_response(200)
            self.send_header("content-length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    try:
        s = make_stack(filter=filter_ready is None, embeddings="embedder",
                       upstream_url=f"http://localhost:{server.server_port}/base",
                       upstream_key="sk-local-test")
        assert "mock" not in s.procs
        r = client.get(s.envoy_url + "/v1/models")
        assert r.status_code == 200
        assert seen == [("/base/v1/models", "localhost", "Bearer sk-local-test")]
        assert "sk-local-test" not in "".join(" ".join(map(str, row)) for row in s.describe())
    finally:
        server.shutdown()
        server.server_close()
