"""Expiry in Redis 8 vector sets: never served after the TTL, and memory shrinks back.

Vector sets have no per-element TTL. The filter checks each entry's expiry on every read, removes
expired ids with the next store in the partition (VREM + ZREM), and gives the partition's keys a
native TTL of the longest entry TTL, so an idle partition disappears by itself.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import httpx

from cachehelp import CHAT, chat, status

TENANTS = [f"exp-{i}" for i in range(4)]


def _redis_now(s) -> int:
    return int(s.redis_cli("TIME")[0])


def _wait_redis_time_past(s, t: int, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while _redis_now(s) <= t:
        assert time.monotonic() < deadline
        time.sleep(0.05)


def _vector_sets(s) -> list[bytes]:
    keys, cursor = [], b"0"
    while True:
        cursor, batch = s.redis_cli("SCAN", cursor, "MATCH", "sc:*:vs", "COUNT", 1000)
        keys += batch
        if cursor in (b"0", 0, "0"):
            return keys


def _elements(s) -> int:
    return sum(int(s.redis_cli("VCARD", k) or 0) for k in _vector_sets(s))


def test_thousands_of_short_lived_entries_are_never_served_and_vanish(make_stack):
    s = make_stack(route_overlays=[("short", {"ttl_seconds": 2})], embeddings="mock")
    n = 1000
    prompts = [f"Short-lived question number {i} about topic {i * 7919 % 1000}" for i in range(n)]

    def store(i: int) -> str | None:
        with httpx.Client(timeout=30) as c:
            r = c.post(s.envoy_url + "/short" + CHAT, json=chat(prompts[i]),
                       headers={"x-semcache-tenant": TENANTS[i % len(TENANTS)]})
            return status(r)

    started = _redis_now(s)
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(store, range(n)))
    assert results.count("miss") == n
    # Stores made after the first entries expired already removed some of them (32 per store).
    assert 0 < _elements(s) <= n
    # After the TTL, the partitions' keys expire natively: poll Redis (bounded) until it has
    # reclaimed them; Redis's active expiry takes a moment.
    _wait_redis_time_past(s, _redis_now(s) + 2)
    deadline = time.monotonic() + 20
    while _vector_sets(s):
        assert time.monotonic() < deadline, f"{_elements(s)} elements left"
        time.sleep(0.1)
    assert started  # the run itself took some seconds: entries were written over that span
    # And none is served: every sampled prompt is a miss.
    with httpx.Client(timeout=30) as c:
        for i in range(0, n, 97):
            r = c.post(s.envoy_url + CHAT, json=chat(prompts[i]), headers={"x-semcache-tenant": TENANTS[i % len(TENANTS)]})
            assert status(r) == "miss", prompts[i]


def test_expired_entries_are_never_served_and_removed_by_later_stores(make_stack, client):
    # The TTL leaves the 60 sequential stores below seconds to land on a loaded CI machine
    # before the first of them expires (a 1 s TTL did not, and later stores removed them).
    ttl = 4
    s = make_stack(route_overlays=[("short", {"ttl_seconds": ttl})], embeddings="mock")
    tenant = {"x-semcache-tenant": "mixed"}
    short = [f"Ephemeral question {i}" for i in range(60)]
    for p in short:
        assert status(client.post(s.envoy_url + "/short" + CHAT, json=chat(p), headers=tenant)) == "miss"
    # A long-lived entry keeps the partition's keys alive past the short TTL.
    assert status(client.post(s.envoy_url + CHAT, json=chat("A durable question"), headers=tenant)) == "miss"
    assert _elements(s) == 61
    _wait_redis_time_past(s, _redis_now(s) + ttl)
    # Expired: a read never serves them (the lookup below is a miss and stores afresh).
    fresh = [f"Later question {i} on another subject" for i in range(5)]
    for p in fresh:
        assert status(client.post(s.envoy_url + CHAT, json=chat(p), headers=tenant)) == "miss"
    # Each store removed up to 32 expired ids: 60 expired are gone after a few stores.
    assert _elements(s) == 1 + len(fresh)
    assert status(client.post(s.envoy_url + CHAT, json=chat(short[0]), headers=tenant)) == "miss"
    assert status(client.post(s.envoy_url + CHAT, json=chat("A durable question"), headers=tenant)) == "hit"
