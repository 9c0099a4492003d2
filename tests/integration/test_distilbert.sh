#!/usr/bin/env bash
# test_distilbert.sh: model.type distilbert end to end on the bundled corpus
# (docs/train.md, "DistilBERT"): config errors, named; a short run's terms;
# same config and seed -> same bytes; a resumed run gives the bytes of an
# uninterrupted one; kiln export writes DistilBertForMaskedLM (names and
# shapes of export-formats.md, the tied projector left out, DistilBertConfig,
# DistilBertTokenizer); import of that folder and export again give the same
# files; predict fills [MASK] from the checkpoint and from the import;
# DistilBertForSequenceClassification: finetune on SST-2 (a few steps), its
# checkpoint (pre_classifier, classifier, no pooler), eval agreeing with the
# run, classify, export as that class (names, shapes, labels, DistilBertConfig),
# import of the export predicting the same, export -> import -> export the
# same files, the same fine-tuning from the pretrained model's Hugging Face
# export giving the same bytes, model.classifier_dropout as seq_classif_dropout.
source "$(dirname "$0")/lib.sh"

expect_exit 0 "ingest" "$KILN" ingest -q "$DATA/enwiki-sample.xml.bz2"
expect_exit 0 "vocab train 3k" "$KILN" vocab train -q --size 3000 --name v3k
expect_exit 0 "tokenize" "$KILN" tokenize -q

# --- config errors, named
cat > bad1.json <<'EOF'
{"model": {"type": "distilbert"}, "data": {"objectives": ["mlm", "sop"]}, "budget": {"steps": 2}}
EOF
expect_exit 78 "distilbert with sop refused" "$KILN" train --config bad1.json
grep_err 'data.objectives.*no sentence-pair head' "the message says why"
cat > bad2.json <<'EOF'
{"model": {"type": "distilbert", "hidden_size": 64}, "budget": {"steps": 2}}
EOF
expect_exit 78 "BertConfig's names refused for distilbert" "$KILN" train --config bad2.json
grep_err 'model.hidden_size: not a key of model.type "distilbert".*dim, n_layers' "the message lists DistilBertConfig's names"

# --- a short run; its terms
cat > d.json <<'EOF'
{
  "model": {"type": "distilbert", "dim": 48, "n_layers": 2, "n_heads": 2, "hidden_dim": 96,
            "max_position_embeddings": 64},
  "data": {"seq_len": 48, "batch_size": 6, "seed": 11, "valid_every": 5, "valid_batches": 2},
  "optimizer": {"type": "adamw", "lr": 1e-3, "warmup_steps": 2},
  "budget": {"steps": 10},
  "threads": 2,
  "checkpoint": {"dir": "ckA", "every": 5, "keep": 3}
}
EOF
expect_exit 0 "train distilbert 10 steps" "$KILN" train --config d.json --json
cp out.txt a.json
for k in loss mlm_loss mlm_acc val_mlm_loss; do
  check "term $k reported" $PY -c "import json,math,sys; d=json.load(open('a.json')); v=d['$k']; sys.exit(0 if v is not None and math.isfinite(v) else 1)"
done
check "no sentence-pair term" $PY -c "import json,sys; d=json.load(open('a.json')); sys.exit(1 if any(k.startswith(('sop', 'nsp')) for k in d) else 0)"
ck=$(json checkpoint a.json)
check "the checkpoint's config: DistilBertConfig's names, objectives [mlm]" $PY - "$ck" <<'EOF'
import json, sys
s = json.load(open(sys.argv[1] + "/state.json"))
c = s["config"] if isinstance(s["config"], dict) else json.loads(s["config"])
m = c["model"]
assert m["type"] == "distilbert" and m["dim"] == 48 and m["n_layers"] == 2 and m["hidden_dim"] == 96, m
assert "hidden_size" not in m and "type_vocab_size" not in m, m
assert c["data"]["objectives"] == ["mlm"], c["data"]
EOF

# --- determinism and exact resume
sed 's/"ckA"/"ckB"/' d.json > b.json
expect_exit 0 "the same run again" "$KILN" train --config b.json
check "same config and seed: same model bytes" cmp -s "$ck/model.safetensors" ckB/step-000000010/model.safetensors
check "same config and seed: same optimizer bytes" cmp -s "$ck/optimizer.safetensors" ckB/step-000000010/optimizer.safetensors
expect_exit 0 "first 4 steps (--pause-at 4)" "$KILN" train --config d.json --set checkpoint.dir=ckC --pause-at 4
expect_exit 0 "resume to the end" "$KILN" train --config d.json --set checkpoint.dir=ckC --resume
check "resumed run: the uninterrupted run's model bytes" cmp -s "$ck/model.safetensors" ckC/step-000000010/model.safetensors
check "resumed run: the uninterrupted run's optimizer bytes" cmp -s "$ck/optimizer.safetensors" ckC/step-000000010/optimizer.safetensors

# --- export: DistilBertForMaskedLM
expect_exit 0 "export" "$KILN" export --checkpoint ckA --out hf
for f in model.safetensors config.json vocab.txt tokenizer_config.json special_tokens_map.json; do
  check "export wrote $f" test -s "hf/$f"
done
cat > names.py <<'EOF'
import json, struct, sys
def header(p):
    b = open(p, 'rb').read(); n = struct.unpack('<Q', b[:8])[0]
    h = json.loads(b[8:8 + n]); meta = h.pop('__metadata__', None)
    return h, meta
h, meta = header('hf/model.safetensors')
c = json.load(open('hf/config.json')); t = json.load(open('hf/tokenizer_config.json'))
V, D, I = c['vocab_size'], 48, 96
want = {'distilbert.embeddings.word_embeddings.weight': [V, D], 'distilbert.embeddings.position_embeddings.weight': [64, D],
        'distilbert.embeddings.LayerNorm.weight': [D], 'distilbert.embeddings.LayerNorm.bias': [D],
        'vocab_transform.weight': [D, D], 'vocab_transform.bias': [D], 'vocab_layer_norm.weight': [D],
        'vocab_layer_norm.bias': [D], 'vocab_projector.bias': [V]}
for i in range(2):
    p = f'distilbert.transformer.layer.{i}.'
    for k in ('q_lin', 'k_lin', 'v_lin', 'out_lin'):
        want[p + 'attention.' + k + '.weight'] = [D, D]; want[p + 'attention.' + k + '.bias'] = [D]
    for k in ('sa_layer_norm', 'output_layer_norm'):
        want[p + k + '.weight'] = [D]; want[p + k + '.bias'] = [D]
    want[p + 'ffn.lin1.weight'] = [I, D]; want[p + 'ffn.lin1.bias'] = [I]
    want[p + 'ffn.lin2.weight'] = [D, I]; want[p + 'ffn.lin2.bias'] = [D]
got = {k: v['shape'] for k, v in h.items()}
bad = 0
if got != want:
    bad += 1
    print('missing', sorted(set(want) - set(got))[:5], 'extra', sorted(set(got) - set(want))[:5],
          'shapes', [(k, got[k], want[k]) for k in want if k in got and got[k] != want[k]][:5])
if meta != {'format': 'pt'}: bad += 1; print('metadata', meta)
if any(v['dtype'] != 'F32' for v in h.values()): bad += 1; print('dtype')
exp = [(c['architectures'], ['DistilBertForMaskedLM']), (c['model_type'], 'distilbert'), (c['dim'], D),
       (c['n_layers'], 2), (c['n_heads'], 2), (c['hidden_dim'], I), (c['activation'], 'gelu'),
       (c['max_position_embeddings'], 64), (c['sinusoidal_pos_embds'], False), (c['tie_weights_'], True),
       (c['pad_token_id'], 0), (t['tokenizer_class'], 'DistilBertTokenizer')]
for g, w in exp:
    if g != w: bad += 1; print('config', g, '!=', w)
sys.exit(1 if bad else 0)
EOF
if $PY names.py >names.txt 2>&1; then ok "export: DistilBertForMaskedLM names, shapes, F32, format pt, no vocab_projector.weight, config.json and tokenizer class"
else bad "export names / shapes / config:"; sed 's/^/  | /' names.txt | head -20; fi

# --- import, round trip
expect_exit 0 "import the exported folder" "$KILN" import --from hf hf --out imp --json
check "it imports as DistilBertForMaskedLM" grep -q 'DistilBertForMaskedLM' out.txt
expect_exit 0 "export the import" "$KILN" export --checkpoint imp --out hf2
for f in model.safetensors config.json vocab.txt tokenizer_config.json special_tokens_map.json; do
  check "export -> import -> export: the same $f" cmp -s hf/$f hf2/$f
done

# --- predict: fills [MASK], the same from the checkpoint and from the import
expect_exit 0 "predict" "$KILN" predict --checkpoint ckA --top-k 3 --json "the [MASK] of the united states ." "No mask here."
cp out.txt p1.jsonl
check "predict: a line per text, positions and top-3" $PY - <<'EOF'
import json
rows = [json.loads(l) for l in open("p1.jsonl")]
assert len(rows) == 2
assert [m["position"] for m in rows[0]["masks"]] == [2]
assert rows[1]["masks"] == []
for m in rows[0]["masks"]:
    assert len(m["top"]) == 3 and 0 < sum(t["prob"] for t in m["top"]) <= 1.0001
    assert m["top"][0]["prob"] >= m["top"][1]["prob"] >= m["top"][2]["prob"]
EOF
expect_exit 0 "predict from the import" "$KILN" predict --checkpoint imp --top-k 3 --json "the [MASK] of the united states ." "No mask here."
check "the import predicts the same" cmp -s p1.jsonl out.txt

# --- a run started from the import (init)
expect_exit 0 "a run from the imported weights (init)" "$KILN" train --config d.json --set init=imp --set checkpoint.dir=ckI --set budget.steps=2 --set optimizer.warmup_steps=1
grep_err 'init: 41 tensors from imp' "it says what it took"

# --- DistilBertForSequenceClassification: finetune, eval, classify, export, import
SST="$DATA/sst2"
cat > ft.json <<JSON
{"init": "ckA",
 "task": {"type": "classification", "train": "$SST/train.tsv", "dev": "$SST/dev.tsv"},
 "data": {"seq_len": 48, "batch_size": 16, "seed": 3, "eval_every": 4},
 "optimizer": {"lr": 1e-3},
 "budget": {"steps": 8}, "threads": 2,
 "checkpoint": {"dir": "ftA", "keep": 1}}
JSON
expect_exit 0 "finetune DistilBERT on SST-2 (8 steps)" "$KILN" finetune --config ft.json
grep_err 'DistilBERT, 2 layers, hidden 48; a new classifier with 2 labels' "the log names the model"
grep_err 'new \(initialised from the seed\): pre_classifier.weight, pre_classifier.bias, classifier.weight, classifier.bias$' "the new tensors: pre_classifier and classifier"
expect_exit 73 "a second run into the same folder is refused" "$KILN" finetune --config ft.json
expect_exit 0 "finetune again, --json" "$KILN" finetune --config ft.json --set checkpoint.dir=ftJ --json
cp out.txt ftA.json
check "dev figures over the 300 dev examples" $PY -c "
import json, math; d=json.load(open('ftA.json'))
assert d['steps'] == 8 and d['dev']['examples'] == 300 and 0 <= d['dev']['accuracy'] <= 1 and math.isfinite(d['dev']['loss']), d
assert d['best_checkpoint'] == 'ftJ/best'"
check "the same run twice: the same bytes" cmp -s ftA/best/model.safetensors ftJ/best/model.safetensors
check "the checkpoint: DistilBertForSequenceClassification's tensors and extra" $PY - <<'EOF'
import json, struct
b = open('ftA/best/model.safetensors', 'rb').read(); n = struct.unpack('<Q', b[:8])[0]
h = json.loads(b[8:8 + n]); h.pop('__metadata__', None)
assert h['pre_classifier.weight']['shape'] == [48, 48] and h['pre_classifier.bias']['shape'] == [48], h
assert h['classifier.weight']['shape'] == [2, 48] and h['classifier.bias']['shape'] == [2]
assert not any(k.startswith(('vocab_', 'bert.', 'cls.')) or 'pooler' in k for k in h), sorted(h)
assert sum(k.startswith('distilbert.') for k in h) == 36, len(h)
s = json.load(open('ftA/best/state.json'))
e = s['extra'] if isinstance(s['extra'], dict) else json.loads(s['extra'])
assert e['architecture'] == 'DistilBertForSequenceClassification' and e['model_type'] == 'distilbert', e
assert e['pooler'] is False and e['num_labels'] == 2 and e['id2label'] == ['0', '1'], e
EOF
expect_exit 0 "eval the best checkpoint" "$KILN" eval --checkpoint ftA/best --data "$SST/dev.tsv" --json
cp out.txt evA.json
check "eval agrees with the run's best figures" $PY -c "
import json; e=json.load(open('evA.json')); d=json.load(open('ftA.json'))['best']
assert e['examples'] == 300 and abs(e['accuracy'] - d['accuracy']) < 1e-12 and abs(e['f1'] - d['f1']) < 1e-12, (e, d)"
expect_exit 0 "classify" "$KILN" classify --checkpoint ftA/best --json \
  "a gorgeous , witty , seductive movie ." "the worst film of the year ."
cp out.txt c1.jsonl
check "classify: a label and probabilities per text" $PY -c "
import json; L=[json.loads(l) for l in open('c1.jsonl')]
assert len(L) == 2
for d in L: assert d['label'] in ('0', '1') and len(d['probs']) == 2 and abs(sum(d['probs']) - 1) < 1e-6"

expect_exit 0 "export the classifier" "$KILN" export --checkpoint ftA/best --out hfcls
check "export: DistilBertForSequenceClassification's names, shapes and config" $PY - <<'EOF'
import json, struct
b = open('hfcls/model.safetensors', 'rb').read(); n = struct.unpack('<Q', b[:8])[0]
h = json.loads(b[8:8 + n]); meta = h.pop('__metadata__', None)
names = list(h)
assert meta == {'format': 'pt'}, meta
assert h['pre_classifier.weight']['shape'] == [48, 48] and h['classifier.weight']['shape'] == [2, 48], h
assert h['classifier.bias']['shape'] == [2] and h['pre_classifier.bias']['shape'] == [48]
assert all(k.startswith(('distilbert.', 'pre_classifier.', 'classifier.')) for k in names), names
assert all(v['dtype'] == 'F32' for v in h.values())
c = json.load(open('hfcls/config.json')); t = json.load(open('hfcls/tokenizer_config.json'))
assert c['architectures'] == ['DistilBertForSequenceClassification'] and c['model_type'] == 'distilbert', c
assert c['id2label'] == {'0': '0', '1': '1'} and c['label2id'] == {'0': 0, '1': 1}, c
assert c['problem_type'] == 'single_label_classification' and c['seq_classif_dropout'] == 0.2, c
assert c['dim'] == 48 and c['n_layers'] == 2 and 'hidden_size' not in c, c
assert t['tokenizer_class'] == 'DistilBertTokenizer', t
EOF
expect_exit 0 "import the exported classifier" "$KILN" import --from hf hfcls --out impcls --json
check "it imports as DistilBertForSequenceClassification" grep -q 'DistilBertForSequenceClassification' out.txt
expect_exit 0 "classify with the import" "$KILN" classify --checkpoint impcls --json \
  "a gorgeous , witty , seductive movie ." "the worst film of the year ."
check "the import classifies the same" cmp -s c1.jsonl out.txt
expect_exit 0 "classify with the Hugging Face folder itself" "$KILN" classify --checkpoint hfcls --json \
  "a gorgeous , witty , seductive movie ." "the worst film of the year ."
check "the folder classifies the same" cmp -s c1.jsonl out.txt
expect_exit 0 "eval the import (the fine-tuning's seq_len: an import has none)" "$KILN" eval --checkpoint impcls \
  --data "$SST/dev.tsv" --seq-len 48 --json
check "the import's dev figures are the checkpoint's" $PY -c "
import json; a=json.load(open('evA.json')); b=json.load(open('out.txt'))
assert (a['accuracy'], a['f1'], a['examples']) == (b['accuracy'], b['f1'], b['examples']) and abs(a['loss'] - b['loss']) < 1e-9, (a, b)"
expect_exit 0 "export the import" "$KILN" export --checkpoint impcls --out hfcls2
for f in model.safetensors config.json vocab.txt tokenizer_config.json special_tokens_map.json; do
  check "classifier export -> import -> export: the same $f" cmp -s hfcls/$f hfcls2/$f
done

# --- the same fine-tuning from the pretrained model's Hugging Face export (hf): the same bytes
expect_exit 0 "finetune from the DistilBertForMaskedLM folder" "$KILN" finetune --config ft.json --set init=hf --set checkpoint.dir=ftB
check "the same model bytes as from the kiln checkpoint" cmp -s ftA/best/model.safetensors ftB/best/model.safetensors

# --- model.classifier_dropout is DistilBertConfig's seq_classif_dropout
expect_exit 0 "finetune with model.classifier_dropout 0.1" "$KILN" finetune --config ft.json \
  --set checkpoint.dir=ftD --set budget.steps=2 --set model.classifier_dropout=0.1
expect_exit 0 "export it" "$KILN" export --checkpoint ftD/best --out hfd
check "seq_classif_dropout 0.1 in config.json" $PY -c "
import json; c=json.load(open('hfd/config.json')); assert c['seq_classif_dropout'] == 0.1, c['seq_classif_dropout']"

finish
