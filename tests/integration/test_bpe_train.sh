#!/usr/bin/env bash
# test_bpe_train.sh: kiln vocab train --bpe (ingest/vocab_bpe.c,
# docs/tokenizer.md) on the bundled Wikipedia sample: the vocabulary's layout
# (the 256 byte tokens first in GPT-2's order, merged tokens in merge order,
# <|endoftext|> last, --size counted in full); the same bytes for another
# --threads, with and without pruning (--max-words); export --hf, and the
# reference encoder (tests/ref/gpt2_bpe.py) with the exported files gives the
# ids of kiln encode --vocab NAME on ~4,300 texts and on the stored corpus;
# kiln tokenize with it; bad options and a store without documents refused.
source "$(dirname "$0")/lib.sh"
REF="$ROOT/tests/ref/gpt2_bpe.py"

expect_exit 0 "an empty store" env KILN_DB="$WORK/empty.db" "$KILN" init
expect_exit 66 "--bpe on a store without documents is refused" env KILN_DB="$WORK/empty.db" "$KILN" vocab train --bpe --size 1000
grep_err "the store has no documents: ingest a corpus first" "the message says what to do"
check "no vocabulary stored" test "$(sqlite3 "$WORK/empty.db" 'select count(*) from vocabularies')" = 0
expect_exit 0 "ingest the Wikipedia sample" "$KILN" ingest -q "$DATA/enwiki-sample.xml.bz2"

# --- bad options: usage errors, nothing stored
expect_exit 64 "--bpe --size 256: too small" "$KILN" vocab train --bpe --size 256
grep_err "N >= 257" "says the smallest size"
expect_exit 64 "--bpe without --size" "$KILN" vocab train --bpe
grep_err "size is missing" "says --size is missing"
expect_exit 64 "--bpe --cased" "$KILN" vocab train --bpe --size 1000 --cased
expect_exit 64 "--bpe --no-strip-accents" "$KILN" vocab train --bpe --size 1000 --no-strip-accents
expect_exit 64 "--bpe --words icu" "$KILN" vocab train --bpe --size 1000 --words icu
expect_exit 64 "--bpe --limit-alphabet" "$KILN" vocab train --bpe --size 1000 --limit-alphabet 100
grep_err "256 bytes" "says why"
expect_exit 0 "vocab list" "$KILN" vocab list --json
check "nothing was stored" [ ! -s out.txt ]

# --- train, twice with other thread counts
expect_exit 0 "train --bpe --size 2000 (2 threads)" "$KILN" vocab train --bpe --size 2000 --threads 2 --name bpe2k --json
check "kind bpe, 2000 tokens, >= 1743 merges, 106 documents" $PY -c "
import json,sys; d=json.load(open('out.txt'))
sys.exit(0 if (d['name'], d['kind'], d['size'], d['documents']) == ('bpe2k', 'bpe', 2000, 106) and d['merges'] >= 1743 and d['pruned'] == 0 else 1)"
expect_exit 0 "the same with 1 thread" "$KILN" vocab train --bpe --size 2000 --threads 1 --name bpe2k-1
expect_exit 0 "the same with 3 threads" "$KILN" vocab train --bpe --size 2000 --threads 3 --name bpe2k-3
for n in bpe2k bpe2k-1 bpe2k-3; do
  expect_exit 0 "export --hf $n" "$KILN" vocab export --hf --name $n hf-$n
done
check "same vocab.json for 1, 2 and 3 threads" sh -c 'cmp -s hf-bpe2k/vocab.json hf-bpe2k-1/vocab.json && cmp -s hf-bpe2k/vocab.json hf-bpe2k-3/vocab.json'
check "same merges.txt for 1, 2 and 3 threads" sh -c 'cmp -s hf-bpe2k/merges.txt hf-bpe2k-1/merges.txt && cmp -s hf-bpe2k/merges.txt hf-bpe2k-3/merges.txt'
expect_exit 0 "pruned counting (--max-words 5000, 1 thread)" "$KILN" vocab train --bpe --size 1500 --max-words 5000 --threads 1 --name small-1 --json
check "words were pruned, at most 5000 kept" $PY -c "
import json,sys; d=json.load(open('out.txt')); sys.exit(0 if d['pruned'] > 0 and d['distinct_words'] <= 5000 else 1)"
expect_exit 0 "pruned counting, 2 threads" "$KILN" vocab train --bpe --size 1500 --max-words 5000 --threads 2 --name small-2
expect_exit 0 "export small-1" "$KILN" vocab export --hf --name small-1 hf-small-1
expect_exit 0 "export small-2" "$KILN" vocab export --hf --name small-2 hf-small-2
check "pruned: the same bytes for 1 and 2 threads" sh -c 'cmp -s hf-small-1/vocab.json hf-small-2/vocab.json && cmp -s hf-small-1/merges.txt hf-small-2/merges.txt'

# --- layout
check "the vocabulary's layout" $PY - hf-bpe2k "$REF" <<'PYEOF'
import importlib.util, json, sys
spec = importlib.util.spec_from_file_location('ref', sys.argv[2]); ref = importlib.util.module_from_spec(spec); spec.loader.exec_module(ref)
v = json.load(open(sys.argv[1] + '/vocab.json', encoding='utf-8'))
lines = open(sys.argv[1] + '/merges.txt', encoding='utf-8').read().split('\n')
assert lines[0] == '#version: 0.2' and lines[-1] == '', lines[:2]
merges = [tuple(l.split(' ')) for l in lines[1:-1]]
ids = sorted(v.values())
assert ids == list(range(2000)), 'ids 0..1999'
inv = {i: t for t, i in v.items()}
# the 256 byte chars first, in code point order: GPT-2's encoder.json order
bc = ref.bytes_to_unicode()
assert [inv[i] for i in range(256)] == sorted(bc.values(), key=ord), 'the bytes first'
assert inv[1999] == '<|endoftext|>', 'endoftext last'
# merged tokens in merge order: each merge's result, the first time it is made
nxt, seen = 256, set(inv[i] for i in range(256))
for a, b in merges:
    assert a in v and b in v, (a, b)
    t = a + b
    if t not in seen:
        assert v[t] == nxt, (t, v[t], nxt)
        seen.add(t); nxt += 1
assert nxt == 1999, nxt
print(len(merges), 'merges, ids as expected', file=sys.stderr)
PYEOF
check "the bytes have GPT-2's ids 0..255" $PY -c "
import json,sys
g = json.load(open('$ROOT/examples/vocab/gpt2/encoder.json', encoding='utf-8')); v = json.load(open('hf-bpe2k/vocab.json', encoding='utf-8'))
sys.exit(0 if all(v[t] == g[t] for t, i in g.items() if i < 256) else 1)"
check "merges.txt: the first merges are GPT-2's" [ "$(sed -n 2,3p hf-bpe2k/merges.txt | tr '\n' '|')" = "Ġ t|Ġ a|" ]
check "tokenizer_config.json: GPT2Tokenizer" $PY -c "
import json,sys; d=json.load(open('hf-bpe2k/tokenizer_config.json')); sys.exit(0 if d['tokenizer_class'] == 'GPT2Tokenizer' else 1)"
expect_exit 0 "vocab list --json" "$KILN" vocab list --json
check "listed as kind bpe, origin train" $PY -c "
import json,sys
d = [json.loads(l) for l in open('out.txt')]; b = [x for x in d if x['name'] == 'bpe2k'][0]
sys.exit(0 if b['kind'] == 'bpe' and b['size'] == 2000 and b['origin'].startswith('train:') else 1)"

# --- ids: kiln encode --vocab against the reference with the exported files
$PY "$ROOT/tests/ref/bpe_texts.py" "$ROOT" > texts.jsonl
$PY - <<'PYEOF'
import json
z = open('in.z', 'wb'); oz = open('order.z.jsonl', 'w')
for line in open('texts.jsonl'):
    b = bytes(json.loads(line))
    if 0 not in b:
        z.write(b + b'\0'); oz.write(line)
PYEOF
check "texts generated" [ "$(tr -cd '\0' < in.z | wc -c)" -gt 4000 ]
$PY "$REF" --bytes hf-bpe2k/vocab.json hf-bpe2k/merges.txt < order.z.jsonl > ref.z.json
expect_exit 0 "encode --vocab bpe2k --null" "$KILN" encode --vocab bpe2k --null --threads 2 < in.z
mv out.txt got.z.txt
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
check "the reference's ids on every text" $PY cmp.py ref.z.json got.z.txt
expect_exit 0 "encode with the exported files (--vocab-file --merges)" "$KILN" encode --null --threads 1 --vocab-file hf-bpe2k/vocab.json --merges hf-bpe2k/merges.txt < in.z
check "same ids from the files as from the store" cmp -s out.txt got.z.txt
expect_exit 0 "decode --null" "$KILN" decode --vocab bpe2k --null < got.z.txt
check "decode gives the texts back" $PY -c "
import sys
src = open('in.z', 'rb').read().split(b'\0')[:-1]
dec = open('out.txt', 'rb').read().split(b'\0')[:-1]
sys.exit(0 if len(src) == len(dec) and all(s.decode('utf-8', 'replace').encode('utf-8') == d for s, d in zip(src, dec)) else 1)"
expect_exit 0 "encode --tokens" "$KILN" encode --vocab bpe2k --tokens "The history of the city<|endoftext|>"
check "tokens in the byte-level alphabet, <|endoftext|> whole" sh -c 'grep -q "Ġhistory" out.txt && grep -q "<|endoftext|>$" out.txt'

# --- kiln tokenize with it: every document as the reference encodes it
expect_exit 0 "tokenize --vocab bpe2k" "$KILN" tokenize --vocab bpe2k --json
check "no unknown tokens" [ "$(json unk)" = 0 ]
check "every document's ids are the reference's" $PY - "$KILN_DB" "$REF" hf-bpe2k <<'PYEOF'
import importlib.util, sqlite3, struct, sys
spec = importlib.util.spec_from_file_location('ref', sys.argv[2]); ref = importlib.util.module_from_spec(spec); spec.loader.exec_module(ref)
enc = ref.Encoder(sys.argv[3] + '/vocab.json', sys.argv[3] + '/merges.txt')
db = sqlite3.connect(sys.argv[1])
n = bad = ntok = 0
for text, layout, nt, toks in db.execute(
        "SELECT d.text, t.layout, t.n_tokens, t.tokens FROM documents d JOIN doc_tokens t ON t.doc_id = d.id "
        "JOIN vocabularies v ON v.id = t.vocab_id WHERE v.name = 'bpe2k'"):
    ids = list(struct.unpack('<%d%s' % (nt, 'H' if layout == 1 else 'I'), toks))
    n += 1; ntok += nt
    bad += ids != enc.encode(text.replace('\n', ' '))
print(n, 'documents,', ntok, 'tokens,', bad, 'differ', file=sys.stderr)
sys.exit(0 if n == 106 and bad == 0 else 1)
PYEOF
check "integrity" integrity

# --- the daemon's vocab jobs: {"bpe": true}
echo '{"size": 600, "bpe": true, "cased": true}' > badjob.json
expect_exit 78 "a BPE vocab job with cased is refused" "$KILN" run submit --kind vocab --config badjob.json
grep_err "cased does not apply to a byte-level BPE" "the message names the key"
echo '{"size": 600, "bpe": true, "name": "bpejob"}' > job.json
expect_exit 0 "submit a BPE vocab job" "$KILN" run submit --kind vocab --config job.json
"$KILN" daemon --spool spool > daemon.log 2>&1 &
DPID=$!
for _ in $(seq 1 300); do "$KILN" run list 2>/dev/null | grep -q ' done ' && break; sleep 0.2; done
kill -TERM "$DPID"; wait "$DPID"
check "the daemon trained it as a BPE vocabulary" $PY -c "
import json,subprocess,sys
rows=[json.loads(l) for l in subprocess.run(['$KILN','vocab','list','--json'],capture_output=True,text=True).stdout.splitlines()]
sys.exit(0 if any(r['name'] == 'bpejob' and r['kind'] == 'bpe' and r['size'] == 600 for r in rows) else 1)"
expect_exit 0 "vocab export --hf of the daemon's vocabulary" "$KILN" vocab export --hf --name bpejob hfjob
check "same merges as kiln vocab train --bpe of the same size" bash -c '"$0" vocab train --bpe --size 600 --name cli600 >/dev/null 2>&1 && "$0" vocab export --hf --name cli600 hfcli >/dev/null 2>&1 && cmp -s hfjob/merges.txt hfcli/merges.txt' "$KILN"
finish
