"""Small helpers shared by the filter's end-to-end tests."""

from __future__ import annotations

import httpx

from stack import Stack, default_plugin_config

CHAT = "/v1/chat/completions"


def chat(content: str, model: str = "gpt-4o-mini", **extra) -> dict:
    return {"model": model, "messages": [{"role": "user", "content": content}], **extra}


def post(client: httpx.Client, s: Stack, body: dict, path: str = CHAT, **headers) -> httpx.Response:
    hdrs = {k.replace("_", "-"): v for k, v in headers.items()}
    return client.post(s.envoy_url + path, json=body, headers=hdrs)


def status(r: httpx.Response) -> str | None:
    return r.headers.get("x-semcache-status")


def answer(r: httpx.Response) -> str:
    return r.json()["choices"][0]["message"]["content"]


def cache_stats(s: Stack) -> dict[str, int]:
    """The filter's counters, named without Envoy's `wasmcustom.` namespace."""
    out: dict[str, int] = {}
    for prefix in ("wasmcustom.semcache.", "semcache."):
        for k, v in s.stats(prefix).items():
            if isinstance(v, int):
                out[k.removeprefix("wasmcustom.")] = v
    return out


def upstream_calls(client: httpx.Client, s: Stack) -> int:
    st = client.get(s.mock_url + "/control/stats").json()
    return st["chat_requests"] + st["completions_requests"]


def config(**overrides) -> dict:
    """envoy.yaml's plugin configuration with `overrides`, and the local tier off unless an
    override sets it: these tests check what Redis holds and flush it between steps, and by
    design the local tier serves a flushed entry for up to `local_cache.ttl_seconds`
    (test_filter_cache.py tests the tier, and the shipped configuration, on their own)."""
    cfg = default_plugin_config()
    cfg["local_cache"] = {"entries": 0}
    for k, v in overrides.items():
        cfg[k] = v
    return cfg
