#!/usr/bin/env bash
# test_electra.sh: ELECTRA end to end on the bundled corpus (docs/electra.md):
# config errors; a short run's terms; same config and seed -> same bytes;
# a resumed run gives the bytes of an uninterrupted one; kiln export writes
# ElectraForPreTraining + ElectraForMaskedLM folders with the names, shapes
# and shared embeddings of export-formats.md; import of the pair and of one
# folder gives the same bytes back, a pair of other classes or of two
# vocabularies refused; fine-tuning, eval and classify from the
# discriminator; predict --rtd (text and JSON); and, outside the sanitizer
# build, a learning run (the generator at the unigram baseline, the
# discriminator well above its prior: see the comment there).
source "$(dirname "$0")/lib.sh"

expect_exit 0 "ingest" "$KILN" ingest -q "$DATA/enwiki-sample.xml.bz2"
expect_exit 0 "vocab train 3k" "$KILN" vocab train -q --size 3000 --name v3k
expect_exit 0 "tokenize" "$KILN" tokenize -q

# --- config errors, named
cat > bad1.json <<'EOF'
{"model": {"type": "electra"}, "data": {"objectives": ["mlm"]}, "budget": {"steps": 2}}
EOF
expect_exit 78 "electra with mlm refused" "$KILN" train --config bad1.json
grep_err 'data.objectives.*rtd' "the message asks for rtd"
cat > bad2.json <<'EOF'
{"model": {"type": "bert", "generator_hidden_size": 16}, "data": {"objectives": ["mlm"]}, "budget": {"steps": 2}}
EOF
expect_exit 78 "generator keys refused for bert" "$KILN" train --config bad2.json
grep_err 'model.generator_hidden_size: only for model.type "electra"' "the message names the key"

# --- a short run; its terms
cat > e.json <<'EOF'
{
  "model": {"type": "electra", "embedding_size": 32, "hidden_size": 48, "num_hidden_layers": 2,
            "num_attention_heads": 2, "intermediate_size": 96, "max_position_embeddings": 64,
            "generator_hidden_size": 24, "generator_num_attention_heads": 2},
  "data": {"objectives": ["rtd"], "seq_len": 48, "batch_size": 6, "seed": 11, "valid_every": 5, "valid_batches": 2},
  "optimizer": {"type": "adamw", "lr": 1e-3, "warmup_steps": 2},
  "budget": {"steps": 10},
  "threads": 2,
  "checkpoint": {"dir": "ckA", "every": 5, "keep": 3}
}
EOF
expect_exit 0 "train electra 10 steps" "$KILN" train --config e.json --json
cp out.txt a.json
for k in loss mlm_loss mlm_acc disc_loss disc_acc disc_recall replaced_fraction val_disc_acc val_mlm_loss; do
  check "term $k reported" $PY -c "import json,math,sys; d=json.load(open('a.json')); v=d['$k']; sys.exit(0 if v is not None and math.isfinite(v) else 1)"
done
check "loss = mlm_loss + 50 disc_loss (as summed terms)" $PY -c "
import json,sys; d=json.load(open('a.json')); sys.exit(0 if abs(d['loss'] - d['mlm_loss'] - 50*d['disc_loss']) < 1e-3*d['loss'] else 1)"
check "replaced fraction below the masked share (0 < r < 0.16)" $PY -c "
import json,sys; r=json.load(open('a.json'))['replaced_fraction']; sys.exit(0 if 0 < r < 0.16 else 1)"
ck=$(json checkpoint a.json)

# --- determinism and exact resume
sed 's/"ckA"/"ckB"/' e.json > b.json
expect_exit 0 "the same run again" "$KILN" train --config b.json
check "same config and seed: same model bytes" cmp -s "$ck/model.safetensors" ckB/step-000000010/model.safetensors
check "same config and seed: same optimizer bytes" cmp -s "$ck/optimizer.safetensors" ckB/step-000000010/optimizer.safetensors
expect_exit 0 "first 4 steps (--pause-at 4)" "$KILN" train --config e.json --set checkpoint.dir=ckC --pause-at 4
expect_exit 0 "resume to the end" "$KILN" train --config e.json --set checkpoint.dir=ckC --resume
check "resumed run: the uninterrupted run's model bytes" cmp -s "$ck/model.safetensors" ckC/step-000000010/model.safetensors
check "resumed run: the uninterrupted run's optimizer bytes" cmp -s "$ck/optimizer.safetensors" ckC/step-000000010/optimizer.safetensors

# --- export: two folders, names and shapes
expect_exit 0 "export" "$KILN" export --checkpoint ckA --format hf --out hf
for d in discriminator generator; do
  for f in config.json model.safetensors vocab.txt tokenizer_config.json special_tokens_map.json; do
    check "hf/$d/$f written" [ -s hf/$d/$f ]
  done
done
cat > names.py <<'EOF'
import json, struct, sys
def header(p):
    b = open(p, 'rb').read(); n = struct.unpack('<Q', b[:8])[0]; h = json.loads(b[8:8 + n])
    meta = h.pop('__metadata__', None)
    return h, meta, b[8 + n:]
E, H, G, V, P, L, I, GI = 32, 48, 24, 3000, 64, 2, 96, 96
def layers(w, ff):
    out = {}
    for i in range(L):
        p = 'electra.encoder.layer.%d.' % i
        for k in ('query', 'key', 'value'):
            out[p + 'attention.self.%s.weight' % k] = [w, w]; out[p + 'attention.self.%s.bias' % k] = [w]
        out[p + 'attention.output.dense.weight'] = [w, w]; out[p + 'attention.output.dense.bias'] = [w]
        out[p + 'attention.output.LayerNorm.weight'] = [w]; out[p + 'attention.output.LayerNorm.bias'] = [w]
        out[p + 'intermediate.dense.weight'] = [ff, w]; out[p + 'intermediate.dense.bias'] = [ff]
        out[p + 'output.dense.weight'] = [w, ff]; out[p + 'output.dense.bias'] = [w]
        out[p + 'output.LayerNorm.weight'] = [w]; out[p + 'output.LayerNorm.bias'] = [w]
    return out
emb = {'electra.embeddings.word_embeddings.weight': [V, E], 'electra.embeddings.position_embeddings.weight': [P, E],
       'electra.embeddings.token_type_embeddings.weight': [2, E], 'electra.embeddings.LayerNorm.weight': [E],
       'electra.embeddings.LayerNorm.bias': [E]}
want_d = dict(emb, **{'electra.embeddings_project.weight': [H, E], 'electra.embeddings_project.bias': [H]}, **layers(H, I),
              **{'discriminator_predictions.dense.weight': [H, H], 'discriminator_predictions.dense.bias': [H],
                 'discriminator_predictions.dense_prediction.weight': [1, H], 'discriminator_predictions.dense_prediction.bias': [1]})
want_g = dict(emb, **{'electra.embeddings_project.weight': [G, E], 'electra.embeddings_project.bias': [G]}, **layers(G, GI),
              **{'generator_predictions.LayerNorm.weight': [E], 'generator_predictions.LayerNorm.bias': [E],
                 'generator_predictions.dense.weight': [E, G], 'generator_predictions.dense.bias': [E],
                 'generator_lm_head.bias': [V]})
bad = 0
hd, md, bd = header('hf/discriminator/model.safetensors'); hg, mg, bg = header('hf/generator/model.safetensors')
for name, h, want, meta in (('discriminator', hd, want_d, md), ('generator', hg, want_g, mg)):
    got = {k: v['shape'] for k, v in h.items()}
    if got != want:
        bad += 1
        print(name, 'missing', sorted(set(want) - set(got))[:5], 'extra', sorted(set(got) - set(want))[:5],
              'shapes', [(k, got[k], want[k]) for k in want if k in got and got[k] != want[k]][:5])
    if meta != {'format': 'pt'}: bad += 1; print(name, 'metadata', meta)
    if any(v['dtype'] != 'F32' for v in h.values()): bad += 1; print(name, 'dtype')
for k in emb:   # the shared embeddings: the same bytes in both files
    a = bd[hd[k]['data_offsets'][0]:hd[k]['data_offsets'][1]]; b = bg[hg[k]['data_offsets'][0]:hg[k]['data_offsets'][1]]
    if a != b: bad += 1; print('shared', k, 'differs')
cd = json.load(open('hf/discriminator/config.json')); cg = json.load(open('hf/generator/config.json'))
exp = [(cd['architectures'], ['ElectraForPreTraining']), (cg['architectures'], ['ElectraForMaskedLM']),
       (cd['model_type'], 'electra'), (cg['model_type'], 'electra'), (cd['hidden_size'], H), (cg['hidden_size'], G),
       (cd['embedding_size'], E), (cg['embedding_size'], E), (cg['num_attention_heads'], 2),
       (cg['intermediate_size'], GI), (cd['hidden_act'], 'gelu'), (cd['layer_norm_eps'], 1e-12), (cd['vocab_size'], V)]
for got, want in exp:
    if got != want: bad += 1; print('config', got, '!=', want)
sys.exit(1 if bad else 0)
EOF
if $PY names.py >names.txt 2>&1; then ok "export: ElectraForPreTraining and ElectraForMaskedLM names, shapes, F32, format pt, shared embeddings equal, config.json fields"
else bad "export names / shapes / config:"; sed 's/^/  | /' names.txt | head -20; fi

# --- import: the pair and one folder, round trips
expect_exit 0 "import the pair" "$KILN" import --from hf hf --out imp --json
check "the pair imports as one checkpoint" grep -q 'ElectraForPreTraining+ElectraForMaskedLM' out.txt
expect_exit 0 "export the imported pair" "$KILN" export --checkpoint imp --out hf2
for d in discriminator generator; do
  check "pair round trip: $d bytes" cmp -s hf/$d/model.safetensors hf2/$d/model.safetensors
done
expect_exit 0 "import the discriminator alone" "$KILN" import --from hf hf/discriminator --out impd
expect_exit 0 "export it" "$KILN" export --checkpoint impd --out hf3
check "discriminator round trip: same bytes" cmp -s hf/discriminator/model.safetensors hf3/model.safetensors
mkdir -p badpair/discriminator badpair/generator
cp hf/discriminator/* badpair/discriminator/ && cp hf2/generator/* badpair/generator/
$PY - <<'EOF'
import json, struct
p = 'badpair/generator/model.safetensors'; b = bytearray(open(p, 'rb').read()); n = struct.unpack('<Q', b[:8])[0]
h = json.loads(b[8:8 + n]); o = h['electra.embeddings.LayerNorm.weight']['data_offsets'][0]
b[8 + n + o:8 + n + o + 4] = struct.pack('<f', 3.5); open(p, 'wb').write(b)
EOF
expect_exit 65 "a pair whose embeddings differ is refused" "$KILN" import --from hf badpair --out impbad
grep_err 'electra.embeddings.LayerNorm.weight.*differs' "the message names the tensor"
mkdir -p pairgd/discriminator pairgd/generator
cp hf/discriminator/* pairgd/discriminator/ && cp hf/discriminator/* pairgd/generator/
expect_exit 65 "a pair whose generator/ is a discriminator is refused" "$KILN" import --from hf pairgd --out impbad
grep_err 'pairgd: an ELECTRA pair is discriminator/ \(ElectraForPreTraining\) and generator/ \(ElectraForMaskedLM\); found ElectraForPreTraining and ElectraForPreTraining' "the message names both classes"
mkdir -p pairv/discriminator pairv/generator
cp hf/discriminator/* pairv/discriminator/ && cp hf/generator/* pairv/generator/
sed -i '1000s/.*/zzzpiece/' pairv/generator/vocab.txt
expect_exit 65 "a pair whose halves have different vocabularies is refused" "$KILN" import --from hf pairv --out impbad
grep_err 'pairv: the discriminator and the generator differ in vocabulary' "the message says they differ"
check "nothing written by the refused imports" test ! -e impbad

# --- predict --rtd
expect_exit 0 "predict --rtd" "$KILN" predict --checkpoint ckA --rtd "The chef ate the meal" "The chef drank the meal"
check "a line per token with a probability" grep -qE '^ +[0-9]+ +\[SEP\] +0\.[0-9]{3}' out.txt
expect_exit 0 "predict --rtd --json" "$KILN" predict --checkpoint ckA --rtd --json "The chef drank the meal"
check "JSON: text, tokens with position, id, token, replaced_prob in [0, 1]" $PY -c "
import json,sys; d=json.loads(open('out.txt').readline()); t=d['tokens']
ok = d['text']=='The chef drank the meal' and t[0]['token']=='[CLS]' and t[-1]['token']=='[SEP]' and \
     [x['position'] for x in t]==list(range(len(t))) and all(0<=x['replaced_prob']<=1 and isinstance(x['id'],int) for x in t)
sys.exit(0 if ok else 1)"
expect_exit 0 "predict --rtd on the imported discriminator" "$KILN" predict --checkpoint impd --rtd --json "The chef drank the meal"
cp out.txt p2.txt
"$KILN" predict --checkpoint ckA --rtd --json "The chef drank the meal" > p1.txt
check "the imported discriminator gives the same probabilities" cmp -s p1.txt p2.txt
expect_exit 64 "MLM predict on a discriminator alone is refused" "$KILN" predict --checkpoint impd "The chef [MASK] the meal"
expect_exit 0 "MLM predict on the pair (the generator fills [MASK])" "$KILN" predict --checkpoint ckA --json "The chef [MASK] the meal"
cp out.txt mlm_pair.txt
expect_exit 0 "import the generator alone (ElectraForMaskedLM)" "$KILN" import --from hf hf/generator --out impg --json
expect_exit 0 "MLM predict on the imported generator" "$KILN" predict --checkpoint impg --json "The chef [MASK] the meal"
check "the imported generator fills [MASK] as the pair's generator did" cmp -s mlm_pair.txt out.txt
expect_exit 64 "--rtd on a generator alone is refused" "$KILN" predict --checkpoint impg --rtd "The chef drank the meal"
grep_err 'generator alone .* has no discriminator' "the message says why"
expect_exit 0 "export the imported generator" "$KILN" export --checkpoint impg --out hfg
check "generator round trip: same bytes" cmp -s hf/generator/model.safetensors hfg/model.safetensors
cat > bert.json <<'EOF'
{"model": {"type": "bert", "hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 64,
           "max_position_embeddings": 64},
 "data": {"objectives": ["mlm"], "seq_len": 48, "batch_size": 4, "valid_every": 0}, "budget": {"steps": 2},
 "checkpoint": {"dir": "ckBert"}}
EOF
expect_exit 0 "a BERT checkpoint" "$KILN" train --config bert.json
expect_exit 64 "--rtd on a BERT checkpoint is refused" "$KILN" predict --checkpoint ckBert --rtd "The chef drank the meal"
grep_err 'needs an ELECTRA checkpoint' "the message says why"

# --- fine-tuning from the discriminator
cat > ft.json <<EOF
{"init": "ckA", "task": {"type": "classification", "train": "$DATA/sst2/train.tsv", "dev": "$DATA/sst2/dev.tsv"},
 "data": {"seq_len": 48, "batch_size": 32, "seed": 1}, "optimizer": {"lr": 1e-3}, "budget": {"steps": 8},
 "checkpoint": {"dir": "ft"}}
EOF
expect_exit 0 "finetune from the ELECTRA checkpoint" "$KILN" finetune --config ft.json
grep_err 'ELECTRA discriminator' "the init is the discriminator"
grep_err 'new .*classifier.dense.weight.*classifier.out_proj.weight' "an ElectraClassificationHead is added"
expect_exit 0 "eval the fine-tuned model" "$KILN" eval --checkpoint ft/best --data "$DATA/sst2/dev.tsv" --json
cp out.txt ev_ck.json
# the exported pair folder (DIR with discriminator/ and generator/) as init: its discriminator
sed 's#"init": "ckA"#"init": "hf"#; s#"dir": "ft"#"dir": "fthf"#' ft.json > fthf.json
expect_exit 0 "finetune from the exported pair folder" "$KILN" finetune --config fthf.json
grep_err 'hf: an ELECTRA pair folder: its discriminator' "it says which model of the pair it took"
expect_exit 0 "eval it" "$KILN" eval --checkpoint fthf/best --data "$DATA/sst2/dev.tsv" --json
check "the same fine-tuned model as from the checkpoint (same dev accuracy and loss)" $PY -c "
import json; a = json.load(open('ev_ck.json')); b = json.load(open('out.txt'))
assert a['accuracy'] == b['accuracy'] and abs(a['loss'] - b['loss']) < 1e-6, (a, b)"
sed 's#"init": "ckA"#"init": "impg"#; s#"dir": "ft"#"dir": "ftg"#' ft.json > ftg.json
expect_exit 0 "finetune from the generator imported alone (its encoder)" "$KILN" finetune --config ftg.json
expect_exit 0 "classify with it" "$KILN" classify --checkpoint ft/best "a wonderful film"
expect_exit 0 "export it" "$KILN" export --checkpoint ft/best --out hfcls
check "ElectraForSequenceClassification with classifier.dense and classifier.out_proj" $PY -c "
import json,struct,sys
c=json.load(open('hfcls/config.json')); b=open('hfcls/model.safetensors','rb').read(); n=struct.unpack('<Q',b[:8])[0]
h=json.loads(b[8:8+n]); ok=c['architectures']==['ElectraForSequenceClassification'] and h['classifier.out_proj.weight']['shape']==[2,48] \
   and h['classifier.dense.weight']['shape']==[48,48] and not any('generator' in k or 'discriminator_predictions' in k for k in h)
sys.exit(0 if ok else 1)"

# --- learning: the discriminator beats "always original" (outside the sanitizer build)
if [ -z "${KILN_SANITIZE:-}" ]; then
  # Measured (docs/electra.md, "Learning at small scale"): at the recipe's 15% masking the
  # discriminator stays at the prior of the replaced fraction r at this scale (once the generator
  # passes the unigram baseline, a replacement is a frequent token in a wrong place, which the
  # discriminator has not learnt to see in 600 steps; PyTorch's ELECTRA does the same). With
  # half the tokens masked (r ~ 0.5: any evidence moves its answers), a generator of width 8
  # and lr 5e-4 it beats the prior clearly: validation accuracy 0.558 against 1 - r = 0.503,
  # recall 0.45, BCE 0.661 against ln 2, while the generator reaches the unigram baseline
  # (6.581 against 6.577; ln V = 8.006).
  cat > learn.json <<'EOF'
{
  "model": {"type": "electra", "embedding_size": 64, "hidden_size": 64, "num_hidden_layers": 2,
            "num_attention_heads": 2, "intermediate_size": 256, "max_position_embeddings": 64,
            "generator_hidden_size": 8, "generator_num_attention_heads": 1, "generator_num_hidden_layers": 1,
            "generator_intermediate_size": 32, "hidden_dropout_prob": 0, "attention_probs_dropout_prob": 0},
  "data": {"objectives": ["rtd"], "seq_len": 64, "batch_size": 16, "mask_prob": 0.5, "seed": 7,
           "valid_every": 600, "valid_batches": 10},
  "optimizer": {"type": "adamw", "lr": 5e-4, "warmup_steps": 50},
  "budget": {"steps": 600},
  "checkpoint": {"dir": "ckLearn", "every": 0, "keep": 1}
}
EOF
  expect_exit 0 "train electra to learn (600 steps)" "$KILN" train --config learn.json --json
  cp out.txt learn_out.json
  check "generator: validation MLM loss 1 nat below uniform (ln 3000), at the unigram baseline" $PY -c "
import json,math,sys; d=json.load(open('learn_out.json')); print('val MLM %.3f, unigram %.3f, ln V %.3f' % (d['val_mlm_loss'], d['unigram_loss'], math.log(3000)))
sys.exit(0 if d['val_mlm_loss'] < math.log(3000) - 1.0 and d['val_mlm_loss'] < d['unigram_loss'] + 0.05 else 1)"
  check "discriminator: validation accuracy well above 1 - r, recall > 0, BCE below the prior's entropy" $PY -c "
import json,math,sys; d=json.load(open('learn_out.json')); r=d['val_replaced_fraction']; h=-(r*math.log(r)+(1-r)*math.log(1-r))
print('disc acc %.4f, 1 - r %.4f; recall %.3f; BCE %.4f, prior entropy %.4f' % (d['val_disc_acc'], 1-r, d['val_disc_recall'], d['val_disc_loss'], h))
sys.exit(0 if d['val_disc_acc'] >= 1 - r + 0.03 and d['val_disc_recall'] >= 0.2 and d['val_disc_loss'] <= h - 0.015 else 1)"
fi

finish
