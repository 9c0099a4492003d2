#!/usr/bin/env bash
# test_golden.sh: the checkpoint bytes of two short fixed runs (an ALBERT
# with dropout, n-gram masking + SOP, LAMB, accumulation 2; a BERT with
# whole-word masking + NSP, AdamW, clipping) on the bundled corpus, compared
# with hashes recorded before the trainer was restructured (trainer v2):
# the same config, seed and thread count must keep giving the same bytes.
# Precision fp32 (auto would be bf16 on a CPU with bf16 dot products, whose
# bytes depend on oneDNN's kernels for that CPU: test_precision.sh checks
# bf16's determinism run to run instead).
# Then the ALBERT run again with OpenBLAS choosing other kernels, as on an
# AVX-512 Intel CPU: the pin to Haswell's kernels keeps the bytes.
# Regenerate tests/data/golden/*.sha256 only for a deliberate change of the
# math, and say so in the commit.
source "$(dirname "$0")/lib.sh"
GOLD="$ROOT/tests/data/golden"

expect_exit 0 "ingest" "$KILN" ingest -q "$DATA/enwiki-sample.xml.bz2"
expect_exit 0 "vocab train 3k" "$KILN" vocab train -q --size 3000 --name v3k
expect_exit 0 "tokenize" "$KILN" tokenize -q

cat > albert.json <<'JSON'
{
  "model": {"type": "albert", "embedding_size": 32, "hidden_size": 64, "num_hidden_layers": 4,
            "num_hidden_groups": 2, "num_attention_heads": 2, "intermediate_size": 96,
            "max_position_embeddings": 64, "hidden_dropout_prob": 0.1, "attention_probs_dropout_prob": 0.1},
  "data": {"objectives": ["ngram", "sop"], "seq_len": 48, "batch_size": 6, "seed": 7},
  "optimizer": {"type": "lamb", "lr": 2e-3, "warmup_steps": 4, "accumulation": 2},
  "budget": {"steps": 12},
  "threads": 2,
  "precision": "fp32",
  "checkpoint": {"dir": "ckA", "every": 0, "keep": 1}
}
JSON
cat > bert.json <<'JSON'
{
  "model": {"type": "bert", "hidden_size": 48, "num_hidden_layers": 2, "num_attention_heads": 4,
            "intermediate_size": 80, "max_position_embeddings": 64, "hidden_dropout_prob": 0.1,
            "attention_probs_dropout_prob": 0.0, "hidden_act": "gelu_new"},
  "data": {"objectives": ["wwm", "nsp"], "seq_len": 40, "batch_size": 5, "seed": 3},
  "optimizer": {"type": "adamw", "lr": 1e-3, "warmup_steps": 3, "clip_norm": 1.0, "weight_decay": 0.01},
  "budget": {"steps": 10},
  "threads": 2,
  "precision": "fp32",
  "checkpoint": {"dir": "ckB", "every": 0, "keep": 1}
}
JSON

for m in albert bert; do
  expect_exit 0 "train $m" "$KILN" train --config $m.json --json
  ck=$(json checkpoint)
  (cd "$ck" && sha256sum model.safetensors optimizer.safetensors) > $m.sha256
  if [ -n "${KILN_GOLDEN_WRITE:-}" ]; then cp $m.sha256 "$GOLD/$m.sha256"; fi
  if diff "$GOLD/$m.sha256" $m.sha256 >/dev/null; then ok "$m: checkpoint bytes as recorded"
  else bad "$m: checkpoint bytes differ from tests/data/golden/$m.sha256"; diff "$GOLD/$m.sha256" $m.sha256 | sed 's/^/  | /'; fi
done

# The same bytes on another CPU: OpenBLAS picks its kernels by CPU (SkylakeX
# or Cooperlake on AVX-512 Intel CPUs, other sums than Haswell's), and kiln
# pins Haswell's wherever the CPU has AVX2 and FMA. OPENBLAS_CORETYPE makes
# OpenBLAS choose as it would on such a CPU (its kernels are only selected
# here, never run: kiln re-pins before any product). KILN_BLAS_CORE=native
# keeps OpenBLAS's choice: on a CPU that can run it, other bytes (the pin is
# what makes them equal).
if grep -qw avx512f /proc/cpuinfo; then other=SkylakeX; else other=Sandybridge; fi
rm -rf ckA
expect_exit 0 "train albert, OpenBLAS choosing $other" env OPENBLAS_CORETYPE=$other "$KILN" train --config albert.json --json
ck=$(json checkpoint)
(cd "$ck" && sha256sum model.safetensors optimizer.safetensors) > albert_other.sha256
if diff "$GOLD/albert.sha256" albert_other.sha256 >/dev/null; then ok "albert: the recorded bytes with OpenBLAS choosing $other (pinned to Haswell)"
else bad "albert: OpenBLAS choosing $other changed the bytes (kiln's pin to Haswell did not hold)"; fi
rm -rf ckA
expect_exit 0 "train albert, KILN_BLAS_CORE=native, OpenBLAS choosing $other" \
  env KILN_BLAS_CORE=native OPENBLAS_CORETYPE=$other "$KILN" train --config albert.json --json
ck=$(json checkpoint)
(cd "$ck" && sha256sum model.safetensors optimizer.safetensors) > albert_native.sha256
if diff -q "$GOLD/albert.sha256" albert_native.sha256 >/dev/null; then
  bad "albert: KILN_BLAS_CORE=native with $other's kernels gave the pinned bytes (the check above cannot fail)"
else ok "albert: $other's own kernels give other bytes (what the pin prevents)"; fi
finish
