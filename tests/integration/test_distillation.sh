#!/usr/bin/env bash
# test_distillation.sh: knowledge distillation end to end on the bundled corpus
# (docs/distill.md): a BERT teacher trained briefly, then
# - config errors, named (keys without a teacher, the other method's keys,
#   student_layers of another length, a teacher of another vocabulary or a
#   missing one, a student of another width for the cosine loss, GPT-2);
# - DistilBERT's triple loss: the terms (ce_loss, mlm_loss, cos_loss,
#   teacher_agree), the teacher's hash, size and memory in the summary and the
#   checkpoint, the student started from layers [0, 2], the teacher's files
#   untouched; same config -> same bytes; a paused and resumed run gives the
#   bytes of an uninterrupted one; resuming with another teacher is refused;
#   the teacher as a Hugging Face folder (kiln export of it) gives the same
#   hash and the same student bytes; positions "all"; export as
#   DistilBertForMaskedLM and predict;
# - TinyBERT: a narrower BERT student, intermediate stage terms (att_loss,
#   hid_loss, emb_loss), then stage both switching to the prediction layer;
#   resume bit-identical; its export leaves the projections out;
# - task-specific: a student fine-tuned on a fine-tuned teacher's soft labels
#   plus the gold labels (teacher pinned, deterministic, the teacher changes
#   the result, a pretraining checkpoint or no loss refused; the teacher as a
#   BertForSequenceClassification folder gives the same student);
# - ALBERT and DistilBERT teachers: TinyBERT from each, DistilBERT from ALBERT
#   (positions all; started from its weights refused: other shapes);
# - the daemon runs a distillation job.
source "$(dirname "$0")/lib.sh"

expect_exit 0 "ingest" "$KILN" ingest -q "$DATA/enwiki-sample.xml.bz2"
expect_exit 0 "vocab train 3k" "$KILN" vocab train -q --size 3000 --name v3k
expect_exit 0 "tokenize" "$KILN" tokenize -q

cat > teacher.json <<'EOF'
{"model": {"type": "bert", "hidden_size": 48, "num_hidden_layers": 4, "num_attention_heads": 2,
           "intermediate_size": 96, "max_position_embeddings": 64},
 "data": {"objectives": ["mlm"], "seq_len": 48, "batch_size": 8, "seed": 5, "valid_every": 0},
 "optimizer": {"lr": 2e-3, "warmup_steps": 4}, "budget": {"steps": 40}, "threads": 2,
 "checkpoint": {"dir": "teacher", "every": 0}}
EOF
expect_exit 0 "train the teacher (BERT, 4 layers, 40 steps)" "$KILN" train -q --config teacher.json --json
tck=$(json checkpoint)
sha256sum "$tck"/* > teacher.sha

student() { # student NAME DIR [EXTRA distill json]: a DistilBERT student config
  cat > "$1" <<EOF
{"model": {"type": "distilbert", "dim": 48, "n_layers": 2, "n_heads": 2, "hidden_dim": 96,
           "max_position_embeddings": 64, "dropout": 0.1, "attention_dropout": 0.1},
 "data": {"objectives": ["mlm"], "seq_len": 48, "batch_size": 8, "seed": 7, "valid_every": 5, "valid_batches": 2},
 "optimizer": {"lr": 1e-3, "warmup_steps": 2}, "budget": {"steps": 10}, "threads": 2,
 "checkpoint": {"dir": "$2", "every": 5},
 "distill": {"teacher": "teacher"$3}}
EOF
}

# --- config errors, named
refused() { # refused CONFIG WHAT PATTERN SAYS: kiln train --config CONFIG exits 78, stderr matches PATTERN
  expect_exit 78 "$2" "$KILN" train --config "$1"
  grep_err "$3" "$4"
}
cat > e1.json <<'EOF'
{"model": {"type": "distilbert"}, "data": {"objectives": ["mlm"]}, "budget": {"steps": 2}, "distill": {"alpha_ce": 3}}
EOF
refused e1.json "distill keys without a teacher refused" 'distill.alpha_ce: needs distill.teacher' "the message names the key"
student e2.json s_e2 ', "alpha_att": 2'
refused e2.json "a TinyBERT key with the DistilBERT method refused" 'distill.alpha_att: a TinyBERT key' "the message says whose key it is"
student e3.json s_e3 ', "student_layers": [0, 1, 2]'
refused e3.json "student_layers of another length refused" 'distill.student_layers: lists 3 teacher layers, the student has 2' "the message gives both numbers"
student e4.json s_e4 ''
sed -i 's/"teacher": "teacher"/"teacher": "nowhere"/' e4.json
refused e4.json "a missing teacher refused" 'distill.teacher: cannot open nowhere' "the message names the path"
student e5.json s_e5 ', "init_from_teacher": false'
sed -i 's/"dim": 48/"dim": 32/; s/"hidden_dim": 96/"hidden_dim": 64/' e5.json
refused e5.json "a student of another width refused for the cosine loss" 'cosine loss compares hidden states of one width: the student.s is 32, the teacher.s 48' "the message gives the widths"
cat > e6.json <<'EOF'
{"model": {"type": "gpt2"}, "data": {"objectives": ["clm"]}, "budget": {"steps": 2}, "distill": {"teacher": "teacher"}}
EOF
refused e6.json "a GPT-2 student refused" 'model.type: distillation trains a masked-LM student' "the message says which models"
expect_exit 0 "a second vocabulary" "$KILN" vocab train -q --size 2000 --name v2k
student e7.json s_e7 ''
sed -i 's/"seed": 7,/"seed": 7, "vocab": "v2k",/' e7.json
expect_exit 0 "tokenize with it" "$KILN" tokenize -q --vocab v2k
refused e7.json "a teacher of another vocabulary refused" 'made with another vocabulary than v2k' "the message names the vocabulary"
student e8.json s_e8 ''
sed -i 's#"optimizer"#"init": "teacher", "optimizer"#' e8.json
refused e8.json "init and a teacher together refused" 'init and distill.teacher both start the student' "the message says to give one"
student e9.json s_e9 ', "init_from_teacher": false'
sed -i 's/"max_position_embeddings": 64/"max_position_embeddings": 128/; s/"seq_len": 48/"seq_len": 96/' e9.json
refused e9.json "a teacher shorter than the student's rows refused" 'teacher: teacher.* takes sequences of at most 64 tokens, data.seq_len is 96' "the message gives both lengths"

# --- DistilBERT's triple loss
student d.json sA ''
expect_exit 0 "distil 10 steps (DistilBERT student)" "$KILN" train --config d.json --json
cp out.txt a.json
for k in loss ce_loss mlm_loss cos_loss teacher_agree mlm_acc val_mlm_loss; do
  check "term $k reported" $PY -c "import json,math,sys; d=json.load(open('a.json')); v=d['$k']; sys.exit(0 if v is not None and math.isfinite(v) else 1)"
done
check "loss = 5 ce + 2 mlm + 1 cos" $PY -c "
import json,sys; d=json.load(open('a.json'))
sys.exit(0 if abs(d['loss'] - (5*d['ce_loss'] + 2*d['mlm_loss'] + d['cos_loss'])) < 1e-4 * d['loss'] else 1)"
check "the summary reports the teacher (hash, parameters, memory)" $PY -c "
import json,sys; t=json.load(open('a.json'))['teacher']
sys.exit(0 if len(t['hash']) == 32 and t['params'] > 100000 and t['bytes'] > t['params'] * 4 else 1)"
grep_err 'student initialised from the teacher: embeddings, heads, layers \[0, 2\]' "the student starts from teacher layers 0 and 2"
grep_err 'teacher .*bert, 4 layers, hidden 48, .*inference only, .* MB' "the start says what the teacher is and its memory"
ck=$(json checkpoint a.json)
check "the checkpoint pins the teacher by its hash" $PY -c "
import json,sys; s=json.load(open('$ck/state.json')); a=json.load(open('a.json'))
sys.exit(0 if s['extra']['teacher']['hash'] == a['teacher']['hash'] else 1)"
check "the teacher's files are untouched" sha256sum -c --quiet teacher.sha
check "the student is 2 layers of width 48 (no layer 2)" $PY -c "
import json,struct,sys
f=open('$ck/model.safetensors','rb'); n=struct.unpack('<Q',f.read(8))[0]; h=json.loads(f.read(n))
ok = 'distilbert.transformer.layer.1.ffn.lin1.weight' in h and not any('layer.2.' in k for k in h)
sys.exit(0 if ok else 1)"
student d2.json sB ''
expect_exit 0 "the same distillation again" "$KILN" train -q --config d2.json
check "same config and seed: the same bytes" cmp -s sA/step-000000010/model.safetensors sB/step-000000010/model.safetensors
student d3.json sC ''
expect_exit 0 "a run paused at step 5" "$KILN" train -q --config d3.json --pause-at 5
expect_exit 0 "resumed" "$KILN" train -q --config d3.json --resume
check "paused and resumed: the bytes of the uninterrupted run" cmp -s sA/step-000000010/model.safetensors sC/step-000000010/model.safetensors
check "and the optimizer state" cmp -s sA/step-000000010/optimizer.safetensors sC/step-000000010/optimizer.safetensors

# another teacher (trained 2 more steps) is refused on resume
sed 's/"dir": "teacher"/"dir": "teacher2"/; s/"steps": 40/"steps": 42/' teacher.json > teacher2.json
expect_exit 0 "a second teacher" "$KILN" train -q --config teacher2.json
student d4.json sD ''
expect_exit 0 "a run paused at step 5" "$KILN" train -q --config d4.json --pause-at 5
sed -i 's/"teacher": "teacher"/"teacher": "teacher2"/' d4.json
expect_exit 78 "resuming with another teacher refused" "$KILN" train --config d4.json --resume
grep_err 'not the one the run started with \(content hash' "the message says why"

# the teacher as a Hugging Face folder: the same hash, the same student
expect_exit 0 "export the teacher" "$KILN" export -q --checkpoint teacher --format hf --out teacher_hf
student d5.json sE ''
sed -i 's/"teacher": "teacher"/"teacher": "teacher_hf"/' d5.json
expect_exit 0 "distil from the Hugging Face folder" "$KILN" train --config d5.json --json
check "the same content hash" [ "$(json teacher.hash)" = "$(json teacher.hash a.json)" ]
check "the same student bytes" cmp -s sA/step-000000010/model.safetensors sE/step-000000010/model.safetensors

# positions all
student d6.json sF ', "positions": "all", "temperature": 3'
expect_exit 0 "distil with the soft loss at every position" "$KILN" train --config d6.json --json
check "ce_loss reported" $PY -c "import json,math,sys; v=json.load(open('out.txt'))['ce_loss']; sys.exit(0 if math.isfinite(v) else 1)"
check "a different student than masked positions" bash -c "! cmp -s sA/step-000000010/model.safetensors sF/step-000000010/model.safetensors"

# export, predict
expect_exit 0 "export the student" "$KILN" export -q --checkpoint sA --format hf --out student_hf
check "DistilBertForMaskedLM" $PY -c "import json,sys; c=json.load(open('student_hf/config.json')); sys.exit(0 if c['architectures']==['DistilBertForMaskedLM'] and c['n_layers']==2 and c['dim']==48 else 1)"
expect_exit 0 "predict with the student" "$KILN" predict --checkpoint sA --json "The [MASK] of the city"
check "a fill for [MASK]" grep -q '"token"' out.txt

# --- TinyBERT: a narrower BERT student
cat > tb.json <<'EOF'
{"model": {"type": "bert", "hidden_size": 24, "num_hidden_layers": 2, "num_attention_heads": 2,
           "intermediate_size": 48, "max_position_embeddings": 64},
 "data": {"objectives": ["mlm"], "seq_len": 48, "batch_size": 8, "seed": 7, "valid_every": 5, "valid_batches": 2},
 "optimizer": {"lr": 2e-3, "warmup_steps": 2}, "budget": {"steps": 10}, "threads": 2,
 "checkpoint": {"dir": "tA", "every": 5},
 "distill": {"teacher": "teacher", "method": "tinybert", "stage": "intermediate"}}
EOF
expect_exit 0 "TinyBERT, intermediate stage" "$KILN" train --config tb.json --json
for k in att_loss hid_loss emb_loss; do
  check "term $k reported" $PY -c "import json,math,sys; v=json.load(open('out.txt'))['$k']; sys.exit(0 if math.isfinite(v) else 1)"
done
check "loss = att + hid + emb (alpha_mlm 0)" $PY -c "
import json,sys; d=json.load(open('out.txt'))
sys.exit(0 if abs(d['loss'] - (d['att_loss'] + d['hid_loss'] + d['emb_loss'])) < 1e-4 * d['loss'] else 1)"
check "the projections are in the checkpoint" $PY -c "
import json,struct,sys
f=open('tA/step-000000010/model.safetensors','rb'); n=struct.unpack('<Q',f.read(8))[0]; h=json.loads(f.read(n))
sys.exit(0 if h['distill.fit_dense.weight']['shape'] == [48, 24] and h['distill.fit_emb.weight']['shape'] == [48, 24] else 1)"
sed 's/"stage": "intermediate"/"stage": "both", "intermediate_fraction": 0.5/; s/"dir": "tA"/"dir": "tB"/' tb.json > tb2.json
expect_exit 0 "TinyBERT, both stages" "$KILN" train --config tb2.json --json
check "the last step is in the prediction stage (ce_loss, no att_loss)" $PY -c "
import json,sys; d=json.load(open('out.txt')); sys.exit(0 if 'ce_loss' in d and 'att_loss' not in d and d['loss'] == d['ce_loss'] else 1)"
sed 's/"dir": "tB"/"dir": "tC"/' tb2.json > tb3.json
expect_exit 0 "both stages, paused at step 3" "$KILN" train -q --config tb3.json --pause-at 3
expect_exit 0 "resumed" "$KILN" train -q --config tb3.json --resume
check "resumed across the stage switch: the same bytes" cmp -s tB/step-000000010/model.safetensors tC/step-000000010/model.safetensors
expect_exit 0 "export the TinyBERT student" "$KILN" export -q --checkpoint tB --format hf --out tiny_hf
check "BertForPreTraining or BertForMaskedLM without the projections" $PY -c "
import json,struct,sys
c=json.load(open('tiny_hf/config.json'))
f=open('tiny_hf/model.safetensors','rb'); n=struct.unpack('<Q',f.read(8))[0]; h=json.loads(f.read(n))
ok = c['architectures'][0] in ('BertForMaskedLM', 'BertForPreTraining') and c['hidden_size'] == 24 and not any(k.startswith('distill') for k in h)
sys.exit(0 if ok else 1)"

# --- task-specific distillation: a fine-tuned teacher's soft labels
SST="$DATA/sst2"
ftcfg() { # ftcfg NAME INIT DIR [distill json]
  cat > "$1" <<JSON
{"init": "$2", "task": {"type": "classification", "train": "$SST/train.tsv", "dev": "$SST/dev.tsv"},
 "data": {"seq_len": 48, "batch_size": 16, "seed": 3, "eval_every": 10}, "optimizer": {"lr": 1e-3},
 "budget": {"steps": 20}, "threads": 2, "checkpoint": {"dir": "$3", "keep": 1}${4:+, \"distill\": $4}}
JSON
}
ftcfg ftt.json teacher ftT
expect_exit 0 "fine-tune the teacher on SST-2" "$KILN" finetune -q --config ftt.json
ftcfg fts.json sA ftS '{"teacher": "ftT/best", "temperature": 2, "alpha_ce": 0.7, "alpha_gold": 0.3}'
expect_exit 0 "fine-tune the student on the teacher's soft labels and the gold labels" "$KILN" finetune --config fts.json --json
grep_err 'teacher ftT/best: 4 layers, hidden 48, .*inference only' "the start names the teacher"
check "the checkpoint pins the fine-tuned teacher" $PY -c "
import json,sys; s=json.load(open('ftS/step-000000020/state.json'))
t=s['extra']['teacher']; sys.exit(0 if len(t['hash']) == 32 and t['path'] == 'ftT/best' else 1)"
ftcfg fts2.json sA ftS2 '{"teacher": "ftT/best", "temperature": 2, "alpha_ce": 0.7, "alpha_gold": 0.3}'
expect_exit 0 "the same again" "$KILN" finetune -q --config fts2.json
check "the same bytes" cmp -s ftS/step-000000020/model.safetensors ftS2/step-000000020/model.safetensors
ftcfg fts3.json sA ftS3
expect_exit 0 "the student without a teacher" "$KILN" finetune -q --config fts3.json
check "the teacher changed the student" bash -c "! cmp -s ftS/step-000000020/model.safetensors ftS3/step-000000020/model.safetensors"
ftcfg fts4.json sA ftS4 '{"teacher": "teacher"}'
expect_exit 78 "a pretraining checkpoint as the fine-tuning teacher refused" "$KILN" finetune --config fts4.json
grep_err 'not a classifier of the task.s 2 labels' "the message says what is needed"
ftcfg fts5.json sA ftS5 '{"teacher": "ftT/best", "alpha_ce": 0, "alpha_gold": 0}'
expect_exit 78 "no loss refused" "$KILN" finetune --config fts5.json
grep_err 'both 0: no loss' "the message says why"
student e10.json s_e10 ''
sed -i 's#"teacher": "teacher"#"teacher": "ftT/best"#' e10.json
expect_exit 78 "a fine-tuned classifier as a pretraining teacher refused" "$KILN" train --config e10.json
grep_err 'a masked-LM model is needed' "the message says what is needed"

# the fine-tuned teacher as a Hugging Face folder (BertForSequenceClassification): the same student
expect_exit 0 "export the fine-tuned teacher" "$KILN" export -q --checkpoint ftT/best --format hf --out ftT_hf
check "BertForSequenceClassification" grep -q '"BertForSequenceClassification"' ftT_hf/config.json
ftcfg fts6.json sA ftS6 '{"teacher": "ftT_hf", "temperature": 2, "alpha_ce": 0.7, "alpha_gold": 0.3}'
expect_exit 0 "fine-tune the student with the Hugging Face folder as the teacher" "$KILN" finetune -q --config fts6.json
check "the same student as with the kiln checkpoint" cmp -s ftS/step-000000020/model.safetensors ftS6/step-000000020/model.safetensors

# --- other teachers from the command line: ALBERT and DistilBERT
cat > albertT.json <<'EOF'
{"model": {"type": "albert", "embedding_size": 24, "hidden_size": 48, "num_hidden_layers": 4, "num_attention_heads": 2,
           "intermediate_size": 96, "max_position_embeddings": 64},
 "data": {"objectives": ["mlm"], "seq_len": 48, "batch_size": 8, "seed": 5},
 "optimizer": {"lr": 2e-3, "warmup_steps": 2}, "budget": {"steps": 10}, "threads": 2,
 "checkpoint": {"dir": "albertT", "every": 0}}
EOF
expect_exit 0 "train an ALBERT teacher (10 steps)" "$KILN" train -q --config albertT.json
sed 's/"dir": "tA"/"dir": "tAl"/; s/"teacher": "teacher"/"teacher": "albertT"/' tb.json > tbal.json
expect_exit 0 "TinyBERT from the ALBERT teacher" "$KILN" train --config tbal.json --json
grep_err 'teacher albertT.*albert, 4 layers, hidden 48' "the start names the ALBERT teacher"
check "its terms are finite" $PY -c "
import json,math,sys; d=json.load(open('out.txt')); sys.exit(0 if all(math.isfinite(d[k]) for k in ('att_loss', 'hid_loss', 'emb_loss')) else 1)"
student dal0.json sAl0 ', "positions": "all"'
sed -i 's/"teacher": "teacher"/"teacher": "albertT"/' dal0.json
refused dal0.json "a DistilBERT student started from an ALBERT teacher (embedding 24, hidden 48) refused" \
  'must match the teacher \(3000, 24, 48, 96\).*init_from_teacher false' "the message gives both shapes and the way out"
student dal.json sAl ', "init_from_teacher": false, "positions": "all"'
sed -i 's/"teacher": "teacher"/"teacher": "albertT"/' dal.json
expect_exit 0 "DistilBERT from the ALBERT teacher (positions all)" "$KILN" train --config dal.json --json
check "ce_loss and cos_loss finite" $PY -c "
import json,math,sys; d=json.load(open('out.txt')); sys.exit(0 if math.isfinite(d['ce_loss']) and math.isfinite(d['cos_loss']) else 1)"
sed 's/"dir": "tA"/"dir": "tDb"/; s/"teacher": "teacher"/"teacher": "sA"/' tb.json > tbdb.json
expect_exit 0 "TinyBERT from the DistilBERT student as a teacher" "$KILN" train --config tbdb.json --json
grep_err 'teacher sA.*distilbert, 2 layers, hidden 48' "the start names the DistilBERT teacher"
check "its terms are finite" $PY -c "
import json,math,sys; d=json.load(open('out.txt')); sys.exit(0 if all(math.isfinite(d[k]) for k in ('att_loss', 'hid_loss', 'emb_loss')) else 1)"

# --- the daemon runs a distillation job (a relative teacher made absolute by kiln run submit)
mkdir -p spool sub
echo '{"train_threads": 1, "ingest_threads": 1, "retry_seconds": 1}' > dd.json
"$KILN" daemon --spool spool --config dd.json > daemon.log 2>&1 &
DPID=$!
for _ in $(seq 1 300); do "$KILN" status >/dev/null 2>&1 && break; sleep 0.05; done
student dj.json sQ ''
sed -i 's/"teacher": "teacher"/"teacher": "..\/teacher"/' dj.json
(cd sub && "$KILN" run submit --json --config ../dj.json --set checkpoint.dir=ckQ --set budget.steps=6 > ../sub.json 2>../err.txt)
JOB=$(json id sub.json)
check "submitted: distill.teacher made absolute" $PY -c '
import json, subprocess, sys
j = json.loads(subprocess.run([sys.argv[1], "run", "show", sys.argv[2], "--json"], capture_output=True, text=True).stdout)
import os
t = j["config"]["distill"]["teacher"]; assert t.startswith("/") and os.path.samefile(t, "teacher"), t' "$KILN" "$JOB"
for _ in $(seq 1 600); do
  st=$("$KILN" run show "$JOB" --json 2>/dev/null | $PY -c 'import json,sys; print(json.load(sys.stdin)["state"])')
  [ "$st" = done ] || [ "$st" = failed ] && break; sleep 0.1
done
check "the daemon's distillation job is done" [ "$st" = done ]
check "its checkpoint pins the teacher" $PY -c "
import json,sys; s=json.load(open('sub/ckQ/step-000000006/state.json')); a=json.load(open('a.json'))
sys.exit(0 if s['extra']['teacher']['hash'] == a['teacher']['hash'] else 1)"
kill -TERM "$DPID"; wait "$DPID" 2>/dev/null

finish
