#!/usr/bin/env bash
# test_heads_parity.sh: kiln's task heads (trainer/heads.c) against PyTorch.
# The unit test test_heads (built next to kiln) writes its cases without
# dropout (classifier, regression, ELECTRA's binary head with both GELU forms,
# the chunked LM head with and without bias at chunks 8 and 64) when
# KILN_HEADS_DUMP names a directory; tests/ref/heads_parity.py redoes them with
# torch.nn.functional in float64 and compares (tolerances in its docstring).
# A missing torch is a failure, not a skip.
source "$(dirname "$0")/lib.sh"

HELPER="$(dirname "$KILN")/test_heads"

if ! $PY -c 'import torch, numpy' 2>err.txt; then
  bad "PyTorch is missing for $PY (apt-get install python3-torch python3-numpy):"
  sed 's/^/  | /' err.txt | tail -3
  finish
  exit 1
fi
if [ ! -x "$HELPER" ]; then
  bad "unit test $HELPER not built (cmake --build builds it)"
  finish
  exit 1
fi

mkdir dump
if KILN_HEADS_DUMP="$WORK/dump" OMP_NUM_THREADS=2 "$HELPER" >out.txt 2>err.txt; then
  ok "test_heads passed and wrote $(wc -l < dump/manifest.txt) arrays"
else
  bad "test_heads failed"; sed 's/^/  | /' out.txt err.txt | tail -20
fi
if $PY "$ROOT/tests/ref/heads_parity.py" dump >parity.txt 2>&1; then
  ok "heads match PyTorch: $(tail -1 parity.txt)"
else
  bad "PyTorch parity:"; sed 's/^/  | /' parity.txt
fi

finish
