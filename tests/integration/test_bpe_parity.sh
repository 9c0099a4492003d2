#!/usr/bin/env bash
# test_bpe_parity.sh: GPT-2's byte-level BPE (text/bpe.c, docs/tokenizer.md):
# kiln vocab import --bpe of OpenAI's files (examples/vocab/gpt2) and of a
# Hugging Face folder; the ids of kiln encode against the reference encoder
# (tests/ref/gpt2_bpe.py: encoder.py's algorithm on the `regex` module) on
# ~4,300 texts (the repository's corpora in English, Japanese and Korean,
# Wikipedia markup, edge cases of the pattern, random strings, ill-formed
# UTF-8); decode gives the exact bytes back; kiln tokenize of the Wikipedia
# sample gives the reference's ids for every document; export --hf writes the
# files byte-exact; bad files are refused with the file and the line named;
# what does not take a BPE vocabulary yet says so.
source "$(dirname "$0")/lib.sh"
G="$ROOT/examples/vocab/gpt2"
REF="$ROOT/tests/ref/gpt2_bpe.py"

expect_exit 0 "import OpenAI's encoder.json + vocab.bpe" "$KILN" vocab import --bpe --json "$G/encoder.json" "$G/vocab.bpe"
check "name from the folder, 50257 tokens, 50000 merges" $PY -c "
import json,sys; d=json.load(open('out.txt')); sys.exit(0 if (d['name'], d['kind'], d['size'], d['merges'], d['endoftext']) == ('gpt2', 'bpe', 50257, 50000, True) else 1)"
expect_exit 0 "the same files again: nothing to do" "$KILN" vocab import --bpe "$G/encoder.json" "$G/vocab.bpe"
grep_err "already imported" "said so"
expect_exit 0 "vocab list --json" "$KILN" vocab list --json
check "listed as kind bpe" grep -q '"kind": "bpe"' out.txt

# --- parity of the ids with the reference, and exact decoding
$PY "$ROOT/tests/ref/bpe_texts.py" "$ROOT" > texts.jsonl
check "texts generated" [ "$(wc -l < texts.jsonl)" -gt 4000 ]
# records without NUL go NUL-separated (they may hold newlines); those with a
# NUL go one a line (the generator puts no newline in them)
$PY - <<'PYEOF'
import json
z = open('in.z', 'wb'); l = open('in.l', 'wb'); oz = open('order.z.jsonl', 'w'); ol = open('order.l.jsonl', 'w')
for line in open('texts.jsonl'):
    b = bytes(json.loads(line))
    if 0 in b:
        assert b'\n' not in b
        l.write(b + b'\n'); ol.write(line)
    else:
        z.write(b + b'\0'); oz.write(line)
PYEOF
$PY "$REF" --bytes "$G/encoder.json" "$G/vocab.bpe" < order.z.jsonl > ref.z.json
$PY "$REF" --bytes "$G/encoder.json" "$G/vocab.bpe" < order.l.jsonl > ref.l.json
expect_exit 0 "encode --null (2 threads)" "$KILN" encode --null --threads 2 < in.z
mv out.txt got.z.txt
expect_exit 0 "encode lines" "$KILN" encode --vocab gpt2 < in.l
mv out.txt got.l.txt
cat > cmp.py <<'PYEOF'
import json, sys
ref = [json.loads(l) for l in open(sys.argv[1])]
got = [[int(x) for x in l.split()] for l in open(sys.argv[2])]
bad = [i for i, (a, b) in enumerate(zip(ref, got)) if a != b]
n = sum(len(r) for r in ref)
print(f"{len(ref)} texts, {n} ids, {len(bad)} differ", file=sys.stderr)
for i in bad[:3]:
    print(f"  text {i}: reference {ref[i][:20]}... kiln {got[i][:20]}...", file=sys.stderr)
sys.exit(0 if len(ref) == len(got) and not bad and n > 0 else 1)
PYEOF
check "the reference's ids on every NUL-separated text" $PY cmp.py ref.z.json got.z.txt
check "the reference's ids on every line" $PY cmp.py ref.l.json got.l.txt
expect_exit 0 "encode with the files (--vocab-file --merges), one thread" "$KILN" encode --null --threads 1 --vocab-file "$G/encoder.json" --merges "$G/vocab.bpe" < in.z
check "same ids from the files as from the store" cmp -s out.txt got.z.txt
expect_exit 0 "decode --null" "$KILN" decode --null < got.z.txt
mv out.txt dec.z
check "decode gives the exact bytes back (ill-formed UTF-8 as U+FFFD)" $PY -c "
import sys
src = open('in.z', 'rb').read().split(b'\0')[:-1]
dec = open('dec.z', 'rb').read().split(b'\0')[:-1]
fixed = [s.decode('utf-8', 'replace').encode('utf-8') for s in src]
bad = sum(a != b for a, b in zip(fixed, dec))
exact = sum(a == b for a, b in zip(src, dec))
print(len(src), 'texts,', exact, 'byte-identical,', bad, 'differ', file=sys.stderr)
sys.exit(0 if len(src) == len(dec) and bad == 0 else 1)"
expect_exit 0 "encode --tokens" "$KILN" encode --tokens "Hello world, it's"
check "tokens as the vocabulary writes them" [ "$(cat out.txt)" = "Hello Ġworld , Ġit 's" ]
expect_exit 0 "encode a known text" "$KILN" encode "Hello world<|endoftext|>"
check "GPT-2's ids (15496 995 50256)" [ "$(cat out.txt)" = "15496 995 50256" ]

# --- kiln tokenize: every stored document as the reference encodes its
# sentences joined by spaces
expect_exit 0 "ingest" "$KILN" ingest -q "$DATA/enwiki-sample.xml.bz2"
expect_exit 0 "tokenize with the BPE vocabulary" "$KILN" tokenize --json
check "no unknown tokens in BPE" [ "$(json unk)" = 0 ]
check "every document's ids are the reference's" $PY - "$KILN_DB" "$REF" "$G" <<'PYEOF'
import importlib.util, sqlite3, struct, sys
spec = importlib.util.spec_from_file_location('ref', sys.argv[2]); ref = importlib.util.module_from_spec(spec); spec.loader.exec_module(ref)
enc = ref.Encoder(sys.argv[3] + '/encoder.json', sys.argv[3] + '/vocab.bpe')
db = sqlite3.connect(sys.argv[1])
n = bad = ntok = 0
for text, layout, nt, toks, ends in db.execute(
        "SELECT d.text, t.layout, t.n_tokens, t.tokens, t.sent_ends FROM documents d JOIN doc_tokens t ON t.doc_id = d.id "
        "JOIN vocabularies v ON v.id = t.vocab_id WHERE v.name = 'gpt2'"):
    ids = list(struct.unpack('<%d%s' % (nt, 'H' if layout == 1 else 'I'), toks))
    want = []
    ends_want = []
    for k, s in enumerate(text.split('\n')):
        want += enc.encode(s if k == 0 else ' ' + s)
        ends_want.append(len(want))
    got_ends = list(struct.unpack('<%dI' % (len(ends) // 4), ends))
    n += 1; ntok += nt
    bad += ids != enc.encode(text.replace('\n', ' ')) or ids != want or got_ends != ends_want
print(n, 'documents,', ntok, 'tokens,', bad, 'differ', file=sys.stderr)
sys.exit(0 if n > 100 and bad == 0 else 1)
PYEOF
check "integrity" integrity

# --- a Hugging Face folder out and back
expect_exit 0 "vocab export --hf" "$KILN" vocab export --hf hf
check "merges.txt: vocab.bpe's merges" cmp -s <(tail -n +2 hf/merges.txt) <(tail -n +2 "$G/vocab.bpe")
check "merges.txt starts with #version: 0.2" [ "$(head -1 hf/merges.txt)" = "#version: 0.2" ]
check "vocab.json: encoder.json's tokens and ids" $PY -c "
import json,sys; sys.exit(0 if json.load(open('hf/vocab.json')) == json.load(open('$G/encoder.json')) else 1)"
check "tokenizer_config.json: GPT2Tokenizer, <|endoftext|>" $PY -c "
import json,sys; d=json.load(open('hf/tokenizer_config.json')); m=json.load(open('hf/special_tokens_map.json'))
sys.exit(0 if d['tokenizer_class'] == 'GPT2Tokenizer' and d['eos_token'] == '<|endoftext|>' and m['bos_token'] == '<|endoftext|>' else 1)"
expect_exit 73 "export --hf again: refused without --force" "$KILN" vocab export --hf hf
expect_exit 0 "import the folder under another name" "$KILN" vocab import --bpe hf --name fromhf
grep_err "same tokens and merges" "noticed it is the same vocabulary"
expect_exit 64 "plain export of a BPE vocabulary points to --hf" "$KILN" vocab export --name gpt2 -
grep_err "export --hf" "the message says what to do"

# --- bad files: named, exit 65
printf '{"a": 0, "b": 1}' > small.json
expect_exit 65 "a vocabulary without the 256 bytes" "$KILN" vocab import --bpe small.json "$G/vocab.bpe"
grep_err "small.json: .*no token for the byte 0x00" "names the file and the byte"
head -n 100 "$G/vocab.bpe" > cut.bpe; printf 'Ġt\n' >> cut.bpe
expect_exit 65 "a merges line with one token" "$KILN" vocab import --bpe "$G/encoder.json" cut.bpe
grep_err "cut.bpe: merges, line [0-9]+: expected two tokens" "names the file and the line"
printf '#version: 0.2\nĠ zzzqqq\n' > unknown.bpe
expect_exit 65 "a merge of an unknown token" "$KILN" vocab import --bpe "$G/encoder.json" unknown.bpe
grep_err "unknown.bpe: merges, line 2: \"zzzqqq\" is not in the vocabulary" "names the token"
head -c 5000 "$G/encoder.json" > trunc.json
expect_exit 65 "a truncated vocab JSON" "$KILN" vocab import --bpe trunc.json "$G/vocab.bpe"
grep_err "trunc.json: vocab JSON, line 1" "names the file and the place"
expect_exit 66 "a folder without the files" "$KILN" vocab import --bpe "$WORK"
mkdir -p oai && cp "$G/encoder.json" "$G/vocab.bpe" oai/
expect_exit 0 "a folder with OpenAI's names (encoder.json + vocab.bpe)" "$KILN" vocab import --bpe oai --name fromoai
grep_err "same tokens and merges" "the same vocabulary as the files given one by one"
expect_exit 0 "decode ids given as arguments" "$KILN" decode --vocab gpt2 15496 995 50256
check "decode: the exact text of the ids (<|endoftext|> included)" [ "$(cat out.txt)" = "Hello world<|endoftext|>" ]
expect_exit 0 "encode as the docs say" "$KILN" encode --vocab gpt2 "Hello world"
check "encode: 15496 995" [ "$(cat out.txt)" = "15496 995" ]
expect_exit 65 "decode: an id outside the vocabulary refused" "$KILN" decode --vocab gpt2 15496 50257
grep_err "50257" "the message names the id"
expect_exit 64 "--bpe with --cased" "$KILN" vocab import --bpe --cased hf
expect_exit 64 "--merges without --vocab-file" "$KILN" encode --merges "$G/vocab.bpe" x

# --- what takes WordPiece only says so
expect_exit 78 "kiln sample mlm with a BPE vocabulary (no [MASK]): refused, said" "$KILN" sample --objective mlm --count 1
grep_err "byte-level BPE" "the message names the kind"
finish
