#!/usr/bin/env bash
# test_finetune.sh: kiln finetune / eval / classify on real data: a small
# ALBERT pretrained on the bundled corpus, fine-tuned on a 2,000-sentence
# slice of SST-2 (examples/data/sst2) and measured on 300 held-out ones:
# dev accuracy well above chance (outside the sanitizer build), the best
# checkpoint kept and named, eval agreeing with the run's own figures,
# classify's output, the same run from the model's Hugging Face export
# giving the same bytes, the classifier's own export, and bad input (missing
# column, label outside the set, empty file, invalid UTF-8, unknown key)
# named by file and line with exit 65 / 78 and nothing written.
source "$(dirname "$0")/lib.sh"
SST="$DATA/sst2"

for c in finetune eval classify; do expect_exit 0 "kiln $c --help" "$KILN" "$c" --help; done
expect_exit 0 "ingest" "$KILN" ingest -q "$DATA/enwiki-sample.xml.bz2" "$DATA/state_union.zip"
expect_exit 0 "vocab train 4k" "$KILN" vocab train -q --size 4000 --name v4k
expect_exit 0 "tokenize" "$KILN" tokenize -q

STEPS=80 WARM=10
[ -n "${KILN_SANITIZE:-}" ] && STEPS=10 WARM=2
cat > pre.json <<JSON
{"model": {"type": "albert", "embedding_size": 64, "hidden_size": 128, "num_hidden_layers": 2,
           "num_attention_heads": 2, "intermediate_size": 256, "max_position_embeddings": 128},
 "data": {"objectives": ["ngram", "sop"], "seq_len": 64, "batch_size": 16},
 "optimizer": {"type": "lamb", "lr": 3e-3, "warmup_steps": $WARM},
 "budget": {"steps": $STEPS}, "threads": 2, "checkpoint": {"dir": "pre", "every": 0, "keep": 1}}
JSON
expect_exit 0 "pretrain a small ALBERT" "$KILN" train --config pre.json

EPOCHS=3
[ -n "${KILN_SANITIZE:-}" ] && EPOCHS=0.5
cat > ft.json <<JSON
{"init": "pre",
 "task": {"type": "classification", "train": "$SST/train.tsv", "dev": "$SST/dev.tsv"},
 "data": {"seq_len": 64, "batch_size": 32, "seed": 1, "eval_every": 25},
 "optimizer": {"lr": 1e-3},
 "budget": {"epochs": $EPOCHS}, "threads": 2,
 "checkpoint": {"dir": "ftA", "keep": 1}}
JSON

# --- a fine-tuning run
expect_exit 0 "finetune" "$KILN" finetune --config ft.json --json
cp out.txt ftA.json
check "json fields" $PY -c "
import json; d=json.load(open('ftA.json'))
for k in ['steps','seconds','dev','best_checkpoint','best','checkpoint']: assert k in d, k
for k in ['accuracy','f1','loss','examples']: assert k in d['dev'], k
assert d['dev']['examples'] == 300 and d['best_checkpoint'] == 'ftA/best'
assert d['best']['accuracy'] >= d['dev']['accuracy']"
check "best checkpoint folder" test -s ftA/best/model.safetensors -a -s ftA/best/state.json -a -s ftA/best.json
if [ -z "${KILN_SANITIZE:-}" ]; then
  check "dev accuracy well above chance (57% majority class)" $PY -c "
import json; d=json.load(open('ftA.json')); print(d['best']['accuracy']); assert d['best']['accuracy'] >= 0.64"
fi
check "precision in the summary (auto: bf16 or fp32, as the CPU)" $PY -c "
import json; d=json.load(open('ftA.json')); assert d['precision'] in ('bf16', 'fp32'), d.get('precision')"
check "the log says the precision, evaluation in fp32" grep -q "precision .*evaluation in fp32\|precision fp32 (auto: " err.txt
KILN_CPU_NO_BF16=1 expect_exit 69 "precision bf16 where the CPU has no bf16: refused" "$KILN" finetune --config ft.json \
  --set precision=bf16 --set checkpoint.dir=ftX
grep_err "precision bf16 cannot run here: (this CPU has no bf16 dot products|this kiln was built without oneDNN)" "the refusal says why"
check "nothing written by the refusal" [ ! -e ftX ]
expect_exit 78 "precision: an unknown value" "$KILN" finetune --config ft.json --set precision=half --set checkpoint.dir=ftX
expect_exit 73 "a second run into the same folder is refused" "$KILN" finetune --config ft.json
grep_err "--resume" "says how to continue"

# --- interrupted (SIGTERM) and resumed: the same bytes as the run that never stopped
"$KILN" finetune --config ft.json --set checkpoint.dir=ftC > /dev/null 2> errC.txt &
pid=$!
sleep 1.5
kill -TERM $pid 2>/dev/null
wait $pid
ok "stopped by SIGTERM (exit $?)"
expect_exit 0 "resume" "$KILN" finetune --config ft.json --set checkpoint.dir=ftC --resume --json
last=$(basename "$(json checkpoint ftA.json)")
check "resumed run ends on the same step" [ "$(basename "$(json checkpoint)")" = "$last" ]
check "resumed run: same model bytes" cmp "ftA/$last/model.safetensors" "ftC/$last/model.safetensors"
check "resumed run: same best" [ "$(json best.accuracy)" = "$(json best.accuracy ftA.json)" ]

# --- the threads of the config are the run's (OpenBLAS's OpenMP build once reset them to 1)
expect_exit 0 "finetune: one step, 2 threads" "$KILN" finetune --config ft.json --set checkpoint.dir=ftT --set budget.steps=1
grep_err "training examples, dev .*; 2 threads$" "runs on the 2 threads of the config"

# --- paused at a step that is not an evaluation step (13; eval_every 25) and
# resumed: no evaluation at the pause, so the best is the uninterrupted run's
expect_exit 0 "finetune --pause-at 13" "$KILN" finetune --config ft.json --set checkpoint.dir=ftS --pause-at 13 --json
check "paused: stopped at step 13, no dev evaluation, no best" $PY -c "
import json; d=json.load(open('out.txt')); assert d['stopped'] and d['steps'] == 13 and d['dev'] is None and d['best'] is None, d"
check "paused: no best folder" [ ! -e ftS/best -a ! -e ftS/best.json ]
expect_exit 0 "resume after the pause" "$KILN" finetune --config ft.json --set checkpoint.dir=ftS --resume --json
check "paused and resumed: same best step and accuracy" $PY -c "
import json; a=json.load(open('ftA.json'))['best']; b=json.load(open('out.txt'))['best']; assert a == b, (a, b)"
check "paused and resumed: same best bytes" cmp ftA/best/model.safetensors ftS/best/model.safetensors
expect_exit 64 "--pause-at 0 refused" "$KILN" finetune --config ft.json --set checkpoint.dir=ftX --pause-at 0

# --- eval and classify
expect_exit 0 "eval the best checkpoint" "$KILN" eval --checkpoint ftA/best --data "$SST/dev.tsv" --json
check "eval agrees with the run's best figures" $PY -c "
import json; e=json.load(open('out.txt')); d=json.load(open('ftA.json'))['best']
assert e['examples'] == 300 and abs(e['accuracy'] - d['accuracy']) < 1e-12 and abs(e['f1'] - d['f1']) < 1e-12, (e, d)"
expect_exit 0 "classify two sentences" "$KILN" classify --checkpoint ftA/best --json \
  "a gorgeous , witty , seductive movie ." "the worst film of the year ."
check "classify: one line per text, label and probabilities" $PY -c "
import json; L=[json.loads(l) for l in open('out.txt')]
assert len(L) == 2 and L[0]['text'].startswith('a gorgeous')
for d in L: assert d['label'] in ('0', '1') and abs(sum(d['probs']) - 1) < 1e-6 and len(d['probs']) == 2"
printf 'a delight\nsomething bad\n' > lines.txt
expect_exit 0 "classify from standard input" sh -c "'$KILN' classify --checkpoint ftA/best < lines.txt"
check "two lines out" [ "$(wc -l < out.txt)" = 2 ]
expect_exit 65 "classify: not a classifier" "$KILN" classify --checkpoint pre "text"

# --- the same run from the pretrained model's Hugging Face export: same bytes
expect_exit 0 "export the pretrained model" "$KILN" export --checkpoint pre --out hfpre
expect_exit 0 "finetune from the HF folder" "$KILN" finetune --config ft.json --set init=hfpre --set checkpoint.dir=ftB --json
check "same model bytes as from the kiln checkpoint" cmp ftA/best/model.safetensors ftB/best/model.safetensors

# --- the classifier's export
expect_exit 0 "export the classifier" "$KILN" export --checkpoint ftA/best --out hfclf
check "AlbertForSequenceClassification config" $PY -c "
import json; c=json.load(open('hfclf/config.json'))
assert c['architectures'] == ['AlbertForSequenceClassification'], c['architectures']
assert c['id2label'] == {'0': '0', '1': '1'} and c['label2id'] == {'0': 0, '1': 1}
assert c['problem_type'] == 'single_label_classification'"
check "classifier tensors exported" $PY -c "
import json, struct; f=open('hfclf/model.safetensors','rb'); n=struct.unpack('<Q', f.read(8))[0]; h=json.loads(f.read(n))
assert h['classifier.weight']['shape'] == [2, 128] and 'albert.pooler.weight' in h and not any(k.startswith('predictions') for k in h)
assert h['__metadata__'] == {'format': 'pt'}"

# --- regression (the SST-2 labels read as numbers) and a sentence-pair task in JSONL
expect_exit 0 "finetune: regression" "$KILN" finetune --config ft.json --set task.type=regression \
  --set checkpoint.dir=ftR --set budget.steps=20 --set data.eval_every=10 --json
check "regression: pearson, spearman, mse" $PY -c "
import json; d=json.load(open('out.txt'))['dev']; assert set(d) >= {'pearson','spearman','mse','loss'} and d['examples'] == 300, d"
expect_exit 0 "eval a regressor" "$KILN" eval --checkpoint ftR/best --data "$SST/dev.tsv" --json
check "eval: regression figures" $PY -c "import json; d=json.load(open('out.txt')); assert 'pearson' in d and 'accuracy' not in d"
expect_exit 0 "classify with a regressor" "$KILN" classify --checkpoint ftR/best --json "fine"
check "classify: a value" $PY -c "import json; d=json.loads(open('out.txt').readline()); assert isinstance(d['value'], float)"
$PY - "$SST/train.tsv" <<'PY'
import json, sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1], encoding="utf-8")][1:401]
with open("pairs.jsonl", "w") as f:
    for i in range(0, 400, 2):
        a, b = rows[i], rows[i + 1]
        f.write(json.dumps({"premise": a[0], "hypothesis": b[0], "gold": "same" if a[1] == b[1] else "different"}) + "\n")
PY
expect_exit 0 "finetune: a pair task in JSONL with string labels" "$KILN" finetune --config ft.json \
  --set task.train=pairs.jsonl --set task.dev=pairs.jsonl --set task.text_column=premise \
  --set task.text_pair_column=hypothesis --set task.label_column=gold --set checkpoint.dir=ftP --set budget.steps=10 --json
check "pairs: 200 dev examples" [ "$(json dev.examples)" = 200 ]
expect_exit 0 "export the pair classifier" "$KILN" export --checkpoint ftP/best --out hfpair
check "string labels in id2label" $PY -c "
import json; c=json.load(open('hfpair/config.json')); assert c['id2label'] == {'0': 'different', '1': 'same'}, c['id2label']"
expect_exit 0 "classify a pair (TAB between the texts)" "$KILN" classify --checkpoint ftP/best --json "$(printf 'a fine film\tan awful film')"
check "pair label" $PY -c "import json; d=json.loads(open('out.txt').readline()); assert d['label'] in ('same', 'different')"

# --- bad input: named by file and line, exit 65, nothing written
printf 'sentence\tlabel\ngood movie\t1\nbad movie\t0\n' > ok.tsv
printf 'text\tlabel\ngood movie\t1\n' > nocol.tsv
printf 'sentence\tlabel\ngood movie\t1\nbad movie\t2\n' > badlabel.tsv
: > empty.tsv
printf 'sentence\tlabel\ngood movie\t1\nbad \xff movie\t0\n' > badutf8.tsv
expect_exit 65 "a missing column" "$KILN" finetune --config ft.json --set task.train=nocol.tsv --set checkpoint.dir=bad1
grep_err "nocol.tsv:1" "names the file and line"
expect_exit 65 "a dev label outside the training labels" "$KILN" finetune --config ft.json --set task.train=ok.tsv --set task.dev=badlabel.tsv --set checkpoint.dir=bad2
grep_err "badlabel.tsv:3" "names the file and line"
expect_exit 65 "an empty file" "$KILN" finetune --config ft.json --set task.train=empty.tsv --set checkpoint.dir=bad3
grep_err "empty.tsv" "names the file"
expect_exit 65 "invalid UTF-8" "$KILN" finetune --config ft.json --set task.train=badutf8.tsv --set checkpoint.dir=bad4
grep_err "badutf8.tsv:3" "names the file and line"
check "nothing written" [ ! -e bad1 -a ! -e bad2 -a ! -e bad3 -a ! -e bad4 ]
expect_exit 78 "an unknown key" "$KILN" finetune --config ft.json --set task.txt_column=x
grep_err "task.txt_column" "names the key"
expect_exit 65 "eval: a missing column" "$KILN" eval --checkpoint ftA/best --data nocol.tsv
grep_err "nocol.tsv:1" "names the file and line"
finish
