#!/usr/bin/env python3
"""gpt2_bpe.py: the reference GPT-2 byte-level BPE encoder for kiln's tests,
written from the algorithm of OpenAI's gpt-2 src/encoder.py (bytes_to_unicode,
the `regex` pattern, bpe() by rounds of the lowest-ranked pair) plus
transformers' GPT2Tokenizer handling of "<|endoftext|>" as a special token.

  gpt2_bpe.py VOCAB_JSON MERGES < texts.jsonl > ids.jsonl

Input: one JSON string per line (the text; may hold "\\udcXX" surrogate
escapes standing for raw bytes, see --bytes). Output: one JSON list of ids a
line. With --bytes each input line is a JSON list of byte values instead,
decoded with errors="replace" first (as kiln repairs ill-formed UTF-8).
Run with /usr/bin/python3 (Debian's python3-regex)."""
import json
import sys

import regex

PAT = regex.compile(r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+""")
EOT = "<|endoftext|>"


def bytes_to_unicode():
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    table, extra = {}, 0
    for b in range(256):
        if b in keep:
            table[b] = chr(b)
        else:
            table[b] = chr(256 + extra)
            extra += 1
    return table


class Encoder:
    def __init__(self, vocab_path, merges_path):
        with open(vocab_path, encoding="utf-8") as f:
            self.encoder = json.load(f)
        with open(merges_path, encoding="utf-8") as f:
            lines = f.read().split("\n")
        if lines and lines[0].startswith("#version"):
            lines = lines[1:]
        merges = [tuple(l.split(" ")) for l in lines if l]
        self.ranks = dict(zip(merges, range(len(merges))))
        self.byte_char = bytes_to_unicode()
        self.cache = {}

    def bpe(self, token):
        if token in self.cache:
            return self.cache[token]
        word = list(token)
        while len(word) > 1:
            pairs = set(zip(word, word[1:]))
            best = min(pairs, key=lambda p: self.ranks.get(p, float("inf")))
            if best not in self.ranks:
                break
            a, b = best
            out, i = [], 0
            while i < len(word):
                if i + 1 < len(word) and word[i] == a and word[i + 1] == b:
                    out.append(a + b)
                    i += 2
                else:
                    out.append(word[i])
                    i += 1
            word = out
        self.cache[token] = word
        return word

    def encode_plain(self, text):
        ids = []
        for tok in PAT.findall(text):
            s = "".join(self.byte_char[b] for b in tok.encode("utf-8"))
            ids.extend(self.encoder[p] for p in self.bpe(s))
        return ids

    def encode(self, text):
        if EOT not in self.encoder:
            return self.encode_plain(text)
        ids = []
        parts = text.split(EOT)
        for k, part in enumerate(parts):
            if k:
                ids.append(self.encoder[EOT])
            ids.extend(self.encode_plain(part))
        return ids


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    raw = "--bytes" in sys.argv
    enc = Encoder(args[0], args[1])
    for line in sys.stdin:
        x = json.loads(line)
        text = bytes(x).decode("utf-8", errors="replace") if raw else x
        print(json.dumps(enc.encode(text)))


if __name__ == "__main__":
    main()
