#!/usr/bin/env bash
# test_sample.sh: kiln sample on real text (the bundled Wikipedia excerpt,
# State of the Union and ABC news, BERT's uncased vocabulary, FB15k-237 linked):
# the statistics of every objective, no special token masked, whole words
# whole, determinism (same seed -> same bytes, --start i == the i-th sample,
# 1 and 2 threads, shards disjoint and complete), the frozen snapshot, and
# damaged snapshots refused.
source "$(dirname "$0")/lib.sh"

expect_exit 0 "kiln sample --help" "$KILN" sample --help
expect_exit 0 "ingest" "$KILN" ingest -q "$DATA/enwiki-sample.xml.bz2" "$DATA/state_union.zip"
expect_exit 0 "ingest lines" "$KILN" ingest -q --split line "$DATA/lee_background.txt"
expect_exit 66 "sample before any vocabulary" "$KILN" sample --objective mlm
expect_exit 0 "vocab import" "$KILN" vocab import -q "$ROOT/examples/vocab/bert-base-uncased-vocab.txt"
expect_exit 65 "sample before tokenizing" "$KILN" sample --objective mlm
grep_err "tokenize" "says to tokenize first"
expect_exit 0 "tokenize" "$KILN" tokenize -q
expect_exit 0 "kg import" "$KILN" kg import -q --names "$ROOT/examples/kg/fb15k-237-entity2text.txt.gz" "$ROOT/examples/kg/FB15k-237.tar.gz"
expect_exit 0 "kg link" "$KILN" kg link -q

# --- usage errors
expect_exit 64 "unknown objective" "$KILN" sample --objective mlm,bogus
grep_err "bogus" "names the objective"
expect_exit 64 "bad shard" "$KILN" sample --objective mlm --shard 3/3
expect_exit 65 "sop with nsp refused" "$KILN" sample --objective sop,nsp
grep_err "exclude" "says why"
expect_exit 65 "two masking kinds refused" "$KILN" sample --objective mlm,wwm

# --- statistics on real text (20,000 sequences each)
st() {  # st OBJECTIVES [ARGS...] -> stats.json
  local o=$1; shift
  "$KILN" sample --objective "$o" --count 20000 --format null --stats --json "$@" > stats.json 2>err.txt
}
within() {  # within DESCRIPTION FIELD TARGET TOLERANCE
  local v; v=$(json "$2" stats.json)
  if $PY -c "import sys; sys.exit(0 if abs($v - $3) <= $4 else 1)"; then ok "$1: $v"; else bad "$1: $v not within $3 +- $4"; fi
}
for L in 128 512; do
  st mlm,sop --seq-len $L
  within "mlm L$L masking rate" masking_rate 0.15 0.005
  within "mlm L$L [MASK] share" mask_share 0.80 0.02
  within "mlm L$L unchanged share" keep_share 0.10 0.02
  within "mlm L$L random share" random_share 0.10 0.02
  within "sop L$L balance" label1_share 0.5 0.02
  check "mlm L$L no special masked" [ "$(json special_masked stats.json)" = 0 ]
  st wwm,nsp --seq-len $L
  within "wwm L$L masking rate" masking_rate 0.15 0.005
  within "wwm L$L [MASK] share" mask_share 0.80 0.02
  within "nsp L$L balance" label1_share 0.5 0.02
  st ngram,sop --seq-len $L
  within "ngram L$L masking rate" masking_rate 0.15 0.005
  within "ngram L$L 1-grams" ngram_shares.1 0.54545 0.02
  within "ngram L$L 2-grams" ngram_shares.2 0.27273 0.02
  within "ngram L$L 3-grams" ngram_shares.3 0.18182 0.02
  st rtd --seq-len $L
  within "rtd L$L masking rate" masking_rate 0.15 0.005
  within "rtd L$L [MASK] share" mask_share 0.85 0.02
  within "rtd L$L unchanged share" keep_share 0.15 0.02
  check "rtd L$L no random branch" [ "$(json random_share stats.json)" = 0.0 ]
done
st mlm,entities --dea
check "entities: some tokens aligned" $PY -c "import sys; sys.exit(0 if $(json entity_token_share stats.json) > 0.005 else 1)"
within "dEA random share" dea_random_share 0.05 0.01
within "dEA dropped share" dea_dropped_share 0.15 0.015
st clm
check "clm: full windows" [ "$(json padding stats.json)" = 0.0 ]

# --- the samples themselves: specials, whole words, entities, clm separators
"$KILN" vocab export vocab.txt
for o in mlm,sop wwm,nsp ngram,sop rtd mlm,entities clm; do
  "$KILN" sample --objective "$o" --count 3000 --seed 7 --dea > "s-$o.jsonl"
done
check "sample rows are well formed, specials never masked, whole words whole" $PY - <<'EOF'
import json, sys
vocab = [l.rstrip("\n") for l in open("vocab.txt", encoding="utf-8")]
CLS, SEP, PAD, MASK = vocab.index("[CLS]"), vocab.index("[SEP]"), vocab.index("[PAD]"), vocab.index("[MASK]")
bad = 0
for o in ["mlm,sop", "wwm,nsp", "ngram,sop", "rtd", "mlm,entities", "clm"]:
    rows = [json.loads(l) for l in open(f"s-{o}.jsonl")]
    assert len(rows) == 3000, o
    assert [r["index"] for r in rows] == list(range(3000)), o
    for r in rows:
        ids = r["input_ids"]
        assert len(ids) == r["length"] and PAD not in ids, (o, r["index"])
        if o == "clm":
            assert len(ids) == 128 and "masked_positions" not in r
            continue
        assert ids[0] == CLS and ids[-1] == SEP, (o, r["index"])
        pos, orig = r["masked_positions"], r["masked_ids"]
        assert pos == sorted(set(pos)) and len(pos) == len(orig) and len(pos) >= 1
        full = list(ids)
        for p, i in zip(pos, orig):
            full[p] = i
        for p in pos:
            if full[p] in (CLS, SEP, PAD):
                print(o, r["index"], "special masked at", p); bad += 1
        tt = r["token_type_ids"]
        nsep = sum(1 for x in full if x == SEP)
        if "sop" in o or "nsp" in o:
            assert nsep == 2 and tt[0] == 0 and tt[-1] == 1, (o, r["index"])
            assert r[("sop" if "sop" in o else "nsp") + "_label"] in (0, 1, -1)
        if o in ("wwm,nsp", "ngram,sop"):
            m = set(pos)
            for p in pos:   # the next piece of the same word is masked too
                q = p + 1
                if q < len(full) and vocab[full[q]].startswith("##") and q not in m:
                    print(o, r["index"], "word cut after", p, vocab[full[p]], vocab[full[q]]); bad += 1
                if vocab[full[p]].startswith("##") and full[p - 1] not in (CLS, SEP) and p - 1 not in m \
                        and tt[p - 1] == tt[p]:
                    print(o, r["index"], "word cut before", p); bad += 1
        if o == "mlm,entities":
            assert len(r["entity_ids"]) == len(ids) == len(r["entity_labels"])
sys.exit(1 if bad else 0)
EOF
check "clm windows carry document separators" $PY -c "
import json
rows=[json.loads(l) for l in open('s-clm.jsonl')]
assert sum(r['input_ids'].count(102) for r in rows) > 100"
check "entities: aligned tokens exist and dEA changed some" $PY -c "
import json
rows=[json.loads(l) for l in open('s-mlm,entities.jsonl')]
lab=sum(1 for r in rows for x in r['entity_labels'] if x)
diff=sum(1 for r in rows for a,b in zip(r['entity_ids'],r['entity_labels']) if a!=b)
assert lab > 1000 and 0 < diff < lab * 0.3, (lab, diff)"

# --- --hide-masked-entities: the same rows, but a mention the masking touches
# loses its entity input (labels kept)
"$KILN" sample --objective wwm,entities --count 3000 --seed 7 --dea > h0.jsonl
"$KILN" sample --objective wwm,entities --count 3000 --seed 7 --dea --hide-masked-entities > h1.jsonl
check "hidden mentions: same tokens, masks and labels; only masked mentions lose their entity" $PY - <<'EOF'
import json
A = [json.loads(l) for l in open("h0.jsonl")]
B = [json.loads(l) for l in open("h1.jsonl")]
assert len(A) == len(B) == 3000
hidden = masked_first = 0
for a, b in zip(A, B):
    for k in ("input_ids", "masked_positions", "masked_ids", "entity_labels"):
        assert a[k] == b[k], (a["index"], k)
    m = set(a["masked_positions"])
    lab = a["entity_labels"]
    for p, (x, y) in enumerate(zip(a["entity_ids"], b["entity_ids"])):
        if p in m and lab[p]:
            masked_first += 1
            assert y == 0, (a["index"], p)          # a masked first token: always hidden
        if x != y:
            hidden += 1
            assert y == 0 and lab[p], (a["index"], p)
            # a masked token inside the mention: at p or after it, before the next aligned token
            q = p
            while q < len(lab) and (q == p or not lab[q]) and q not in m:
                q += 1
            assert q in m, (a["index"], p)
assert masked_first > 300 and hidden >= masked_first * 0.8, (masked_first, hidden)
EOF
st wwm,entities --dea --hide-masked-entities
within "hidden under a mask: about the masking rate" entities_hidden_share 0.17 0.04

# --- determinism
"$KILN" sample --objective ngram,sop --count 2000 --seed 11 > a.jsonl
"$KILN" sample --objective ngram,sop --count 2000 --seed 11 > b.jsonl
check "same seed, same bytes" cmp -s a.jsonl b.jsonl
"$KILN" sample --objective ngram,sop --count 2000 --seed 12 > c.jsonl
check "another seed, other samples" bash -c '! cmp -s a.jsonl c.jsonl'
"$KILN" sample --objective ngram,sop --count 2000 --seed 11 --threads 1 > t1.jsonl
check "1 thread == 2 threads" cmp -s a.jsonl t1.jsonl
for i in 0 1 63 64 999 1999; do
  "$KILN" sample --objective ngram,sop --count 1 --seed 11 --start $i > one.jsonl
  check "--start $i equals line $i" cmp -s one.jsonl <(sed -n "$((i + 1))p" a.jsonl)
done
"$KILN" sample --objective wwm,nsp --count 1 --seed 3 --epoch 2 --start 5 > e.jsonl
"$KILN" sample --objective wwm,nsp --count 3 --seed 3 --epoch 1 --start 0 > e1.jsonl
check "epochs differ" $PY -c "
import json
a=json.loads(open('e.jsonl').readline()); b=[json.loads(l) for l in open('e1.jsonl')]
assert a['epoch'] == 2 and all(a['input_ids'] != r['input_ids'] for r in b)"
for r in 0 1 2; do "$KILN" sample --objective mlm,sop --count 700 --seed 5 --shard $r/3 > sh$r.jsonl; done
"$KILN" sample --objective mlm,sop --count 2100 --seed 5 > all.jsonl
check "shards disjoint, interleaved, together the stream" $PY - <<'EOF'
import json
full = {json.loads(l)["index"]: l for l in open("all.jsonl")}
seen = set()
for r in range(3):
    for k, l in enumerate(open(f"sh{r}.jsonl")):
        i = json.loads(l)["index"]
        assert i == k * 3 + r, (r, k, i)
        assert i not in seen
        seen.add(i)
        assert full[i] == l, i
assert seen == set(full), (len(seen), len(full))
EOF

# --- the snapshot: later ingests do not change a run's stream
snap=$(ls "$KILN_DB.snapshots"/*.ksnap | head -1)
check "one snapshot file made" [ "$(ls "$KILN_DB.snapshots"/*.ksnap | wc -l)" = 1 ]
"$KILN" sample --objective mlm,sop --count 500 --seed 9 > before.jsonl
expect_exit 0 "ingest more" "$KILN" ingest -q --split line "$ROOT/tests/ref/texts.txt"
expect_exit 0 "tokenize the new documents" "$KILN" tokenize -q
"$KILN" sample --objective mlm,sop --count 500 --seed 9 --snapshot "$snap" > frozen.jsonl
check "the old snapshot gives the same stream" cmp -s before.jsonl frozen.jsonl
"$KILN" sample --objective mlm,sop --count 500 --seed 9 > after.jsonl
check "a new snapshot includes the new documents" bash -c '! cmp -s before.jsonl after.jsonl'
check "two snapshot files now" [ "$(ls "$KILN_DB.snapshots"/*.ksnap | wc -l)" = 2 ]
"$KILN" sample --objective mlm,sop --count 200 --split valid --seed 9 > valid.jsonl
check "a validation split exists" [ "$(wc -l < valid.jsonl)" = 200 ]
check "validation differs from training" bash -c '! cmp -s <(head -200 before.jsonl) valid.jsonl'

# --- damaged snapshots
head -c 100000 "$snap" > cut.ksnap
expect_exit 65 "a truncated snapshot is refused" "$KILN" sample --objective mlm --snapshot cut.ksnap
grep_err "cut.ksnap: truncated" "names the file and the problem"
cp "$snap" flip.ksnap
printf 'XXXX' | dd of=flip.ksnap bs=1 seek=0 conv=notrunc 2>/dev/null
expect_exit 65 "a foreign file is refused" "$KILN" sample --objective mlm --snapshot flip.ksnap
grep_err "not a kiln snapshot" "says so"
cp "$snap" tab.ksnap
size=$(stat -c %s tab.ksnap)
$PY - tab.ksnap <<'EOF'
import struct, sys
f = open(sys.argv[1], "r+b")
f.seek(96 + 8 * 4); off = struct.unpack("<Q", f.read(8))[0]   # token offsets table
f.seek(off + 8 * 3); f.write(struct.pack("<Q", 1 << 50))       # a wild offset
EOF
expect_exit 65 "a corrupt offset table is refused" "$KILN" sample --objective mlm --snapshot tab.ksnap
grep_err "tab.ksnap: (offset tables|sentence ends)" "names the file and the table"
expect_exit 66 "a missing snapshot" "$KILN" sample --objective mlm --snapshot nope.ksnap

finish
