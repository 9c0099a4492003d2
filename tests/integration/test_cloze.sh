#!/usr/bin/env bash
# test_cloze.sh: kiln eval --cloze (cli/cmd_cloze.c), the factual cloze probe,
# on the bundled Wikipedia sample + FB15k-237 linked with BERT's vocabulary
# and a small TransE: a tiny plain BERT, a tiny ERNIE (BERT) and a tiny ERNIE
# (ALBERT), 20 steps each. Checks: the JSON fields and their ranges; entity
# and control sets of the same size, controls matched in pieces for the most
# part; the held-out documents are the sampler's split, recomputed here from
# the store's content hashes (sampler.c's in_split); the items come from
# those documents only; ERNIE's rows align the other mentions but never the
# masked one (unless --with-masked-entity, ERNIE only), the plain model gets
# none; same inputs and seed -> same bytes
# (other thread counts and batch sizes too); another seed draws other items;
# an imported checkpoint (kiln export, kiln import --from kiln: no run
# snapshot) gives the same figures; errors: no --checkpoint, a missing
# checkpoint, a run that held out no documents, a store without mentions, a store whose embedding is not the
# model's table, an ELECTRA checkpoint.
source "$(dirname "$0")/lib.sh"

expect_exit 0 "ingest" "$KILN" ingest -q "$DATA/enwiki-sample.xml.bz2"
expect_exit 0 "vocab import (BERT's)" "$KILN" vocab import -q "$ROOT/examples/vocab/bert-base-uncased-vocab.txt"
expect_exit 0 "vocab use" "$KILN" vocab use bert-base-uncased-vocab
expect_exit 0 "tokenize" "$KILN" tokenize -q
KG="$ROOT/examples/kg"
expect_exit 0 "kg import FB15k-237" "$KILN" kg import -q --names "$KG/fb15k-237-entity2text.txt.gz" "$KG/FB15k-237.tar.gz"
expect_exit 0 "kg link" "$KILN" kg link -q
expect_exit 0 "kg embed (small)" "$KILN" kg embed -q --dim 32 --epochs 2 --eval-every 0 --seed 7 --threads 2

cat > plain.json <<'EOF'
{
  "model": {"type": "bert", "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2,
            "intermediate_size": 64, "max_position_embeddings": 64},
  "data": {"objectives": ["wwm"], "seq_len": 64, "batch_size": 8, "seed": 3, "valid_every": 0,
           "valid_fraction": 0.05},
  "optimizer": {"type": "adamw", "lr": 1e-3, "warmup_steps": 2},
  "budget": {"steps": 20},
  "threads": 2,
  "precision": "fp32",
  "checkpoint": {"dir": "ckP", "every": 0, "keep": 1}
}
EOF
$PY - <<'EOF'
import json
c = json.load(open("plain.json"))
c["data"]["objectives"].append("entities")
c["knowledge"] = {"embedding": "latest", "fusion_layers": 1, "entity_hidden_size": 16, "entity_attention_heads": 2}
c["checkpoint"]["dir"] = "ckE"
json.dump(c, open("ernie.json", "w"))
c["model"].update({"type": "albert", "embedding_size": 16, "num_hidden_groups": 1})
c["data"]["objectives"] = ["ngram", "sop", "entities"]
c["checkpoint"]["dir"] = "ckA"
json.dump(c, open("albert.json", "w"))
EOF
expect_exit 0 "train a tiny plain BERT (20 steps)" "$KILN" train -q --config plain.json
expect_exit 0 "train a tiny ERNIE, BERT (20 steps)" "$KILN" train -q --config ernie.json
expect_exit 0 "train a tiny ERNIE, ALBERT (20 steps)" "$KILN" train -q --config albert.json

# --- the probe on each, its fields
for m in P E A; do
  expect_exit 0 "kiln eval --cloze on ck$m" "$KILN" eval --checkpoint "ck$m" --cloze --json --items "items-$m.jsonl"
  cp out.txt "c-$m.json"
  check "ck$m: the entity and control sets: sizes, ranges" $PY - "c-$m.json" "$m" <<'EOF'
import json, math, sys
d = json.load(open(sys.argv[1])); m = sys.argv[2]
e, c = d["entity"], d["control"]
ok = e["items"] == c["items"] > 100 and e["tokens"] >= e["items"] and c["tokens"] >= c["items"]
for s in (e, c):
    ok = ok and 0 <= s["top1"] <= s["top10"] <= 1 and 0 <= s["exact"] <= 1 and math.isfinite(s["loss"]) and s["loss"] > 0
ok = ok and c["matched"] >= 0.9 * c["items"] and e["matched"] == e["items"]
ok = ok and d["held_out_documents"] > 0 and d["documents"] == 106 and d["valid_fraction"] == 0.05 and d["seq_len"] == 64
ok = ok and d["mentions"] >= d["candidates"] >= e["items"] and d["seed"] == 1 and d["step"] == 20
ok = ok and d["knowledge"] == (m != "P") and d["model"] == ("albert" if m == "A" else "bert")
ok = ok and (d["embedding"] == 1 if m != "P" else d["embedding"] is None)
ok = ok and ((e["aligned_entities"] > 0 and c["aligned_entities"] > e["aligned_entities"]) if m != "P"
             else e["aligned_entities"] == c["aligned_entities"] == 0)
if not ok: print(json.dumps(d, indent=1))
sys.exit(0 if ok else 1)
EOF
  check "ck$m: the items' ranks and losses add up to the summary" $PY - "c-$m.json" "items-$m.jsonl" <<'EOF'
import json, sys
d = json.load(open(sys.argv[1])); items = [json.loads(l) for l in open(sys.argv[2])]
ok = True
for kind in ("entity", "control"):
    it = [x for x in items if x["kind"] == kind]
    r = [k for x in it for k in x["ranks"]]
    ok = ok and all(len(x["ranks"]) == len(x["answer"]) and x["exact"] == all(k == 0 for k in x["ranks"]) for x in it)
    ok = ok and all(x["top1"][i] == x["answer"][i] for x in it for i, k in enumerate(x["ranks"]) if k == 0)
    s = d[kind]
    ok = ok and len(r) == s["tokens"] and abs(sum(k == 0 for k in r) / len(r) - s["top1"]) < 1e-5
    ok = ok and abs(sum(k < 10 for k in r) / len(r) - s["top10"]) < 1e-5
    ok = ok and abs(sum(x["loss"] for x in it) / len(r) - s["loss"]) < 1e-3 * s["loss"]
sys.exit(0 if ok else 1)
EOF
done
check "the plain and the ERNIE model are probed on the same items" $PY - <<'EOF'
import json, sys
strip = lambda l: {k: v for k, v in json.loads(l).items() if k in ("kind", "doc", "start", "end", "input", "answer")}
a = [strip(l) for l in open("items-P.jsonl")]; b = [strip(l) for l in open("items-E.jsonl")]
sys.exit(0 if a == b and len(a) > 200 else 1)
EOF

# --- the items: held-out documents (the sampler's split, recomputed), whole words, alignments
check "held-out documents = the sampler's split recomputed from the content hashes; items only from them" \
  $PY - "$KILN_DB" <<'EOF'
import json, sqlite3, struct, sys
M = (1 << 64) - 1
def mix64(z):
    z = ((z ^ (z >> 30)) * 0xbf58476d1ce4e5b9) & M
    z = ((z ^ (z >> 27)) * 0x94d049bb133111eb) & M
    return z ^ (z >> 31)
db = sqlite3.connect(sys.argv[1])
held = set()
for doc, h in db.execute("select d.id, d.content_hash from documents d join doc_tokens t on t.doc_id = d.id "
                         "where t.n_tokens > 0"):
    u = (mix64(struct.unpack("<Q", h[:8])[0] ^ 0x53504C54) >> 11) * 2.0 ** -53
    if u < 0.05: held.add(doc)
d = json.load(open("c-P.json"))
docs = {json.loads(l)["doc"] for l in open("items-P.jsonl")}
print("  held out: %s; items from %s" % (sorted(held), sorted(docs)))
sys.exit(0 if len(held) == d["held_out_documents"] and docs <= held and docs else 1)
EOF
check "entity items mask a whole mention (its pieces are the answer), controls the same number of pieces mostly" \
  $PY - "$KILN_DB" <<'EOF'
import json, sqlite3, sys
db = sqlite3.connect(sys.argv[1])
ments = {(d, s): (e, en) for d, s, e, en in db.execute("select doc_id, tok_start, tok_end, entity_id from kg_mentions")}
items = [json.loads(l) for l in open("items-P.jsonl")]
n = len(items) // 2
ok = True
for i, x in enumerate(items[:n]):
    e, en = ments.get((x["doc"], x["start"]), (None, None))
    ok = ok and x["kind"] == "entity" and e == x["end"] and en == x["entity"]
    ok = ok and x["input"].count("[MASK]") == len(x["answer"]) == x["end"] - x["start"]
    ok = ok and x["input"][0] == "[CLS]" and x["input"][-1] == "[SEP]" and len(x["input"]) <= 64
    c = items[n + i]
    ok = ok and c["kind"] == "control" and c["doc"] == x["doc"] and "entity" not in c
    ok = ok and not any(s < c["end"] and e > c["start"] for (d, s), (e, _) in ments.items() if d == c["doc"])
    ok = ok and all(p[:2] != "##" for p in c["answer"][:1]) and any(ch.isalnum() for p in c["answer"] for ch in p)
    if not ok:
        print(json.dumps(x), json.dumps(c)); break
sys.exit(0 if ok else 1)
EOF
check "ERNIE rows: the masked mention is never aligned, the other mentions are; controls align the mention" \
  $PY <<'EOF'
import json, sys
items = [json.loads(l) for l in open("items-E.jsonl")]
n = len(items) // 2
ok, withctx, ctl = True, 0, 0
for i, x in enumerate(items[:n]):
    masked = {p for p, t in enumerate(x["input"]) if t == "[MASK]"}
    al = {p for p, _ in x["entities"]}
    ok = ok and not (al & masked)
    withctx += bool(al)
    c = items[n + i]   # the same window: the mention's first piece at the same position
    ctl += any(p == min(masked) for p, _ in c["entities"])
print("  %d of %d entity rows with other mentions aligned; %d control rows align the entity item's mention" % (withctx, n, ctl))
sys.exit(0 if ok and withctx > 0 and ctl > 0.5 * n else 1)
EOF

# --- the diagnostic: the masked mention's own entity given too (ERNIE only)
expect_exit 0 "--with-masked-entity on the ERNIE checkpoint" "$KILN" eval --checkpoint ckE --cloze --json --with-masked-entity
check "--with-masked-entity: the entity rows align what the control rows do (the masked mention included)" $PY - c-E.json out.txt <<'EOF'
import json, sys
a, b = (json.load(open(f)) for f in sys.argv[1:3])
sys.exit(0 if b["with_masked_entity"] and not a["with_masked_entity"] and a["entity"]["items"] == b["entity"]["items"]
         and b["entity"]["aligned_entities"] == b["control"]["aligned_entities"] > a["entity"]["aligned_entities"] else 1)
EOF
expect_exit 64 "--with-masked-entity on a plain checkpoint is refused" "$KILN" eval --checkpoint ckP --cloze --with-masked-entity
grep_err "no knowledge section" "the message says why"

# --- determinism
expect_exit 0 "the ERNIE probe again, 1 thread, batch 5" "$KILN" eval --checkpoint ckE --cloze --json --threads 1 --batch-size 5
check "same store, checkpoint and seed: the same figures (other threads and batch size)" $PY - c-E.json out.txt <<'EOF'
import json, sys
a, b = (json.load(open(f)) for f in sys.argv[1:3])
a.pop("seconds"); b.pop("seconds")
sys.exit(0 if a == b else 1)
EOF
expect_exit 0 "another seed, 50 items" "$KILN" eval --checkpoint ckP --cloze --seed 9 --max-items 50 --items s9.jsonl --json
check "another seed and --max-items 50: 50 other items" $PY - <<'EOF'
import json, sys
a = {(x["doc"], x["start"]) for x in map(json.loads, open("items-P.jsonl")) if x["kind"] == "entity"}
b = [(x["doc"], x["start"]) for x in map(json.loads, open("s9.jsonl")) if x["kind"] == "entity"]
sys.exit(0 if len(b) == 50 and set(b) <= a and b == sorted(b) and json.load(open("out.txt"))["entity"]["items"] == 50 else 1)
EOF
expect_exit 0 "export the ERNIE checkpoint" "$KILN" export --checkpoint ckE --out exp
expect_exit 0 "import its kiln folder (a checkpoint without the run's snapshot)" "$KILN" import --from kiln exp/kiln --out imp
expect_exit 0 "kiln eval --cloze on the imported checkpoint" "$KILN" eval --checkpoint imp --cloze --json
check "the imported checkpoint: the store's split by content hash, the same figures" $PY - c-E.json out.txt <<'EOF'
import json, sys
a, b = (json.load(open(f)) for f in sys.argv[1:3])
for d in (a, b):
    for k in ("seconds", "checkpoint", "step"): d.pop(k)
sys.exit(0 if a == b else 1)
EOF
expect_exit 0 "kiln eval --cloze (text)" "$KILN" eval --checkpoint ckE --cloze
check "the text report names both sets and ERNIE's embedding" grep -qE "entity .*%.*" out.txt
check "the text report names the control set" grep -qE "^  control +[0-9]+" out.txt
check "kiln eval --help shows --cloze" sh -c "\"$KILN\" eval --help | grep -q -- '--cloze'"

# --- errors
expect_exit 64 "--cloze without --checkpoint" "$KILN" eval --cloze
expect_exit 66 "a checkpoint that does not exist" "$KILN" eval --cloze --checkpoint nowhere
grep_err "nowhere" "the message names the path"
expect_exit 0 "train a 2-step plain BERT that holds out no documents" "$KILN" train -q --config plain.json \
    --set data.valid_fraction=0 --set budget.steps=2 --set optimizer.warmup_steps=0 --set checkpoint.dir=ckZ
expect_exit 65 "--cloze on a run without held-out documents is refused" "$KILN" eval --cloze --checkpoint ckZ
grep_err "ckZ.*held out no documents \\(data.valid_fraction 0\\)" "the message names the checkpoint and why"
export KILN_DB="$WORK/bare.db"
"$KILN" ingest -q "$DATA/enwiki-sample.xml.bz2" && "$KILN" vocab import -q "$ROOT/examples/vocab/bert-base-uncased-vocab.txt" >/dev/null &&
  "$KILN" vocab use -q bert-base-uncased-vocab > /dev/null && "$KILN" tokenize -q
expect_exit 65 "a store without KG mentions" "$KILN" eval --cloze --checkpoint ckP
grep_err "no linked mentions .*kiln kg link" "the message says to link"
"$KILN" kg import -q --names "$KG/fb15k-237-entity2text.txt.gz" "$KG/FB15k-237.tar.gz" && "$KILN" kg link -q &&
  "$KILN" kg embed -q --dim 32 --epochs 1 --eval-every 0 --seed 8 --threads 2
expect_exit 65 "a store whose embedding 1 is not the ERNIE model's table" "$KILN" eval --cloze --checkpoint ckE
grep_err "not the checkpoint's entity table" "the message says so"
export KILN_DB="$WORK/t.db"
cat > electra.json <<'EOF'
{"model": {"type": "electra", "embedding_size": 16, "hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2,
           "intermediate_size": 64, "max_position_embeddings": 64, "generator_hidden_size": 16,
           "generator_num_attention_heads": 1},
 "data": {"objectives": ["rtd"], "seq_len": 64, "batch_size": 4, "valid_every": 0, "valid_fraction": 0.05},
 "budget": {"steps": 1}, "threads": 2, "checkpoint": {"dir": "ckR", "every": 0, "keep": 1}}
EOF
expect_exit 0 "train a 1-step ELECTRA" "$KILN" train -q --config electra.json
expect_exit 64 "an ELECTRA checkpoint is refused" "$KILN" eval --cloze --checkpoint ckR
grep_err "BERT or ALBERT .*ELECTRA" "the message says what it takes"

finish
