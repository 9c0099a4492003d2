#!/usr/bin/env python3
"""bpe_texts.py: texts for the GPT-2 tokenizer parity test (test_bpe.sh), one
JSON list of byte values a line on standard output.

  bpe_texts.py REPO_ROOT [SEED]

Lines of the repository's real corpora (lee_background, the UDHR excerpts in
Japanese and Korean, slices of the Wikipedia sample with its markup), hand-made
edge cases of GPT-2's pattern (contractions, whitespace runs before words and
at the end, the 25 White_Space characters, numbers of several scripts, emoji
sequences, combining marks, controls, "<|endoftext|>" in and around words),
random strings over a pool of those, and copies with random bytes changed
(ill-formed UTF-8). Deterministic for a seed."""
import bz2
import json
import random
import sys

root = sys.argv[1]
rnd = random.Random(int(sys.argv[2]) if len(sys.argv) > 2 else 7)
data = root + '/examples/data/'
texts = []
for name in ['lee_background.txt', 'udhr-ja.txt', 'udhr-ko.txt']:
    with open(data + name, encoding='utf-8') as f:
        texts.extend(f)
wiki = bz2.open(data + 'enwiki-sample.xml.bz2').read().decode('utf-8')
for i in range(0, min(len(wiki), 400000), 1000):
    texts.append(wiki[i:i + rnd.randint(1, 1500)])
texts += [
    "Hello world", "I'm here, you're there, they've gone; we'll see. He'd say 'sup",
    "DON'T 'S 'T 'Re 're've'm'll'd", "  leading", "trailing   ", "a  b   c    d",
    "\t\ttab\n\nnew\r\nline \n ", "x\u00a0y\u2003z\u3000w\u1680v\u205fu\u202ft", "1234567 89,000.5 ٣٤٥ Ⅻ ½ ²",
    "emoji 😀👍🏽 family 👨\u200d👩\u200d👧 flags 🇫🇷", "Ünïcödé café naïve e\u0301", "中文字符 日本語 テキスト 한국어 텍스트",
    "Привет мир Ελληνικά עברית العربية हिन्दी ไทย", "<|endoftext|>",
    "a<|endoftext|>b <|endoftext|> c<|endoftext|><|endoftext|>", "<|endoftext", "<|endoftext|",
    "\x1c\x1d\x1e\x1f sep", "\x00\x01 nul \x7f", "\u2028line\u2029para\x85nel", "   ", "", " ", "'",
    "''s", "!!!???...", " !!! ", "zero\u200bwidth", "\ufeffbom", "  \n  x", " \u00a0x", "x \t",
]
ws = [9, 10, 11, 12, 13, 32, 0x85, 0xa0, 0x1680] + list(range(0x2000, 0x200b)) + [0x2028, 0x2029, 0x202f, 0x205f, 0x3000]
texts += [' ' + chr(c) + 'x' + chr(c) + chr(c) + 'y ' + chr(c) for c in ws]
pool = list("abc XYZ 019 .,;'\"!?-_\t\n\r") + ['\u00a0', '\u3000', '😀', 'é', '中', 'ж', '٣', '\u0301',
                                               '\u200d', '\x85', "'s", "'ll", ' ', '  ', '<|endoftext|>']
for _ in range(3000):
    texts.append(''.join(rnd.choice(pool) for _ in range(rnd.randint(0, 40))))
out = [list(t.encode('utf-8')) for t in texts]
for _ in range(500):
    b = bytearray(rnd.choice(texts[:300]).encode('utf-8')[:200])
    for _ in range(rnd.randint(1, 4)):
        if b:
            b[rnd.randrange(len(b))] = rnd.randrange(256)
    out.append(list(b))
out.append([0xff, 0xfe, 0x41, 0xed, 0xa0, 0x80, 0xf0, 0x9f, 0x98, 0x20, 0xc3])
out.append(list(('x' * 20000 + ' ' + 'ab' * 5000).encode()))
for b in out:
    print(json.dumps(b))
