"""The cache through the real Envoy, the built .wasm, the bridge, Redis 8 and the real embedder."""

from __future__ import annotations

import json

import httpx
import pytest

from cachehelp import CHAT, answer, cache_stats, chat, config, post, status, upstream_calls

CAPITAL = "What is the capital of France?"


def test_miss_then_exact_hit_then_semantic_hit_without_upstream(stack, client):
    stack.flush()
    first = post(client, stack, chat(CAPITAL), x_semcache_tenant="t-hits")
    assert first.status_code == 200
    assert status(first) == "miss"
    calls = upstream_calls(client, stack)
    before = cache_stats(stack)

    exact = post(client, stack, chat(CAPITAL), x_semcache_tenant="t-hits")
    assert status(exact) == "hit"
    assert exact.headers["x-semcache-match"] == "exact"
    assert exact.headers["x-semcache-distance"] == "0.0000"
    assert int(exact.headers["age"]) >= 0
    assert exact.headers["content-type"] == "application/json"
    assert answer(exact) == answer(first)
    assert exact.json()["object"] == "chat.completion"

    para = post(client, stack, chat("what's the capital city of France"), x_semcache_tenant="t-hits")
    assert status(para) == "hit"
    assert para.headers["x-semcache-match"] == "semantic"
    assert 0.0 < float(para.headers["x-semcache-distance"]) <= 0.2
    assert answer(para) == answer(first)

    assert upstream_calls(client, stack) == calls, "a hit must not reach the upstream"
    after = cache_stats(stack)
    assert after["semcache.hits.exact"] == before["semcache.hits.exact"] + 1
    assert after["semcache.hits.semantic"] == before["semcache.hits.semantic"] + 1
    assert after["semcache.completion_tokens_saved"] > before["semcache.completion_tokens_saved"]


def test_unrelated_question_and_other_model_miss(stack, client):
    stack.flush()
    post(client, stack, chat(CAPITAL), x_semcache_tenant="t-miss")
    unrelated = post(client, stack, chat("How do I bake sourdough bread?"), x_semcache_tenant="t-miss")
    assert status(unrelated) == "miss"
    other_model = post(client, stack, chat(CAPITAL, model="gpt-4o"), x_semcache_tenant="t-miss")
    assert status(other_model) == "miss"
    hot = post(client, stack, chat(CAPITAL, temperature=0.1), x_semcache_tenant="t-miss")
    assert status(hot) == "miss"
    # The different answers really are different requests upstream.
    assert answer(other_model) != answer(unrelated)


def test_vary_by_partitions_never_see_each_other(stack, client):
    stack.flush()
    a = post(client, stack, chat(CAPITAL), x_semcache_tenant="tenant-a")
    assert status(a) == "miss"
    assert status(post(client, stack, chat(CAPITAL), x_semcache_tenant="tenant-a")) == "hit"
    for other in ("tenant-b", "tenant-a2", "Tenant-A"):
        r = post(client, stack, chat(CAPITAL), x_semcache_tenant=other)
        assert status(r) == "miss", other
    # No header is a partition of its own too.
    assert status(post(client, stack, chat(CAPITAL))) == "miss"


def test_azure_path_and_legacy_completions_are_cached(stack, client):
    stack.flush()
    az = "/openai/deployments/gpt4o/chat/completions?api-version=2024-10-21"
    body = {"messages": [{"role": "user", "content": CAPITAL}]}
    assert status(post(client, stack, body, path=az)) == "miss"
    hit = post(client, stack, body, path=az)
    assert status(hit) == "hit"
    legacy = {"model": "gpt-3.5-turbo-instruct", "prompt": "Say hello"}
    first = post(client, stack, legacy, path="/v1/completions")
    assert status(first) == "miss"
    again = post(client, stack, legacy, path="/v1/completions")
    assert status(again) == "hit"
    assert again.json()["object"] == "text_completion"
    assert again.json()["choices"][0]["text"] == first.json()["choices"][0]["text"]


def test_other_paths_pass_through_untouched(stack, client):
    r = client.get(stack.envoy_url + "/v1/models")
    assert "x-semcache-status" not in r.headers
    r = client.post(stack.envoy_url + "/v1/embeddings", json={"input": "x"})
    assert "x-semcache-status" not in r.headers


def test_no_cache_no_store_and_bypass_header(stack, client):
    stack.flush()
    t = {"x_semcache_tenant": "t-cc"}
    # no-store: neither looks up nor stores.
    r = post(client, stack, chat(CAPITAL), cache_control="no-store", **t)
    assert status(r) == "bypass"
    assert status(post(client, stack, chat(CAPITAL), x_semcache_bypass="1", **t)) == "bypass"
    # Nothing was stored by either.
    first = post(client, stack, chat(CAPITAL), **t)
    assert status(first) == "miss"
    assert status(post(client, stack, chat(CAPITAL), **t)) == "hit"
    # no-cache skips the lookup (goes upstream) but stores the fresh answer.
    calls = upstream_calls(client, stack)
    nc = post(client, stack, chat("Name three primary colours."), cache_control="no-cache", **t)
    assert status(nc) == "bypass"
    assert upstream_calls(client, stack) == calls + 1
    hit = post(client, stack, chat("Name three primary colours."), **t)
    assert status(hit) == "hit"
    assert answer(hit) == answer(nc)
    # no-cache on a cached prompt still goes upstream.
    assert status(post(client, stack, chat(CAPITAL), cache_control="no-cache", **t)) == "bypass"
    assert upstream_calls(client, stack) == calls + 2


@pytest.mark.parametrize("cache_control", [None, "no-cache"])
def test_a_client_that_closes_at_once_still_leaves_the_answer_stored(stack, cache_control):
    """The end of a captured answer is held until its store completes, and the client cannot
    know it has the whole answer before that end (no content-length): so a one-shot client that
    closes as soon as it has read the answer never cancels the store. `no-cache` also has to
    embed the answer before storing it, the longer race."""
    stack.flush()
    t = {"x-semcache-tenant": f"t-close-{cache_control}"}
    extra = {"cache-control": cache_control} if cache_control else {}
    before = cache_stats(stack)["semcache.errors.store_cancelled"]
    for i in range(10):
        prompt = f"One-shot question {i}: how many moons does planet {i} have?"
        with httpx.Client(timeout=30) as one_shot:  # its own connection, closed right after
            r = one_shot.post(stack.envoy_url + CHAT, json=chat(prompt), headers={**t, **extra})
            assert r.status_code == 200
            assert "content-length" not in r.headers
            first = answer(r)
        with httpx.Client(timeout=30) as later:
            hit = later.post(stack.envoy_url + CHAT, json=chat(prompt), headers=t)
        assert status(hit) == "hit", f"request {i} was not stored"
        assert answer(hit) == first
    assert cache_stats(stack)["semcache.errors.store_cancelled"] == before


@pytest.mark.parametrize("switch", [{"x-mock-status": "500"}, {"x-mock-status": "429"},
                                    {"x-mock-truncate": "1"}, {"x-mock-finish-reason": "length"},
                                    {"x-mock-tool-calls": "1"}])
def test_failed_or_unfinished_upstream_answers_pass_through_and_are_never_stored(stack, client, switch):
    stack.flush()
    q = chat(f"Question for {json.dumps(switch)}")
    headers = {"x-semcache-tenant": "t-gates", **switch}
    try:
        r = client.post(stack.envoy_url + CHAT, json=q, headers=headers)
        code = r.status_code
    except Exception:  # a truncated body may surface as a transport error
        code = None
    if "x-mock-status" in switch:
        assert code == int(switch["x-mock-status"])
        assert "error" in r.json()
    again = client.post(stack.envoy_url + CHAT, json=q, headers={"x-semcache-tenant": "t-gates"})
    assert status(again) == "miss", "a failed answer must never be served from cache"


def test_gzip_upstream_answer_is_passed_through_and_not_stored(stack, client):
    stack.flush()
    q = chat("A gzip question")
    r = client.post(stack.envoy_url + CHAT, json=q, headers={"x-mock-gzip": "1", "x-semcache-tenant": "gz"})
    assert r.status_code == 200
    assert answer(r)  # httpx decoded it: the client got the upstream bytes intact
    again = post(client, stack, q, x_semcache_tenant="gz")
    assert status(again) == "miss"
    # accept-encoding from the client is removed on cacheable requests, so this one is stored.
    r = client.post(stack.envoy_url + CHAT, json=q, headers={"accept-encoding": "gzip", "x-semcache-tenant": "gz"})
    assert status(post(client, stack, q, x_semcache_tenant="gz")) == "hit"


def test_malformed_requests_pass_through(stack, client):
    for body in [b"{not json", b"\xff\xfe\x00", b"[]", json.dumps({"model": "m", "messages": []}).encode()]:
        r = client.post(stack.envoy_url + CHAT, content=body, headers={"content-type": "application/json"})
        assert r.status_code == 400, body  # the mock's own answer to a bad request
        assert status(r) == "bypass"
    assert stack.stats("wasm.").get("wasm.semcache.vm_reload", 0) == 0


def _redis_now(stack) -> int:
    sec, _ = stack.redis_cli("TIME")
    return int(sec)


def _redis_now_ms(stack) -> int:
    sec, usec = stack.redis_cli("TIME")
    return int(sec) * 1000 + int(usec) // 1000


def test_ttl_is_honoured(make_stack, client):
    s = make_stack(filter_config=config(ttl_seconds=1))
    q = chat("A question that expires")
    sent_ms = _redis_now_ms(s)
    assert status(post(client, s, q)) == "miss"
    stored_at = _redis_now(s)
    hit = post(client, s, q)
    # Expiry is 1000 ms after the store, which came after `sent_ms`: a miss is only right once
    # that much time has passed (a loaded machine can take that long).
    assert status(hit) == "hit" or _redis_now_ms(s) >= sent_ms + 1000
    # Wait on Redis's clock (bounded), not on a guess: once the entry's second has passed it
    # must never be served again.
    import time
    deadline = time.monotonic() + 10
    while _redis_now(s) <= stored_at + 1:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert status(post(client, s, q)) == "miss"
    para = post(client, s, chat("A question that expires!"))
    assert status(para) == "hit"  # the fresh miss above re-stored it, and the paraphrase finds it


def test_local_tier_answers_repeats_without_redis_and_keeps_partitions_apart(make_stack, client):
    """With the shipped configuration (the local tier on by default) a stored answer is also kept
    in Envoy's shared data once Redis confirmed it, and the next identical request is answered
    from there: proven by answering it with Redis emptied. Another partition asking the same
    prompt still misses, and a `no-cache` refresh replaces the local copy."""
    s = make_stack()
    t1, t2 = {"x_semcache_tenant": "local-1"}, {"x_semcache_tenant": "local-2"}
    q = chat("What is the boiling point of water at sea level?")
    first = post(client, s, q, **t1)
    assert status(first) == "miss"
    before = cache_stats(s)
    s.flush()
    calls = upstream_calls(client, s)
    for _ in range(3):  # both workers may answer; each reads the same shared table
        r = post(client, s, q, **t1)
        assert status(r) == "hit" and r.headers["x-semcache-match"] == "exact"
        assert answer(r) == answer(first)
    after = cache_stats(s)
    assert after["semcache.hits.local"] == before.get("semcache.hits.local", 0) + 3
    assert upstream_calls(client, s) == calls
    # The local tier is keyed by the entry id, which includes the partition.
    assert status(post(client, s, q, **t2)) == "miss"

    # A refresh (`no-cache`) goes upstream, gets a longer answer, and stores it; the next
    # request is answered locally with the new answer, not the old copy.
    fresh = post(client, s, q, cache_control="no-cache", x_mock_answer_bytes="600", **t1)
    assert answer(fresh) != answer(first) and len(answer(fresh)) >= 600
    r = post(client, s, q, **t1)
    assert status(r) == "hit" and answer(r) == answer(fresh)
    assert cache_stats(s)["semcache.hits.local"] == after["semcache.hits.local"] + 1


def test_local_tier_answers_a_repeated_paraphrase_without_embedder_or_redis(make_stack, client):
    """A semantic hit is also kept in the local tier under the paraphrase's own key
    (`local_cache.semantic_hits`, on by default): its repeat is answered with the embedder
    killed and Redis emptied, and still says it is a semantic match at the same distance.
    Another partition's same paraphrase, and an unseen paraphrase, are not answered from it."""
    s = make_stack()
    t1, t2 = {"x_semcache_tenant": "para-1"}, {"x_semcache_tenant": "para-2"}
    stored = post(client, s, chat(CAPITAL), **t1)
    assert status(stored) == "miss"
    # The other partition's own entry, so that its paraphrase would be a hit there too.
    assert status(post(client, s, chat(CAPITAL), **t2)) == "miss"
    para_q = chat("what's the capital city of France")
    para = post(client, s, para_q, **t1)
    assert status(para) == "hit" and para.headers["x-semcache-match"] == "semantic"
    distance = para.headers["x-semcache-distance"]

    before = cache_stats(s)
    calls = upstream_calls(client, s)
    s.kill("embedder")
    s.flush()
    for _ in range(3):  # both workers may answer; each reads the same shared table
        r = post(client, s, para_q, **t1)
        assert status(r) == "hit", r.headers
        assert r.headers["x-semcache-match"] == "semantic"
        assert r.headers["x-semcache-distance"] == distance
        assert answer(r) == answer(para) == answer(stored)
    after = cache_stats(s)
    assert after["semcache.hits.local"] == before.get("semcache.hits.local", 0) + 3
    assert after["semcache.hits.semantic"] == before["semcache.hits.semantic"] + 3
    assert after.get("semcache.errors.embeddings", 0) == before.get("semcache.errors.embeddings", 0)
    assert upstream_calls(client, s) == calls

    # Not kept for the other partition, nor for a paraphrase never searched, nor served on a
    # route whose threshold (/strict: 0.05, envoy.yaml) the search would not have met: those
    # need the embedder, which is down, so they go upstream uncached.
    assert float(distance) > 0.05
    for q, t, path in ((para_q, t2, CHAT), (chat("which city is the capital of France"), t1, CHAT),
                       (para_q, t1, "/strict" + CHAT)):
        r = post(client, s, q, path, **t)
        assert r.status_code == 200 and status(r) == "error", r.headers
        assert answer(r).startswith("Mock answer")


@pytest.mark.parametrize("victim", ["embedder", "bridge", "redis"])
def test_dead_dependency_fails_open_and_recovers(make_stack, client, victim):
    s = make_stack()
    q = chat(f"Question while the {victim} is down")
    s.kill(victim)
    before = cache_stats(s)
    r = post(client, s, q)
    assert r.status_code == 200
    assert answer(r).startswith("Mock answer")
    assert status(r) == "error"
    after = cache_stats(s)
    errors = sum(after[k] - before.get(k, 0) for k in after if k.startswith("semcache.errors."))
    assert errors >= 1
    s.restart(victim)
    _wait_healthy(client, s)
    assert status(post(client, s, q)) == "miss"
    assert status(post(client, s, q)) == "hit"


def _wait_healthy(client, s, timeout=15.0):
    """Readiness, not a guess: the bridge reports healthy once its Redis connection is back."""
    import time
    deadline = time.monotonic() + timeout
    while True:
        try:
            if client.get(s.bridge_url + "/healthz").status_code == 200:
                return
        except Exception:
            pass
        assert time.monotonic() < deadline, "bridge did not become healthy"
        time.sleep(0.05)


def test_bad_config_is_refused_naming_the_field(make_stack):
    from stack import StackError

    with pytest.raises(StackError) as e:
        make_stack(filter_config=config(score_threshold=1.5))
    assert "score_threshold" in str(e.value) or "score_threshold" in _envoy_logs(e.value)


def _envoy_logs(err) -> str:
    return str(getattr(err, "logs", "")) + str(err)


APIM = """<policies><inbound><base />
  <llm-semantic-cache-lookup score-threshold="0.2" embeddings-backend-id="semcache_embeddings">
    <vary-by>@(context.Request.Headers.GetValueOrDefault("x-semcache-tenant", ""))</vary-by>
  </llm-semantic-cache-lookup></inbound>
  <outbound><llm-semantic-cache-store duration="3600" /><base /></outbound></policies>"""


def test_apim_policy_behaves_like_the_equivalent_json(make_stack, client):
    apim_cfg = json.dumps({"apim_policy": APIM, "embeddings": {"authority": "embeddings", "model": "all-MiniLM-L6-v2"},
                           "bridge": {"authority": "bridge"}})
    seq = [("t1", CAPITAL), ("t1", CAPITAL), ("t1", "what's the capital city of France"),
           ("t2", CAPITAL), ("t1", "How do I bake bread?")]
    results = []
    for cfg in (None, apim_cfg):
        s = make_stack(filter_config=cfg)
        results.append([status(post(client, s, chat(text), x_semcache_tenant=t)) for t, text in seq])
    assert results[0] == ["miss", "hit", "hit", "miss", "miss"]
    assert results[1] == results[0]


def test_route_overlay_overrides_threshold(make_stack, client):
    s = make_stack(route_overlays=[("strict", {"score_threshold": 0.01}), ("off", {"enabled": False}),
                                   ("threaded", {"search_nothread": False})])
    assert status(post(client, s, chat(CAPITAL))) == "miss"
    assert status(post(client, s, chat("what's the capital city of France"))) == "hit"
    strict = post(client, s, chat("what's the capital city of France"), path="/strict" + CHAT)
    assert status(strict) == "miss"
    # The search itself is bounded by the threshold: a nearest candidate, if reported, is beyond it.
    assert float(strict.headers.get("x-semcache-distance", "1")) > 0.01
    off = post(client, s, chat(CAPITAL), path="/off" + CHAT)
    assert "x-semcache-status" not in off.headers
    # VSIM without NOTHREAD (a thread per search) against the real Redis 8: the same semantic
    # hit, no lookup error.
    errors = cache_stats(s).get("semcache.errors.lookup", 0)
    nt = post(client, s, chat("What is the capital city of France?"), path="/threaded" + CHAT)
    assert status(nt) == "hit" and nt.headers["x-semcache-match"] == "semantic"
    assert cache_stats(s).get("semcache.errors.lookup", 0) == errors


def _vcard_calls(s) -> int:
    for line in s.redis_cli("INFO", "commandstats").decode().splitlines():
        if line.lower().startswith("cmdstat_vcard:"):  # module commands are upper case
            return int(line.split("calls=")[1].split(",")[0])
    return 0


def test_adaptive_search_breadth_asks_the_set_size_with_each_search(make_stack, client):
    """With `adaptive_search_ef` (the default) every vector-set lookup also sends `VCARD`,
    through the real bridge's allow-list, and the lookups succeed; switched off on a route, none
    does. The RediSearch back end (test_backends.py runs this too) never sends it. The local
    tier is off (config()): the repeated paraphrase must be searched again, not answered locally."""
    s = make_stack(filter_config=config(), route_overlays=[("fixed", {"adaptive_search_ef": False})])
    per_lookup = 0 if s.backend_redis == "redisearch" else 1
    t = {"x_semcache_tenant": "t-breadth"}
    assert status(post(client, s, chat(CAPITAL), **t)) == "miss"
    before = _vcard_calls(s)
    for _ in range(2):
        r = post(client, s, chat("what's the capital city of France"), **t)
        assert status(r) == "hit" and r.headers["x-semcache-match"] == "semantic"
    assert _vcard_calls(s) == before + 2 * per_lookup
    after = _vcard_calls(s)
    r = post(client, s, chat("tell me the capital city of France"), path="/fixed" + CHAT, **t)
    assert status(r) == "hit"
    assert _vcard_calls(s) == after
    assert cache_stats(s).get("semcache.errors.lookup", 0) == 0


def test_with_the_embedder_dead_redis_still_answers_exact_hits(make_stack, client):
    # The local tier is off (config()), so every repeat is an exact lookup in Redis, which
    # envoy.yaml's `fold_exact_lookup` folds into the vector search after the embedding. With
    # the embedder dead the exact lookup goes alone: the repeat is still an exact hit, a new
    # prompt goes upstream.
    s = make_stack(filter_config=config())
    first = post(client, s, chat(CAPITAL), x_semcache_tenant="t-noemb")
    assert status(first) == "miss"
    s.kill("embedder")
    before = cache_stats(s)
    calls = upstream_calls(client, s)
    again = post(client, s, chat(CAPITAL), x_semcache_tenant="t-noemb")
    assert status(again) == "hit" and again.headers["x-semcache-match"] == "exact"
    assert answer(again) == answer(first)
    assert upstream_calls(client, s) == calls
    new = post(client, s, chat("How do volcanoes form?"), x_semcache_tenant="t-noemb")
    assert new.status_code == 200 and status(new) == "error"
    after = cache_stats(s)
    assert after["semcache.errors.embeddings"] == before.get("semcache.errors.embeddings", 0) + 2
    assert after["semcache.hits.exact"] == before["semcache.hits.exact"] + 1
    assert after.get("semcache.errors.lookup", 0) == before.get("semcache.errors.lookup", 0)
    assert after["semcache.stores"] == before["semcache.stores"], "nothing stored without a vector"


def test_speculative_embedding_is_counted_and_an_unused_one_harms_nothing(make_stack, client):
    # A fresh stack: every worker starts with no exact hits seen, so every lookup embeds before
    # the exact lookup in Redis has answered: folded into the vector search (envoy.yaml's
    # `fold_exact_lookup`), or beside it (`fold_exact_lookup` off). The local tier is off
    # (config()), or it would answer the repeat without any lookup.
    s = make_stack(filter_config=config(),
                   route_overlays=[("beside", {"fold_exact_lookup": False}),
                                   ("nospec", {"fold_exact_lookup": False,
                                               "speculative_embedding": False})])
    stats = {}
    for tenant, path in (("t-fold", CHAT), ("t-beside", "/beside" + CHAT)):
        first = post(client, s, chat(CAPITAL), x_semcache_tenant=tenant, path=path)
        exact = post(client, s, chat(CAPITAL), x_semcache_tenant=tenant, path=path)
        para = post(client, s, chat("what's the capital city of France"), x_semcache_tenant=tenant,
                    path=path)
        assert [status(first), status(exact), status(para)] == ["miss", "hit", "hit"], path
        assert exact.headers["x-semcache-match"] == "exact"
        assert para.headers["x-semcache-match"] == "semantic"
        assert answer(exact) == answer(first) == answer(para)
        before, stats = stats, cache_stats(s)
        spec = stats["semcache.embeddings.speculative"] - before.get("semcache.embeddings.speculative", 0)
        unused = (stats["semcache.embeddings.speculative_unused"]
                  - before.get("semcache.embeddings.speculative_unused", 0))
        assert spec == 3, path
        # Only the exact hit's embedding went unused (beside: the glue forgot its callout).
        assert unused == 1, path
        assert stats.get("semcache.errors.embeddings", 0) == 0 and stats.get("semcache.errors.lookup", 0) == 0

    # Both switched off on a route: the same requests, nothing speculative.
    for text in (CAPITAL, "what's the capital city of France"):
        r = post(client, s, chat(text), x_semcache_tenant="t-fold", path="/nospec" + CHAT)
        assert status(r) == "hit"
    after = cache_stats(s)
    assert after["semcache.embeddings.speculative"] == stats["semcache.embeddings.speculative"]
    assert after["semcache.hits.exact"] == stats["semcache.hits.exact"] + 1
    assert after["semcache.hits.semantic"] == stats["semcache.hits.semantic"] + 1
