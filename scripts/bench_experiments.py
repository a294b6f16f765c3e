#!/usr/bin/env python3
"""Profiling experiments behind docs/bench.md (not part of `make bench`).

Each experiment renders the stack's Envoy configuration with one change (nothing in the
repository is modified), runs the same wrk rows as scripts/bench.py and reads Envoy's upstream
connection counters, so the cause of a cost can be shown rather than guessed:

  default   envoy/envoy.yaml as shipped (hold_request_headers + allow_on_headers_stop_iteration)
  nohold    both off: the request headers go upstream before the cache decides (what Istio's
            WasmPlugin, which cannot set allow_on_headers_stop_iteration, gets)
  nohold_h2 nohold, and llm_upstream spoken to over HTTP/2 (the mock serves h2c): a hit still
            starts an upstream request, but cancelling it resets one stream, not a connection
  nohold_buffer  nohold, plus envoy.filters.http.buffer between the semcache filter and the
            router: the upstream request starts only once the filter let the body through
  hold_only hold_request_headers without allow_on_headers_stop_iteration (Envoy then does not
            deliver the body to a filter that paused the headers)
  empty     the semcache filter replaced by one that does nothing (scripts/bench/empty_filter,
            built by bench.ensure_empty_filter): what any Rust proxy-wasm filter costs per
            stream here
  empty_read  the same filter reading one request header (`:path`) and nothing else
  bridge_h2 as shipped, and the semcache_bridge callout cluster over HTTP/2 (the bridge serves
            h2c with prior knowledge): one multiplexed connection per worker instead of one
            HTTP/1.1 connection per concurrent callout

Rows: baseline (filter disabled on the route), off_route (filter active, route overlay
{"enabled": false}: it reads the route's overlay and leaves), passthrough (cache-control:
no-store), exact hit, and nocache_path_on/off: POST /pt/v1/embeddings through a route where the
filter is active but the path is not a completion (the filter's cheapest exit) against the same
path with the filter disabled.

With --semantic instead: where a semantic hit's time goes at concurrency 1. One stack, a
partition of 2000 filler entries plus the eval paraphrase seeds, and route overlays that switch
one thing off at a time (exact tier, guards, top_k 1, speculative embedding, VSIM
NOTHREAD), plus a partition holding only the seeds,
against the embedder alone; interleaved rounds, medians.

With --floors: the pass-through against two floors, three Envoys side by side (semcache, a
filter that does nothing, one that reads one request header), each filter row against its own
Envoy's /nofilter row in the same round (--rounds, --duration).

With --store-race: whether a miss is stored when the client closes its connection as soon as it
has read the (content-length framed) answer, against a client that waits 200 ms before closing.

With --embedder-gap: the embedder's single-input latency with 0, 1, 3 and 10 ms of idle time
between sequential requests (a semantic hit leaves the embedder idle while Envoy, the bridge and
Redis work; back-to-back requests, as in the "embedder alone" row, do not).

With --timeline: per request kind (baseline, pass-through, exact hit local and through Redis,
semantic hit, miss), requests sent one at a time and every hop between the client, Envoy, the
bridge, Redis, the embedder and the mock LLM timestamped from a loopback packet capture
(tcpdump): where the milliseconds go, without instrumenting anything.

With --memory: only make bench's Redis memory row (entries stored through the filter, then the
piece-by-piece breakdown), to iterate on the stored layout without the HTTP rows.

Usage: python scripts/bench_experiments.py [--variants default,nohold,...] [--duration 5] [--c1]
       python scripts/bench_experiments.py --semantic [--rounds 3] [--entries 2000]
       python scripts/bench_experiments.py --floors [--rounds 6] [--duration 5]
       python scripts/bench_experiments.py --store-race
       python scripts/bench_experiments.py --embedder-gap
       python scripts/bench_experiments.py --memory [--entries 2000] [--answer-bytes 1000]
       python scripts/bench_experiments.py --timeline [--timeline-requests 500] [--rows ...]
Writes target/bench/experiments.json and prints a table.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import json
import re
import statistics
import subprocess
import sys
import time
import urllib.parse
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
sys.path.insert(0, str(ROOT / "tests"))

import bench  # noqa: E402
from stack import Stack, default_plugin_config, http_get  # noqa: E402


def _hcm(cfg: dict) -> dict:
    for f in cfg["static_resources"]["listeners"][0]["filter_chains"][0]["filters"]:
        if f["name"] == "envoy.filters.network.http_connection_manager":
            return f["typed_config"]
    raise ValueError("no http_connection_manager")


class VariantStack(Stack):
    def __init__(self, *a, variant: str = "default", **kw):
        super().__init__(*a, **kw)
        self.variant = variant

    def render(self, **kw) -> dict:
        cfg = super().render(**kw)
        wasm = next((f for f in _hcm(cfg)["http_filters"] if f["name"] == "semcache"), None)
        if wasm and self.variant.startswith(("nohold", "hold_only")):
            wasm["typed_config"]["config"].pop("allow_on_headers_stop_iteration", None)
        if self.variant.endswith("buffer"):
            hcm = _hcm(cfg)
            filters = hcm["http_filters"]
            router = next(i for i, f in enumerate(filters) if f["name"] == "envoy.filters.http.router")
            filters.insert(router, {
                "name": "envoy.filters.http.buffer",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.http.buffer.v3.Buffer",
                    "max_request_bytes": 2097152,
                },
            })
        elif self.variant.endswith("h2"):
            target = "semcache_bridge" if self.variant == "bridge_h2" else "llm_upstream"
            for c in cfg["static_resources"]["clusters"]:
                if c["name"] == target:
                    c["typed_extension_protocol_options"] = {
                        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                            "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                            "explicit_http_config": {"http2_protocol_options": {}},
                        }
                    }
        return cfg


UPSTREAM_STATS = ("upstream_cx_total", "upstream_rq_total", "upstream_cx_destroy_local_with_active_rq",
                  "upstream_rq_tx_reset")


def upstream_stats(s: Stack) -> dict[str, int]:
    q = urllib.parse.quote("^cluster\\.llm_upstream\\.(" + "|".join(UPSTREAM_STATS) + ")$")
    body = http_get(f"{s.admin_url}/stats?filter={q}")[1].decode()
    out = {}
    for line in body.splitlines():
        name, _, value = line.partition(": ")
        out[name.rsplit(".", 1)[1]] = int(value)
    return out


def perf_dso(data: Path) -> dict[str, float]:
    """Share of samples per object (self time): envoy (stripped), V8's JIT code (the wasm
    module, shown as [unknown] / anonymous memory), libc, the kernel."""
    rep = subprocess.run(["perf", "report", "-i", str(data), "--no-children", "--sort", "dso",
                          "--stdio"], capture_output=True, text=True).stdout
    out = {}
    for line in rep.splitlines():
        m = re.match(r"^\s+([0-9.]+)%\s+(\S.*)$", line)
        if m:
            out[m.group(2).strip()] = float(m.group(1))
    return out


def split_write_probe(base: str, body: str) -> str:
    """POST with the headers and the body in two writes 50 ms apart; returns what came back."""
    import socket
    u = urllib.parse.urlsplit(base)
    data = body.encode()
    head = (f"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
            f"{bench.TENANT}: split\r\ncontent-length: {len(data)}\r\n\r\n").encode()
    with socket.create_connection((u.hostname, u.port), timeout=5) as sock:
        sock.sendall(head)
        time.sleep(0.05)
        sock.sendall(data)
        try:
            first = sock.recv(200).split(b"\r\n", 1)[0].decode(errors="replace")
            return first or "connection closed"
        except socket.timeout:
            return "no response within 5 s"


def floors(args, env: dict, wrk) -> dict:
    """The pass-through against the floors (docs/bench.md, finding 2, "The floor"): three
    Envoys side by side (semcache, a filter that does nothing, one that reads one header), each
    filter row against its own Envoy's /nofilter row in the same round; rounds interleave."""
    ov = [("nofilter", None), ("pt", {})]
    no_store = {"cache-control": "no-store"}
    kinds = {"semcache": None, "empty": bench.ensure_empty_filter(),
             "empty_read": bench.ensure_empty_filter(read_path=True)}
    runs: dict[str, list] = {}
    with contextlib.ExitStack() as es:
        stacks = {k: es.enter_context(Stack(mock_latency_ms=0, env=env, embeddings="mock",
                                            route_overlays=ov, wasm=w)) for k, w in kinds.items()}
        rows = []
        for k, s in stacks.items():
            rows.append((f"{k}_baseline", s, "/nofilter/v1/chat/completions", "fixed", {}))
            rows.append((f"{k}_passthrough", s, "/v1/chat/completions", "fixed", no_store))
        rows.append(("semcache_path_on", stacks["semcache"], "/pt/v1/embeddings", "embed", {}))
        rows.append(("semcache_path_off", stacks["semcache"], "/nofilter/v1/embeddings", "embed", {}))
        for _, s, path, bodies, h in rows:
            wrk.run(s.envoy_url + path, bodies, concurrency=args.concurrency, duration=3, headers=h)
        for rnd in range(args.rounds):
            for name, s, path, bodies, h in rows:
                wrk.run(s.envoy_url + path, bodies, concurrency=args.concurrency, duration=1, headers=h)
                r = wrk.run(s.envoy_url + path, bodies, concurrency=args.concurrency,
                            duration=args.duration, headers=h, pids={"envoy": s.procs["envoy"].pid})
                runs.setdefault(name, []).append({"p50_ms": r["p50_ms"], "rps": r["rps"],
                                                  "envoy_us": r["cpu_us_per_req"]["envoy"]})
                print(f"round {rnd + 1} {name:22} p50 {r['p50_ms']:.3f} ms envoy "
                      f"{r['cpu_us_per_req']['envoy']:.0f} us/req", flush=True)
    out = {"runs": runs, "over_baseline": {}}
    pairs = [(f"{k}_passthrough", f"{k}_baseline") for k in kinds]
    pairs += [("semcache_path_on", "semcache_path_off"), ("empty_baseline", "semcache_baseline")]
    for a, b in pairs:
        dp = [x["p50_ms"] - y["p50_ms"] for x, y in zip(runs[a], runs[b])]
        de = [x["envoy_us"] - y["envoy_us"] for x, y in zip(runs[a], runs[b])]
        out["over_baseline"][f"{a} - {b}"] = {
            "p50_ms_median": round(statistics.median(dp), 3), "p50_ms": [round(x, 3) for x in dp],
            "within_0.1_ms": sum(x <= 0.1 for x in dp), "envoy_us_median": round(statistics.median(de), 1)}
        print(f"{a} - {b}: p50 {statistics.median(dp):+.3f} ms (within +0.1 ms in "
              f"{sum(x <= 0.1 for x in dp)} of {len(dp)}), Envoy {statistics.median(de):+.1f} us/req")
    return out


def embedder_gap(env: dict, rounds: int) -> dict:
    import http.client
    texts = [q[-1]["content"] for _, q in bench.paraphrase_pairs()]
    res: dict = {}
    with Stack(mock_latency_ms=0, env=env) as s:
        c = http.client.HTTPConnection("127.0.0.1", s.procs["embedder"].port, timeout=30)
        for _ in range(rounds):
            for gap in (0, 1, 3, 10):
                t = []
                for i in range(150):
                    body = json.dumps({"model": "all-MiniLM-L6-v2", "input": texts[i % len(texts)],
                                       "encoding_format": "base64"})
                    a = time.perf_counter()
                    c.request("POST", "/v1/embeddings", body=body,
                              headers={"content-type": "application/json"})
                    c.getresponse().read()
                    t.append((time.perf_counter() - a) * 1000)
                    if gap:
                        time.sleep(gap / 1000)
                res.setdefault(f"gap_{gap}ms", []).append(round(statistics.median(t[20:]), 3))
    for k, v in res.items():
        print(f"embedder, {k:9} between requests: p50 per round {v}", flush=True)
    return res


def store_race(env: dict, n: int = 20) -> dict:
    import http.client
    out = {}
    with Stack(mock_latency_ms=0, env=env) as s:
        for mode in ("miss, close at once", "no-cache, close at once", "miss, close after 200 ms",
                     "no-cache, close after 200 ms"):
            stored, framing = 0, {}
            for i in range(n):
                before = s.stats()["semcache.stores"]
                c = http.client.HTTPConnection("127.0.0.1", s.envoy_port, timeout=10)
                h = {"content-type": "application/json", bench.TENANT: mode}
                if mode.startswith("no-cache"):
                    h["cache-control"] = "no-cache"
                c.request("POST", "/v1/chat/completions", headers=h,
                          body=bench.chat_body(f"{mode}: question {i} about zebras and {i * 7} lions"))
                r = c.getresponse()
                r.read()
                framing = {k: v for k, v in r.getheaders()
                           if k.lower() in ("content-length", "transfer-encoding", "x-semcache-status")}
                if "200 ms" in mode:
                    time.sleep(0.2)
                c.close()
                time.sleep(0.3)
                stored += s.stats()["semcache.stores"] - before
            out[mode] = {"requests": n, "stored": stored, "response": framing}
            print(f"{mode:30} stored {stored:3} of {n}   response {framing}", flush=True)
        st = s.stats()
        out["store_errors_counted"] = st.get("semcache.errors.store")
    return out


def out_dir_of(wrk: "bench.Wrk") -> Path:
    return wrk.workdir


# Route overlays for the order of the exact lookup and the embedding: exact lookup first and the
# embedding after it ("ns"), beside it ("nf"); the default route folds (envoy.yaml).
EXACT_ORDER_OVERLAYS = [("ns", {"speculative_embedding": False, "fold_exact_lookup": False}),
                        ("nf", {"fold_exact_lookup": False})]


def fresh_semantic_config() -> dict:
    """The shipped plugin config with semantic hits kept out of the local tier: the semantic rows
    rotate 64 paraphrases and measure each one's embedding and search (bench.FRESH_SEMANTIC)."""
    cfg = default_plugin_config()
    merge = {**cfg.get("local_cache", {}), **bench.FRESH_SEMANTIC["local_cache"]}
    return {**cfg, "local_cache": merge}


def semantic_breakdown(args, wrk: "bench.Wrk", env: dict) -> dict:
    off = {k: False for k in ("numbers", "negation", "entities", "quoted", "scope", "substitution")}
    overlays = [("nofilter", None), ("nx", {"exact_match": False}), ("ng", {"guards": off}),
                ("k1", {"top_k": 1}), ("th", {"search_nothread": False}),
                ("fe", {"adaptive_search_ef": False}), *EXACT_ORDER_OVERLAYS]
    out: dict = {}
    with Stack(mock_latency_ms=0, env=env, route_overlays=overlays,
               filter_config=fresh_semantic_config()) as s:
        pids = {n: p.pid for n, p in s.procs.items()}
        bench.fill_entries(s, args.entries, "sem", seed=8)
        bodies, info = bench.seed_semantic(s, "sem", 64)
        _, info_small = bench.seed_semantic(s, "small", 64)
        out["seed"] = {"sem": info, "small": info_small}
        wrk.bodies("semantic", bodies)
        texts = [json.loads(b)["messages"][-1]["content"] for b in bodies]
        wrk.bodies("embed", [json.dumps({"model": "all-MiniLM-L6-v2", "input": t,
                                         "encoding_format": "base64"}) for t in texts])
        rows = {
            "embedder_alone": (s.embedder_url + "/v1/embeddings", "embed", {}),
            "semantic_hit": (s.envoy_url + "/v1/chat/completions", "semantic", {bench.TENANT: "sem"}),
            "small_partition": (s.envoy_url + "/v1/chat/completions", "semantic", {bench.TENANT: "small"}),
            "no_exact_tier": (s.envoy_url + "/nx/v1/chat/completions", "semantic", {bench.TENANT: "sem"}),
            "no_guards": (s.envoy_url + "/ng/v1/chat/completions", "semantic", {bench.TENANT: "sem"}),
            "top_k_1": (s.envoy_url + "/k1/v1/chat/completions", "semantic", {bench.TENANT: "sem"}),
            "no_speculation": (s.envoy_url + "/ns/v1/chat/completions", "semantic", {bench.TENANT: "sem"}),
            "vsim_threaded": (s.envoy_url + "/th/v1/chat/completions", "semantic", {bench.TENANT: "sem"}),
            "fixed_ef": (s.envoy_url + "/fe/v1/chat/completions", "semantic", {bench.TENANT: "sem"}),
            "not_folded": (s.envoy_url + "/nf/v1/chat/completions", "semantic", {bench.TENANT: "sem"}),
        }
        if args.perf:
            # Where Envoy's CPU goes on a semantic hit (c=1): the wasm module's JIT code against
            # the Envoy binary (host, V8 runtime, HTTP) and the kernel.
            for name in ("semantic_hit", "no_exact_tier"):
                url, b, h = rows[name]
                data = out_dir_of(wrk) / f"perf-semantic-{name}.data"
                perf = subprocess.Popen(
                    ["perf", "record", "-q", "-F", "999", "-o", str(data), "-p", str(pids["envoy"]),
                     "--", "sleep", str(args.duration)], stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL)
                r = wrk.run(url, b, concurrency=1, duration=args.duration + 1, headers=h, pids=pids)
                perf.wait()
                dso = perf_dso(data)
                out[f"perf_{name}"] = {"dso": dso, "envoy_cpu_us_per_req": r["cpu_us_per_req"]["envoy"]}
                print(f"perf {name:14} Envoy {r['cpu_us_per_req']['envoy']:.0f} µs/req: " + ", ".join(
                    f"{k} {v:.1f}%" for k, v in list(dso.items())[:5]), flush=True)
        if args.rows:
            rows = {k: v for k, v in rows.items() if k in args.rows.split(",")}
        runs: dict = {k: [] for k in rows}
        for rnd in range(args.rounds):
            for name, (url, b, h) in rows.items():
                if args.after_load:
                    # As in `make bench`, where each c=1 row follows the same row at c=16.
                    wrk.run(url, b, concurrency=args.concurrency, duration=args.after_load,
                            headers=h)
                wrk.run(url, b, concurrency=1, duration=1, headers=h)
                r = wrk.run(url, b, concurrency=1, duration=args.duration, headers=h, pids=pids)
                runs[name].append(r)
        for name, rs in runs.items():
            out[name] = {
                "p50_ms": round(statistics.median(r["p50_ms"] for r in rs), 3),
                "p99_ms": round(statistics.median(r["p99_ms"] for r in rs), 3),
                "rounds_p50_ms": [r["p50_ms"] for r in rs],
                "cpu_us_per_req": {k: round(statistics.median(r["cpu_us_per_req"][k] for r in rs), 1)
                                   for k in rs[0]["cpu_us_per_req"]},
            }
            print(f"{name:16} c=1 p50 {out[name]['p50_ms']:7.3f} ms (rounds {out[name]['rounds_p50_ms']}) "
                  f"p99 {out[name]['p99_ms']:7.3f}  cpu/req {out[name]['cpu_us_per_req']}", flush=True)
        hist = s.stats("semcache.")
        out["filter_histograms"] = {k: v for k, v in hist.items() if isinstance(v, str)}
    return out


TCPDUMP_LINE = re.compile(
    r"^(\d+\.\d+) IP 127\.0\.0\.1\.(\d+) > 127\.0\.0\.1\.(\d+): .* length (\d+)")


def hop_sequences(capture: str, ports: dict[str, int],
                  entry: str = "envoy") -> list[list[tuple[float, str, int]]]:
    """Per client request, its hops in order: (ms since the request's first byte, "->x" for a
    packet with data sent to component x, "<-x" for one sent by x, bytes). A request starts at
    a packet to `entry` (Envoy's listener) after its previous answer; consecutive packets of
    one direction are one hop (the first one's time, all their bytes)."""
    name = {port: n for n, port in ports.items()}
    reqs: list[list[tuple[float, str, int]]] = []
    answered = True
    for line in capture.splitlines():
        m = TCPDUMP_LINE.match(line)
        if not m or m.group(4) == "0":
            continue
        t, src, dst, n = float(m.group(1)), int(m.group(2)), int(m.group(3)), int(m.group(4))
        hop = f"->{name[dst]}" if dst in name else f"<-{name[src]}" if src in name else None
        if hop is None:
            continue
        if hop == f"->{entry}" and answered:
            reqs.append([])
            answered = False
        if not reqs:
            continue
        seq = reqs[-1]
        if seq and seq[-1][1] == hop:
            seq[-1] = (seq[-1][0], hop, seq[-1][2] + n)
        else:
            seq.append((t, hop, n))
        if hop == f"<-{entry}":
            answered = True
    return [[(round((t - r[0][0]) * 1e3, 3), hop, n) for t, hop, n in r] for r in reqs if r]


def summarise_hops(seqs: list[list[tuple[float, str, int]]]) -> dict:
    """The most common hop sequence, and per hop the median time since the request's first byte
    and since the previous hop."""
    shapes = collections.Counter(tuple(h for _, h, _ in s) for s in seqs)
    if not shapes:
        return {"requests": 0}
    shape, count = shapes.most_common(1)[0]
    sel = [s for s in seqs if tuple(h for _, h, _ in s) == shape]
    hops = []
    for i, hop in enumerate(shape):
        at = [s[i][0] for s in sel]
        gap = [s[i][0] - (s[i - 1][0] if i else 0.0) for s in sel]
        hops.append({"hop": hop, "at_ms": round(statistics.median(at), 3),
                     "gap_ms": round(statistics.median(gap), 3), "bytes": sel[0][i][2]})
    return {"requests": len(seqs), "shape_share": round(count / len(seqs), 3),
            "other_shapes": [" ".join(k) for k, _ in shapes.most_common(3)[1:]], "hops": hops}


def timeline(args, env: dict, wrk: "bench.Wrk | None" = None) -> dict:
    """Where a request's time goes between the processes, from a packet capture on loopback
    (tcpdump, Debian's package): one stack, requests sent one at a time (http.client writes the
    headers and the body separately; the hop table merges them), every hop between the client,
    Envoy, the bridge, Redis, the embedder and the mock LLM timestamped by the kernel. Nothing is instrumented, so the
    figures include each process's wake-up and its share of the CPUs. With `wrk`, each kind is
    sent by wrk at c=1 for --duration seconds instead, back to back as `make bench` sends it."""
    import http.client
    tcpdump = bench.ensure_debian_tool("tcpdump", "tcpdump")
    overlays = [("nofilter", None), ("redis", {"local_cache": {"entries": 0}}),
                ("nx", {"exact_match": False}), *EXACT_ORDER_OVERLAYS]
    out: dict = {}
    with Stack(mock_latency_ms=0, env=env, route_overlays=overlays,
               filter_config=fresh_semantic_config()) as s:
        bench.fill_entries(s, args.entries, "sem", seed=8)
        sem_bodies, out["seed"] = bench.seed_semantic(s, "sem", 64)
        exact = bench.chat_body(bench.EXACT_PROMPT)
        for _ in range(2):
            bench.post(s.envoy_url, "/v1/chat/completions", exact, {bench.TENANT: "exact"})
        port = lambda url: int(url.rsplit(":", 1)[1])  # noqa: E731
        ports = {"envoy": s.envoy_port, "bridge": port(s.bridge_url), "redis": s.redis_port,
                 "embedder": port(s.embedder_url), "mock": port(s.mock_url)}
        n0 = args.timeline_requests
        misses = [bench.chat_body(p) for p in bench.random_prompts(n0, seed=23)]
        # What the filter sends the embedder for the semantic row (single-turn prompts).
        embeds = [json.dumps({"model": "all-MiniLM-L6-v2", "encoding_format": "base64",
                              "input": json.loads(b)["messages"][-1]["content"]})
                  for b in sem_bodies]
        kinds = {
            "baseline": ("/nofilter/v1/chat/completions", [exact], {}),
            "passthrough": ("/v1/chat/completions", [exact], {"cache-control": "no-store"}),
            "exact_hit": ("/v1/chat/completions", [exact], {bench.TENANT: "exact"}),
            "exact_hit_redis": ("/redis/v1/chat/completions", [exact], {bench.TENANT: "exact"}),
            "embedder_alone": ("/v1/embeddings", embeds, {}),
            "semantic_hit": ("/v1/chat/completions", sem_bodies, {bench.TENANT: "sem"}),
            # The same without the exact lookup, and with the embedding after it.
            "semantic_no_exact": ("/nx/v1/chat/completions", sem_bodies, {bench.TENANT: "sem"}),
            "semantic_no_speculation": ("/ns/v1/chat/completions", sem_bodies,
                                        {bench.TENANT: "sem"}),
            "semantic_not_folded": ("/nf/v1/chat/completions", sem_bodies, {bench.TENANT: "sem"}),
            "miss": ("/v1/chat/completions", misses, {bench.TENANT: "miss"}),
        }
        if args.rows:
            kinds = {k: v for k, v in kinds.items() if k in args.rows.split(",")}
        flt = "tcp and (" + " or ".join(f"port {p}" for p in ports.values()) + ")"
        for kind, (path, bodies, headers) in kinds.items():
            n = n0
            cap = Path(args.out) / "work" / f"timeline-{kind}.txt"
            with open(cap, "w") as f:
                dump = subprocess.Popen([tcpdump, "-i", "lo", "-nn", "-tt", "-l", "--immediate-mode",
                                         flt], stdout=f, stderr=subprocess.PIPE, text=True)
                # tcpdump says "listening on lo" once its capture is open.
                dump.stderr.readline()
                entry = "embedder" if kind == "embedder_alone" else "envoy"
                lat, labels = [], collections.Counter()
                if wrk is not None:
                    # As `make bench` sends them: wrk at c=1, back to back, one write each.
                    base = s.embedder_url if entry == "embedder" else s.envoy_url
                    wrk.bodies(f"tl-{kind}", bodies)
                    r = wrk.run(base + path, f"tl-{kind}", concurrency=1, duration=args.duration,
                                headers=headers)
                    n = r["requests"]
                    lat = [r["p50_ms"]]
                    labels[("wrk", "errors", r["error_count"])] = n
                else:
                    conn = http.client.HTTPConnection("127.0.0.1", ports[entry], timeout=10)
                    for i in range(n):
                        body = bodies[i % len(bodies)].encode()
                        t = time.perf_counter()
                        conn.putrequest("POST", path)
                        for k, v in {"content-type": "application/json",
                                     "content-length": str(len(body)), **headers}.items():
                            conn.putheader(k, v)
                        conn.endheaders(message_body=body)
                        r = conn.getresponse()
                        r.read()
                        lat.append((time.perf_counter() - t) * 1e3)
                        labels[(r.status, r.getheader("x-semcache-status"),
                                r.getheader("x-semcache-match"))] += 1
                    conn.close()
                # tcpdump writes what the kernel captured a little later: wait until every
                # answer is in the file (bounded), then stop it.
                deadline = time.monotonic() + 10
                while time.monotonic() < deadline:
                    seqs = hop_sequences(cap.read_text(), ports, entry)
                    if sum(1 for q in seqs if q[-1][1] == f"<-{entry}") >= n:
                        break
                    time.sleep(0.05)
                dump.terminate()
                dump.wait(timeout=10)
            seqs = hop_sequences(cap.read_text(), ports, entry)
            res = summarise_hops(seqs[:n])
            res["client_p50_ms"] = round(statistics.median(lat), 3)
            res["answers"] = {" ".join(str(x) for x in k): v for k, v in labels.items()}
            out[kind] = res
            print(f"{kind}: client p50 {res['client_p50_ms']:.3f} ms, answers {res['answers']}, "
                  f"{res.get('shape_share', 0):.0%} of requests took this path:", flush=True)
            for h in res.get("hops", []):
                print(f"    {h['hop']:11} at {h['at_ms']:7.3f} ms  (+{h['gap_ms']:.3f})  "
                      f"{h['bytes']} B", flush=True)
    return out


def search_ef(args, env: dict) -> dict:
    """`VSIM` recall and latency against its exploration factor (`search_ef`): partitions of real
    embeddings (eval texts plus random prompts) built with the filter's own `VADD … Q8`, queried
    with the eval's paraphrase queries; recall is measured against the exact nearest neighbours
    (`VSIM … TRUTH`). Direct to Redis, one persistent connection, `NOTHREAD` as the filter sends."""
    import base64
    from stack import _resp_encode

    single = [json.loads(line) for line in bench.EVAL_SINGLE.read_text().splitlines()]
    stored = list(dict.fromkeys(d["cached"]["messages"][-1]["content"] for d in single))
    queries = list(dict.fromkeys(d["query"]["messages"][-1]["content"] for d in single))
    sizes = [int(x) for x in args.ef_sizes.split(",")]
    efs = [int(x) for x in args.ef_values.split(",")]
    fill = [p.replace("{N}", f"e{i}") for i, p in enumerate(bench.random_prompts(max(sizes), 11))]
    out: dict = {"queries": len(queries), "k": 4}
    with Stack(mock_latency_ms=0, env=env) as s:
        client = bench.Client(s.embedder_url, timeout=60)

        def embed(texts: list[str]) -> list[bytes]:
            blobs = []
            for i in range(0, len(texts), 32):
                st, _, b = client.post("/v1/embeddings", json.dumps(
                    {"model": "all-MiniLM-L6-v2", "input": texts[i:i + 32],
                     "encoding_format": "base64"}), {})
                assert st == 200, b[:200]
                blobs += [base64.b64decode(d["embedding"]) for d in json.loads(b)["data"]]
            return blobs

        t0 = time.monotonic()
        qv = embed(queries)
        corpus = stored + fill
        cv = embed(corpus[:max(sizes)])
        print(f"embedded {len(qv)} queries and {len(cv)} corpus texts in "
              f"{time.monotonic() - t0:.0f} s", flush=True)
        redis = bench.RawRedis(s.redis_port)

        def cmd(*a):
            return redis.pipeline(_resp_encode(a), 1)[0]

        def vadd_usec() -> tuple[float, int]:
            info = cmd("INFO", "commandstats").decode()
            for line in info.splitlines():
                if line.lower().startswith("cmdstat_vadd:"):
                    f = dict(kv.split("=") for kv in line.split(":", 1)[1].split(","))
                    return float(f["usec"]), int(f["calls"])
            return 0.0, 0

        builds = [int(x) for x in args.build_ef_values.split(",")] if args.build_ef_values else [0]
        for n, build in ((n, b) for n in sizes for b in builds):
            key = f"efexp:{n}"
            # Build EF 0: VADD without EF, Redis's default (200), as the filter sends it.
            ef_arg = ("EF", build) if build else ()
            u0, c0 = vadd_usec()
            for i, v in enumerate(cv[:n]):
                cmd("VADD", key, "FP32", v, f"id{i}", "Q8", *ef_arg, "SETATTR", "x" * 600)
            u1, c1 = vadd_usec()
            # The last tenth of the inserts: what one more insert costs a set of about n.
            tail = max(1, n // 10)
            u2, c2 = vadd_usec()
            for i, v in enumerate(cv[n - tail:n]):
                cmd("VADD", key, "FP32", v, f"id{n - tail + i}", "Q8", *ef_arg, "SETATTR",
                    "x" * 600)
            u3, c3 = vadd_usec()
            print(f"{n:6} vectors, build EF {build or 'default'}: VADD {(u1 - u0) / (c1 - c0):.0f} "
                  f"us per call over the build, {(u3 - u2) / max(1, c3 - c2):.0f} us per re-add "
                  f"at full size (INFO commandstats)", flush=True)
            truth = [cmd("VSIM", key, "FP32", v, "WITHSCORES", "COUNT", 4, "TRUTH", "NOTHREAD")
                     for v in qv]
            top = [[t[j] for j in range(0, len(t), 2)] for t in truth]
            row: dict = {}
            for _ in range(args.rounds):
                for ef in efs:
                    lat, hit1, overlap = [], 0, 0
                    for v, want in zip(qv, top):
                        a = time.perf_counter()
                        r = cmd("VSIM", key, "FP32", v, "WITHSCORES", "WITHATTRIBS", "COUNT", 4,
                                "EF", ef, "NOTHREAD")
                        lat.append((time.perf_counter() - a) * 1000)
                        got = [r[j] for j in range(0, len(r), 3)]
                        hit1 += bool(got) and got[0] == want[0]
                        overlap += len(set(got) & set(want))
                    e = row.setdefault(f"ef_{ef}", {"p50_ms": [], "recall_at_1": None})
                    e["p50_ms"].append(round(statistics.median(lat), 4))
                    e["recall_at_1"] = round(hit1 / len(qv), 4)
                    e["recall_at_4"] = round(overlap / (4 * len(qv)), 4)
            row["vadd_us_build"] = round((u1 - u0) / (c1 - c0), 1)
            row["vadd_us_readd"] = round((u3 - u2) / max(1, c3 - c2), 1)
            for ef_name, e in row.items():
                if not ef_name.startswith("ef_"):
                    continue
                print(f"{n:6} vectors {ef_name:7} VSIM p50 per round {e['p50_ms']} ms, "
                      f"recall@1 {e['recall_at_1']:.4f}, recall@4 {e['recall_at_4']:.4f}", flush=True)
            out[f"{n}" if not build else f"{n}_build_ef_{build}"] = row
            cmd("DEL", key)
        redis.close()
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--variants", default="default,nohold,nohold_h2,nohold_buffer,hold_only")
    ap.add_argument("--c1", action="store_true", help="also run every row at concurrency 1")
    ap.add_argument("--perf", action="store_true",
                    help="sample Envoy with `perf record` during each c=16 row; report time per DSO")
    ap.add_argument("--rows", default=None, help="comma list of rows to run (default: all)")
    ap.add_argument("--semantic", action="store_true", help="the semantic-hit breakdown instead")
    ap.add_argument("--after-load", type=float, default=0,
                    help="--semantic: run each row at --concurrency for this many seconds "
                         "before its c=1 warm-up, as make bench does")
    ap.add_argument("--store-race", action="store_true", help="the store-after-close check instead")
    ap.add_argument("--floors", action="store_true",
                    help="the pass-through against an empty and a one-read filter, side by side")
    ap.add_argument("--embedder-gap", action="store_true", help="embedder latency after idle gaps")
    ap.add_argument("--memory", action="store_true", help="only the Redis memory row")
    ap.add_argument("--timeline", action="store_true",
                    help="per-hop timings of each request kind from a loopback packet capture")
    ap.add_argument("--timeline-requests", type=int, default=500,
                    help="--timeline: requests per kind, sent one at a time")
    ap.add_argument("--timeline-wrk", action="store_true",
                    help="--timeline: send each kind with wrk at c=1 for --duration seconds")
    ap.add_argument("--ef", action="store_true",
                    help="VSIM recall and latency against EF (search_ef), direct to Redis")
    ap.add_argument("--ef-sizes", default="2000,20000", help="--ef: partition sizes")
    ap.add_argument("--ef-values", default="16,32,64,128", help="--ef: EF values")
    ap.add_argument("--build-ef-values", default="",
                    help="--ef: build each partition once per VADD EF value (0: Redis's default)")
    ap.add_argument("--answer-bytes", type=int, default=None,
                    help="--memory: lengthen the mock's answers to this (bench: 1000; 0: ~470 B)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--entries", type=int, default=2000)
    ap.add_argument("--duration", type=float, default=5.0)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--out", default=str(ROOT / "target" / "bench"))
    args = ap.parse_args()
    out = Path(args.out)
    work = out / "work"
    work.mkdir(parents=True, exist_ok=True)
    wrk = bench.Wrk(bench.ensure_wrk(), work, True)
    exact = bench.chat_body(bench.EXACT_PROMPT)
    wrk.bodies("fixed", [exact])
    wrk.bodies("embed", [json.dumps({"input": "What is Redis?"})])
    env = {"RUST_LOG": "warn",
           "mock": {"SEMCACHE_MOCK_LLM_CHUNK_DELAY_MS": "0", "SEMCACHE_MOCK_LLM_LOG": "warn"}}
    rows = {
        "baseline": ("/nofilter/v1/chat/completions", "fixed", {}),
        "off_route": ("/off/v1/chat/completions", "fixed", {}),
        "passthrough": ("/v1/chat/completions", "fixed", {"cache-control": "no-store"}),
        "exact_hit": ("/v1/chat/completions", "fixed", {bench.TENANT: "exact"}),
        # The local tier (on by default) off: every hit a lookup in Redis through the bridge.
        "exact_hit_redis": ("/redis/v1/chat/completions", "fixed", {bench.TENANT: "exact"}),
        "nocache_path_off": ("/nofilter/v1/embeddings", "embed", {}),
        "nocache_path_on": ("/pt/v1/embeddings", "embed", {}),
        # Only with --rows semantic_hit: seeded per variant below.
        "semantic_hit": ("/v1/chat/completions", "semantic", {bench.TENANT: "sem"}),
    }
    results: dict = {"conditions": {"loadavg_start": __import__("os").getloadavg()[0],
                                    "git_rev": bench.git_rev(), "duration_s": args.duration}}
    if args.floors:
        results["floors"] = floors(args, env, wrk)
        (out / "experiments-floors.json").write_text(json.dumps(results, indent=2) + "\n")
        return 0
    if args.embedder_gap:
        results["embedder_gap"] = embedder_gap(env, args.rounds)
        (out / "experiments-embedder-gap.json").write_text(json.dumps(results, indent=2) + "\n")
        return 0
    if args.timeline:
        results["timeline"] = timeline(args, env, wrk if args.timeline_wrk else None)
        (out / "experiments-timeline.json").write_text(json.dumps(results, indent=2) + "\n")
        return 0
    if args.ef:
        results["search_ef"] = search_ef(args, env)
        (out / "experiments-ef.json").write_text(json.dumps(results, indent=2) + "\n")
        return 0
    if args.memory:
        if args.answer_bytes is not None:
            bench.MEMORY_ANSWER_BYTES = args.answer_bytes
        with Stack(mock_latency_ms=0, env=env) as s:
            mem = bench.bench_memory(s, args.entries, tenant="mem")
            mem["breakdown"] = bench.memory_breakdown(s, mem["vs_key"], mem["entries"])
        results["redis_memory"] = mem
        (out / "experiments-memory.json").write_text(json.dumps(results, indent=2) + "\n")
        print(json.dumps({k: v for k, v in mem.items() if k != "vinfo"}, indent=2))
        return 0
    if args.store_race:
        results["store_race"] = store_race(env)
        (out / "experiments-store-race.json").write_text(json.dumps(results, indent=2) + "\n")
        return 0
    if args.semantic:
        results["semantic"] = semantic_breakdown(args, wrk, env)
        results["conditions"]["loadavg_end"] = __import__("os").getloadavg()[0]
        (out / "experiments-semantic.json").write_text(json.dumps(results, indent=2) + "\n")
        return 0
    for i, variant in enumerate(args.variants.split(",")):
        # A variant named twice (interleaved rounds) keeps every round: "<variant>#<n>".
        key = variant if variant not in results else f"{variant}#{i}"
        cfg = {**default_plugin_config()}
        if variant.startswith("nohold"):
            cfg["hold_request_headers"] = False
        elif variant == "hold_only":
            cfg["hold_request_headers"] = True
        elif variant == "nocompress":
            cfg["compress_entries"] = False
        venv = env
        if variant.startswith("bridge_t"):
            # bridge_t<N>: the bridge serving on N threads (--worker-threads).
            venv = {**env, "bridge": {"SEMCACHE_BRIDGE_WORKER_THREADS": variant[len("bridge_t"):]}}
        extra = {}
        if variant == "simd":
            # The filter built with wasm SIMD: RUSTFLAGS="-C target-feature=+simd128" cargo build
            # --target wasm32-wasip1 --profile wasm -p semcache --target-dir target/simd
            extra["wasm"] = ROOT / "target/simd/wasm32-wasip1/wasm/semcache.wasm"
        elif variant == "empty":
            # A filter that does nothing (scripts/bench/empty_filter): the floor any Rust
            # proxy-wasm filter pays per stream in this Envoy. Its rows are all pass-throughs.
            extra["wasm"] = bench.ensure_empty_filter()
        elif variant == "empty_read":
            # The same, reading one request header (`--features read-path`, built into
            # target/bench/empty-filter-read): the cost of one host read that returns data.
            extra["wasm"] = bench.ensure_empty_filter(read_path=True)
        elif variant == "alt":
            # Another build of the filter, for an A/B against the working tree's, e.g. an older
            # commit's: cargo build --target wasm32-wasip1 --profile wasm -p semcache
            # --target-dir target/alt
            extra["wasm"] = ROOT / "target/alt/wasm32-wasip1/wasm/semcache.wasm"
        with VariantStack(cfg, mock_latency_ms=0, env=venv, variant=variant, **extra,
                          route_overlays=[("nofilter", None), ("pt", {}),
                                          ("off", {"enabled": False}),
                                          ("redis", {"local_cache": {"entries": 0}})]) as s:
            pids = {n: p.pid for n, p in s.procs.items()}
            # Headers and body in separate writes, as many clients send them (httpx does).
            probe = split_write_probe(s.envoy_url, exact)
            results[key] = {"split_write_request": probe}
            print(f"{variant:8} a request whose body arrives after its headers: {probe}", flush=True)
            try:
                for _ in range(2):
                    st, h, _ = bench.Client(s.envoy_url, timeout=5).post(
                        "/v1/chat/completions", exact, {bench.TENANT: "exact"})
                primed = h.get("x-semcache-match") == "exact"
            except OSError as e:
                results[key]["error"] = f"a single request did not complete: {e}"
                print(f"{variant}: a single request did not complete ({e})", flush=True)
                continue
            results[key]["primed_exact_hit"] = primed
            if args.rows and "semantic_hit" in args.rows.split(","):
                # The eval's paraphrases in their own small partition (bench.seed_semantic).
                bodies, info = bench.seed_semantic(s, "sem", 64)
                wrk.bodies("semantic", bodies)
                results[key]["semantic_seed"] = info
            for name, (path, bodies, headers) in rows.items():
                if (args.rows and name not in args.rows.split(",")) or \
                        (not args.rows and name == "semantic_hit"):
                    continue
                for c in (args.concurrency, 1) if args.c1 else (args.concurrency,):
                    wrk.run(s.envoy_url + path, bodies, concurrency=c, duration=2, headers=headers)
                    a = upstream_stats(s)
                    perf = None
                    if args.perf and c == args.concurrency:
                        data = work / f"perf-{variant}-{name}.data"
                        perf = subprocess.Popen(
                            ["perf", "record", "-q", "-F", "999", "-g", "-o", str(data), "-p",
                             str(pids["envoy"]), "--", "sleep", str(max(1, args.duration - 1))],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                    r = wrk.run(s.envoy_url + path, bodies, concurrency=c, duration=args.duration,
                                headers=headers, pids=pids)
                    if perf is not None:
                        perf.wait()
                        r["perf_dso"] = perf_dso(data)
                    b = upstream_stats(s)
                    r["upstream"] = {k: b.get(k, 0) - a.get(k, 0) for k in UPSTREAM_STATS}
                    results[key][f"{name}_c{c}"] = r
                    print(f"{variant:8} {name:17} c={c:<3} p50 {r['p50_ms']:7.3f} p99 {r['p99_ms']:7.3f} "
                          f"rps {r['rps']:7.0f} err {r['error_count']:5} envoy {r['cpu_us_per_req'].get('envoy', 0):5.0f}us/req "
                          f"upstream cx {r['upstream']['upstream_cx_total']} rq {r['upstream']['upstream_rq_total']}",
                          flush=True)
                    if r.get("perf_dso"):
                        print("         perf (Envoy samples by object): " + ", ".join(
                            f"{k} {v:.1f}%" for k, v in list(r["perf_dso"].items())[:6]), flush=True)
    results["conditions"]["loadavg_end"] = __import__("os").getloadavg()[0]
    (out / "experiments.json").write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
