#!/usr/bin/env python3
"""bert_ref.py: reference model of Hugging Face transformers' slow BertTokenizer.

Written from the documented behaviour of transformers 4.40 (BertTokenizer =
PreTrainedTokenizer.tokenize + BasicTokenizer + WordpieceTokenizer), standard
library only.  Results depend on the Unicode database of the Python running it
(/usr/bin/python3 3.11: Unicode 14.0), exactly as transformers' do.

Usage:
  bert_ref.py VOCAB {uncased|cased} {ids|tokens|basic} [--strip-accents none|true|false]
              [--max-chars N] < lines
  bert_ref.py VOCAB {uncased|cased} decode < lines of space-separated ids
  bert_ref.py DIR hf {ids|tokens|basic|decode} < lines

--strip-accents is transformers' strip_accents (default none: accents are
stripped exactly when uncased; false: uncased only lowercases; true: cased
strips too).  "DIR hf" reads a Hugging Face tokenizer folder as
AutoTokenizer does for a BertTokenizer: DIR/vocab.txt, and do_lower_case
(default true) and strip_accents (default null) from
DIR/tokenizer_config.json when present.

Input is read as bytes and split on b'\\n' only (a final line without '\\n'
counts, a final '\\n' does not start another line); each line is decoded as
UTF-8 with errors='replace' (the U+FFFD that this makes are then dropped by the
cleaning step).  A '\\r' is kept (cleaning maps it to a space).  One output line
per input line: space-separated ids, pieces, or (debug mode "basic") the
BasicTokenizer words; an input line without tokens prints an empty line.

Pipeline, per line (see also the notes at the end of this file):
  1. uncased only: every char not inside a literal special token is lowercased
     ONE CHARACTER AT A TIME (transformers uses re.sub with "(SPECIALS)|(.+?)",
     and the lazy ".+?" matches a single char; "." skips '\\n').  So there is no
     final-sigma context: 'ΟΔΟΣ' -> 'οδοσ', not 'οδος'.
  2. split around the literal special tokens [PAD] [UNK] [CLS] [SEP] [MASK]
     (case-sensitive, no stripping of neighbouring spaces); each one is output
     as itself, the pieces between go through steps 3-4.
  3. BasicTokenizer: clean (drop NUL, U+FFFD, category C* except \\t\\n\\r;
     \\t\\n\\r and Zs -> ' '), space around CJK ideographs, NFC, str.split(),
     per word (unless the word is a special token): lower() (uncased), NFD +
     drop Mn (uncased unless strip_accents is false; cased if it is true),
     split on punctuation, str.split() again.
  4. WordpieceTokenizer: per word, len > max_chars -> [UNK]; else greedy
     longest-match-first, '##' continuation, any dead end -> the whole word is
     [UNK].
"""
import sys
import unicodedata

USAGE = ("usage: bert_ref.py VOCAB {uncased|cased} {ids|tokens|basic} "
         "[--strip-accents none|true|false] [--max-chars N] < lines\n"
         "       bert_ref.py VOCAB {uncased|cased} decode < lines of ids\n"
         "       bert_ref.py DIR hf {ids|tokens|basic|decode} < lines")
SPECIAL_TOKENS = ("[UNK]", "[SEP]", "[PAD]", "[CLS]", "[MASK]")
UNK = "[UNK]"


# ---------------------------------------------------------------- char classes
def is_whitespace(ch):
    if ch in (" ", "\t", "\n", "\r"):
        return True
    return unicodedata.category(ch) == "Zs"


def is_control(ch):
    if ch in ("\t", "\n", "\r"):
        return False
    return unicodedata.category(ch).startswith("C")


def is_punctuation(ch):
    cp = ord(ch)
    if 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126:
        return True
    return unicodedata.category(ch).startswith("P")


def is_cjk(cp):
    return (0x4E00 <= cp <= 0x9FFF or 0x3400 <= cp <= 0x4DBF
            or 0x20000 <= cp <= 0x2A6DF or 0x2A700 <= cp <= 0x2B73F
            or 0x2B740 <= cp <= 0x2B81F or 0x2B820 <= cp <= 0x2CEAF
            or 0xF900 <= cp <= 0xFAFF or 0x2F800 <= cp <= 0x2FA1F)


# ----------------------------------------------------------- basic tokenizer
class BasicTokenizer:
    def __init__(self, lower, never_split=SPECIAL_TOKENS, strip_accents=None):
        self.lower = lower
        self.strip = strip_accents  # transformers' strip_accents: None, True, False
        self.never_split = frozenset(never_split)
        self._cache = {}  # char -> what cleaning + CJK spacing make of it

    def _map_char(self, ch):
        r = self._cache.get(ch)
        if r is None:
            cp = ord(ch)
            if cp == 0 or cp == 0xFFFD or is_control(ch):
                r = ""
            elif is_whitespace(ch):
                r = " "
            elif is_cjk(cp):
                r = " " + ch + " "
            else:
                r = ch
            self._cache[ch] = r
        return r

    @staticmethod
    def strip_accents(word):
        return "".join(c for c in unicodedata.normalize("NFD", word)
                       if unicodedata.category(c) != "Mn")

    @staticmethod
    def split_on_punc(word):
        out = []
        cur = None
        for ch in word:
            if is_punctuation(ch):
                out.append(ch)
                cur = None
            else:
                if cur is None:
                    out.append("")
                    cur = len(out) - 1
                out[cur] += ch
        return out

    def tokenize(self, text):
        # (1) clean + (2) CJK spacing: both are per-character maps
        text = "".join(map(self._map_char, text))
        # (3) NFC, (4) split on Python whitespace (str.isspace: also U+2028,
        # U+2029, and the C0/C1 separators, which cleaning already dropped)
        text = unicodedata.normalize("NFC", text)
        pieces = []
        for word in text.split():
            if word not in self.never_split:
                if self.lower:
                    word = word.lower()
                    if self.strip is not False:
                        word = self.strip_accents(word)
                elif self.strip:
                    word = self.strip_accents(word)
                pieces.extend(self.split_on_punc(word))
            else:
                pieces.append(word)
        # (7) join and split again: drops the empty strings that accent
        # stripping can leave (a word made only of Mn marks)
        return " ".join(pieces).split()


# ------------------------------------------------------- wordpiece tokenizer
class WordpieceTokenizer:
    def __init__(self, vocab, max_chars=100):
        self.vocab = vocab
        self.max_chars = max_chars
        self.max_len = max((len(t) for t in vocab), default=1)  # speed only
        self._cache = {}

    def tokenize_word(self, word):
        r = self._cache.get(word)
        if r is not None:
            return r
        n = len(word)  # code points
        if n > self.max_chars:
            r = [UNK]
        else:
            r = []
            start = 0
            while start < n:
                end = min(n, start + self.max_len)  # longer can't be in vocab
                found = None
                while start < end:
                    sub = word[start:end]
                    if start > 0:
                        sub = "##" + sub
                    if sub in self.vocab:
                        found = sub
                        break
                    end -= 1
                if found is None:
                    r = [UNK]
                    break
                r.append(found)
                start = end
        if len(self._cache) < 200000:
            self._cache[word] = r
        return r


# ------------------------------------------------------------ whole tokenizer
def load_vocab(path):
    """vocab.txt: line i (without its trailing newline) is token i.

    transformers opens it in text mode (universal newlines) and keeps the last
    id of a duplicated token; the bundled BERT vocabularies have neither '\\r'
    nor duplicates."""
    vocab = {}
    with open(path, "r", encoding="utf-8") as f:
        for i, line in enumerate(f):
            vocab[line.rstrip("\n")] = i
    return vocab


class BertRef:
    def __init__(self, vocab_path, lower, max_chars=100, strip_accents=None):
        self.vocab = load_vocab(vocab_path)
        self.ids_to_tokens = {i: t for t, i in self.vocab.items()}
        self.lower = lower
        self.basic = BasicTokenizer(lower, strip_accents=strip_accents)
        self.wordpiece = WordpieceTokenizer(self.vocab, max_chars)
        self._lower_cache = {}

    def _split_specials(self, text):
        """[(is_special, str)] in order, splitting around literal special
        tokens (leftmost match; the five cannot overlap one another)."""
        out = []
        i = 0
        n = len(text)
        last = 0
        while i < n:
            if text[i] == "[":
                for s in SPECIAL_TOKENS:
                    if text.startswith(s, i):
                        if last < i:
                            out.append((False, text[last:i]))
                        out.append((True, s))
                        i += len(s)
                        last = i
                        break
                else:
                    i += 1
            else:
                i += 1
        if last < n:
            out.append((False, text[last:]))
        return out

    def _lower_chars(self, s):
        # transformers: re.sub(r"(SPECIALS)|(.+?)", ...) lowercases one char at
        # a time ('.' does not match '\n', whose lower() is itself anyway)
        c = self._lower_cache
        out = []
        for ch in s:
            r = c.get(ch)
            if r is None:
                r = ch if ch == "\n" else ch.lower()
                c[ch] = r
            out.append(r)
        return "".join(out)

    def basic_tokens(self, text):
        out = []
        for special, part in self._split_specials(text):
            if special:
                out.append(part)
            else:
                if self.lower:
                    part = self._lower_chars(part)
                out.extend(self.basic.tokenize(part))
        return out

    def tokenize(self, text):
        out = []
        for special, part in self._split_specials(text):
            if special:
                out.append(part)
                continue
            if self.lower:
                part = self._lower_chars(part)
            for word in self.basic.tokenize(part):
                # BertTokenizer checks basic_tokenizer.never_split here, which
                # is empty by default: a word equal to a special token (e.g.
                # cased "[MA\u200bSK]") goes through WordPiece, which finds it
                # whole in the vocabulary.
                out.extend(self.wordpiece.tokenize_word(word))
        return out

    def convert_tokens_to_ids(self, tokens):
        unk = self.vocab.get(UNK)
        return [self.vocab.get(t, unk) for t in tokens]

    def encode(self, text):
        return self.convert_tokens_to_ids(self.tokenize(text))

    def decode(self, ids):
        tokens = [self.ids_to_tokens.get(int(i), UNK) for i in ids]
        text = " ".join(tokens).replace(" ##", "").strip()
        return clean_up_tokenization(text)


def clean_up_tokenization(s):
    return (s.replace(" .", ".").replace(" ?", "?").replace(" !", "!")
            .replace(" ,", ",").replace(" ' ", "'").replace(" n't", "n't")
            .replace(" 'm", "'m").replace(" 's", "'s").replace(" 've", "'ve")
            .replace(" 're", "'re"))


# ----------------------------------------------------------------------- CLI
def read_lines(stream):
    data = stream.read()
    if not data:
        return []
    lines = data.split(b"\n")
    if data.endswith(b"\n"):
        lines.pop()
    return [ln.decode("utf-8", errors="replace") for ln in lines]


def hf_folder(path):
    """(vocab.txt path, do_lower_case, strip_accents) of a tokenizer folder,
    as transformers' BertTokenizer.from_pretrained reads them."""
    import json
    import os
    lower, strip = True, None
    cfg = os.path.join(path, "tokenizer_config.json")
    if os.path.exists(cfg):
        with open(cfg, encoding="utf-8") as f:
            c = json.load(f)
        cls = c.get("tokenizer_class", "BertTokenizer")
        if cls not in ("BertTokenizer", "BertTokenizerFast"):
            sys.exit(f"bert_ref.py: {cfg}: tokenizer_class {cls!r} is not BERT's")
        if not c.get("tokenize_chinese_chars", True):
            sys.exit(f"bert_ref.py: {cfg}: tokenize_chinese_chars false is not modelled")
        lower = c.get("do_lower_case", True)
        strip = c.get("strip_accents", None)
        if not isinstance(lower, bool) or strip not in (None, True, False):
            sys.exit(f"bert_ref.py: {cfg}: bad do_lower_case or strip_accents")
    return os.path.join(path, "vocab.txt"), lower, strip


def main(argv):
    args = list(argv[1:])
    max_chars = 100
    strip = None
    if "--max-chars" in args:
        k = args.index("--max-chars")
        try:
            max_chars = int(args[k + 1])
        except (IndexError, ValueError):
            sys.exit("bert_ref.py: --max-chars needs an integer")
        del args[k:k + 2]
    if "--strip-accents" in args:
        k = args.index("--strip-accents")
        values = {"none": None, "true": True, "false": False}
        if k + 1 >= len(args) or args[k + 1] not in values:
            sys.exit("bert_ref.py: --strip-accents none|true|false")
        strip = values[args[k + 1]]
        del args[k:k + 2]
    if (len(args) != 3 or args[1] not in ("uncased", "cased", "hf")
            or args[2] not in ("ids", "tokens", "basic", "decode")):
        sys.exit(USAGE)
    vocab_path, mode, what = args
    if mode == "hf":
        vocab_path, lower, strip = hf_folder(vocab_path)
    else:
        lower = mode == "uncased"
    tok = BertRef(vocab_path, lower, max_chars, strip)
    out = []
    for n, line in enumerate(read_lines(sys.stdin.buffer), 1):
        if what == "ids":
            out.append(" ".join(map(str, tok.encode(line))))
        elif what == "tokens":
            out.append(" ".join(tok.tokenize(line)))
        elif what == "basic":
            out.append(" ".join(tok.basic_tokens(line)))
        else:
            try:
                out.append(tok.decode(line.split()))
            except ValueError:
                sys.exit(f"bert_ref.py: line {n}: not a list of ids: {line!r}")
    sys.stdout.buffer.write("".join(s + "\n" for s in out).encode("utf-8"))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

# Notes for a re-implementation (all checked against this file):
# - Unicode data: categories, lower(), NFC/NFD must be Unicode 14.0 (Python
#   3.11).  Unassigned code points (Cn) and private use (Co) are dropped as
#   "control" characters.
# - Lowercase = Python's full lowercase mapping of single chars: simple
#   mapping except U+0130 'İ' -> 'i' + U+0307; no final-sigma rule (see 1.).
# - NFC needs canonical reordering, Hangul composition, composition
#   exclusions and singletons (U+212A KELVIN -> 'K', U+037E -> ';',
#   U+1FEF -> '`' which then counts as punctuation, CJK compatibility
#   ideographs -> unified ones).  NFD of the lowercased word includes the
#   algorithmic Hangul decomposition (syllables become conjoining jamo, Lo,
#   which are kept).
# - The word length limit counts code points of the word after lowercasing,
#   accent stripping and punctuation splitting, not of the input.
