#!/usr/bin/env python3
"""Offline plain-cosine baseline for the evaluation set, without the stack.

Embeds both sides of every pair with the numpy reference implementation of all-MiniLM-L6-v2
(scripts/embed_reference.py) and reports what plain cosine similarity alone would do: the
threshold sweep and the share of should-hit pairs served at the threshold that keeps wrong answers
within 5%. Two ways of choosing the embedded text are compared:
  last       the final message only (what most semantic caches embed);
  canonical  the filter's canonical form: the final message, then the earlier non-system turns
             from the most recent backwards, as "role: text" (each at most 400 characters).

A sanity check of the data (how hard the set is for the bare model), not the measurement: that is
`scripts/eval.py` against the real stack. Usage: .venv/bin/python scripts/eval_offline.py [--show]   (--show: every pair's distance; the
first run embeds ~1,300 texts in numpy and takes about 15 minutes, later runs reuse
target/eval/offline-embeddings.json)
"""

import json
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import embed_reference as er  # noqa: E402
import eval as ev  # noqa: E402

CONTEXT_TURN_CHARS = 400


def text_of(messages, how):
    dialog = [(m["role"], " ".join(m["content"].split())) for m in messages if m["role"] != "system"]
    if how == "last":
        return dialog[-1][1]
    (_, last), earlier = dialog[-1], dialog[:-1]
    parts = [last] + [f"{r}: {t[:CONTEXT_TURN_CHARS]}" for r, t in reversed(earlier)]
    return "\n".join(parts)


class Embedder:
    def __init__(self):
        from safetensors.numpy import load_file
        from tokenizers import Tokenizer
        d = er.find_model_dir()
        with open(os.path.join(d, "config.json")) as f:
            self.cfg = json.load(f)
        with open(os.path.join(d, "sentence_bert_config.json")) as f:
            max_len = json.load(f)["max_seq_length"]
        self.p = {k: v.astype(np.float32) for k, v in load_file(os.path.join(d, "model.safetensors")).items()}
        self.tok = Tokenizer.from_file(os.path.join(d, "tokenizer.json"))
        self.tok.no_padding()
        self.tok.enable_truncation(max_length=max_len)
        self.path = os.path.join(ev.ROOT, "target", "eval", "offline-embeddings.json")
        try:
            with open(self.path) as f:
                self.cache = {k: np.asarray(v) for k, v in json.load(f).items()}
        except (OSError, ValueError):
            self.cache = {}

    def __call__(self, text):
        if text not in self.cache:
            self.cache[text] = np.asarray(er.encode(self.tok.encode(text).ids, self.p, self.cfg))
        return self.cache[text]

    def save(self):
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        with open(self.path, "w") as f:
            json.dump({k: [round(float(x), 6) for x in v] for k, v in self.cache.items()}, f)


def main():
    show = "--show" in sys.argv[1:]
    emb = Embedder()
    out = {}
    for kind in ev.KINDS:
        pairs = ev.load(kind)
        for how in ("last", "canonical") if kind == "conversations" else ("last",):
            outcomes = {}
            for p in pairs:
                a = emb(text_of(p["cached"]["messages"], how))
                b = emb(text_of(p["query"]["messages"], how))
                d = float(1.0 - np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))
                outcomes[p["id"]] = {"status": "hit", "match": "semantic", "distance": max(d, 0.0)}
            emb.save()
            if show:
                for p in sorted(pairs, key=lambda p: (p["category"], outcomes[p["id"]]["distance"])):
                    print(f"{p['category']:24} {outcomes[p['id']]['distance']:.3f} {p['id']} "
                          f"{text_of(p['cached']['messages'], 'last')!r} -> "
                          f"{text_of(p['query']['messages'], 'last')!r}")
            res = {}
            for split in ("tune", "holdout", "all"):
                ps = ev.split_pairs(pairs, split)
                res[split] = {"best": ev.best_under_budget(ps, outcomes),
                              "sweep": ev.sweep(ps, outcomes)}
                cats = {}
                for cat in ev.CATEGORIES[kind]:
                    ds = sorted(outcomes[p["id"]]["distance"] for p in ps if p["category"] == cat)
                    cats[cat] = {"median": round(ds[len(ds) // 2], 3), "min": round(ds[0], 3),
                                 "max": round(ds[-1], 3)}
                res[split]["distance_by_category"] = cats
            out[f"{kind}/{how}"] = res
            for split in ("tune", "holdout", "all"):
                b = res[split]["best"]
                t = "none" if b["threshold"] is None else f"{b['threshold']:.3f}"
                print(f"{kind:14} {how:9} {split:8} plain cosine at wrong<=5%: threshold {t} "
                      f"served {b['served_pct']}% wrong {b['wrong_pct']}%")
            print("  distance by category (all): " + ", ".join(
                f"{c} med {v['median']}" for c, v in res["all"]["distance_by_category"].items()))
    os.makedirs(os.path.join(ev.ROOT, "target", "eval"), exist_ok=True)
    path = os.path.join(ev.ROOT, "target", "eval", "offline.json")
    with open(path, "w") as f:
        json.dump(out, f, indent=1)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
