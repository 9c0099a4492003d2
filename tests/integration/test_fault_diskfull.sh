#!/usr/bin/env bash
# test_fault_diskfull.sh: full disks (docs/reliability.md, "Fault injection:
# allocation failures and full disks"), on small tmpfs mounts (needs root:
# CI is root; a failed mount fails the test, it is not skipped).
#  (a) checkpoint.dir full: a run's checkpoint of step 6 fails midway, the
#      free space set so that the write stops at the first file, inside
#      model.safetensors, optimizer.safetensors, vocab.txt and state.json.
#      Each time: exit 74 naming the file and the cause; no step-6 folder, no
#      .tmp-* left; step 4 intact (the bytes of a run that never failed); the
#      job marked failed; the store consistent. With room again, --resume
#      picks step 4 and ends bit-identical to an undisturbed run (checkpoint
#      bytes, metrics).
#  (b) the spool's done/ full: done/ a mount of its own (a 1 MB tmpfs, almost
#      full; a JSONL file of 293 documents), so the daemon copies the file there (a move across file
#      systems) and the copy fails: the file stays in the spool with its
#      bytes, no partial copy in done/, its documents stored once; after room
#      is made and the daemon restarted, the file is in done/, whole, and the
#      documents still once. (c) the same for failed/ (a malformed file).
#      (e) a whole spool on a full tmpfs: a move within one file system needs
#      no room, the file reaches done/.
source "$(dirname "$0")/lib.sh"

MOUNTS=()
DPID=
cleanup() {
  [ -n "$DPID" ] && kill -9 "$DPID" 2>/dev/null
  wait 2>/dev/null
  local m
  for m in "${MOUNTS[@]}"; do umount "$m" 2>/dev/null || umount -l "$m"; done
  cd / && rm -rf "$WORK"
}
trap cleanup EXIT
# tmpfs DIR SIZE: a tmpfs of SIZE on DIR, or the test fails here, loudly
tmpfs() {
  mkdir -p "$1"
  if mount -t tmpfs -o "size=$2" tmpfs "$1"; then
    MOUNTS+=("$1")
  else
    bad "cannot mount a tmpfs on $1: this test needs root (CI runs as root)"
    finish
    exit 1
  fi
}
free_bytes() { echo $(( $(stat -f -c '%a * %S' "$1") )); }
# fill DIR BYTES: a filler file (.filler: a name the spool ignores) leaving BYTES free on DIR's file system
fill() {
  local f=$(( $(free_bytes "$1") - $2 ))
  if [ "$f" -gt 0 ]; then head -c "$f" /dev/zero > "$1/.filler" 2>/dev/null; fi
  true
}
consistent() {
  [ "$(sqlite3 "$1" 'PRAGMA integrity_check')" = ok ] &&
  [ "$(sqlite3 "$1" 'SELECT (SELECT count(*) FROM documents) = (SELECT coalesce(sum(documents),0) FROM sources)')" = 1 ]
}
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1

# --- fixtures
"$KILN" --db tok.db ingest -q --threads 1 "$DATA/lee_background.txt" "$DATA/state_union.zip" || bad "ingest"
"$KILN" --db tok.db vocab train -q --size 2000 --name v2k --threads 1 >/dev/null || bad "vocab train"
"$KILN" --db tok.db tokenize -q --threads 1 || bad "tokenize"
cat > tiny.json <<'EOF'
{
  "model": {"type": "albert", "embedding_size": 16, "hidden_size": 32, "num_hidden_layers": 1,
            "num_attention_heads": 2, "intermediate_size": 64, "max_position_embeddings": 32},
  "data": {"objectives": ["mlm", "sop"], "seq_len": 32, "batch_size": 4, "valid_every": 2, "valid_batches": 1},
  "optimizer": {"type": "adamw", "lr": 1e-3, "warmup_steps": 1},
  "budget": {"steps": 8},
  "checkpoint": {"dir": "ck", "every": 2, "keep": 2},
  "threads": 1
}
EOF
metrics() { sqlite3 "$1" "SELECT m.step, m.name, m.value FROM metrics m JOIN jobs j ON j.id = m.job_id WHERE j.state = 'done' AND m.name NOT IN ('seconds', 'tokens_per_s') ORDER BY 1, 2"; }

# --- (a) checkpoint.dir full
cp tok.db ref.db
"$KILN" --db ref.db train -q --config tiny.json --set checkpoint.dir="$WORK/ref" --set checkpoint.keep=10 || bad "reference run"
metrics ref.db > ref.metrics
R6=ref/step-000000006
check "reference: checkpoints 2, 4, 6, 8" [ "$(ls ref | tr '\n' ' ')" = "step-000000002 step-000000004 step-000000006 step-000000008 " ]
# the free space for each target: none, then the middle of each file of step
# 6 in the order they are written (the files before it rounded up to pages)
page=$(getconf PAGESIZE)
before=0
targets=("0:model.safetensors")
for f in model.safetensors optimizer.safetensors vocab.txt state.json; do
  sz=$(stat -c %s "$R6/$f")
  targets+=("$(( before + sz / 2 )):$f")
  before=$(( before + (sz + page - 1) / page * page ))
done
k=0
for t in "${targets[@]}"; do
  k=$((k + 1))
  room=${t%%:*} want=${t#*:}
  mnt="$WORK/ckfs$k" ck="$WORK/ckfs$k/ck" db="a$k.db"
  tmpfs "$mnt" 8m
  cp tok.db "$db"
  "$KILN" --db "$db" train -q --config tiny.json --set checkpoint.dir="$ck" --pause-at 4 || bad "a$k: steps 1-4"
  fill "$mnt" "$room"
  expect_exit 74 "a$k: $room bytes free: the checkpoint of step 6 fails (in $want)" \
    "$KILN" --db "$db" train --config tiny.json --set checkpoint.dir="$ck" --resume
  grep_err "step-000000006/$want: .*No space left on device" "a$k: the message names $want and the cause"
  check "a$k: no step-6 folder, nothing half-written left" [ "$(ls -A "$ck" | grep -v '^\.lock$' | tr '\n' ' ')" = "step-000000002 step-000000004 " ]
  ok4=1
  for f in model.safetensors optimizer.safetensors vocab.txt; do cmp -s "$ck/step-000000004/$f" "ref/step-000000004/$f" || ok4=0; done
  check "a$k: step 4 intact (the bytes of the undisturbed run)" [ "$ok4" = 1 ]
  check "a$k: the job is marked failed, with the reason" [ "$(sqlite3 "$db" "SELECT state, error LIKE '%No space left%' FROM jobs")" = "failed|1" ]
  check "a$k: store consistent" consistent "$db"
  rm -f "$mnt/.filler"
  expect_exit 0 "a$k: room again: --resume" "$KILN" --db "$db" train --config tiny.json --set checkpoint.dir="$ck" --resume
  grep_err "resuming .*step-000000004 at step 4" "a$k: resumed from the last complete checkpoint (step 4)"
  check "a$k: ends bit-identical to the undisturbed run" cmp -s "$ck/step-000000008/model.safetensors" ref/step-000000008/model.safetensors
  check "a$k: optimizer state too" cmp -s "$ck/step-000000008/optimizer.safetensors" ref/step-000000008/optimizer.safetensors
  metrics "$db" > "a$k.metrics"
  check "a$k: the metrics of the undisturbed run, every step once" cmp -s "a$k.metrics" ref.metrics
done

# --- (b) the spool's done/ full
# a document a line, 400 KB: more than done/ has room for
$PY -c 'import json, sys
for l in open(sys.argv[1], encoding="utf-8"):
    if l.strip(): print(json.dumps({"text": l.strip()}))' "$DATA/lee_background.txt" > part.jsonl
"$KILN" --db ref2.db ingest -q --threads 1 part.jsonl || bad "reference ingest"
ref_docs=$(sqlite3 ref2.db 'SELECT count(*) FROM documents')
"$KILN" --db tok.db vocab export v.txt >/dev/null
"$KILN" --db d.db init -q >/dev/null && "$KILN" --db d.db vocab import -q v.txt >/dev/null || bad "daemon store"
echo '{"train_threads": 1, "ingest_threads": 1, "retry_seconds": 1}' > d.json
start_daemon() {
  "$KILN" --db "$1" daemon --spool "$2" --config d.json >>"$3" 2>&1 &
  DPID=$!
  for _ in $(seq 1 200); do
    "$KILN" --db "$1" status >/dev/null 2>&1 && return 0
    kill -0 "$DPID" 2>/dev/null || return 1
    sleep 0.05
  done
  return 1
}
stop_daemon() { kill -TERM "$DPID"; wait "$DPID"; local rc=$?; DPID=; return $rc; }
wait_log() { for _ in $(seq 1 300); do grep -qE "$2" "$1" && return 0; sleep 0.1; done; return 1; }
drop() { cp "$1" "$2/.incoming" && mv "$2/.incoming" "$2/$3"; }
once() { [ "$(sqlite3 "$1" 'SELECT count(*) = count(DISTINCT content_hash) FROM documents')" = 1 ]; }

mkdir -p spool
tmpfs "$WORK/spool/done" 1m
fill spool/done 100000
check "b: done/ is another file system with 100 KB free" [ "$(free_bytes spool/done)" -lt 200000 ]
start_daemon d.db spool b.log || bad "b: daemon start"
drop part.jsonl spool part.jsonl
check "b: the move to done/ fails, said" wait_log b.log "cannot move part.jsonl to done/: No space left on device"
check "b: the file is still in the spool, whole" cmp -s part.jsonl spool/part.jsonl
check "b: no partial copy in done/" [ -z "$(ls -A spool/done | grep -v '^\.filler$')" ]
check "b: its documents stored, once ($ref_docs)" [ "$(sqlite3 d.db 'SELECT count(*) FROM documents')" = "$ref_docs" ]
check "b: and tokenized" [ "$(sqlite3 d.db 'SELECT count(*) FROM documents WHERE id NOT IN (SELECT doc_id FROM doc_tokens)')" = 0 ]
daemon_up() { "$KILN" --db "$1" status >/dev/null 2>&1; }
check "b: the daemon goes on (kiln status answers)" daemon_up d.db
check "b: SIGTERM: exit 0" stop_daemon
check "b: store consistent" consistent d.db
rm -f spool/done/.filler
start_daemon d.db spool b.log || bad "b: daemon restart"
for _ in $(seq 1 200); do [ -e spool/part.jsonl ] || break; sleep 0.1; done
check "b: room again: part.jsonl in done/, whole" cmp -s part.jsonl spool/done/part.jsonl
check "b: not in the spool any more" [ ! -e spool/part.jsonl ]
check "b: documents still once ($ref_docs)" [ "$(sqlite3 d.db 'SELECT count(*) FROM documents')" = "$ref_docs" ]
check "b: no duplicate content" once d.db
check "b: SIGTERM: exit 0" stop_daemon
check "b: store consistent" consistent d.db

# --- (c) failed/ full: a malformed file whose .error cannot be written either
printf '{"text": "a good line of text for the record."}\n{"text": broken\n' > bad.jsonl
tmpfs "$WORK/spool/failed" 1m
fill spool/failed 0
start_daemon d.db spool c.log || bad "c: daemon start"
drop bad.jsonl spool bad.jsonl
check "c: the move to failed/ fails, said" wait_log c.log "cannot move bad.jsonl to failed/: No space left on device"
check "c: the file is still in the spool, whole" cmp -s bad.jsonl spool/bad.jsonl
check "c: no partial copy in failed/" [ -z "$(ls -A spool/failed | grep -v '^\.filler$')" ]
check "c: SIGTERM: exit 0" stop_daemon
rm -f spool/failed/.filler
start_daemon d.db spool c.log || bad "c: daemon restart"
for _ in $(seq 1 200); do [ -e spool/bad.jsonl ] || break; sleep 0.1; done
check "c: room again: bad.jsonl in failed/, whole" cmp -s bad.jsonl spool/failed/bad.jsonl
check "c: with its .error" grep -q "^reason:" spool/failed/bad.jsonl.error
check "c: SIGTERM: exit 0" stop_daemon
check "c: store consistent" consistent d.db

# --- (e) a whole spool on a full tmpfs: a move within one file system needs no room
tmpfs "$WORK/sp2" 1m
mkdir -p sp2/spool/done sp2/spool/failed
head -n 200 "$DATA/lee_background.txt" > part2.txt
cp part2.txt sp2/spool/part2.txt && touch -d '-1 min' sp2/spool/part2.txt
fill sp2 0
full=1; cp part2.txt sp2/probe 2>/dev/null && full=0
check "e: the spool's file system is full" [ "$full" = 1 ]
"$KILN" --db e.db init -q >/dev/null
start_daemon e.db sp2/spool e.log || bad "e: daemon start"
for _ in $(seq 1 200); do [ -e sp2/spool/part2.txt ] || break; sleep 0.1; done
check "e: part2.txt in done/, whole" cmp -s part2.txt sp2/spool/done/part2.txt
check "e: SIGTERM: exit 0" stop_daemon
check "e: store consistent" consistent e.db
finish
