"""Streaming (`stream: true`) through the real Envoy, with the official openai client."""

from __future__ import annotations

import time
import uuid

import httpx
import openai
import pytest

from cachehelp import CHAT, cache_stats, chat, post, status


def oai(stack, tenant: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=stack.envoy_url + "/v1", api_key="sk-test", max_retries=0,
                         default_headers={"x-semcache-tenant": tenant}, timeout=30)


def stream_text(client: openai.OpenAI, content: str, **kw) -> tuple[str, str | None, list]:
    """Streams through the client's own SSE parser; returns (text, x-semcache-status, chunks)."""
    raw = client.chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": content}], stream=True, **kw)
    chunks = list(raw.parse())
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    return text, raw.headers.get("x-semcache-status"), chunks


def plain_text(client: openai.OpenAI, content: str) -> tuple[str, str | None]:
    raw = client.chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": content}])
    return raw.parse().choices[0].message.content, raw.headers.get("x-semcache-status")


def test_stream_miss_then_replayed_hit_with_identical_text(stack):
    c = oai(stack, "s-" + uuid.uuid4().hex)
    q = "Explain what a semantic cache does."
    text, st, chunks = stream_text(c, q)
    assert st == "miss"
    assert len(text) > 20
    text2, st2, chunks2 = stream_text(c, q)
    assert st2 == "hit"
    assert text2 == text
    content_chunks = [ch for ch in chunks2 if ch.choices and ch.choices[0].delta.content]
    assert len(content_chunks) >= 3, "replay is several chunks, not one giant chunk"
    assert chunks2[0].choices[0].delta.role == "assistant"
    finals = [ch for ch in chunks2 if ch.choices and ch.choices[0].finish_reason]
    assert [ch.choices[0].finish_reason for ch in finals] == ["stop"]


def test_include_usage_gets_a_usage_chunk_on_hit(stack):
    c = oai(stack, "u-" + uuid.uuid4().hex)
    q = "How many legs does a spider have?"
    opts = {"stream_options": {"include_usage": True}}
    _, st, first = stream_text(c, q, **opts)
    assert st == "miss"
    _, st, chunks = stream_text(c, q, **opts)
    assert st == "hit"
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == first[-1].usage.completion_tokens


def test_stream_and_non_stream_entries_serve_each_other(stack):
    c = oai(stack, "x-" + uuid.uuid4().hex)
    text, st, _ = stream_text(c, "Which planet is known as the red planet?")
    assert st == "miss"
    plain, st = plain_text(c, "Which planet is known as the red planet?")
    assert (plain, st) == (text, "hit")
    plain, st = plain_text(c, "How do I peel a mango quickly?")
    assert st == "miss"
    text, st, _ = stream_text(c, "How do I peel a mango quickly?")
    assert (text, st) == (plain, "hit")


def test_truncated_upstream_stream_is_never_stored(stack, client):
    tenant = "t-" + uuid.uuid4().hex
    body = chat("A stream that breaks", stream=True)
    with pytest.raises((httpx.HTTPError, httpx.StreamError)):
        with client.stream("POST", stack.envoy_url + CHAT, json=body,
                           headers={"x-semcache-tenant": tenant, "x-mock-truncate": "2"}) as r:
            assert r.status_code == 200
            text = b"".join(r.iter_raw())
            # If the transport did not notice, the stream still lacks its end.
            assert b"[DONE]" not in text
            raise httpx.StreamError("stream ended without [DONE]")
    again = post(client, stack, chat("A stream that breaks", stream=True), x_semcache_tenant=tenant)
    assert status(again) == "miss"


def _wait(pred, what: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def test_client_disconnect_mid_stream_leaves_no_entry(stack, client):
    tenant, token = "d-" + uuid.uuid4().hex, uuid.uuid4().hex
    body = chat("A stream the client abandons", stream=True)
    aborted = client.get(stack.mock_url + "/control/stats").json()["streams_aborted"]
    with client.stream("POST", stack.envoy_url + CHAT, json=body,
                       headers={"x-semcache-tenant": tenant, "x-mock-hold": token}) as r:
        first = next(r.iter_raw())
        assert first.startswith(b"data: ")
    # The client is gone; let the upstream finish its stream.
    client.post(stack.mock_url + f"/control/release/{token}")
    _wait(lambda: client.get(stack.mock_url + "/control/stats").json()["streams_aborted"] > aborted,
          "the upstream to see the abandoned stream")
    again = post(client, stack, chat("A stream the client abandons", stream=True), x_semcache_tenant=tenant)
    assert status(again) == "miss"


def test_first_chunk_reaches_the_client_before_upstream_sends_its_last(stack, client):
    tenant, token = "f-" + uuid.uuid4().hex, uuid.uuid4().hex
    body = chat("Is the first byte delayed?", stream=True)
    stored = cache_stats(stack)["semcache.stores"]
    with httpx.Client(timeout=httpx.Timeout(20.0)) as c:
        with c.stream("POST", stack.envoy_url + CHAT, json=body,
                      headers={"x-semcache-tenant": tenant, "x-mock-hold": token}) as r:
            assert r.headers["x-semcache-status"] == "miss"
            it = r.iter_raw()
            first = next(it)  # arrives while the upstream is still holding the rest
            held = c.get(stack.mock_url + f"/control/holds/{token}?wait_for=1").json()
            assert held["released"] is False and held["waiting"] == 1
            assert b"[DONE]" not in first
            c.post(stack.mock_url + f"/control/release/{token}")
            rest = b"".join(it)
    assert (first + rest).rstrip().endswith(b"data: [DONE]")
    # The store ran before the stream ended (Envoy would have cancelled it afterwards).
    assert cache_stats(stack)["semcache.stores"] == stored + 1
    hit = post(client, stack, body, x_semcache_tenant=tenant)
    assert status(hit) == "hit"
    assert hit.headers["content-type"].startswith("text/event-stream")
