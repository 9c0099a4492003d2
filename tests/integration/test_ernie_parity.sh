#!/usr/bin/env bash
# test_ernie_parity.sh: kiln's ERNIE (trainer/ernie.c: the fusion layers'
# entity side and the dEA head, docs/ernie.md) against PyTorch (Debian's
# python3-torch for /usr/bin/python3; the model rebuilt from torch.nn
# modules in tests/ref/ernie_models.py). The helper kiln_trainer_ref (built
# next to kiln, tests/ref/trainer_ref.c) writes two small ERNIE models in
# fp32, without dropout: on BERT (3 layers, the last 2 fusing, an entity
# stream of width 8 projected from the table's 6) and on ALBERT (3 layers
# sharing one text weight set, all 3 fusing, LayerNorm eps 1e-3), with their
# registry manifests, a batch with padding, several entities in a row, a row
# without, a dEA-dropped and a replaced alignment, the MLM and sentence
# logits, the loss terms (mlm, nsp / sop, dea), the gradients and the
# parameters after 3 AdamW steps; tests/ref/ernie_parity.py redoes them in
# PyTorch and compares (tolerances in its docstring; the frozen entity
# table's gradient must be exactly 0 and the table unchanged by the steps).
# The helper must write the same bytes with one thread as with two. A
# missing torch is a failure, not a skip.
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
MODELS="ernie_bert ernie_albert"
if OMP_NUM_THREADS=2 "$HELPER" ernie "$WORK" >out.txt 2>err.txt; then
  ok "kiln_trainer_ref ernie: $(tr '\n' ' ' < out.txt)"
else
  bad "kiln_trainer_ref ernie failed"; sed 's/^/  | /' err.txt | head -20
fi
files=""
for m in $MODELS; do
  check "$m.safetensors and $m.manifest.json written" [ -s $m.safetensors -a -s $m.manifest.json ]
  files="$files $m.safetensors"
done
if $PY "$REF/ernie_parity.py" $files >parity.txt 2>&1; then
  ok "registries, logits, loss terms, dEA accuracy, gradients and 3 AdamW steps match PyTorch ($MODELS)"
  sed 's/^/  | /' parity.txt
else
  bad "PyTorch parity of ERNIE:"; sed 's/^/  | /' parity.txt
fi

# the same bytes with one thread
mkdir one
if OMP_NUM_THREADS=1 "$HELPER" ernie one >/dev/null 2>err.txt; then
  for m in $MODELS; do
    check "one thread writes the same bytes as two ($m)" cmp -s $m.safetensors one/$m.safetensors
    check "one thread writes the same manifest ($m)" cmp -s $m.manifest.json one/$m.manifest.json
  done
else
  bad "kiln_trainer_ref ernie with one thread failed"; sed 's/^/  | /' err.txt | head
fi

finish
