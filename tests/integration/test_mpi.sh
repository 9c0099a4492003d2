#!/usr/bin/env bash
# test_mpi.sh: data-parallel kiln train over Open MPI (mpirun -np 2 on this
# machine): 2 ranks match 1 rank with the same global batch, dropout on
# (every parameter within 1e-5 absolute, every tensor of norm > 1e-3 within
# 1e-4 relative, losses to 1e-5) for ALBERT, BERT and ELECTRA; bit-identical
# 2-rank runs; the store written by rank 0 only (rank 1 given a store it
# cannot open); SIGTERM to mpirun -> checkpoint, job paused, resume ==
# uninterrupted; kill -9 of one rank -> the job ends with an error within
# seconds, no process left, resume == uninterrupted; the parameter hash
# check; a batch the ranks cannot split; resuming on another number of
# ranks (said, and the same model within tolerance); a daemon job on 2
# ranks (kiln run submit --ranks 2) paused, resumed and its daemon killed
# with -9, ending with the bytes of a straight 2-rank run. Precision: a rank
# that cannot run rank 0's bf16 stops the run naming itself; bf16 on 2 ranks
# (where the CPU has it) is bit-identical run to run and follows 1 rank.
source "$(dirname "$0")/lib.sh"

# CI runs as root: Open MPI refuses root unless told (users run as themselves)
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
# Open MPI keeps allocations of MPI_Init to the end of the process: not kiln's leaks
export ASAN_OPTIONS="${ASAN_OPTIONS:-}${ASAN_OPTIONS:+:}detect_leaks=0"
MPI="mpirun --oversubscribe -np 2"

expect_exit 0 "ingest" "$KILN" ingest -q "$DATA/enwiki-sample.xml.bz2"
expect_exit 0 "vocab train 4k" "$KILN" vocab train -q --size 4000 --name v4k
expect_exit 0 "tokenize" "$KILN" tokenize -q

# with dropout: a token's masks are keyed by its stream position, the same on any rank.
# Precision fp32: the 1e-5 agreement of 2 ranks with 1 is fp32's (bf16's rounding of
# the products' operands turns an fp32 difference of accumulation order into bf16
# steps); bf16 on 2 ranks is checked apart below
cat > a.json <<'EOF'
{
  "model": {"type": "albert", "embedding_size": 32, "hidden_size": 64, "num_hidden_layers": 2,
            "num_attention_heads": 2, "intermediate_size": 128, "max_position_embeddings": 64,
            "hidden_dropout_prob": 0.1, "attention_probs_dropout_prob": 0.1},
  "data": {"objectives": ["mlm", "sop"], "seq_len": 48, "batch_size": 8, "valid_every": 10, "valid_batches": 2},
  "optimizer": {"type": "adamw", "lr": 1e-3, "warmup_steps": 5, "accumulation": 2},
  "budget": {"steps": 20},
  "threads": 1,
  "precision": "fp32",
  "checkpoint": {"dir": "a1", "every": 10, "keep": 3}
}
EOF
sed 's/"albert"/"bert"/; s/"embedding_size": 32, //; s/"a1"/"b1"/; s/"mlm", "sop"/"mlm", "nsp"/' a.json > b.json
sed 's/"albert"/"electra"/; s/"embedding_size": 32,/"embedding_size": 32, "generator_hidden_size": 32,/; s/"a1"/"e1"/; s/"mlm", "sop"/"rtd"/' a.json > e.json

cat > close.py <<'EOF'
import json, struct, sys
import numpy as np
def load(p):
    b = open(p, 'rb').read(); n = struct.unpack('<Q', b[:8])[0]; h = json.loads(b[8:8 + n]); d = {}
    for k, v in h.items():
        if k == '__metadata__': continue
        s, e = v['data_offsets']; d[k] = np.frombuffer(b[8 + n + s:8 + n + e], dtype=np.float32).astype(np.float64)
    return d
a, b = load(sys.argv[1]), load(sys.argv[2])
assert a.keys() == b.keys()
for k in a:
    x, y = a[k], b[k]
    da = np.abs(x - y).max()
    assert da <= 1e-5, (k, da)
    nx = np.linalg.norm(x)
    if nx > 1e-3: assert np.linalg.norm(x - y) / nx <= 1e-4, (k, np.linalg.norm(x - y) / nx)
EOF
same_loss() { $PY -c "
import json,sys; a=json.load(open(sys.argv[1])); b=json.load(open(sys.argv[2]))
for k in ['loss','val_loss']: assert abs(a[k]-b[k]) <= 1e-5*max(1,abs(a[k])), (k,a[k],b[k])
assert a['tokens'] == b['tokens'] and a['steps'] == b['steps']" "$1" "$2"; }

# --- 2 ranks == 1 rank, same global batch (ALBERT with accumulation, BERT, ELECTRA)
# (ELECTRA: 10 steps. Its generator's samples are discrete: once a sample
# sits on a probability boundary, the last bits of another summation order
# can flip it, and from there the two runs differ as two seeds do)
for m in a b e; do
  n=20; [ $m = e ] && n=10
  expect_exit 0 "$m: 1 rank" "$KILN" train --config $m.json --set budget.steps=$n --json
  cp out.txt $m-one.json
  expect_exit 0 "$m: 2 ranks" $MPI "$KILN" train --config $m.json --set budget.steps=$n --set checkpoint.dir=${m}2 --json
  cp out.txt $m-two.json
  check "$m: one JSON object from rank 0" [ "$(grep -c '"steps"' $m-two.json)" = 1 ]
  check "$m: the run says 2 ranks" [ "$(json data_parallel.ranks $m-two.json)" = 2 ]
  check "$m: losses and validation equal" same_loss $m-one.json $m-two.json
  check "$m: parameters within tolerance" $PY close.py ${m}1/step-0000000$n/model.safetensors ${m}2/step-0000000$n/model.safetensors
done
check "a: the snapshot agreed (rank 0 says its hash)" grep -q "data parallel: 2 ranks, 4 rows of each batch of 8 per rank" err.txt

# --- run to run: the same bytes
expect_exit 0 "a: 2 ranks again" $MPI "$KILN" train --config a.json --set checkpoint.dir=a3
check "2 ranks, run to run: model bytes" cmp a2/step-000000020/model.safetensors a3/step-000000020/model.safetensors
check "2 ranks, run to run: optimizer bytes" cmp a2/step-000000020/optimizer.safetensors a3/step-000000020/optimizer.safetensors

# --- precision: every rank runs rank 0's choice (bf16 on a CPU that has it)
expect_exit 69 "precision bf16 where rank 1 cannot run it" mpirun --oversubscribe -np 1 "$KILN" train --config a.json \
  --set checkpoint.dir=p0 --set precision=bf16 : -np 1 env KILN_CPU_NO_BF16=1 "$KILN" train --config a.json \
  --set checkpoint.dir=p0 --set precision=bf16
if grep -q "precision bf16 cannot run here" err.txt; then
  ok "this CPU has no bf16 dot products: rank 0 refuses bf16 itself (the 2-rank bf16 runs need one that has)"
else
  grep_err "rank 1 \(.*\): precision bf16 \(rank 0's choice\) cannot run here" "rank 1 says it cannot run rank 0's bf16"
  expect_exit 0 "bf16 on 2 ranks" $MPI "$KILN" train --config a.json --set checkpoint.dir=p1 --set precision=auto --json
  cp out.txt p1.json
  check "auto on 2 ranks: bf16 (rank 0's choice)" [ "$(json precision p1.json)" = bf16 ]
  expect_exit 0 "bf16 on 2 ranks again" $MPI "$KILN" train --config a.json --set checkpoint.dir=p2 --set precision=bf16
  check "bf16 on 2 ranks, run to run: model bytes" cmp p1/step-000000020/model.safetensors p2/step-000000020/model.safetensors
  expect_exit 0 "bf16 on 1 rank" "$KILN" train --config a.json --set checkpoint.dir=p3 --set precision=bf16 --json
  cp out.txt p3.json
  check "bf16: 2 ranks follow 1 rank (final loss within 2%)" $PY -c '
import json, sys; a, b = (json.load(open(f))["loss"] for f in sys.argv[1:]); assert abs(a - b) <= 0.02 * abs(b), (a, b)' p1.json p3.json
fi

# --- the store: rank 0 only (rank 1 gets a store path it could not even create)
sqlite3 "$KILN_DB" "select count(*) from jobs" > jobs0.txt
expect_exit 0 "rank 1 without a store" mpirun --oversubscribe -np 1 "$KILN" train --config a.json --set checkpoint.dir=a4 : \
  -np 1 env KILN_DB=/nonexistent/dir/x.db "$KILN" train --config a.json --set checkpoint.dir=a4
check "one new job row" [ "$(sqlite3 "$KILN_DB" "select count(*) from jobs")" = $(($(cat jobs0.txt) + 1)) ]
check "one metrics row per step and name" [ "$(sqlite3 "$KILN_DB" "select max(c) from (select count(*) c from metrics where job_id = (select max(id) from jobs) group by step, name)")" = 1 ]
check "the job done at step 20" [ "$(sqlite3 "$KILN_DB" "select state || ' ' || step from jobs order by id desc limit 1")" = "done 20" ]
check "checkpoints written once (rank 0)" [ "$(ls a4 | tr '\n' ' ')" = "step-000000010 step-000000020 " ]

# --- errors that stop every rank
expect_exit 78 "a batch the ranks cannot split" $MPI "$KILN" train --config a.json --set checkpoint.dir=a5 --set data.batch_size=7
grep_err "data.batch_size 7 is not divisible by the 2 ranks" "names both numbers"
# (the update is split: each step's all-gather rewrites every rank's copy of a
# part with its owner's, so a difference lives until the next step; it is
# injected in step 20, which the check at the last step sees)
expect_exit 70 "parameters that diverge are caught" env KILN_TEST_DIVERGE=1:20 $MPI "$KILN" train --config a.json --set checkpoint.dir=a6
grep_err "parameters of rank 1 differ from rank 0" "the hash check names the rank"
check "no checkpoint of the diverged step" [ ! -e a6/step-000000020 ]

# --- SIGTERM to mpirun: both ranks finish the step, rank 0 checkpoints, the job pauses
sed 's/"steps": 20/"steps": 100000/' a.json > long.json
$MPI "$KILN" train --config long.json --set checkpoint.dir=s1 --set checkpoint.every=0 > sig.txt 2> sigerr.txt &
pid=$!
for i in $(seq 1 100); do sleep 0.1; [ "$(sqlite3 "$KILN_DB" "select count(*) from jobs where state = 'running'" 2>/dev/null)" = 1 ] && break; done
sleep 2
kill -TERM $pid
wait $pid
check "SIGTERM: a checkpoint" bash -c 'ls s1 | grep -q step-'
check "SIGTERM: the job paused" [ "$(sqlite3 "$KILN_DB" "select state from jobs order by id desc limit 1")" = paused ]
s=$(ls s1 | tail -1 | sed 's/step-0*//')
t=$((s + 15))
expect_exit 0 "resume on 2 ranks" $MPI "$KILN" train --config long.json --set checkpoint.dir=s1 --set checkpoint.every=0 --resume --pause-at $t
expect_exit 0 "straight 2-rank run" $MPI "$KILN" train --config long.json --set checkpoint.dir=s2 --set checkpoint.every=0 --pause-at $t
check "SIGTERM + resume == uninterrupted (bytes)" cmp s1/step-$(printf %09d $t)/model.safetensors s2/step-$(printf %09d $t)/model.safetensors
check "... optimizer too" cmp s1/step-$(printf %09d $t)/optimizer.safetensors s2/step-$(printf %09d $t)/optimizer.safetensors

# --- kill -9 of one rank: the job ends within seconds, with an error; nothing hangs
$MPI "$KILN" train --config long.json --set checkpoint.dir=k1 --set checkpoint.every=25 > k.txt 2> kerr.txt &
pid=$!
for i in $(seq 1 200); do sleep 0.1; [ -d k1 ] && ls k1 | grep -q step- && break; done
victim=$(pgrep -f "kiln train .*checkpoint.dir=k1" | grep -vx "$pid" | tail -1)   # a rank, not mpirun
t0=$(date +%s)
kill -9 "$victim"
wait $pid
rc=$?
check "kill -9 of a rank: nonzero exit ($rc)" [ $rc != 0 ]
check "... within 60 s" [ $(($(date +%s) - t0)) -le 60 ]
sleep 1
check "... no rank left running" bash -c '! pgrep -f "[k]iln train .*checkpoint.dir=k1" >/dev/null'
s=$(ls k1 | tail -1 | sed 's/step-0*//')
t=$((s + 10))
expect_exit 0 "resume after kill -9" $MPI "$KILN" train --config long.json --set checkpoint.dir=k1 --set checkpoint.every=0 --resume --pause-at $t
expect_exit 0 "straight run" $MPI "$KILN" train --config long.json --set checkpoint.dir=k2 --set checkpoint.every=0 --pause-at $t
check "kill -9 + resume == uninterrupted (bytes)" cmp k1/step-$(printf %09d $t)/model.safetensors k2/step-$(printf %09d $t)/model.safetensors

# --- another number of ranks on resume: allowed with the same global batch, said
expect_exit 0 "a 2-rank checkpoint resumed on 1 rank" "$KILN" train --config a.json --set checkpoint.dir=a3 --set budget.steps=30 --resume
grep_err "on 2 ranks, resumed on 1" "says so"
expect_exit 0 "the same 30 steps on 2 ranks" $MPI "$KILN" train --config a.json --set checkpoint.dir=a2 --set budget.steps=30 --resume
check "1-rank continuation within tolerance of the 2-rank one" $PY close.py a2/step-000000030/model.safetensors a3/step-000000030/model.safetensors

# --- the daemon: a job on 2 ranks (kiln run submit --ranks 2), paused and
# resumed, then the daemon killed with -9 mid-run and restarted: the job
# ends with the same bytes as a straight 2-rank kiln train
echo '{"train_threads": 1, "ingest_threads": 1, "retry_seconds": 1}' > d.json
mkdir -p spool
DPID=
trap '[ -n "$DPID" ] && kill -9 "$DPID" 2>/dev/null; pkill -f "[k]iln .*train .*dj.job.json"; rm -rf "$WORK"' EXIT
start_daemon() {
  "$KILN" daemon --spool spool --config d.json >>daemon.log 2>&1 &
  DPID=$!
  for _ in $(seq 1 300); do "$KILN" status >/dev/null 2>&1 && return 0; sleep 0.05; done
  return 1
}
field() { "$KILN" run show "$1" --json 2>/dev/null | $PY -c 'import json,sys; v=json.load(sys.stdin)[sys.argv[1]]; print("" if v is None else v)' "$2"; }
wait_step() { for _ in $(seq 1 $(( $3 * 10 ))); do s=$(field "$1" step); [ -n "$s" ] && [ "$s" -ge "$2" ] && return 0; sleep 0.1; done; return 1; }
wait_state() { for _ in $(seq 1 $(( $3 * 10 ))); do [ "$(field "$1" state)" = "$2" ] && return 0; sleep 0.1; done; return 1; }
sed 's/"steps": 20/"steps": 400/; s/"every": 10/"every": 50/' a.json > d400.json
expect_exit 0 "straight 2-rank run of 400 steps" $MPI "$KILN" train --config d400.json --set checkpoint.dir=dref
check "daemon starts" start_daemon
expect_exit 0 "kiln run submit --ranks 2" "$KILN" run submit --config d400.json --set checkpoint.dir=dj --ranks 2 --json
id=$(json id)
check "submit: launch.ranks in the stored config" bash -c "'$KILN' run show $id --json | grep -q '\"ranks\": *2'"
check "the MPI job runs" wait_step "$id" 60 60
expect_exit 0 "pause" "$KILN" run pause "$id" --json
check "paused with a checkpoint" [ "$(json state)" = paused ]
check "no rank left after the pause" bash -c '! pgrep -f "[k]iln .*train .*dj.job.json" >/dev/null'
expect_exit 0 "resume" "$KILN" run resume "$id"
check "running again" wait_step "$id" 150 60
kill -9 "$DPID"; wait "$DPID" 2>/dev/null
gone() { for _ in $(seq 1 300); do pgrep -f "[k]iln .*train .*dj.job.json" >/dev/null || return 0; sleep 0.1; done; return 1; }
check "the daemon's death stops mpirun and the ranks (within 30 s)" gone
check "daemon restarts" start_daemon
check "the job ends" wait_state "$id" done 180
check "daemon MPI job (pause, resume, daemon kill -9) == straight 2-rank run" cmp dj/step-000000400/model.safetensors dref/step-000000400/model.safetensors
check "its metrics: one row per step and name" [ "$(sqlite3 "$KILN_DB" "select max(c) from (select count(*) c from metrics where job_id = $id group by step, name)")" = 1 ]
kill -TERM "$DPID"; wait "$DPID" 2>/dev/null

# a vocabulary smaller than a batch's tokens: the word embeddings' gradient is
# all-reduced dense (above, the lookup's rows travel as rows)
expect_exit 0 "vocab train 600" "$KILN" vocab train -q --size 600 --name v600
expect_exit 0 "tokenize with it" "$KILN" tokenize -q --vocab v600
expect_exit 0 "small vocabulary: 1 rank" "$KILN" train --config b.json --set data.vocab=v600 --set checkpoint.dir=v1 --json
cp out.txt v-one.json
expect_exit 0 "small vocabulary: 2 ranks" $MPI "$KILN" train --config b.json --set data.vocab=v600 --set checkpoint.dir=v2 --json
check "small vocabulary: losses equal" same_loss v-one.json out.txt
check "small vocabulary: parameters within tolerance" $PY close.py v1/step-000000020/model.safetensors v2/step-000000020/model.safetensors

finish
