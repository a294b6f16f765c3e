"""The two storage back ends side by side: Redis 8 vector sets and RediSearch.

One scripted sequence runs against each back end (a fresh stack each, the real embedder), and
both must give the same hit/miss results and distances that agree within 0.01 (vector sets
compare Q8-quantised vectors, RediSearch FP32). Then RediSearch-only checks: an index of our
name with another dimension is reported, not silently missed. Finally the main end-to-end cache
module (tests/test_filter_cache.py) runs again with RediSearch behind the filter.
"""

from __future__ import annotations

import time

import httpx
import pytest

import test_filter_cache
from cachehelp import cache_stats, chat, config, post, status
from stack import Stack

CAPITAL = "What is the capital of France?"
# Cosine distances to CAPITAL with all-MiniLM-L6-v2 (measured through the filter): 0.133, 0.107;
# none of them is vetoed by the default guards.
PARAPHRASE = "what's the capital city of France"
NEAR_UNDER = "What is the capital region of France?"
NEAR_OVER = PARAPHRASE
NEAR_THRESHOLD = 0.12
SHORT_TTL = 2
OTHER_EMBEDDER = "other-embedding-model"
MODEL_TAG = "all-minilm-l6-v2"  # the default config's embedding model, as index names carry it

OVERLAYS = [
    ("short", {"ttl_seconds": SHORT_TTL}),
    ("near", {"score_threshold": NEAR_THRESHOLD}),
    # Same embedder, another model name: another partition, and another RediSearch index.
    ("emb2", {"embeddings": {"model": OTHER_EMBEDDER}}),
]


def _redis_now(s: Stack) -> int:
    return int(s.redis_cli("TIME")[0])


def _wait_redis_time_past(s: Stack, t: int, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while _redis_now(s) <= t:
        assert time.monotonic() < deadline, "Redis clock did not advance"
        time.sleep(0.05)


def _script(s: Stack, client: httpx.Client) -> list[tuple[str, str | None, str | None, float | None]]:
    """(step, status, match, distance) for each request of the sequence."""
    out = []
    stores = cache_stats(s).get("semcache.stores", 0)

    def ask(step: str, text: str, tenant: str = "t1", model: str = "gpt-4o-mini", route: str = "") -> None:
        path = (f"/{route}" if route else "") + "/v1/chat/completions"
        r = post(client, s, chat(text, model=model), path=path, x_semcache_tenant=tenant)
        assert r.status_code == 200, (step, r.text)
        d = r.headers.get("x-semcache-distance")
        veto = r.headers.get("x-semcache-veto")
        assert veto is None, f"{step}: a guard vetoed the candidate ({veto}); pick other prompts"
        out.append((step, status(r), r.headers.get("x-semcache-match"), None if d is None else float(d)))
        if status(r) == "miss":
            # A miss is stored as its response ends; the next step must see it.
            nonlocal stores
            stores += 1
            _wait_stat(s, "semcache.stores", stores)

    ask("miss", CAPITAL)
    ask("exact", CAPITAL)
    ask("paraphrase", PARAPHRASE)
    ask("unrelated", "How do I bake sourdough bread?")
    ask("other tenant", CAPITAL, tenant="t2")
    ask("other model", CAPITAL, model="gpt-4o")
    ask("other embedder", CAPITAL, route="emb2")
    ask("other embedder exact", CAPITAL, route="emb2")
    ask("other embedder paraphrase", PARAPHRASE, route="emb2")
    ask("near under", NEAR_UNDER, route="near")
    ask("near over", NEAR_OVER, route="near")

    ask("short miss", "A question that expires soon", route="short")
    stored_at = _redis_now(s)
    ask("short hit", "A question that expires soon", route="short")
    _wait_redis_time_past(s, stored_at + SHORT_TTL)
    ask("short expired", "A question that expires soon", route="short")

    s.flush()
    ask("flushed miss", CAPITAL)
    ask("flushed exact", CAPITAL)
    ask("flushed paraphrase", PARAPHRASE)
    return out


EXPECTED = [
    ("miss", "miss", None),
    ("exact", "hit", "exact"),
    ("paraphrase", "hit", "semantic"),
    ("unrelated", "miss", None),
    ("other tenant", "miss", None),
    ("other model", "miss", None),
    ("other embedder", "miss", None),
    ("other embedder exact", "hit", "exact"),
    ("other embedder paraphrase", "hit", "semantic"),
    ("near under", "hit", "semantic"),
    ("near over", "miss", None),
    ("short miss", "miss", None),
    ("short hit", "hit", "exact"),
    ("short expired", "miss", None),
    ("flushed miss", "miss", None),
    ("flushed exact", "hit", "exact"),
    ("flushed paraphrase", "hit", "semantic"),
]


@pytest.fixture(scope="module")
def script_results(filter_ready):
    if filter_ready is not None:
        pytest.skip(filter_ready)
    results = {}
    with httpx.Client(timeout=30.0) as client:
        for backend in ("vector_sets", "redisearch"):
            with Stack(backend_redis=backend, filter_config=config(), route_overlays=OVERLAYS) as s:
                results[backend] = (_script(s, client), cache_stats(s))
    return results


@pytest.mark.parametrize("backend", ["vector_sets", "redisearch"])
def test_scripted_sequence_gives_the_expected_results(script_results, backend):
    steps, stats = script_results[backend]
    assert [(step, st, m) for step, st, m, _ in steps] == EXPECTED
    errors = {k: v for k, v in stats.items() if k.startswith("semcache.errors.") and v}
    assert errors == {}, errors
    by_step = {step: d for step, _, _, d in steps}
    assert NEAR_THRESHOLD - 0.02 < by_step["near under"] <= NEAR_THRESHOLD
    # The nearest rejected candidate is reported on the miss.
    assert NEAR_THRESHOLD < by_step["near over"] < NEAR_THRESHOLD + 0.02


def test_both_back_ends_agree_on_every_request(script_results):
    vs, _ = script_results["vector_sets"]
    rs, _ = script_results["redisearch"]
    assert [s[:3] for s in rs] == [s[:3] for s in vs]
    for (step, _, _, d_vs), (_, _, _, d_rs) in zip(vs, rs):
        # The same nearest candidate is reported (or none), at the same distance.
        assert (d_vs is None) == (d_rs is None), (step, d_vs, d_rs)
        if d_vs is not None:
            assert abs(d_vs - d_rs) <= 0.01, (step, d_vs, d_rs)


def _wait_stat(s: Stack, name: str, value: int, timeout: float = 5.0) -> dict[str, int]:
    """The store runs as the response ends, so the client may be done before it is."""
    deadline = time.monotonic() + timeout
    while True:
        stats = cache_stats(s)
        if stats.get(name, 0) >= value:
            return stats
        assert time.monotonic() < deadline, f"{name} stayed at {stats.get(name, 0)} < {value}"
        time.sleep(0.05)


def _redisearch_keys(s: Stack) -> list[bytes]:
    keys, cursor = [], b"0"
    while True:
        cursor, batch = s.redis_cli("SCAN", cursor, "MATCH", "sc:e:*", "COUNT", 1000)
        keys += batch
        if cursor in (b"0", 0, "0"):
            return keys


def test_redisearch_layout_index_per_model_and_native_ttl(make_stack, client):
    s = make_stack(backend_redis="redisearch", route_overlays=OVERLAYS)
    assert status(post(client, s, chat(CAPITAL))) == "miss"
    assert status(post(client, s, chat(CAPITAL), path="/emb2/v1/chat/completions")) == "miss"
    _wait_stat(s, "semcache.stores", 2)
    indexes = sorted(i.decode() if isinstance(i, bytes) else i for i in s.redis_cli("FT._LIST"))
    assert indexes == [f"sc:idx:{MODEL_TAG}:384", f"sc:idx:{OTHER_EMBEDDER}:384"]
    keys = _redisearch_keys(s)
    assert len(keys) == 2
    for key in keys:
        assert s.redis_cli("TYPE", key) == "hash"
        assert 3500 < s.redis_cli("TTL", key) <= 3600
    # Each index holds only its own model's entry.
    for name in indexes:
        info = s.redis_cli("FT.INFO", name)
        fields = dict(zip(info[::2], info[1::2]))
        assert int(fields["num_docs"]) == 1, name
        assert int(fields["hash_indexing_failures"]) == 0, name


def _wait_log(path, needle: str, timeout: float = 5.0) -> str:
    deadline = time.monotonic() + timeout
    while True:
        text = path.read_text(errors="replace") if path.exists() else ""
        if needle in text:
            return text
        assert time.monotonic() < deadline, f"{needle!r} not logged in {path}"
        time.sleep(0.05)


def test_index_with_another_dimension_is_reported_not_silently_missed(make_stack, client):
    s = make_stack(backend_redis="redisearch")
    index = f"sc:idx:{MODEL_TAG}:384"
    # Someone else's index under our name, created with DIM 8: our 384-d hashes would never be
    # indexed, and a KNN over an empty partition answers "nothing" without checking the size.
    s.redis_cli("FT.CREATE", index, "ON", "HASH", "PREFIX", "1", f"sc:e:{MODEL_TAG}:", "SCHEMA",
                "ns", "TAG", "v", "VECTOR", "HNSW", "6", "TYPE", "FLOAT32", "DIM", "8",
                "DISTANCE_METRIC", "COSINE")
    before = cache_stats(s)
    for q in (CAPITAL, PARAPHRASE):
        r = post(client, s, chat(q))
        assert r.status_code == 200
        assert status(r) == "miss"  # the paraphrase too: nothing was indexed
    # Every store reports it (the answer itself went to the client untouched).
    after = _wait_stat(s, "semcache.errors.store", before.get("semcache.errors.store", 0) + 2)
    assert after.get("semcache.stores", 0) == before.get("semcache.stores", 0)
    log = _wait_log(s.log_dir / "envoy.log", "cannot serve 384-d FP32 entries")
    line = next(line for line in log.splitlines() if "cannot serve 384-d" in line)
    assert index in line and "DIM 8" in line and "FT.DROPINDEX" in line, line
    # The hashes were written: the exact tier (no index involved) still serves them.
    assert status(post(client, s, chat(CAPITAL))) == "hit"
    # Once the stray index is gone, the next store recreates ours and the cache works.
    s.redis_cli("FT.DROPINDEX", index)
    assert status(post(client, s, chat(NEAR_UNDER))) == "miss"
    _wait_stat(s, "semcache.stores", after.get("semcache.stores", 0) + 1)
    assert status(post(client, s, chat("What is the capital region of France"))) == "hit"
    assert cache_stats(s)["semcache.errors.store"] == after["semcache.errors.store"]


# --- the main end-to-end cache module, against RediSearch --------------------------------------
# Its tests run again here with this module's `stack` and `make_stack`, which put RediSearch
# behind the filter (a dict config gets "backend": "redisearch" from the launcher; the APIM
# test's string config keeps the default back end).


@pytest.fixture(scope="module")
def stack(filter_ready):
    if filter_ready is not None:
        pytest.skip(filter_ready)
    s = Stack(backend_redis="redisearch")
    s.start()
    assert s.filter_config["backend"] == "redisearch"
    yield s
    s.stop()


@pytest.fixture
def make_stack(filter_ready):
    made: list[Stack] = []

    def make(**options) -> Stack:
        if filter_ready is not None:
            pytest.skip(filter_ready)
        options.setdefault("backend_redis", "redisearch")
        s = Stack(**options)
        made.append(s)
        return s.start()

    yield make
    for s in made:
        s.stop()


for _name in dir(test_filter_cache):
    if _name.startswith("test_"):
        globals()[f"{_name}__redisearch"] = getattr(test_filter_cache, _name)
del _name
