#!/usr/bin/env bash
# test_torch_parity.sh: kiln's trainer math against PyTorch (Debian's
# python3-torch for /usr/bin/python3; Hugging Face's ALBERT and BERT rebuilt
# from torch.nn modules in tests/ref/torch_models.py). The helper
# kiln_trainer_ref (built next to kiln, tests/ref/trainer_ref.c) writes a
# small ALBERT and a small BERT with their batch, logits, losses, gradients and
# the parameters after 5 AdamW and 5 LAMB steps; tests/ref/torch_parity.py
# redoes all of it in PyTorch and compares (tolerances in its docstring).
# A missing torch is a failure, not a skip.
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
check "albert.safetensors and bert.safetensors written" [ -s albert.safetensors -a -s bert.safetensors ]
if $PY "$REF/torch_parity.py" albert.safetensors bert.safetensors >parity.txt 2>&1; then
  ok "logits, losses, gradients and 5 AdamW / 5 LAMB steps match PyTorch"
  sed 's/^/  | /' parity.txt
else
  bad "PyTorch parity:"; sed 's/^/  | /' parity.txt
fi

# the same bytes with one thread
mkdir one
if OMP_NUM_THREADS=1 "$HELPER" parity one >/dev/null 2>err.txt; then
  check "one thread writes the same bytes as two" cmp -s albert.safetensors one/albert.safetensors
  check "one thread writes the same bytes as two (bert)" cmp -s bert.safetensors one/bert.safetensors
else
  bad "kiln_trainer_ref parity with one thread failed"; sed 's/^/  | /' err.txt | head
fi

finish
