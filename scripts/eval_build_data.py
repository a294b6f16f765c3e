#!/usr/bin/env python3
"""Build testdata/eval/{single,conversations}.jsonl from the hand-written sources in
testdata/eval/src/.

The sources are the editable form of the evaluation set (one pair per line for single questions,
one block per pair for conversations); the JSONL files are what `scripts/eval.py` reads. Ids and
splits are assigned here, deterministically: pairs are numbered in source order, and within each
category they alternate tune, holdout, tune, ... so both halves get the same mix of categories.

Usage: python scripts/eval_build_data.py [--check]   (--check: fail if the JSONL is out of date)

Source formats
--------------
single_*.txt:
    # comment
    !sys NAME = system prompt text        (defines a shared system prompt)
    == category ==                        (starts a category section)
    [NAME] cached question || new question  ## optional note
conversations_*.txt:
    == category ==
    --- optional note                     (starts a pair)
    A system|user|assistant: content      (a message of the cached conversation)
    B system|user|assistant: content      (a message of the new conversation)
    = system|user|assistant: content      (a message present, identical, on both sides)
  Content is one line; a literal "\\n" in it becomes a newline.
"""

import argparse
import glob
import json
import os
import re
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EVAL_DIR = os.path.join(REPO, "testdata", "eval")
SRC_DIR = os.path.join(EVAL_DIR, "src")

SHOULD_HIT = {
    "near_repeat", "paraphrase",
    "conv_reworded", "conv_irrelevant_history", "conv_chatter",
}
TRAPS = {
    "trap_negation", "trap_entity", "trap_number", "trap_date", "trap_scope",
    "conv_context_trap", "conv_detail_trap",
}


class SourceError(Exception):
    pass


def _category(line, where):
    m = re.fullmatch(r"==\s*([a-z_]+)\s*==", line)
    if not m:
        raise SourceError(f"{where}: bad category line {line!r}")
    cat = m.group(1)
    if cat not in SHOULD_HIT and cat not in TRAPS:
        raise SourceError(f"{where}: unknown category {cat!r}")
    return cat


def parse_single(path):
    systems, pairs, cat = {}, [], None
    with open(path, encoding="utf-8") as f:
        for n, raw in enumerate(f, 1):
            line = raw.strip()
            where = f"{os.path.basename(path)}:{n}"
            if not line or line.startswith("#"):
                continue
            if line.startswith("!sys "):
                name, _, text = line[5:].partition("=")
                systems[name.strip()] = text.strip()
                continue
            if line.startswith("=="):
                cat = _category(line, where)
                continue
            if cat is None:
                raise SourceError(f"{where}: pair before any category")
            note = None
            if "##" in line:
                line, _, note = line.partition("##")
                line, note = line.strip(), note.strip()
            sysname = None
            m = re.match(r"\[([a-z]+)\]\s*", line)
            if m:
                sysname = m.group(1)
                if sysname not in systems:
                    raise SourceError(f"{where}: unknown system prompt {sysname!r}")
                line = line[m.end():]
            parts = line.split(" || ")
            if len(parts) != 2 or not parts[0].strip() or not parts[1].strip():
                raise SourceError(f"{where}: expected 'cached || query'")
            cached, query = parts[0].strip(), parts[1]
            # keep the query's own whitespace quirks (near repeats), but not the line's end
            query = query.rstrip("\n")
            if query.strip() == "":
                raise SourceError(f"{where}: empty query")
            pre = [{"role": "system", "content": systems[sysname]}] if sysname else []
            pairs.append({
                "category": cat,
                "cached": {"messages": pre + [{"role": "user", "content": cached}]},
                "query": {"messages": pre + [{"role": "user", "content": query.rstrip()}]},
                "note": note,
                "src": where,
            })
    return pairs


def parse_conversations(path):
    pairs, cat, cur = [], None, None
    with open(path, encoding="utf-8") as f:
        for n, raw in enumerate(f, 1):
            line = raw.rstrip("\n")
            where = f"{os.path.basename(path)}:{n}"
            s = line.strip()
            if not s or s.startswith("#"):
                continue
            if s.startswith("=="):
                cat = _category(s, where)
                cur = None
                continue
            if s.startswith("---"):
                if cat is None:
                    raise SourceError(f"{where}: pair before any category")
                cur = {"category": cat, "cached": {"messages": []}, "query": {"messages": []},
                       "note": s[3:].strip() or None, "src": where}
                pairs.append(cur)
                continue
            m = re.match(r"([AB=])\s+(system|user|assistant):\s?(.*)$", s)
            if not m or cur is None:
                raise SourceError(f"{where}: expected 'A|B|= role: content' inside a pair")
            side, role, content = m.groups()
            content = content.replace("\\n", "\n")
            msg = {"role": role, "content": content}
            if side in "A=":
                cur["cached"]["messages"].append(dict(msg))
            if side in "B=":
                cur["query"]["messages"].append(dict(msg))
    return pairs


def assign(pairs, prefix):
    out, seen = [], {}
    for i, p in enumerate(pairs, 1):
        k = seen.get(p["category"], 0)
        seen[p["category"]] = k + 1
        rec = {
            "id": f"{prefix}-{i:04d}",
            "split": "tune" if k % 2 == 0 else "holdout",
            "category": p["category"],
            "should_hit": p["category"] in SHOULD_HIT,
            "cached": p["cached"],
            "query": p["query"],
        }
        if p.get("note"):
            rec["note"] = p["note"]
        out.append(rec)
    return out


def render(records):
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)


def build():
    single = []
    for path in sorted(glob.glob(os.path.join(SRC_DIR, "single_*.txt"))):
        single += parse_single(path)
    conv = []
    for path in sorted(glob.glob(os.path.join(SRC_DIR, "conversations_*.txt"))):
        conv += parse_conversations(path)
    return {"single.jsonl": render(assign(single, "s")),
            "conversations.jsonl": render(assign(conv, "c"))}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--check", action="store_true", help="fail if the JSONL files are stale")
    args = ap.parse_args()
    try:
        files = build()
    except SourceError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    stale = []
    for name, text in files.items():
        path = os.path.join(EVAL_DIR, name)
        old = open(path, encoding="utf-8").read() if os.path.exists(path) else None
        if old != text:
            stale.append(name)
            if not args.check:
                with open(path, "w", encoding="utf-8") as f:
                    f.write(text)
        print(f"{name}: {text.count(chr(10))} pairs{' (updated)' if old != text and not args.check else ''}")
    if args.check and stale:
        print(f"stale: {', '.join(stale)}; run python scripts/eval_build_data.py", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
