#!/usr/bin/env python3
"""Token ids of the facts listed in the example models' README.md files, for the greedy
generation test in tests/test_model.c.

    python3 tools/gen_fact_ids.py > tests/fixtures/runtime/facts.json

A minimal GPT-2 byte-level BPE (bytes_to_unicode, the GPT-2 pre-tokenizer pattern
restricted to ASCII, merges by rank) over examples/models/base/{vocab.json,merges.txt};
it is checked against the ids stored in reference_logits.json before anything is written.
"""
import json
import re
import sys

D = "examples/models/base"


def bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    cs, n = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


VOCAB = json.load(open(f"{D}/vocab.json"))
RANK = {tuple(l.split()): i for i, l in enumerate(open(f"{D}/merges.txt").read().splitlines()[1:]) if l}
B2U = bytes_to_unicode()
PAT = re.compile(r"""'s|'t|'re|'ve|'m|'ll|'d| ?[A-Za-z]+| ?[0-9]+| ?[^\sA-Za-z0-9]+|\s+(?!\S)|\s+""")


def bpe(word):
    parts = list(word)
    while len(parts) > 1:
        pairs = [(RANK.get((a, b), 1 << 30), i) for i, (a, b) in enumerate(zip(parts, parts[1:]))]
        r, i = min(pairs)
        if r == 1 << 30:
            break
        parts[i:i + 2] = [parts[i] + parts[i + 1]]
    return parts


def encode(text):
    ids = []
    for w in PAT.findall(text):
        ids += [VOCAB[t] for t in bpe("".join(B2U[b] for b in w.encode()))]
    return ids


def main():
    ref = json.load(open("tests/fixtures/runtime/reference_logits.json"))
    for p, ids in zip(ref["prompts"], ref["ids"]):
        assert encode(p) == ids, (p, encode(p), ids)
    out = {}
    for m in ref["models"]:
        facts = []
        for line in open(f"examples/models/{m}/README.md"):
            g = re.match(r"- `(.*)` -> `(.*)`", line.strip())
            if g:
                facts.append({"prompt": g[1], "ids": encode(g[1]), "answer": " " + g[2],
                              "answer_ids": encode(" " + g[2])})
        out[m] = facts
    json.dump(out, sys.stdout, indent=1)
    print()


if __name__ == "__main__":
    main()
