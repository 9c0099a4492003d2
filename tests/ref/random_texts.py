#!/usr/bin/env python3
"""random_texts.py SEED N: N random lines for tokenizer parity tests.

Each line (0-300 code points) mixes words of many scripts, English words that
WordPiece splits, ASCII and Unicode punctuation, odd spaces and separators,
emoji sequences, combining marks, special tokens, long words and random code
points.  Every character is assigned in this Python's unicodedata (category
!= 'Cn'), and there are no surrogates, '\\n' or '\\r'.  Output is UTF-8, one
line each; the same SEED and N give the same bytes (on the same Python /
Unicode version).
"""
import random
import sys
import unicodedata

WORDS = {
    "en": "the quick brown fox jumps over lazy dog unaffable tokenization "
          "running wanted internationalization Hello World HTTP JSON NASA "
          "don't it's we're I'm O'Neill e-mail co-operate 3.14 1,000,000 "
          "v2.0 x86_64 README.md snake_case camelCase ALLCAPS McDonald's "
          "antidisestablishmentarianism pneumonoultramicroscopic".split(),
    "fr": "naïve café résumé élève Noël garçon où cœur œuvre Ça déjà".split(),
    "de": "straße Straße STRASSE Größe Äpfel über Übermut Fußgänger".split(),
    "tr": "İstanbul ılık IŞIK iğne Ağaç şeker DİYARBAKIR".split(),
    "el": "ΟΔΟΣ Σίσυφος ΣΊΣΥΦΟΣ οδός λόγος ΑΘΗΝΑ Ἀθῆναι ᾅδης".split(),
    "ru": "Привет мир ЁЛКА ёжик Москва съешь щи".split(),
    "ar": "مرحبا العالم كِتَابٌ اللغة العربية ١٢٣".split(),
    "he": "שָׁלוֹם עוֹלָם עברית ירושלים".split(),
    "hi": "नमस्ते हिन्दी क़िला भारत संस्कृतम् ०१२".split(),
    "th": "สวัสดี ภาษาไทย กรุงเทพมหานคร".split(),
    "km": "ភាសាខ្មែរ សួស្តី".split(),
    "ko": ["안녕하세요", "한국어", "\u1112\u1161\u11ab\u1100\u116e\u11a8",
           "ㄱㄴㄷ", "서울"],
    "ja": "こんにちは カタカナ 東京タワー ひらがな 日本語 ｶﾀｶﾅ 〜".split(),
    "zh": "北京欢迎你 中華民國 汉字 漢字 學習 𠀀𠀁 𪚥 龘".split(),
    "misc": "ＡＢＣ１２３ ﬁne ﬂour x² H₂O Ⅻ ½ ㎏ ℃ № ™ ©2024 ∑∫≤≥ €£¥₹ "
            "┌─┐ ⠓⠑⠇⠇⠕ 𝄞𝄢 𐌀𐌁𐌂 ᚠᚢᚦ Ⓐ 𝐀𝐁 ＠＃".split(),
}
PUNCT = list("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~") + list(
    "«»„“”‘’‚‹›—–…¿¡‽・。、「」『』【】〈〉《》·•†‡§¶′″※⁂؟،।॥჻፧")
SPACES = [" ", " ", " ", "  ", "\t", "\u00a0", "\u3000", "\u2028", "\u2029",
          "\u2003", "\u202f", "\u200b", "\u200c", "\u200d", "\ufeff",
          "\u00ad", "\x0b", "\x0c", "\x1c", "\x1f", "\x85", "\x01", "\x7f",
          "\x00", "\ufffd", "\u2060", "\u180e", "\u061c", "\u200e"]
EMOJI = ["😀", "👍", "👍🏽", "👨\u200d👩\u200d👧", "🇫🇷", "🇯🇵", "1\ufe0f\u20e3",
         "❤\ufe0f", "❤", "🏳\ufe0f\u200d🌈", "🧑🏿\u200d💻", "☺\ufe0e",
         "🏴\U000e0067\U000e0062\U000e0073\U000e0063\U000e0074\U000e007f"]
MARKS = ["\u0301", "\u0300", "\u0308", "\u0323", "\u0302", "\u030c",
         "\u0327", "\u0345", "\u05b8", "\u093c", "\u0e31", "\u20e3",
         "\ufe0f", "\u0340", "\u1ab0", "\U0001d165"]
SPECIALS = ["[CLS]", "[SEP]", "[MASK]", "[PAD]", "[UNK]", "[mask]", "[Mask]",
            "[MASK", "MASK]", "[[SEP]]", "[SEP]x", "x[CLS]"]
SYLLABLES = "un re pre anti dis over under in ter na tion al ing ed er est "\
            "ly ness ment able ible ful less ize ise ous ive ity".split()


def assigned_pool():
    pool = []
    for cp in range(0x110000):
        if 0xD800 <= cp <= 0xDFFF or cp in (0x0A, 0x0D):
            continue
        if unicodedata.category(chr(cp)) != "Cn":
            pool.append(chr(cp))
    return pool


def main(argv):
    if len(argv) != 3:
        sys.exit("usage: random_texts.py SEED N")
    seed, n = int(argv[1]), int(argv[2])
    rng = random.Random(seed)
    pool = assigned_pool()
    bmp = [c for c in pool if ord(c) < 0x10000]
    low = [c for c in pool if ord(c) < 0x3000]
    scripts = sorted(WORDS)

    def word():
        return rng.choice(WORDS[rng.choice(scripts)])

    def piece():
        r = rng.random()
        if r < 0.30:
            w = word()
            k = rng.random()
            if k < 0.15:
                w = w.upper()
            elif k < 0.25:
                w = w.capitalize()
            return w
        if r < 0.40:
            return "".join(rng.choice(SYLLABLES)
                           for _ in range(rng.randint(1, 5)))
        if r < 0.52:
            return rng.choice(PUNCT) * rng.choice((1, 1, 1, 2, 3, 7))
        if r < 0.68:
            return rng.choice(SPACES)
        if r < 0.74:
            return rng.choice(EMOJI)
        if r < 0.78:
            return rng.choice("aeiouAEIOUnyzαω") + rng.choice(MARKS)
        if r < 0.81:
            return rng.choice(SPECIALS)
        if r < 0.83:  # long word, around the 100/200 limits
            L = rng.choice((98, 99, 100, 101, 102, 150, 199, 200, 201))
            alpha = rng.choice(("ab", "é", "e\u0301", "xyz", "한", "😀", "ñ"))
            return (alpha * L)[:L]
        if r < 0.86:
            return str(rng.randint(0, 10 ** rng.randint(1, 12)))
        if r < 0.92:
            return "".join(rng.choice(low) for _ in range(rng.randint(1, 4)))
        if r < 0.96:
            return "".join(rng.choice(bmp) for _ in range(rng.randint(1, 4)))
        return "".join(rng.choice(pool) for _ in range(rng.randint(1, 4)))

    out = []
    for _ in range(n):
        r = rng.random()
        if r < 0.03:
            target = 0
        elif r < 0.5:
            target = rng.randint(1, 40)
        elif r < 0.85:
            target = rng.randint(40, 150)
        else:
            target = rng.randint(150, 300)
        parts = []
        length = 0
        while length < target:
            p = piece()
            if rng.random() < 0.5 and not p.isspace():
                p += " "
            parts.append(p)
            length += len(p)
        line = "".join(parts)[:target]
        out.append(line)
    sys.stdout.buffer.write("".join(s + "\n" for s in out).encode("utf-8"))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
