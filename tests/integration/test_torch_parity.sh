#!/usr/bin/env bash
# test_torch_parity.sh: kiln's trainer math against PyTorch (Debian's
# python3-torch for /usr/bin/python3; Hugging Face's ALBERT, BERT and ELECTRA,
# for pretraining and sequence classification, GPT2LMHeadModel and
# DistilBertForMaskedLM and DistilBertForSequenceClassification, rebuilt
# from torch.nn modules in tests/ref/torch_models.py). The helper
# kiln_trainer_ref (built next to kiln, tests/ref/trainer_ref.c) writes eleven
# small models (ALBERT and BERT pretraining, a BERT classifier, an ALBERT
# regressor, a pre-LN causal BERT, ELECTRA's generator + discriminator pair
# twice (E != G and E = G), an ELECTRA classifier, GPT-2 with its tied LM
# head, DistilBERT with its MLM head and with its classifier) with their
# registry manifests, batch,
# logits, losses,
# gradients and the parameters after 5 AdamW and 5 LAMB steps (ELECTRA's
# pair: and kiln's draws of each pass, which torch's discriminator reads and
# torch redoes by inverse CDF); tests/ref/torch_parity.py checks
# each manifest against torch's named_parameters, redoes the rest in PyTorch
# and compares (tolerances in its docstring). Then knowledge distillation
# (trainer/distill.h): `kiln_trainer_ref distill` writes four teacher /
# student steps (DistilBERT's triple loss from a BERT teacher, positions
# "all" from an ALBERT teacher, TinyBERT's intermediate and prediction
# stages) with their loss terms and the student's gradients;
# tests/ref/distill_parity.py redoes them in PyTorch (per-layer hidden states
# and attention scores of both models). Both helper commands must write the same
# bytes with one thread as with two. The parity models again with kiln's
# products in bf16 (kiln_trainer_ref parity --precision bf16), at bf16's
# tolerances, where the CPU has bf16 dot products. A missing torch is a failure, not a
# skip.
source "$(dirname "$0")/lib.sh"

HELPER="$(dirname "$KILN")/kiln_trainer_ref"
REF="$ROOT/tests/ref"

if ! $PY -c 'import torch, numpy' 2>err.txt; then
  bad "PyTorch is missing for $PY (apt-get install python3-torch python3-numpy):"
  sed 's/^/  | /' err.txt | tail -3
  finish
  exit 1
fi
ok "torch $($PY -c 'import torch; print(torch.__version__)') for $PY"

if [ ! -x "$HELPER" ]; then
  bad "helper $HELPER not built (cmake --build builds it with kiln)"
  finish
  exit 1
fi

# kiln's side (2 threads), then PyTorch's
if OMP_NUM_THREADS=2 "$HELPER" parity "$WORK" >out.txt 2>err.txt; then
  ok "kiln_trainer_ref parity: $(tr '\n' ' ' < out.txt)"
else
  bad "kiln_trainer_ref parity failed"; sed 's/^/  | /' err.txt | head -20
fi
MODELS="albert bert bert_cls albert_reg bert_preln_causal electra electra_eq electra_cls gpt2 distilbert distilbert_cls"
files=""
for m in $MODELS; do
  check "$m.safetensors and $m.manifest.json written" [ -s $m.safetensors -a -s $m.manifest.json ]
  files="$files $m.safetensors"
done
if $PY "$REF/torch_parity.py" $files >parity.txt 2>&1; then
  ok "registries, logits, losses, gradients and 5 AdamW / 5 LAMB steps match PyTorch ($MODELS)"
  sed 's/^/  | /' parity.txt
else
  bad "PyTorch parity:"; sed 's/^/  | /' parity.txt
fi

# the same bytes with one thread
mkdir one
if OMP_NUM_THREADS=1 "$HELPER" parity one >/dev/null 2>err.txt; then
  for m in $MODELS; do
    check "one thread writes the same bytes as two ($m)" cmp -s $m.safetensors one/$m.safetensors
    check "one thread writes the same manifest ($m)" cmp -s $m.manifest.json one/$m.manifest.json
  done
else
  bad "kiln_trainer_ref parity with one thread failed"; sed 's/^/  | /' err.txt | head
fi

# bf16 (docs/train.md, "Precision"): the same models with kiln's products on bf16
# operands, against torch in fp32 at bf16's tolerances (torch_parity.py's
# docstring); the same bytes with one thread. On a CPU without bf16 dot
# products: the refusal (exit 69) and its reason.
mkdir bf16 bf16_one
OMP_NUM_THREADS=2 "$HELPER" parity bf16 --precision bf16 >out.txt 2>err.txt; rc=$?
if [ "$rc" = 69 ] && grep -qE "no bf16 dot products|built without oneDNN" err.txt; then
  ok "no bf16 parity on this CPU: refused (exit 69): $(cat err.txt)"
elif [ "$rc" = 0 ]; then
  files=""
  for m in $MODELS; do files="$files bf16/$m.safetensors"; done
  if KILN_PARITY_PRECISION=bf16 $PY "$REF/torch_parity.py" $files >parity_bf16.txt 2>&1; then
    ok "bf16: logits, losses, gradients and the losses of 5 AdamW / 5 LAMB steps match PyTorch fp32 at bf16's tolerances"
    grep -E "logits:|gradients:|loss per step" parity_bf16.txt | sed 's/^/  | /'
  else
    bad "PyTorch parity in bf16:"; sed 's/^/  | /' parity_bf16.txt
  fi
  if OMP_NUM_THREADS=1 "$HELPER" parity bf16_one --precision bf16 >/dev/null 2>err.txt; then
    for m in $MODELS; do check "bf16: one thread writes the same bytes as two ($m)" cmp -s bf16/$m.safetensors bf16_one/$m.safetensors; done
  else
    bad "kiln_trainer_ref parity --precision bf16 with one thread failed"; sed 's/^/  | /' err.txt | head
  fi
else
  bad "kiln_trainer_ref parity --precision bf16: exit $rc"; sed 's/^/  | /' err.txt | head
fi

# knowledge distillation: kiln's side (2 threads), then PyTorch's
DISTILL="distill_distilbert distill_all distill_tinybert distill_tinybert_pred"
mkdir distill one_distill
if OMP_NUM_THREADS=2 "$HELPER" distill "$WORK/distill" >out.txt 2>err.txt; then
  ok "kiln_trainer_ref distill: $(tr '\n' ' ' < out.txt)"
else
  bad "kiln_trainer_ref distill failed"; sed 's/^/  | /' err.txt | head -20
fi
files=""
for m in $DISTILL; do
  check "distill/$m.safetensors written" [ -s distill/$m.safetensors ]
  files="$files distill/$m.safetensors"
done
if $PY "$REF/distill_parity.py" $files >distill.txt 2>&1; then
  ok "distillation losses and student gradients match PyTorch ($DISTILL)"
  sed 's/^/  | /' distill.txt
else
  bad "PyTorch distillation parity:"; sed 's/^/  | /' distill.txt
fi
if OMP_NUM_THREADS=1 "$HELPER" distill one_distill >/dev/null 2>err.txt; then
  for m in $DISTILL; do
    check "one thread writes the same bytes as two ($m)" cmp -s distill/$m.safetensors one_distill/$m.safetensors
  done
else
  bad "kiln_trainer_ref distill with one thread failed"; sed 's/^/  | /' err.txt | head
fi

finish
