#!/usr/bin/env python3
"""Write the hand-built tokenizer.json fixtures of tests/test_tokenizer.c into
tests/fixtures/tokenizers/hand/ (Python standard library only; no tokenizer library is
used: the expected ids are derived by hand in the test's comments).

  llama2_like.json     Llama-2 HF layout: Prepend("▁") + Replace(" ", "▁") normalizer, no
                       pre-tokenizer, byte_fallback, fuse_unk, "a b" merges, template "<s> $A",
                       decoder Replace/ByteFallback/Fuse/Strip.
  metaspace_like.json  same vocabulary, Metaspace(prepend_scheme="first", split) instead.
  llama3_like.json     Split(cl100k regex) + ByteLevel(use_regex=false), ignore_merges,
                       ["a","b"] merges, Sequence[ByteLevel, TemplateProcessing] post-processor.
"""
import json
import os

OUT = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "tokenizers", "hand")
M = "\u2581"
G = "\u0120"
CL100K = ("(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*"
          "|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+")


def added(content, i):
    return {"id": i, "content": content, "single_word": False, "lstrip": False, "rstrip": False,
            "normalized": False, "special": True}


def template(tok, i):
    return {"type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": tok, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
            "pair": [], "special_tokens": {tok: {"id": tok, "ids": [i], "tokens": [tok]}}}


def llama2_like():
    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2, "<0x0A>": 3, "<0xC3>": 4, "<0xA9>": 5, M: 6, "h": 7, "e": 8,
             "l": 9, "o": 10, "w": 11, "r": 12, "d": 13, M + "h": 14, "ll": 15, "ell": 16, M + "hell": 17,
             M + "hello": 18, M + "w": 19, "or": 20, M + "wor": 21}
    merges = [M + " h", "l l", "e ll", M + "h ell", M + "hell o", M + " w", "o r", M + "w or"]
    return {"version": "1.0", "truncation": None, "padding": None,
            "added_tokens": [added(c, i) for c, i in (("<unk>", 0), ("<s>", 1), ("</s>", 2))],
            "normalizer": {"type": "Sequence", "normalizers": [
                {"type": "Prepend", "prepend": M},
                {"type": "Replace", "pattern": {"String": " "}, "content": M}]},
            "pre_tokenizer": None,
            "post_processor": template("<s>", 1),
            "decoder": {"type": "Sequence", "decoders": [
                {"type": "Replace", "pattern": {"String": M}, "content": " "},
                {"type": "ByteFallback"}, {"type": "Fuse"},
                {"type": "Strip", "content": " ", "start": 1, "stop": 0}]},
            "model": {"type": "BPE", "dropout": None, "unk_token": "<unk>", "continuing_subword_prefix": None,
                      "end_of_word_suffix": None, "fuse_unk": True, "byte_fallback": True,
                      "vocab": vocab, "merges": merges}}


def metaspace_like():
    t = llama2_like()
    ms = {"type": "Metaspace", "replacement": M, "prepend_scheme": "first", "split": True}
    t["normalizer"] = None
    t["pre_tokenizer"] = ms
    t["decoder"] = {"type": "Sequence", "decoders": [ms, {"type": "ByteFallback"}, {"type": "Fuse"}]}
    return t


def llama3_like():
    # id 9 is deliberately left out: vocabularies may have gaps
    vocab = {"H": 0, "e": 1, "l": 2, "o": 3, "h": 4, G: 5, "ll": 6, "Hello": 7, G + "h": 8, "ell": 10,
             G + "hell": 11, "<|begin_of_text|>": 12, "1": 13, "2": 14, "3": 15, "4": 16, "5": 17, "123": 18}
    merges = [["l", "l"], [G, "h"], ["e", "ll"], [G + "h", "ell"]]
    return {"version": "1.0", "truncation": None, "padding": None,
            "added_tokens": [added("<|begin_of_text|>", 12)],
            "normalizer": None,
            "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
                {"type": "Split", "pattern": {"Regex": CL100K}, "behavior": "Isolated", "invert": False},
                {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False}]},
            "post_processor": {"type": "Sequence", "processors": [
                {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": False, "use_regex": True},
                template("<|begin_of_text|>", 12)]},
            "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
            "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
                      "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False,
                      "ignore_merges": True, "vocab": vocab, "merges": merges}}


if __name__ == "__main__":
    os.makedirs(OUT, exist_ok=True)
    for name, t in (("llama2_like", llama2_like()), ("metaspace_like", metaspace_like()),
                    ("llama3_like", llama3_like())):
        with open(os.path.join(OUT, name + ".json"), "w", encoding="utf-8") as f:
            json.dump(t, f, ensure_ascii=False, indent=1)
