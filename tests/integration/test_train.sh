#!/usr/bin/env bash
# test_train.sh: kiln train / export / predict on real text (the bundled
# corpus, a WordPiece vocabulary trained on it): config errors named, metrics
# and the job in the store, checkpoints every N steps and keep-K, bit-identical
# resume after --pause-at and after SIGTERM, refusal of damaged, foreign and
# mismatched checkpoints, the Hugging Face export's tensor names and shapes,
# predict's output, token budgets, the non-finite guard, the OpenBLAS check,
# escaped --json. (Learning on real text: test_learn.sh.)
source "$(dirname "$0")/lib.sh"

for c in train export predict; do expect_exit 0 "kiln $c --help" "$KILN" "$c" --help; done
expect_exit 0 "ingest" "$KILN" ingest -q "$DATA/enwiki-sample.xml.bz2" "$DATA/state_union.zip"
expect_exit 0 "ingest lines" "$KILN" ingest -q --split line "$DATA/lee_background.txt"
expect_exit 0 "vocab train 4k" "$KILN" vocab train -q --size 4000 --name v4k
expect_exit 0 "tokenize" "$KILN" tokenize -q

cat > tiny.json <<'EOF'
{
  "model": {"type": "albert", "embedding_size": 32, "hidden_size": 64, "num_hidden_layers": 2,
            "num_attention_heads": 2, "intermediate_size": 128, "max_position_embeddings": 64,
            "hidden_dropout_prob": 0.1, "attention_probs_dropout_prob": 0.1},
  "data": {"objectives": ["ngram", "sop"], "seq_len": 48, "batch_size": 8, "valid_every": 20, "valid_batches": 3},
  "optimizer": {"type": "lamb", "lr": 2e-3, "warmup_steps": 10, "accumulation": 2},
  "budget": {"steps": 60},
  "checkpoint": {"dir": "ckA", "every": 20, "keep": 2}
}
EOF

# --- config errors
expect_exit 66 "missing config file" "$KILN" train --config nope.json
expect_exit 64 "no --config" "$KILN" train
expect_exit 78 "unknown key" "$KILN" train --config tiny.json --set model.hiden_size=64
grep_err "model.hiden_size" "names the key"
expect_exit 78 "bad value" "$KILN" train --config tiny.json --set data.seq_len=100000
grep_err "data.seq_len" "names the field"
expect_exit 78 "an objective the trainer lacks" "$KILN" train --config tiny.json --set 'data.objectives=["rtd"]'
expect_exit 78 "vocab_size differs from the vocabulary" "$KILN" train --config tiny.json --set model.vocab_size=999
grep_err "vocab_size" "says so"

# --- a run: metrics, job, checkpoints
expect_exit 0 "train 60 steps" "$KILN" train --config tiny.json --json
cp out.txt run.json
check "json: 60 steps" [ "$(json steps run.json)" = 60 ]
check "json fields" $PY -c "
import json; d=json.load(open('run.json'))
for k in ['steps','tokens','seconds','tokens_per_s','loss','mlm_acc','sop_acc','checkpoint','val_loss','unigram_loss']: assert k in d, k
assert d['checkpoint'].endswith('step-000000060') and d['tokens'] > 0 and d['loss'] > 0"
check "keep 2: steps 40 and 60 remain" [ "$(ls ckA | tr '\n' ' ')" = "step-000000040 step-000000060 " ]
check "checkpoint files" test -s ckA/step-000000060/model.safetensors -a -s ckA/step-000000060/optimizer.safetensors -a -s ckA/step-000000060/state.json -a -s ckA/step-000000060/vocab.txt
check "metrics per step in the store" [ "$(sqlite3 "$KILN_DB" "select count(distinct step) from metrics where name = 'loss'")" = 60 ]
check "validation every 20 steps" [ "$(sqlite3 "$KILN_DB" "select group_concat(step) from metrics where name = 'val_loss'")" = "20,40,60" ]
check "the job is done" [ "$(sqlite3 "$KILN_DB" "select state || ' ' || step from jobs")" = "done 60" ]
check "checkpoints recorded" [ "$(sqlite3 "$KILN_DB" "select count(*) from checkpoints")" = 3 ]
expect_exit 73 "a second run into the same folder is refused" "$KILN" train --config tiny.json
grep_err "--resume" "says how to continue"

# --- bit-identical resume: --pause-at, then SIGTERM
expect_exit 0 "pause at step 23" "$KILN" train --config tiny.json --set checkpoint.dir=ckB --pause-at 23 --json
check "paused at 23" [ "$(json steps)" = 23 ]
expect_exit 0 "resume to the end" "$KILN" train --config tiny.json --set checkpoint.dir=ckB --resume
check "model after resume == uninterrupted" cmp ckA/step-000000060/model.safetensors ckB/step-000000060/model.safetensors
check "optimizer after resume == uninterrupted" cmp ckA/step-000000060/optimizer.safetensors ckB/step-000000060/optimizer.safetensors
"$KILN" train --config tiny.json --set checkpoint.dir=ckS --set checkpoint.every=0 --set budget.steps=100000 > sig.txt 2> sigerr.txt &
pid=$!
for i in $(seq 1 100); do sleep 0.1; [ "$(sqlite3 "$KILN_DB" "select count(*) from jobs where state = 'running'" 2>/dev/null)" = 1 ] && break; done
sleep 1
kill -TERM $pid
wait $pid
check "SIGTERM: exit 0" [ $? = 0 ]
check "SIGTERM: a checkpoint" bash -c 'ls ckS | grep -q step-'
s=$(ls ckS | tail -1 | sed 's/step-0*//')
check "SIGTERM: stopped early" [ "$s" -lt 100000 ]
check "SIGTERM: job paused" [ "$(sqlite3 "$KILN_DB" "select state from jobs order by id desc limit 1")" = paused ]
cp tiny.json big.json
sed -i 's/"steps": 60/"steps": 100000/' big.json
expect_exit 0 "resume after SIGTERM for 30 more steps" "$KILN" train --config big.json --set checkpoint.dir=ckS --set checkpoint.every=0 --resume --pause-at $((s + 30))
expect_exit 0 "straight run to the same step" "$KILN" train --config big.json --set checkpoint.dir=ckT --set checkpoint.every=0 --pause-at $((s + 30))
check "SIGTERM + resume == uninterrupted" cmp ckS/step-$(printf %09d $((s + 30)))/model.safetensors ckT/step-$(printf %09d $((s + 30)))/model.safetensors

# --- a time budget ends with a checkpoint of the last step
expect_exit 0 "a 2-second budget" "$KILN" train --config big.json --set checkpoint.dir=ckTime --set budget.seconds=2 --json
check "the last step is checkpointed" [ "ckTime/$(ls ckTime | tail -1)" = "$(json checkpoint)" ] 
check "and it is the run's last step" [ "$(ls ckTime | tail -1 | sed 's/step-0*//')" = "$(json steps)" ]

# --- refusals on resume
cp -r ckA ckD
expect_exit 78 "resume with another model shape" "$KILN" train --config tiny.json --set checkpoint.dir=ckD --set model.hidden_size=32 --resume
grep_err "model.hidden_size" "names the differing key"
head -c 3000 ckD/step-000000060/model.safetensors > t && mv t ckD/step-000000060/model.safetensors
expect_exit 65 "a truncated checkpoint is refused" "$KILN" train --config tiny.json --set checkpoint.dir=ckD --resume
grep_err "model.safetensors" "names the file"
rm -rf ckD; cp -r ckA ckD
echo '{"format": "something-else"}' > ckD/step-000000060/state.json
expect_exit 65 "a foreign checkpoint is refused" "$KILN" train --config tiny.json --set checkpoint.dir=ckD --resume

# --- export
expect_exit 0 "export" "$KILN" export --checkpoint ckA --format hf --out hf
check "export files" test -s hf/model.safetensors -a -s hf/config.json -a -s hf/vocab.txt -a -s hf/tokenizer_config.json -a -s hf/special_tokens_map.json
expect_exit 73 "export over an existing folder" "$KILN" export --checkpoint ckA --out hf
expect_exit 0 "export --force" "$KILN" export --checkpoint ckA/step-000000060 --out hf --force
check "AlbertForPreTraining names and shapes" $PY - <<'EOF'
import json, struct
h = open("hf/model.safetensors", "rb").read()
n = struct.unpack("<Q", h[:8])[0]
head = json.loads(h[8:8 + n])
cfg = json.load(open("hf/config.json"))
V, E, H, I = cfg["vocab_size"], cfg["embedding_size"], cfg["hidden_size"], cfg["intermediate_size"]
assert cfg["architectures"] == ["AlbertForPreTraining"] and cfg["model_type"] == "albert"
assert V == sum(1 for _ in open("hf/vocab.txt", encoding="utf-8"))
p = "albert.encoder.albert_layer_groups.0.albert_layers.0."
want = {
    "albert.embeddings.word_embeddings.weight": [V, E], "albert.embeddings.position_embeddings.weight": [cfg["max_position_embeddings"], E],
    "albert.embeddings.token_type_embeddings.weight": [2, E], "albert.embeddings.LayerNorm.weight": [E], "albert.embeddings.LayerNorm.bias": [E],
    "albert.encoder.embedding_hidden_mapping_in.weight": [H, E], "albert.encoder.embedding_hidden_mapping_in.bias": [H],
    p + "attention.query.weight": [H, H], p + "attention.key.weight": [H, H], p + "attention.value.weight": [H, H],
    p + "attention.dense.weight": [H, H], p + "attention.LayerNorm.weight": [H], p + "ffn.weight": [I, H], p + "ffn.bias": [I],
    p + "ffn_output.weight": [H, I], p + "full_layer_layer_norm.weight": [H], "albert.pooler.weight": [H, H],
    "predictions.dense.weight": [E, H], "predictions.LayerNorm.weight": [E], "predictions.bias": [V],
    "sop_classifier.classifier.weight": [2, H], "sop_classifier.classifier.bias": [2]}
for k, s in want.items():
    assert k in head and head[k]["shape"] == s and head[k]["dtype"] == "F32", (k, head.get(k))
assert "predictions.decoder.weight" not in head
assert head["__metadata__"]["format"] == "pt"
tc = json.load(open("hf/tokenizer_config.json"))
assert tc["tokenizer_class"] == "BertTokenizer" and tc["do_lower_case"] is True
EOF

# --- BERT with whole-word masking and NSP: train, export, names
expect_exit 0 "train a small BERT (wwm + nsp)" "$KILN" train --config tiny.json --set checkpoint.dir=ckBert \
  --set 'model={"type": "bert", "embedding_size": 64, "hidden_size": 64, "hidden_act": "gelu"}' \
  --set 'data.objectives=["wwm", "nsp"]' --set budget.steps=12 --json
check "bert: 12 steps" [ "$(json steps)" = 12 ]
check "bert: the model's terms by name (nsp, not sop)" $PY -c "
import json; d=json.load(open('out.txt'))
for k in ['loss','mlm_loss','mlm_acc','nsp_loss','nsp_acc','val_loss','val_mlm_loss','val_nsp_acc','unigram_loss']: assert k in d, k
assert 'sop_acc' not in d"
expect_exit 0 "export the BERT" "$KILN" export --checkpoint ckBert --out hf-bert
check "BertForPreTraining names" $PY - <<'EOF2'
import json, struct
h = open("hf-bert/model.safetensors", "rb").read()
head = json.loads(h[8:8 + struct.unpack("<Q", h[:8])[0]])
cfg = json.load(open("hf-bert/config.json"))
assert cfg["model_type"] == "bert" and cfg["architectures"] == ["BertForPreTraining"], cfg
H = cfg["hidden_size"]
for i in range(cfg["num_hidden_layers"]):
    for n in ["attention.self.query.weight", "attention.output.dense.weight", "attention.output.LayerNorm.weight",
              "intermediate.dense.weight", "output.dense.weight", "output.LayerNorm.bias"]:
        assert "bert.encoder.layer.%d.%s" % (i, n) in head, n
assert head["cls.seq_relationship.weight"]["shape"] == [2, H]
assert head["cls.predictions.transform.dense.weight"]["shape"] == [H, H]
assert "bert.pooler.dense.weight" in head and "cls.predictions.decoder.weight" not in head
EOF2
expect_exit 0 "predict with the BERT" "$KILN" predict --checkpoint ckBert --json "a [MASK] b"

# --- predict
expect_exit 0 "predict" "$KILN" predict --checkpoint ckA --top-k 3 --json "the [MASK] of the united states ." "No mask here." "[MASK] [MASK] [SEP] x"
check "predict: a line per text, positions and top-3" $PY - <<'EOF'
import json
rows = [json.loads(l) for l in open("out.txt")]
assert len(rows) == 3
assert [m["position"] for m in rows[0]["masks"]] == [2]
assert rows[1]["masks"] == []
assert [m["position"] for m in rows[2]["masks"]] == [1, 2]
for r in rows:
    for m in r["masks"]:
        assert len(m["top"]) == 3 and 0 < sum(t["prob"] for t in m["top"]) <= 1.0001
        assert m["top"][0]["prob"] >= m["top"][1]["prob"] >= m["top"][2]["prob"]
EOF
expect_exit 66 "predict with a missing checkpoint" "$KILN" predict --checkpoint nope "a [MASK]"

# --- a token budget: the schedule's horizon is the step count the run ends at
# (short rows, so that B x L per step would undercount the steps by far)
expect_exit 0 "a token budget" "$KILN" train --config tiny.json --set checkpoint.dir=ckTok --set budget.steps=0 \
  --set budget.tokens=30000 --set data.short_seq_prob=0.9 --set data.valid_every=0 --json
cp out.txt tok.json
n=$(json steps tok.json)
check "token budget: the run ends at the horizon" [ "$n" = "$(json total_steps tok.json)" ]
check "token budget: more steps than B x L per step would give (39)" [ "$n" -gt 41 ]
check "token budget: tokens within 5% of the budget" $PY -c "
import json; d=json.load(open('tok.json')); assert abs(d['tokens'] - 30000) <= 1500, d['tokens']"
job=$(sqlite3 "$KILN_DB" "select id from jobs where name = 'ckTok'")
check "token budget: lr at the floor only at the last step" [ "$(sqlite3 "$KILN_DB" "select group_concat(step) from metrics where job_id = $job and name = 'lr' and value <= 1e-12")" = "$n" ]
check "token budget: the step before the last above the floor" [ "$(sqlite3 "$KILN_DB" "select value > 1e-6 from metrics where job_id = $job and name = 'lr' and step = $((n - 1))")" = 1 ]

# --- non-finite gradients: a NaN weight skips every update; 8 in a row end the run
cp -r ckA ckNan
$PY -c '
import json, struct
p = "ckNan/step-000000060/model.safetensors"
b = bytearray(open(p, "rb").read())
n = struct.unpack("<Q", b[:8])[0]
h = json.loads(b[8:8 + n])
name = next(k for k in h if k.endswith("word_embeddings.weight"))
o = 8 + n + h[name]["data_offsets"][0]
b[o:o + 4] = struct.pack("<f", float("nan"))
open(p, "wb").write(b)'
expect_exit 65 "non-finite gradients 8 steps in a row stop the run" "$KILN" train --config tiny.json \
  --set checkpoint.dir=ckNan --set budget.steps=100 --resume
grep_err "not finite 8 times in a row" "says why"
check "no checkpoint of the diverged steps" [ "$(ls ckNan | tail -1)" = step-000000060 ]
check "the job is failed, with the message" [ "$(sqlite3 "$KILN_DB" "select count(*) from jobs where state = 'failed' and error like '%not finite%'")" = 1 ]

# --- OpenBLAS's pthreads build is refused (its thread pool breaks determinism);
# the sequential one is fine. A shim answers openblas_get_parallel() instead.
# (Under AddressSanitizer its runtime must be preloaded first.)
asan=""
[ -n "${KILN_SANITIZE:-}" ] && asan="$(cc -print-file-name=libasan.so):"
printf 'int openblas_get_parallel(void) { return PAR; }\n' > fakeblas.c
cc -shared -fPIC -DPAR=1 -o pthreads.so fakeblas.c && cc -shared -fPIC -DPAR=0 -o sequential.so fakeblas.c
expect_exit 78 "OpenBLAS pthreads build refused" env LD_PRELOAD="${asan}./pthreads.so" "$KILN" train --config tiny.json \
  --set checkpoint.dir=ckBlas --set budget.steps=12
grep_err "pthreads build" "names the build"
expect_exit 0 "OpenBLAS sequential build accepted" env LD_PRELOAD="${asan}./sequential.so" "$KILN" train -q --config tiny.json \
  --set checkpoint.dir=ckSeq --set budget.steps=12 --set data.valid_every=0

# --- --json output escapes names and paths
mkdir -p 'we"ird\dir'
expect_exit 0 "train into a folder with a quote and a backslash" "$KILN" train -q --config tiny.json \
  --set 'checkpoint.dir=we"ird\dir/ck' --set budget.steps=12 --set data.valid_every=0 --json
check "train --json: valid, the path intact" $PY -c 'import json; assert json.load(open("out.txt"))["checkpoint"] == "we\"ird\\dir/ck/step-000000012"'
expect_exit 0 "export to such a folder" "$KILN" export --checkpoint 'we"ird\dir/ck' --out 'we"ird\dir/hf' --json
check "export --json: valid" $PY -c 'import json; assert json.load(open("out.txt"))["out"] == "we\"ird\\dir/hf"'
expect_exit 0 "a vocabulary named with a quote and a backslash" "$KILN" vocab train -q --size 800 --name 'v"q\x' --json
check "vocab train --json: valid" $PY -c 'import json; assert json.load(open("out.txt"))["name"] == "v\"q\\x"'
expect_exit 0 "tokenize with it" "$KILN" tokenize -q --vocab 'v"q\x' --json
check "tokenize --json: valid" $PY -c 'import json; assert json.load(open("out.txt"))["vocab"] == "v\"q\\x"'
printf '[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\na\nb\n' > small-vocab.txt
expect_exit 0 "vocab import with such a name" "$KILN" vocab import small-vocab.txt --name 'i"m\p' --json
check "vocab import --json: valid" $PY -c 'import json; assert json.load(open("out.txt"))["name"] == "i\"m\\p"'

finish
