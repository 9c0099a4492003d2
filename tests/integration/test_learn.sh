#!/usr/bin/env bash
# test_learn.sh: kiln train learns on real text: a small ALBERT (MLM + SOP,
# LAMB) on the bundled corpus with a WordPiece vocabulary trained on it
# reaches a validation MLM loss well below the unigram baseline within 2,500
# steps (about 2 minutes on 2 cores). Outside the sanitizer build only: it
# measures convergence, not correctness of a path the other tests cover.
source "$(dirname "$0")/lib.sh"

expect_exit 0 "ingest" "$KILN" ingest -q "$DATA/enwiki-sample.xml.bz2" "$DATA/state_union.zip"
expect_exit 0 "ingest lines" "$KILN" ingest -q --split line "$DATA/lee_background.txt"
expect_exit 0 "vocab train 4k" "$KILN" vocab train -q --size 4000 --name v4k
expect_exit 0 "tokenize" "$KILN" tokenize -q

# --- learning on real text: validation MLM loss well below the unigram baseline
if [ -z "${KILN_SANITIZE:-}" ]; then
  cat > learn.json <<'EOF'
{
  "model": {"type": "albert", "embedding_size": 128, "hidden_size": 128, "num_hidden_layers": 2,
            "num_attention_heads": 2, "intermediate_size": 512, "max_position_embeddings": 64},
  "data": {"objectives": ["mlm", "sop"], "seq_len": 64, "batch_size": 32, "valid_every": 500, "valid_batches": 20,
           "valid_fraction": 0.05},
  "optimizer": {"type": "lamb", "lr": 1e-2, "warmup_steps": 100},
  "budget": {"steps": 2500},
  "checkpoint": {"dir": "ckL", "every": 0, "keep": 1}
}
EOF
  expect_exit 0 "train on real text (2,500 steps, about 2 minutes)" "$KILN" train --config learn.json --json
  cp out.txt learn_out.json
  v=$(sqlite3 "$KILN_DB" "select value from metrics where name = 'val_mlm_loss' order by job_id desc, step desc limit 1")
  u=$(json unigram_loss learn_out.json)
  # 2,500 steps see the corpus about 3.5 times; measured: 6.15 against 6.67 (perplexity 470 vs 790)
  check "validation MLM loss $v well below the unigram baseline $u" $PY -c "import sys; sys.exit(0 if $v < $u - 0.4 else 1)"
fi


finish
