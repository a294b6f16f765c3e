#!/usr/bin/env python3
"""Writes the seed corpus of every fuzz target (fuzz/seeds/<target>/), in the byte layout that
fuzz/src/checks.rs decodes. Re-run after changing a layout: python3 fuzz/seeds/make_seeds.py"""

from __future__ import annotations

import hashlib
import json
import re
import struct
import zlib
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent


def write(target: str, items: list[bytes]) -> None:
    d = HERE / target
    d.mkdir(parents=True, exist_ok=True)
    for old in d.iterdir():
        old.unlink()
    for data in items:
        (d / hashlib.sha1(data).hexdigest()).write_bytes(data)


def u16(n: int) -> bytes:
    return struct.pack("<H", n)


def sliced(b: bytes) -> bytes:
    return u16(len(b)) + b


def chat(content: str, **extra) -> dict:
    return {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": content}], **extra}


CHATS = [
    chat("What is the capital of France?"),
    chat("Hi", stream=True, stream_options={"include_usage": True}, temperature=0.2, stop="\n"),
    {"model": "gpt-4o", "temperature": 1.0, "top_p": 1, "seed": 7, "user": "u1",
     "messages": [{"role": "developer", "content": "Be brief."},
                  {"role": "user", "content": [{"type": "text", "text": "Hi"}, {"type": "text", "text": "there"}]},
                  {"role": "assistant", "content": None,
                   "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
                  {"role": "tool", "tool_call_id": "c1", "content": "42"},
                  {"role": "user", "content": "  and   now?  "}]},
    {"messages": [{"role": "user", "content": "azure, no model"}]},
    {"model": "m", "n": 2, "messages": [{"role": "user", "content": "x"}]},
]
LEGACY = [{"model": "gpt-3.5-turbo-instruct", "prompt": "Say hello"},
          {"model": "d", "prompt": ["one"]}, {"model": "d", "prompt": ["a", "b"]}]


def request_parse() -> list[bytes]:
    out = []
    for sel, bodies in ((0, CHATS), (1, LEGACY), (2, CHATS), (3, LEGACY)):
        out += [bytes([sel]) + json.dumps(b).encode() for b in bodies]
    out += [b"\x04caf\xc3\xa9  \t\n 12 \xf0\x9f\x8e\x89", b"\x05 legacy text",
            b"\x08/openai/deployments/x/chat/completions/?a=b#c", b"\x00{not json", b"\x00[1]"]
    return out


def prompt_canonical() -> list[bytes]:
    return [b"\x00" + s.encode() for s in (
        "u\0What  is\n2+2?\0a\0Four.\0u\0And 3+3?\x01u\0What is 2+2?\0a\0Four.\0u\0And 3+3?",
        "\x02\0Answer in French.\0u\0Hello\x01u\0Hello",
        "user\0a: b\0user\0c\x01user\0a\0user\0b: c",
        "u\0yes, go ahead\x01u\0yes,  go ahead ",
    )] + [b"\x01\x02\0sys\0u\0q"]


def sse_stream(kind: str) -> str:
    if kind == "chat":
        ev = [{"model": "m1", "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]},
              {"choices": [{"index": 0, "delta": {"content": "Hel"}}]},
              {"choices": [{"index": 0, "delta": {"content": "lo"}}]},
              {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
              {"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}}]
    else:
        ev = [{"choices": [{"index": 0, "text": "Hi"}]},
              {"choices": [{"index": 0, "text": " there", "finish_reason": "stop"}]}]
    return ": keep-alive\n\n" + "".join(f"data: {json.dumps(e)}\n\n" for e in ev) + "data: [DONE]\n\n"


def sse_assemble() -> list[bytes]:
    out = []
    for flags, kind in ((0, "chat"), (4, "chat"), (1, "legacy"), (2, "chat")):
        s = sse_stream(kind)
        for variant in (s, s.replace("\n", "\r\n"), s.replace("\n", "\r")):
            b = variant.encode()
            out.append(bytes([flags, 3]) + u16(5) + u16(len(b) // 2) + u16(len(b) - 1) + b)
    out.append(bytes([0, 0]) + b"data: {\"choices\":[{\"index\":0,\ndata: \"delta\":{\"content\":\"x\"},"
               b"\"finish_reason\":\"stop\"}]}\n\ndata: [DONE]\n\n")
    return out


def resp_decode() -> list[bytes]:
    return [
        b"\x02$-1\r\n*0\r\n",
        b"\x06+OK\r\n-ERR bad\r\n:42\r\n$3\r\na\r\n\r\n$-1\r\n*2\r\n$1\r\nx\r\n*1\r\n:1\r\n",
        b"\x01*4\r\n$2\r\nid\r\n$6\r\n0.9125\r\n$3\r\nid2\r\n$4\r\n0.75\r\n",
        b"\x01*2\r\n:1\r\n*2\r\n$4\r\nk:id\r\n*2\r\n$1\r\nq\r\n$5\r\nhello\r\n",
        b"\x03VADD\x00sc:ns:vs\x00FP32\x00\x00\x00\x80?\x01GET\x00k\x01",
    ]


def plugin_configs() -> list[str]:
    found = re.findall(r"value: '(\{.*?\})'\n", (ROOT / "envoy" / "envoy.yaml").read_text())
    found += re.findall(r"value: '(\{.*?\})'\n", (ROOT / "envoy" / "istio" / "envoyfilter.yaml").read_text())
    assert found, "no plugin configuration found in envoy.yaml"
    return found


APIM = """<policies><inbound><base />
  <llm-semantic-cache-lookup score-threshold="0.05" embeddings-backend-id="semcache_embeddings"
      ignore-system-messages="true" max-message-count="10">
    <vary-by>@(context.Subscription.Id)</vary-by>
    <vary-by>@(context.Request.Headers.GetValueOrDefault("X-Tenant", ""))</vary-by>
    <vary-by>gold</vary-by>
  </llm-semantic-cache-lookup></inbound>
  <outbound><azure-openai-semantic-cache-store duration="60" /><base /></outbound></policies>"""


def config_parse() -> list[bytes]:
    items = plugin_configs()
    items.append(APIM)
    items.append(json.dumps({"apim_policy": APIM, "embeddings": {"authority": "e", "model": "m"},
                             "bridge": {"authority": "bridge", "timeout_ms": 500}}))
    full = json.loads(items[0])
    full.update({"backend": "redisearch", "key_prefix": "k", "top_k": 3, "search_ef": 64,
                 "cache_statuses": [200, 203], "max_request_body_bytes": 100,
                 "guards": {"numbers": False}, "headers": {"status": "x-s"},
                 "bypass_header": "x-b", "exact_match": False,
                 "vary_by": [{"attribute": "xds.route_name"}, {"attribute": ["a", "b"]},
                             {"body": "/user"}, {"literal": "l"}]})
    items.append(json.dumps(full))
    items.append(items[0] + '\0{"score_threshold": 0.05, "ttl_seconds": 60}')
    items.append(items[0] + '\0{"enabled": false}')
    items.append('{"embeddings":{"cluster":"e"},"bridge":{"cluster":"b"},"score_threshold":1.5}')
    return [i.encode() for i in items]


def guards_check() -> list[bytes]:
    pairs = [("refund my order", "don't refund my order"), ("invoice 7731", "invoice 7713"),
             ("What is the capital of France?", "what's the capital city of France"),
             ("pros of Rust", "cons of Rust"), ('translate "hello"', 'translate "bye"'),
             ("meeting at 5pm tomorrow", "meeting at 17:00 tomorrow"),
             ("cheapest flight to Oslo", "most expensive flight to Oslo")]
    return [bytes([m]) + f"{a}\0{b}".encode() for m in (0, 31) for a, b in pairs]


def machine_events() -> list[bytes]:
    body = json.dumps(chat("What is the capital of France?")).encode()
    done = json.dumps({"object": "chat.completion", "model": "m",
                       "choices": [{"index": 0, "message": {"role": "assistant", "content": "Paris."},
                                    "finish_reason": "stop"}],
                       "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}}).encode()
    sse = sse_stream("chat").encode()
    exact_miss = bytes([1, 0, 0, 1]) + sliced(b"")        # CALLOUT_BODIES[0]
    embedding = bytes([1, 0, 0, 11]) + sliced(b"")        # CALLOUT_BODIES[5]
    no_candidates = bytes([1, 0, 0, 3]) + sliced(b"")     # CALLOUT_BODIES[1]
    stored = bytes([1, 0, 0, 5]) + sliced(b"")            # CALLOUT_BODIES[2]
    headers_json = bytes([1, 2, 0, 0, 1])
    headers_sse = bytes([1, 2, 0, 1, 1])
    hit = bytes([1, 0, 0, 0]) + sliced(b"*2\r\n$1\r\nx\r\n$1\r\ny\r\n")
    out = []
    for cfg in range(4):
        for path in (0, 1):
            head = bytes([cfg, path, 0]) + sliced(body)
            out.append(head + exact_miss + embedding + no_candidates + headers_json
                       + bytes([1, 3, 0]) + sliced(done) + stored)
            out.append(head + exact_miss + embedding + no_candidates + headers_sse
                       + bytes([1, 3, 1]) + sliced(sse[:40]) + bytes([1, 3, 0]) + sliced(sse[40:]) + stored)
            out.append(head + hit + bytes([1, 5]))
    out.append(bytes([0, 0, 2]) + sliced(body) + headers_json)
    return out


def deflate(b: bytes) -> bytes:
    c = zlib.compressobj(6, zlib.DEFLATED, -15)  # raw DEFLATE, as miniz_oxide writes it
    return c.compress(b) + c.flush()


def packed_decode() -> list[bytes]:
    prose = ("To reset your password, open the sign-in page and choose the link below the password "
             "field. A message with a one-time link arrives within a few minutes. ") * 3
    entries = [
        {"e": 1764480000000, "t": 1764400000000, "q": "how do i reset my password", "m": "gpt-4o-mini",
         "r": prose, "u": {"prompt_tokens": 12, "completion_tokens": 90, "total_tokens": 102}},
        {"e": 200, "t": 100, "q": "q", "m": "", "r": "Paris."},
        {"e": 0, "t": 0, "q": "caf\u00e9 \ud83c\udf89", "m": "m", "r": "tab\tquote\"\u0000", "u": None},
        {"e": 18446744073709551615, "t": 1, "q": "", "m": "m", "r": "x",
         "u": {"prompt_tokens": 1.5, "details": {"cached_tokens": 0}, "x": [1, -2, 3e7]}},
    ]
    texts = [json.dumps(e, separators=(",", ":")).encode() for e in entries]
    texts.append(json.dumps({"e": 5, "t": 4, "q": "é 🎉", "m": "m", "r": "ünïcode"}, ensure_ascii=False).encode())
    out = list(texts) + [b"Z" + deflate(t) for t in texts]
    out += [b"Z" + deflate(texts[0])[:40],               # truncated
            b"Z" + deflate(b'{"hello":1}'),              # DEFLATE of something else
            b"Z" + deflate(b"\0" * (1 << 20)),           # a small bomb: 1 MiB of zeros
            b"Znot deflate at all", b"Z", b"", b" " + texts[1], b'{"e":1}']
    return out


for name, fn in [("request_parse", request_parse), ("prompt_canonical", prompt_canonical),
                 ("sse_assemble", sse_assemble), ("resp_decode", resp_decode),
                 ("config_parse", config_parse), ("guards_check", guards_check),
                 ("machine_events", machine_events), ("packed_decode", packed_decode)]:
    write(name, fn())
    print(f"{name}: {len(list((HERE / name).iterdir()))} seeds")
