#!/usr/bin/env bash
# test_precision.sh: the run config's precision (docs/train.md, "Precision")
# on the bundled corpus. Everywhere: KILN_CPU_NO_BF16=1 (a CPU without bf16
# dot products) makes auto run in fp32 and bf16 a clear refusal (exit 69);
# precision is a resolved field of the --json summary and of the checkpoint.
# Where the CPU has bf16 dot products (AVX512_BF16 / AMX-BF16; the test says
# which CPU it ran on): auto is bf16; a bf16 run writes the same bytes run to
# run and with 1 or 2 threads, other bytes than fp32 (its products are bf16);
# a run stopped and resumed equals an uninterrupted one; an fp32 checkpoint
# resumes in bf16 and says so; and the validation loss curve of a bf16 run
# follows the fp32 run's: at every validation |bf16 - fp32| <= 2% of fp32's
# (the stated tolerance; measured ~0.1%), both well below the start.
source "$(dirname "$0")/lib.sh"

expect_exit 0 "ingest" "$KILN" ingest -q "$DATA/enwiki-sample.xml.bz2"
expect_exit 0 "vocab train 3k" "$KILN" vocab train -q --size 3000 --name v3k
expect_exit 0 "tokenize" "$KILN" tokenize -q

cat > run.json <<'JSON'
{
  "model": {"type": "albert", "embedding_size": 32, "hidden_size": 64, "num_hidden_layers": 2,
            "num_attention_heads": 2, "intermediate_size": 128, "max_position_embeddings": 64,
            "hidden_dropout_prob": 0.1},
  "data": {"objectives": ["mlm", "sop"], "seq_len": 48, "batch_size": 16, "seed": 5,
           "valid_every": 20, "valid_batches": 8},
  "optimizer": {"type": "adamw", "lr": 2e-3, "warmup_steps": 10},
  "budget": {"steps": 80},
  "threads": 2,
  "checkpoint": {"dir": "ck", "every": 0, "keep": 1}
}
JSON
# train NAME [--set ...]: a run into ck-NAME, its --json summary in NAME.json
train() {
  local n=$1; shift
  rm -rf "ck-$n"
  "$KILN" train --config run.json --set checkpoint.dir="ck-$n" --json "$@" > "$n.json" 2> "$n.err"
}
mhash() { sha256sum "$(json checkpoint "$1.json")/model.safetensors" | cut -c1-64; }
# valcurve JOB: "step value" of its val_mlm_loss
valcurve() { sqlite3 "$KILN_DB" "SELECT step, value FROM metrics WHERE job_id = $1 AND name = 'val_mlm_loss' ORDER BY step"; }

# --- a CPU without bf16 dot products (simulated): auto is fp32, bf16 is refused
KILN_CPU_NO_BF16=1 train nobf --set budget.steps=12; rc=$?
check "no bf16 here, auto: trains (exit $rc)" [ "$rc" = 0 ]
check "no bf16 here, auto: precision fp32 in the summary" [ "$(json precision nobf.json)" = fp32 ]
check "no bf16 here, auto: says fp32 and why" grep -qE "precision fp32 \(auto: (this CPU has no bf16 dot products|this kiln was built without oneDNN)" nobf.err
check "the checkpoint records precision fp32" $PY -c '
import json, sys; s = json.load(open(sys.argv[1] + "/state.json")); assert s["extra"]["precision"] == "fp32", s["extra"]' "$(json checkpoint nobf.json)"
KILN_CPU_NO_BF16=1 expect_exit 69 "no bf16 here, precision bf16: refused" "$KILN" train --config run.json --set checkpoint.dir=ck-x --set precision=bf16
grep_err "precision bf16 cannot run here: (this CPU has no bf16 dot products \(AVX512_BF16 or AMX-BF16|this kiln was built without oneDNN)" "the refusal names what is missing and the CPU"
check "nothing written by the refusal" [ ! -e ck-x ]
expect_exit 78 "precision: an unknown value" "$KILN" train --config run.json --set precision=fp16
grep_err "precision" "the config error names the key"

CPU=$($PY -c 'import re; t=open("/proc/cpuinfo").read(); m=re.search(r"model name\s*:\s*(.*)", t); print(m.group(1) if m else "?")')
train auto --set budget.steps=12
if [ "$(json precision auto.json)" != bf16 ]; then
  check "this CPU ($CPU) has no bf16 dot products: auto is fp32" grep -q "precision fp32 (auto: " auto.err
  ok "the bf16 runs need a CPU with AVX512_BF16 or AMX-BF16 (this one: $CPU); checked there"
  finish; exit
fi
ok "this CPU ($CPU) has bf16 dot products: auto is bf16"
check "auto: says bf16 and how" grep -q "precision bf16 (auto): products on bfloat16 operands with fp32 accumulation" auto.err

# --- determinism within bf16; bf16 is not fp32
train b1 --set precision=bf16; rc1=$?
train b2 --set precision=bf16
train b3 --set precision=bf16 --set threads=1
train f1 --set precision=fp32
check "bf16 and fp32 runs (exit $rc1)" [ "$rc1" = 0 ] && [ "$(json precision b1.json)" = bf16 ] && [ "$(json precision f1.json)" = fp32 ]
check "bf16: the same bytes run to run" [ "$(mhash b1)" = "$(mhash b2)" ]
check "bf16: the same bytes with 1 thread as with 2" [ "$(mhash b1)" = "$(mhash b3)" ]
check "bf16 writes other bytes than fp32 (its products are bf16)" [ "$(mhash b1)" != "$(mhash f1)" ]
check "the checkpoint records precision bf16" $PY -c '
import json, sys; s = json.load(open(sys.argv[1] + "/state.json")); assert s["extra"]["precision"] == "bf16", s["extra"]' "$(json checkpoint b1.json)"

# --- the validation curve of bf16 follows fp32's
jb=$(sqlite3 "$KILN_DB" "SELECT id FROM jobs WHERE config LIKE '%ck-b1%' ORDER BY id DESC LIMIT 1" 2>/dev/null)
jf=$(sqlite3 "$KILN_DB" "SELECT id FROM jobs WHERE config LIKE '%ck-f1%' ORDER BY id DESC LIMIT 1" 2>/dev/null)
valcurve "$jb" > vb.txt; valcurve "$jf" > vf.txt
check "bf16's validation MLM loss follows fp32's within 2% at every validation" $PY - <<'PY'
b = [l.split("|") for l in open("vb.txt").read().split()]
f = [l.split("|") for l in open("vf.txt").read().split()]
assert len(b) == len(f) >= 4 and [s for s, _ in b] == [s for s, _ in f], (b, f)
worst = max(abs(float(x) - float(y)) / float(y) for (_, x), (_, y) in zip(b, f))
print("  | steps", [int(s) for s, _ in f])
print("  | fp32", [round(float(v), 4) for _, v in f])
print("  | bf16", [round(float(v), 4) for _, v in b], "worst relative difference %.2e" % worst)
assert worst <= 0.02, worst
assert float(f[-1][1]) < 0.8 * float(f[0][1]) + 0.2 * 8.0, "fp32 did not learn"
PY

# --- resume in bf16: paused at 40, resumed to 80, equals b1
train r --set precision=bf16 --pause-at 40
check "bf16: paused at step 40" [ "$(json steps r.json)" = 40 ]
"$KILN" train --config run.json --set checkpoint.dir=ck-r --set precision=bf16 --resume --json > r2.json 2> r2.err; rc=$?
check "bf16: resumed (exit $rc)" [ "$rc" = 0 ]
check "bf16: stopped and resumed = uninterrupted (bytes)" [ "$(mhash r2)" = "$(mhash b1)" ]

# --- an fp32 checkpoint resumed in bf16: allowed, said
train m --set precision=fp32 --pause-at 40
"$KILN" train --config run.json --set checkpoint.dir=ck-m --set precision=bf16 --resume --json > m2.json 2> m2.err; rc=$?
check "fp32 checkpoint resumed in bf16 (exit $rc)" [ "$rc" = 0 ] && [ "$(json precision m2.json)" = bf16 ]
check "the resume says the precision changed" grep -q "written by a run in fp32, resumed in bf16" m2.err
finish
