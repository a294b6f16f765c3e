"""Reliability (issue 8): dependencies killed and restarted under load, a slow embedder, upstream
faults and bad input. Whatever breaks, the client gets the upstream's own answer (or Envoy's clear
one), nothing wrong is ever stored, and the wasm VM never fails.

"The upstream's own answer" is checked against the mock LLM asked directly with the same request:
its answers are deterministic per request (`Mock answer to: ... [hash]`), and so are its error
bodies. No test here sleeps to synchronise or asserts on wall-clock durations.

How a crashed VM would show (checked by `_assert_vm_intact` and the fault stack's teardown):
the request that crashes it gets a 503 without `x-semcache-status` (every request here asserts its
exact status and that header); under the shipped `FAIL_OPEN` policy Envoy 1.40 counts the failure
in no stat at all (the worker just serves uncached from then on), so the fault stack below runs
with `FAIL_RELOAD`, where the next request on that worker reloads the VM or backs off and
`wasm.semcache.vm_reload*` move; and Envoy logs `panicked at` / `Function: proxy_on_... failed`,
which the teardown looks for once Envoy has stopped and flushed its log.
"""

from __future__ import annotations

import gzip
import json
import re
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from cachehelp import CHAT, answer, cache_stats, chat, status, upstream_calls
from stack import Stack, default_plugin_config

# ---------------------------------------------------------------------------------------------
# helpers


def _routes(cfg: dict) -> list[dict]:
    for f in cfg["static_resources"]["listeners"][0]["filter_chains"][0]["filters"]:
        if f["name"] == "envoy.filters.network.http_connection_manager":
            return f["typed_config"]["route_config"]["virtual_hosts"][0]["routes"]
    raise AssertionError("rendered envoy.yaml has no http_connection_manager")


def _wasm(cfg: dict) -> dict:
    for f in cfg["static_resources"]["listeners"][0]["filter_chains"][0]["filters"]:
        if f["name"] == "envoy.filters.network.http_connection_manager":
            for h in f["typed_config"]["http_filters"]:
                if h["name"] == "semcache":
                    return h["typed_config"]["config"]
    raise AssertionError("rendered envoy.yaml has no semcache filter")


ROUTE_TIMEOUT_PREFIX = "/t"


class FaultStack(Stack):
    """The launcher's stack with two changes to the rendered envoy.yaml, for this file only:

    - `failure_policy: FAIL_RELOAD` (the shipped config says FAIL_OPEN): see the module docstring;
      it changes nothing while the VM is healthy, and makes a crashed VM visible in
      `wasm.semcache.vm_reload*`;
    - the route of the first route overlay (`/t/...`, an empty overlay) gets a 500 ms route
      timeout. Envoy strips `x-envoy-upstream-rq-timeout-ms` from external requests (every
      request is external with Envoy's default internal_address_config), so a route timeout is
      how a test gets Envoy's own upstream timeout (504).
    """

    def render(self, **kw) -> dict:
        cfg = super().render(**kw)
        _wasm(cfg)["failure_policy"] = "FAIL_RELOAD"
        for r in _routes(cfg):
            if r.get("name") == "overlay_0":
                r["route"]["timeout"] = "0.5s"
        return cfg


VM_RELOAD_STATS = ("wasm.semcache.vm_reload", "wasm.semcache.vm_reload_backoff",
                   "wasm.semcache.vm_reload_failure", "wasm.semcache.vm_reload_success")
VM_FAILURE_LOG = re.compile(r"panicked at|Uncaught RuntimeError|Function: proxy_on_\w+ failed|"
                            r"wasm_fail_stream|Plugin configured to fail")


def _assert_vm_intact(s: Stack) -> None:
    st = s.stats("wasm.semcache.")
    missing = [k for k in VM_RELOAD_STATS if k not in st]
    assert not missing, f"Envoy no longer reports {missing}: find the VM failure stats again"
    moved = {k: st[k] for k in VM_RELOAD_STATS if st[k]}
    assert not moved, f"the wasm VM failed and was reloaded: {moved}"


def _vm_failure_lines(s: Stack) -> list[str]:
    """Envoy's log lines about a failed VM (complete only once Envoy has stopped: the log file is
    flushed every 250 ms and on exit)."""
    try:
        text = (Path(s.log_dir) / "envoy.log").read_text(errors="replace")
    except OSError:
        return []
    return [line for line in text.splitlines() if VM_FAILURE_LOG.search(line)]


def _errors(stats: dict[str, int]) -> int:
    return sum(v for k, v in stats.items() if k.startswith("semcache.errors."))


def _wait_ok(client: httpx.Client, url: str, deadline: float, what: str) -> None:
    """Bounded readiness poll of a /healthz (a condition, not a guess)."""
    while True:
        try:
            if client.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, f"{what} did not become ready"
        time.sleep(0.05)


def _direct(client: httpx.Client, s: Stack, path: str = CHAT, **kw) -> httpx.Response:
    """The same request sent straight to the mock LLM: what the client must get through Envoy."""
    return client.post(s.mock_url + path, **kw)


def _cluster_stat(s: Stack, name: str) -> int:
    return int(s.stats("cluster.").get(name, 0))


# ---------------------------------------------------------------------------------------------
# dependencies killed and restarted under load

PROMPTS = [
    "How do volcanoes form?",
    "Write a haiku about autumn leaves.",
    "What is the boiling point of water at sea level?",
    "Explain TCP slow start in two sentences.",
    "Who painted the Mona Lisa?",
    "Give me a simple pancake recipe.",
    "What causes the northern lights?",
    "How many bones are in the adult human body?",
]
LOAD = 300
WORKERS = 6
KILL_AT, RESTART_AT, AFTER = 100, 200, 250


def _readiness_url(s: Stack, victim: str) -> str:
    # The bridge reports healthy once its Redis connection is back.
    return (s.embedder_url if victim == "embedder" else s.bridge_url) + "/healthz"


@pytest.mark.parametrize("victim", ["redis", "bridge", "embedder"])
def test_dependency_killed_and_restarted_under_load(make_stack, client, victim):
    """300 requests from 6 threads over 8 prompts. Two in three share one partition (so there
    are hits); every third has a partition of its own, so it always misses and needs the
    embedder and a store. Before request #100 is sent the victim is killed (SIGKILL, with other
    requests in flight); before request #200 it is restarted on the same port while requests
    keep flowing. Requests #250 and later wait until the restarted component reports ready: they
    show the cache working again under load."""
    s = make_stack()
    expected = {p: answer(_direct(client, s, json=chat(p))) for p in PROMPTS}
    before = cache_stats(s)
    run = uuid.uuid4().hex[:8]
    local = threading.local()
    clients: list[httpx.Client] = []
    lock = threading.Lock()
    # The kill and the restart run on this (the main) thread, triggered by request count: the
    # launcher's children die with the thread that started them (PR_SET_PDEATHSIG), so a
    # restart from a pool thread would be undone when the pool shuts down.
    gates = {KILL_AT: (threading.Event(), threading.Event()),
             RESTART_AT: (threading.Event(), threading.Event())}
    ready = threading.Event()

    def one(i: int):
        if i in gates:
            asked, done = gates[i]
            asked.set()
            done.wait(60)
        if i >= AFTER:
            ready.wait(60)
        c = getattr(local, "c", None)
        if c is None:
            c = local.c = httpx.Client(timeout=30)
            with lock:
                clients.append(c)
        p = PROMPTS[i % len(PROMPTS)]
        tenant = f"{run}-solo-{i}" if i % 3 == 0 else f"{run}-shared"
        try:
            r = c.post(s.envoy_url + CHAT, json=chat(p), headers={"x-semcache-tenant": tenant})
        except httpx.HTTPError as e:
            return i, p, None, None, repr(e)
        body = answer(r) if r.status_code == 200 else r.text[:200]
        return i, p, r.status_code, status(r), body

    try:
        with ThreadPoolExecutor(WORKERS) as pool:
            futures = [pool.submit(one, i) for i in range(LOAD)]
            try:
                for at, action in ((KILL_AT, s.kill), (RESTART_AT, s.restart)):
                    asked, done = gates[at]
                    assert asked.wait(60), f"request #{at} was never reached"
                    action(victim)
                    done.set()
                _wait_ok(client, _readiness_url(s, victim), time.monotonic() + 15, victim)
            finally:
                for _, done in gates.values():
                    done.set()
                ready.set()
            results = [f.result() for f in futures]
    finally:
        for c in clients:
            c.close()

    failed = [(i, code, body) for i, _, code, _, body in results if code != 200]
    assert not failed, f"{len(failed)} requests did not get a 200, e.g. {failed[:3]}"
    wrong = [(i, p, body[:80]) for i, p, _, _, body in results if body != expected[p]]
    assert not wrong, f"{len(wrong)} wrong answers, e.g. {wrong[:3]}"
    labels = [lab for *_, lab, _ in results]
    assert None not in labels, "a response without x-semcache-status: the filter did not run"
    assert "hit" in labels[:KILL_AT], "no hits before the kill: the load did not exercise the cache"
    # The outage was seen by requests, and counted.
    assert "error" in labels[KILL_AT:RESTART_AT], f"no request saw the dead {victim}"
    assert _errors(cache_stats(s)) - _errors(before) >= labels.count("error")
    # Once the restarted component is ready, the cache works again by itself.
    final = labels[AFTER:]
    assert "error" not in final, f"errors after the {victim} was back: {final.count('error')}"
    assert "hit" in final

    # And a prompt stored now is served from cache (sequential: miss, then hit).
    tenant = {"x-semcache-tenant": f"{run}-resume"}
    first = client.post(s.envoy_url + CHAT, json=chat(PROMPTS[0]), headers=tenant)
    second = client.post(s.envoy_url + CHAT, json=chat(PROMPTS[0]), headers=tenant)
    assert [status(first), status(second)] == ["miss", "hit"]
    assert answer(first) == answer(second) == expected[PROMPTS[0]]
    _assert_vm_intact(s)


# ---------------------------------------------------------------------------------------------
# a slow embedder


def test_embedder_slower_than_its_timeout_goes_upstream_uncached(make_stack, client):
    """The embeddings stub holds its answer for 30 s; the filter's embeddings timeout is 200 ms.

    Deterministic formulation (no clock): the client's own timeout (10 s) is shorter than the
    stub's delay, so a filter that waited for the embedder cannot pass; Envoy's counters for the
    embeddings cluster then show that the one embeddings call ended by its timeout (the filter's
    `timeout_ms`), not by an answer: when the client has its answer, the stub has not answered.
    """
    cfg = default_plugin_config()
    cfg["embeddings"]["timeout_ms"] = 200
    s = make_stack(embeddings="mock", filter_config=cfg)
    q = chat("A question for a very slow embedder")
    expected = answer(_direct(client, s, json=q))
    assert client.post(s.mock_url + "/control/config",
                       json={"embeddings_delay_ms": 30_000}).status_code == 200
    mock_before = client.get(s.mock_url + "/control/stats").json()
    timeouts = _cluster_stat(s, "cluster.semcache_embeddings.upstream_rq_timeout")
    answered = _cluster_stat(s, "cluster.semcache_embeddings.upstream_rq_200")
    before = cache_stats(s)
    try:
        with httpx.Client(timeout=10) as c:
            r = c.post(s.envoy_url + CHAT, json=q)
    finally:
        client.post(s.mock_url + "/control/config", json={"embeddings_delay_ms": 0})
    assert r.status_code == 200
    assert answer(r) == expected
    assert status(r) == "error"
    mock_after = client.get(s.mock_url + "/control/stats").json()
    assert mock_after["embeddings_requests"] == mock_before["embeddings_requests"] + 1
    assert mock_after["chat_requests"] == mock_before["chat_requests"] + 1, "went upstream once"
    assert _cluster_stat(s, "cluster.semcache_embeddings.upstream_rq_timeout") == timeouts + 1
    assert _cluster_stat(s, "cluster.semcache_embeddings.upstream_rq_200") == answered
    after = cache_stats(s)
    assert after["semcache.errors.embeddings"] == before["semcache.errors.embeddings"] + 1
    assert after["semcache.stores"] == before["semcache.stores"], "an uncached answer was stored"
    # Nothing was stored; with a fast embedder again the cache works as before.
    assert status(client.post(s.envoy_url + CHAT, json=q)) == "miss"
    assert status(client.post(s.envoy_url + CHAT, json=q)) == "hit"
    _assert_vm_intact(s)


# ---------------------------------------------------------------------------------------------
# upstream faults and bad input (one stack, mock embeddings)


@pytest.fixture(scope="module")
def fault_stack(filter_ready, tmp_path_factory):
    if filter_ready is not None:
        pytest.skip(filter_ready)
    s = FaultStack(embeddings="mock", log_dir=tmp_path_factory.mktemp("fault-stack"),
                   route_overlays=[("t", {}), ("few", {"max_message_count": 50})])
    s.start()
    try:
        yield s
    finally:
        s.stop()
    # Envoy has stopped, so its log is complete.
    lines = _vm_failure_lines(s)
    assert not lines, "the wasm VM failed during this module:\n" + "\n".join(lines[:10])


def _sse_text(raw: bytes) -> tuple[str, bool]:
    """(content of the chat chunks, whether `data: [DONE]` came)."""
    text, done = "", False
    for line in raw.decode("utf-8", "replace").splitlines():
        if not line.startswith("data: "):
            continue
        data = line[len("data: "):]
        if data == "[DONE]":
            done = True
            continue
        for choice in json.loads(data).get("choices", []):
            text += (choice.get("delta") or {}).get("content") or ""
    return text, done


def _never_stored(client: httpx.Client, s: Stack, before: dict[str, int], body: dict,
                  path: str = CHAT) -> None:
    """Nothing was stored since `before`, and the same request without fault is a fresh miss."""
    assert cache_stats(s)["semcache.stores"] == before["semcache.stores"], "a faulty answer was stored"
    again = client.post(s.envoy_url + path, json=body)
    assert again.status_code == 200
    assert status(again) == "miss", "a faulty answer was served from cache"


@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
@pytest.mark.parametrize("fault", [{"x-mock-status": "500"},
                                   {"x-mock-status": "429", "x-mock-retry-after": "7"},
                                   {"x-mock-status": "503"}],
                         ids=["500", "429", "503"])
def test_upstream_error_passes_through_unchanged_and_is_never_stored(fault_stack, client, fault, stream):
    s = fault_stack
    q = chat(f"Upstream {fault['x-mock-status']} question {uuid.uuid4().hex}", stream=stream)
    direct = _direct(client, s, json=q, headers=fault)
    assert direct.status_code == int(fault["x-mock-status"])
    before = cache_stats(s)
    r = client.post(s.envoy_url + CHAT, json=q, headers=fault)
    assert r.status_code == direct.status_code
    assert r.content == direct.content
    for h in ("content-type", "retry-after"):
        assert r.headers.get(h) == direct.headers.get(h), h
    assert status(r) == "miss"
    assert cache_stats(s)["semcache.store_skipped.status"] == before["semcache.store_skipped.status"] + 1
    _never_stored(client, s, before, q)
    _assert_vm_intact(s)


@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
def test_upstream_timeout_is_envoys_504_and_never_stored(fault_stack, client, stream):
    """The upstream sits on the request (`x-mock-hold`) past the 500 ms timeout of route /t/."""
    s = fault_stack
    token = uuid.uuid4().hex
    q = chat(f"A question the upstream sits on {token}", stream=stream)
    timeouts = _cluster_stat(s, "cluster.llm_upstream.upstream_rq_timeout")
    before = cache_stats(s)
    url = s.envoy_url + ROUTE_TIMEOUT_PREFIX + CHAT
    try:
        if not stream:
            r = client.post(url, json=q, headers={"x-mock-hold": token})
            assert r.status_code == 504
            assert r.text == "upstream request timeout"  # Envoy's own answer
            assert status(r) == "miss"
        else:
            # The head and the first chunks were already sent: Envoy can only cut the stream.
            got = b""
            with pytest.raises(httpx.HTTPError):
                with client.stream("POST", url, json=q, headers={"x-mock-hold": token}) as r:
                    assert r.status_code == 200 and status(r) == "miss"
                    for chunk in r.iter_raw():
                        got += chunk
            text, done = _sse_text(got)
            assert text and not done, "the client got a cut stream, not a made-up end"
    finally:
        client.post(s.mock_url + f"/control/release/{token}")
    assert _cluster_stat(s, "cluster.llm_upstream.upstream_rq_timeout") == timeouts + 1
    _never_stored(client, s, before, q, path=ROUTE_TIMEOUT_PREFIX + CHAT)
    # The timeout route caches like any other once the upstream answers in time.
    assert status(client.post(url, json=q)) == "hit"
    _assert_vm_intact(s)


@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
def test_truncated_upstream_answer_reaches_the_client_cut_and_is_never_stored(fault_stack, client, stream):
    s = fault_stack
    q = chat(f"An answer cut in the middle {uuid.uuid4().hex}", stream=stream)
    before = cache_stats(s)
    got = b""
    with pytest.raises(httpx.HTTPError):
        with client.stream("POST", s.envoy_url + CHAT, json=q, headers={"x-mock-truncate": "2"}) as r:
            assert r.status_code == 200 and status(r) == "miss"
            for chunk in r.iter_raw():
                got += chunk
    if stream:
        text, done = _sse_text(got)
        assert text and not done
    else:
        with pytest.raises(ValueError):
            json.loads(got)  # half a JSON document, as the upstream sent it
    _never_stored(client, s, before, q)
    _assert_vm_intact(s)


@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
def test_gzip_upstream_answer_passes_through_and_is_never_stored(fault_stack, client, stream):
    s = fault_stack
    q = chat(f"A gzip-encoded answer {uuid.uuid4().hex}", stream=stream)
    expected = answer(_direct(client, s, json={**q, "stream": False}))
    before = cache_stats(s)
    r = client.post(s.envoy_url + CHAT, json=q, headers={"x-mock-gzip": "1"})
    assert r.status_code == 200
    assert r.headers["content-encoding"] == "gzip"
    assert status(r) == "miss"
    if stream:
        text, done = _sse_text(r.content)  # httpx decoded the gzip frames
        assert (text, done) == (expected, True)
    else:
        assert answer(r) == expected
    assert cache_stats(s)["semcache.store_skipped.encoded"] == before["semcache.store_skipped.encoded"] + 1
    _never_stored(client, s, before, q)
    _assert_vm_intact(s)


JSON = {"content-type": "application/json"}
BAD_REQUESTS = {
    "malformed_json": (b'{"model": "gpt-4o-mini", "messages": [{"role": "user", "con', JSON),
    "invalid_utf8_in_string": (b'{"model":"gpt-4o-mini","messages":[{"role":"user","content":"caf\xe9 \xff\xfe"}]}', JSON),
    "lone_surrogate_escape": (b'{"model":"gpt-4o-mini","messages":[{"role":"user","content":"\\ud800 x"}]}', JSON),
    "deeply_nested": (b'{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}],"x":'
                      + b"[" * 100_000 + b"]" * 100_000 + b"}", JSON),
    "not_an_object": (b'[{"role":"user","content":"hi"}]', JSON),
    "messages_not_an_array": (b'{"model":"gpt-4o-mini","messages":"hi"}', JSON),
    "empty_body": (b"", JSON),
    "form_data": (b"model=gpt-4o-mini&messages=hi", {"content-type": "application/x-www-form-urlencoded"}),
    "gzip_request_body": (gzip.compress(json.dumps(chat("A gzipped request")).encode()),
                          {**JSON, "content-encoding": "gzip"}),
}


@pytest.mark.parametrize("case", list(BAD_REQUESTS))
def test_bad_request_passes_through_unchanged_and_is_never_stored(fault_stack, client, case):
    """The upstream's own answer (the mock's 400), a `bypass`, nothing stored, twice."""
    s = fault_stack
    body, headers = BAD_REQUESTS[case]
    direct = _direct(client, s, content=body, headers=headers)
    assert direct.status_code == 400
    before = cache_stats(s)
    for _ in range(2):
        r = client.post(s.envoy_url + CHAT, content=body, headers=headers)
        assert (r.status_code, r.content) == (direct.status_code, direct.content)
        assert status(r) == "bypass"
    after = cache_stats(s)
    assert after["semcache.bypasses"] == before["semcache.bypasses"] + 2
    assert after["semcache.stores"] == before["semcache.stores"]
    _assert_vm_intact(s)


MIB = 1024 * 1024


@pytest.mark.parametrize("size,chunked", [(MIB + 64, False), (MIB + 64, True),
                                          (2 * MIB + 64, False), (2 * MIB + 64, True)],
                         ids=["1MiB+cl", "1MiB+chunked", "2MiB+cl", "2MiB+chunked"])
def test_body_over_the_limit_passes_through_and_is_never_stored(fault_stack, client, size, chunked):
    """Over the filter's max_request_body_bytes (1 MiB): let through uncached. Over Envoy's own
    buffer (2 MiB, per_connection_buffer_limit_bytes): with a content-length the filter lets it
    through from the headers on; chunked, Envoy answers its own 413 when a read overflows the
    buffer while the filter still reads the body (which depends on how the bytes arrive), else
    it passes through too. Either way the answer is clear and nothing is stored."""
    s = fault_stack
    prompt = f"big {uuid.uuid4().hex} " + "x" * size
    raw = json.dumps(chat(prompt)).encode()
    assert len(raw) > size
    expected = answer(_direct(client, s, content=raw, headers=JSON))
    before = cache_stats(s)
    calls = upstream_calls(client, s)
    content = (lambda: iter([raw[i:i + 65536] for i in range(0, len(raw), 65536)])) if chunked \
        else (lambda: raw)
    passed = 0
    for _ in range(2):
        r = client.post(s.envoy_url + CHAT, content=content(), headers=JSON)
        assert status(r) == "bypass"
        if r.status_code == 413 and chunked and size > 2 * MIB:
            assert r.text == "Payload Too Large"  # Envoy's, not the upstream's
        else:
            assert r.status_code == 200
            assert answer(r) == expected  # the upstream got the whole body
            passed += 1
    assert upstream_calls(client, s) == calls + passed
    after = cache_stats(s)
    assert after["semcache.stores"] == before["semcache.stores"]
    assert after["semcache.bypasses"] == before["semcache.bypasses"] + 2
    _assert_vm_intact(s)


def _many_messages(n: int, tag: str) -> dict:
    msgs = [{"role": "user" if i % 2 == 0 else "assistant", "content": f"m{i}"} for i in range(n - 1)]
    return {"model": "gpt-4o-mini", "messages": msgs + [{"role": "user", "content": f"last {tag}"}]}


def test_huge_messages_array_passes_through_unchanged(fault_stack, client):
    """20 000 tiny messages (~0.7 MB, under the 1 MiB limit): the upstream's answer, bypassed
    (over the default max_message_count of 100) and never stored; also on route /few/ (50)."""
    s = fault_stack
    body = _many_messages(20_000, uuid.uuid4().hex)
    raw = json.dumps(body).encode()
    assert len(raw) < MIB
    expected = answer(_direct(client, s, content=raw, headers=JSON))
    first = client.post(s.envoy_url + CHAT, content=raw, headers=JSON)
    assert first.status_code == 200 and answer(first) == expected
    assert status(first) == "bypass"
    again = client.post(s.envoy_url + CHAT, content=raw, headers=JSON)
    assert again.status_code == 200 and answer(again) == expected
    assert status(again) == "bypass"

    other = _many_messages(20_000, uuid.uuid4().hex)
    raw = json.dumps(other).encode()
    expected = answer(_direct(client, s, content=raw, headers=JSON))
    before = cache_stats(s)
    for _ in range(2):
        r = client.post(s.envoy_url + "/few" + CHAT, content=raw, headers=JSON)
        assert r.status_code == 200 and answer(r) == expected
        assert status(r) == "bypass"
    assert cache_stats(s)["semcache.stores"] == before["semcache.stores"]
    _assert_vm_intact(s)


def test_huge_messages_array_is_never_stored(fault_stack, client):
    s = fault_stack
    raw = json.dumps(_many_messages(20_000, uuid.uuid4().hex)).encode()
    assert status(client.post(s.envoy_url + CHAT, content=raw, headers=JSON)) == "bypass"
    assert status(client.post(s.envoy_url + CHAT, content=raw, headers=JSON)) != "hit"


def test_json_sent_as_text_plain_passes_through_unchanged(fault_stack, client):
    s = fault_stack
    raw = json.dumps(chat(f"Plain text type {uuid.uuid4().hex}")).encode()
    headers = {"content-type": "text/plain"}
    expected = answer(_direct(client, s, content=raw, headers=headers))
    for _ in range(2):
        r = client.post(s.envoy_url + CHAT, content=raw, headers=headers)
        assert r.status_code == 200 and answer(r) == expected
        assert status(r) is not None
    _assert_vm_intact(s)


def test_json_sent_as_text_plain_is_never_stored(fault_stack, client):
    s = fault_stack
    raw = json.dumps(chat(f"Plain text type {uuid.uuid4().hex}")).encode()
    headers = {"content-type": "text/plain"}
    assert status(client.post(s.envoy_url + CHAT, content=raw, headers=headers)) == "bypass"
    assert status(client.post(s.envoy_url + CHAT, content=raw, headers=headers)) != "hit"


def test_crafted_role_never_gets_another_conversations_answer(fault_stack, client):
    s = fault_stack
    tag = uuid.uuid4().hex
    crafted = {"model": "gpt-4o-mini", "messages": [{"role": "rr:2:ab\nss", "content": f"q {tag}"}]}
    honest = {"model": "gpt-4o-mini", "messages": [{"role": "rr", "content": "ab"},
                                                   {"role": "ss", "content": f"q {tag}"}]}
    expected = answer(_direct(client, s, json=honest))
    assert answer(_direct(client, s, json=crafted)) != expected
    assert status(client.post(s.envoy_url + CHAT, json=crafted)) == "miss"
    r = client.post(s.envoy_url + CHAT, json=honest)
    assert r.status_code == 200
    assert answer(r) == expected, f"served another conversation's answer ({status(r)})"


def test_filter_still_works_after_all_the_faults(fault_stack, client):
    """Runs last in this module: a normal request is a miss, then a hit, and the VM never failed."""
    s = fault_stack
    q = chat(f"Still working? {uuid.uuid4().hex}")
    expected = answer(_direct(client, s, json=q))
    for label in ("miss", "hit"):
        # Fresh connections, so both of Envoy's workers are likely to be asked.
        with httpx.Client(timeout=30) as c:
            r = c.post(s.envoy_url + CHAT, json=q)
        assert (r.status_code, status(r), answer(r)) == (200, label, expected)
    _assert_vm_intact(s)
