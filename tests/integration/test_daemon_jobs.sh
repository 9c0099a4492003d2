#!/usr/bin/env bash
# test_daemon_jobs.sh: kiln daemon's jobs (docs/daemon.md): kiln run submit
# validates configs and refuses a taken checkpoint folder; a training job
# killed with -9 at random steps (and stopped once with SIGTERM) resumes at
# each restart and ends with a checkpoint byte-identical to an uninterrupted
# kiln train of the same config; the best checkpoint by validation loss is
# kept; pause, resume and cancel of a running job; priorities; vocab jobs;
# the same operations through the daemon and on the store directly give the
# same results; SIGHUP reloads the config and time-based checkpoints keep the
# run bit-identical; kiln status shows the running job.
source "$(dirname "$0")/lib.sh"

DPIDS=()
cleanup() {
  for p in "${DPIDS[@]}"; do kill -9 "$p" 2>/dev/null; done
  wait 2>/dev/null
  cd / && if [ -n "${KILN_TEST_KEEP:-}" ]; then echo "kept $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

start_daemon() {
  "$KILN" daemon --spool spool --config d.json >>daemon.log 2>&1 &
  DPID=$!
  DPIDS+=("$DPID")
  for _ in $(seq 1 300); do
    "$KILN" status >/dev/null 2>&1 && return 0
    kill -0 "$DPID" 2>/dev/null || return 1
    sleep 0.05
  done
  return 1
}
stop_daemon() { kill -TERM "$DPID"; wait "$DPID"; }
# field ID KEY: a field of kiln run show ID --json
field() { "$KILN" run show "$1" --json 2>/dev/null | $PY -c 'import json,sys; v=json.load(sys.stdin)[sys.argv[1]]; print("" if v is None else v)' "$2"; }
# wait_state ID STATE SECONDS
wait_state() { for _ in $(seq 1 $(( $3 * 10 ))); do [ "$(field "$1" state)" = "$2" ] && return 0; kill -0 "$DPID" || return 1; sleep 0.1; done; return 1; }
# wait_step ID STEP SECONDS: the job reached STEP
wait_step() { for _ in $(seq 1 $(( $3 * 10 ))); do s=$(field "$1" step); [ -n "$s" ] && [ "$s" -ge "$2" ] && return 0; kill -0 "$DPID" || return 1; sleep 0.1; done; return 1; }
submit() { "$KILN" run submit --json "$@" > sub.json 2>err.txt && json id sub.json; }

# steps and checkpoint cadence: the sanitizer build trains ~12x slower
if [ -n "${KILN_SANITIZE:-}" ]; then STEPS=60; EVERY=10; else STEPS=300; EVERY=20; fi
LAST=$(printf 'step-%09d' "$STEPS")

expect_exit 0 "kiln run --help" "$KILN" run --help
expect_exit 0 "kiln status --help" "$KILN" status --help
expect_exit 0 "ingest" "$KILN" ingest -q "$DATA/enwiki-sample.xml.bz2" "$DATA/state_union.zip"
expect_exit 0 "ingest lines" "$KILN" ingest -q --split line "$DATA/lee_background.txt"
expect_exit 0 "vocab train 4k" "$KILN" vocab train -q --size 4000 --name v4k
expect_exit 0 "tokenize" "$KILN" tokenize -q
cat > tiny.json <<EOF
{
  "model": {"type": "albert", "embedding_size": 32, "hidden_size": 64, "num_hidden_layers": 2,
            "num_attention_heads": 2, "intermediate_size": 128, "max_position_embeddings": 64,
            "hidden_dropout_prob": 0.1, "attention_probs_dropout_prob": 0.1},
  "data": {"objectives": ["ngram", "sop"], "seq_len": 48, "batch_size": 8, "valid_every": $EVERY, "valid_batches": 3},
  "optimizer": {"type": "lamb", "lr": 2e-3, "warmup_steps": 10, "accumulation": 2},
  "budget": {"steps": $STEPS},
  "checkpoint": {"dir": "ck", "every": $EVERY, "keep": 2}
}
EOF
echo '{"train_threads": 1, "ingest_threads": 1, "retry_seconds": 1}' > d.json
mkdir spool

# --- the reference: an uninterrupted kiln train with the daemon's thread count
expect_exit 0 "reference run ($STEPS steps)" "$KILN" train -q --config tiny.json --set threads=1 --set checkpoint.dir=ref

# --- submit: validation first (no daemon: the store directly)
expect_exit 78 "submit: an unknown key is refused" "$KILN" run submit --config tiny.json --set model.hiden_size=64
grep_err "model.hiden_size" "names the key"
expect_exit 66 "submit: a missing config" "$KILN" run submit --config nope.json
expect_exit 64 "submit: an unknown kind" "$KILN" run submit --kind bake --config tiny.json
echo '{"size": 2000, "nam": "x"}' > badv.json
expect_exit 78 "submit: a bad vocab config" "$KILN" run submit --kind vocab --config badv.json
grep_err "unknown key 'nam'" "names the key"
expect_exit 73 "submit: a folder holding checkpoints needs --resume" "$KILN" run submit --config tiny.json --set checkpoint.dir=ref
grep_err "--resume" "says how"
K=$(submit --config tiny.json --set checkpoint.dir=ckK --name killed)
check "submit without a daemon: queued ($K)" [ "$(json state sub.json)" = queued ]
grep_err "starts when kiln daemon runs" "says no daemon runs"
"$KILN" run show "$K" --json > show.json
check "the job: origin run, absolute checkpoint.dir, vocabulary named" $PY - "$WORK" <<'EOF'
import json, sys
j = json.load(open("show.json"))
c = j["config"]
assert j["origin"] == "run" and j["checkpoint"] is None and j["error"] is None, j
assert c["checkpoint"]["dir"] == sys.argv[1] + "/ckK", c["checkpoint"]
assert c["data"]["vocab"] == "v4k" and c["threads"] == 0, c["data"]
EOF
expect_exit 73 "submit: a folder another job uses is refused" "$KILN" run submit --config tiny.json --set checkpoint.dir=ckK
grep_err "used by job $K" "names the job"

# --- kill -9 at random steps, a SIGTERM, restarts: the run resumes and ends bit-identical
for k in 1 2 3; do
  start_daemon || bad "start $k"
  # the last kill at most 3/5 + 1/8 of the way: enough steps left that the
  # job cannot finish between reaching the target and the kill (bf16 made
  # the steps 2.5x faster; at 3/4 + 1/6 a CI run once finished first)
  target=$(( STEPS * k / 5 + RANDOM % (STEPS / 8) ))
  wait_step "$K" "$target" 120 || bad "kill $k: the job did not reach step $target"
  if [ "$k" = 2 ]; then
    stop_daemon; rc=$?
    check "SIGTERM while training: exit 0 ($rc)" [ "$rc" = 0 ]
    check "SIGTERM: the job is queued again" [ "$(field "$K" state)" = queued ]
    s=$(field "$K" step); c=$(field "$K" checkpoint)
    check "SIGTERM: a checkpoint at the step it stopped ($s, $c)" [ "$c" = "$WORK/ckK/$(printf 'step-%09d' "$s")" ]
  else
    sleep "0.0$(( RANDOM % 10 ))"
    kill -9 "$DPID"; wait "$DPID" 2>/dev/null
    check "kill $k at step ~$target: the job shows running (its daemon is dead)" [ "$(field "$K" state)" = running ]
  fi
  check "kill $k: integrity_check" integrity
done
start_daemon || bad "final start"
check "the run ends" wait_state "$K" done 300
check "recovery logged" grep -q "job $K (killed) was running when the previous daemon died: queued again" daemon.log
check "resumed from checkpoints" grep -q "resuming $WORK/ckK/step-" daemon.log
check "final checkpoint: model.safetensors identical to the uninterrupted run" cmp "ckK/$LAST/model.safetensors" "ref/$LAST/model.safetensors"
check "final checkpoint: optimizer.safetensors identical" cmp "ckK/$LAST/optimizer.safetensors" "ref/$LAST/optimizer.safetensors"
check "show: done, step $STEPS, the last checkpoint" [ "$(field "$K" state) $(field "$K" step) $(field "$K" checkpoint)" = "done $STEPS $WORK/ckK/$LAST" ]
best=$(sqlite3 "$KILN_DB" "select step from checkpoints where job_id = $K and val_loss is not null order by val_loss, step limit 1")
check "the best checkpoint by validation loss (step $best) is kept in ckK.best" test -s "ckK.best/$(printf 'step-%09d' "$best")/model.safetensors"
check "only the best in ckK.best" [ "$(ls ckK.best | wc -l)" = 1 ]
check "integrity after the runs" integrity

# --- pause, resume, cancel a running job
sed -e "s/\"steps\": $STEPS/\"steps\": 1000000/" -e "s/\"every\": $EVERY/\"every\": 0/" tiny.json > long.json
L=$(submit --config long.json --set checkpoint.dir=ckL --name long)
check "long job running" wait_step "$L" 3 60
expect_exit 0 "status while training" "$KILN" status --json
check "status: the running job's step, loss, tokens/s" $PY - "$L" <<'EOF'
import json, sys
r = json.load(open("out.txt"))["running"]
assert r["id"] == int(sys.argv[1]) and r["step"] >= 1 and r["loss"] > 0 and r["tokens_per_s"] > 0, r
assert "eta_s" in r and r["kind"] == "train", r
EOF
expect_exit 0 "kiln status (text)" "$KILN" status
grep -q "running: job $L long (train): step" out.txt && ok "status shows the step" || bad "status shows the step: $(cat out.txt)"
expect_exit 0 "pause a running job" "$KILN" run pause "$L" --json
check "paused, with a checkpoint at its step" $PY - "$WORK" <<'EOF'
import json, sys
j = json.load(open("out.txt"))
assert j["state"] == "paused" and j["request"] is None, j
assert j["checkpoint"] == sys.argv[1] + "/ckL/step-%09d" % j["step"], j
EOF
expect_exit 0 "pause again: nothing to do" "$KILN" run pause "$L"
grep -q "already paused" out.txt && ok "says already paused" || bad "says already paused"
expect_exit 0 "resume" "$KILN" run resume "$L"
check "resumed: running again" wait_state "$L" running 30
p=$(sqlite3 "$KILN_DB" "select step from checkpoints where job_id = $L order by step desc limit 1")
check "it goes on from its checkpoint" wait_step "$L" $((p + 2)) 60
check "the log says it resumed" grep -q "resuming $WORK/ckL/$(printf 'step-%09d' "$p")" daemon.log
expect_exit 0 "cancel a running job" "$KILN" run cancel "$L"
check "cancelled" [ "$(field "$L" state)" = cancelled ]
expect_exit 65 "cancel a cancelled job" "$KILN" run cancel "$L"
grep_err "is cancelled: nothing to cancel" "says why"
expect_exit 66 "no such job" "$KILN" run show 9999
expect_exit 65 "resume a done job" "$KILN" run resume "$K"
expect_exit 65 "pause a kiln train run" "$KILN" run pause 1
grep_err "kiln train" "says it is not a queued job"

# --- the same operations through the daemon and on the store directly
M=$(submit --config long.json --set checkpoint.dir=ckM --name blocker)
check "a long job holds the slot" wait_state "$M" running 30
ops() { # ops ID: pause, resume, cancel, pause again (refused), show: states and exit codes
  local out=""
  for op in pause resume cancel pause; do "$KILN" run "$op" "$1" --json >o.json 2>/dev/null; out="$out $op:$?:$(json state o.json 2>/dev/null)"; done
  echo "$out"
}
norm() { "$KILN" run show "$1" --json | $PY -c 'import json,sys; j=json.load(sys.stdin); [j.pop(k) for k in ("id","name","created_at","updated_at")]; j["config"]["checkpoint"]["dir"]="X"; print(json.dumps(j, sort_keys=True))'; }
C=$(submit --config tiny.json --set checkpoint.dir=ckC --name C)
via_daemon=$(ops "$C")
norm "$C" > c.json
stop_daemon
check "the blocker is queued again after SIGTERM" [ "$(field "$M" state)" = queued ]
D=$(submit --config tiny.json --set checkpoint.dir=ckD --name D)
direct=$(ops "$D")
norm "$D" > d_.json
check "daemon and direct: same states and exit codes ($direct)" [ "$via_daemon" = "$direct" ]
check "daemon and direct: same job afterwards" cmp c.json d_.json
expect_exit 0 "cancel the blocker directly" "$KILN" run cancel "$M"

# --- priorities, vocab jobs
echo '{"size": 3000, "name": "v3k"}' > v3.json
echo '{"size": 2000, "name": "v2k"}' > v2.json
A=$(submit --kind vocab --config v3.json --priority 0)
B=$(submit --kind vocab --config v2.json --priority 5)
expect_exit 0 "list" "$KILN" run list
grep -q "queued.*vocab *v2k" out.txt && ok "list shows the queue" || bad "list shows the queue: $(cat out.txt)"
start_daemon || bad "start for the vocab jobs"
check "vocab job A done" wait_state "$A" done 60
check "vocab job B done" wait_state "$B" done 60
la=$(grep -n "job $A (v3k, vocab" daemon.log | cut -d: -f1); lb=$(grep -n "job $B (v2k, vocab" daemon.log | cut -d: -f1)
check "the higher priority ran first" [ "$lb" -lt "$la" ]
expect_exit 0 "vocab list" "$KILN" vocab list
check "both vocabularies stored" grep -q "v3k" out.txt
expect_exit 0 "list --json: a job a line" "$KILN" run list --json
check "list --json" [ "$(wc -l < out.txt)" -ge 7 ]

# --- SIGHUP: time-based checkpoints; the run stays bit-identical across its legs
echo '{"train_threads": 1, "ingest_threads": 1, "retry_seconds": 1, "checkpoint_minutes": 0.01}' > d.json
kill -HUP "$DPID"
for _ in $(seq 1 50); do grep -q "config reloaded" daemon.log && break; sleep 0.1; done
check "SIGHUP: config reloaded" grep -q "config reloaded from .*checkpoint_minutes 0.01" daemon.log
expect_exit 0 "status shows the new config" "$KILN" status --json
check "checkpoint_minutes 0.01" [ "$(json daemon.config.checkpoint_minutes)" = 0.01 ]
T=$(submit --config tiny.json --set checkpoint.dir=ckT --set checkpoint.every=0 --name timed)
check "the timed run ends" wait_state "$T" done 300
n=$(grep -c "job $T: .* minutes since its last checkpoint" daemon.log)
check "checkpoints by time ($n)" [ "$n" -ge 2 ]
check "time-based checkpoints: identical to the uninterrupted run" cmp "ckT/$LAST/model.safetensors" "ref/$LAST/model.safetensors"
echo '{"train_threads": 0}' > d.json
kill -HUP "$DPID"
for _ in $(seq 1 50); do grep -q "the previous config stays" daemon.log && break; sleep 0.1; done
check "a bad config on SIGHUP is refused, the old one stays" grep -q "train_threads: expected an integer.*the previous config stays" daemon.log
check "the daemon goes on" kill -0 "$DPID"
# a raw request whose error message would quote bytes that are not UTF-8
# (tests/fuzz/corpus/ctl/regress-bad-escape-utf8.txt): a JSON answer with the
# error (ill-formed bytes as U+FFFD, code 64), not a dropped connection or
# a false "out of memory"
check "a request quoting ill-formed UTF-8 gets a JSON error answer" $PY - "$KILN_DB.daemon/sock" "$ROOT/tests/fuzz/corpus/ctl/regress-bad-escape-utf8.txt" <<'EOF'
import json, socket, sys
s = socket.socket(socket.AF_UNIX); s.settimeout(30); s.connect(sys.argv[1])
s.sendall(open(sys.argv[2], 'rb').read())
buf = b''
while not buf.endswith(b'\n'):
    d = s.recv(65536)
    if not d: break
    buf += d
r = json.loads(buf.decode('utf-8'))
print(r, file=sys.stderr)
sys.exit(0 if r.get('ok') is False and r.get('code') == 64 and 'one JSON object' in r.get('error', '') else 1)
EOF
check "the daemon goes on after it" kill -0 "$DPID"
stop_daemon
check "integrity at the end" integrity

finish
