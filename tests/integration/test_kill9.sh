#!/usr/bin/env bash
# test_kill9.sh: kill -9 kiln ingest at random moments (several times in a
# row), check after each kill that the store is consistent (integrity_check,
# counters equal rows, the source shown as interrupted), then complete the
# ingest and check that the store holds exactly the documents, in the same
# order and with the same ids, of a run that was never interrupted.
#
# The kill schedule, random and logged (KILL9_SEED=N replays it): each
# attempt waits until the ingest has committed 1 to 4 new batches (the
# store's document count grew that often), then sleeps 0 to 49 ms, then
# kill -9. Counted in commits, not seconds, the schedule means the same on a
# fast machine and under ASan, and three attempts cannot reach the end of
# the input (37 batches). Each kill is asserted to have landed mid-run: after
# at least one commit of that attempt (the count grew) and before the end
# (the process died of the SIGKILL, exit status 137, not of its own accord,
# and a source was still unfinished in the store).
source "$(dirname "$0")/lib.sh"
seed=${KILL9_SEED:-$(( $(date +%s%N) % 32768 ))}
RANDOM=$seed
echo "kill schedule seed: $seed (KILL9_SEED=$seed replays it)"

# ~100 MB of distinct documents, JSONL, plus the zip of speeches
$PY - big.jsonl "$DATA/lee_background.txt" <<'PY'
import json, random, sys
rng = random.Random(42)
pool = [s.strip() + "." for line in open(sys.argv[2], encoding="utf-8", errors="replace")
        for s in line.split(". ") if len(s) > 20]
with open(sys.argv[1], "w") as f:
    for i in range(150000):
        sents = [f"Document number {i} begins here."] + rng.sample(pool, 5)
        f.write(json.dumps({"id": i, "text": " ".join(sents)}) + "\n")
PY
cp "$DATA/state_union.zip" speeches.zip
inputs=(big.jsonl speeches.zip)

"$KILN" --db ref.db ingest -q "${inputs[@]}" || bad "reference ingest"
"$KILN" --db ref.db docs dump --jsonl > ref.jsonl
ref_docs=$(wc -l < ref.jsonl)
check "reference run stored documents ($ref_docs)" [ "$ref_docs" -gt 50000 ]

# consistent DB: integrity_check ok, and the sources' counters equal the rows
# (a store whose first migration never committed, empty, would pass too)
consistent() {
  [ "$(sqlite3 "$1" 'PRAGMA integrity_check')" = ok ] &&
  { [ "$(sqlite3 "$1" "SELECT count(*) FROM sqlite_master WHERE name = 'documents'")" = 0 ] ||
    [ "$(sqlite3 "$1" 'SELECT (SELECT count(*) FROM documents) = (SELECT coalesce(sum(documents),0) FROM sources)')" = 1 ]; }
}

# committed DB: documents committed so far (0 before the tables exist)
committed() {
  local n
  n=$(sqlite3 -cmd '.timeout 5000' "$1" "SELECT count(*) FROM documents" 2>/dev/null) || n=0
  echo "${n:-0}"
}
# unfinished DB: some source is not complete (the run has more to do)
unfinished() { [ "$(sqlite3 -cmd '.timeout 5000' "$1" "SELECT count(*) FROM sources WHERE status != 'complete'")" -gt 0 ]; }

for trial in 1 2 3; do
  db="k$trial.db"
  kills=0
  for attempt in 1 2 3; do
    before=$(committed "$db")
    commits=$(( 1 + RANDOM % 4 ))
    delay="0.0$(( RANDOM % 5 ))$(( RANDOM % 10 ))"
    "$KILN" --db "$db" ingest -q "${inputs[@]}" 2>/dev/null &
    pid=$!
    # wait (no time limit but the process's life) for the commits of this attempt
    seen=0 last=$before
    while [ "$seen" -lt "$commits" ] && kill -0 "$pid" 2>/dev/null; do
      n=$(committed "$db")
      if [ "$n" -gt "$last" ]; then seen=$((seen + 1)); last=$n; else sleep 0.005; fi
    done
    sleep "$delay"
    kill -9 "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null; status=$?
    after=$(committed "$db")
    echo "trial $trial kill $attempt: schedule $commits commit(s) then $delay s; documents $before before, $last when the commits were seen, $after after the kill; exit status $status"
    if [ "$status" = 137 ] && [ "$after" -gt "$before" ] && unfinished "$db"; then
      kills=$((kills + 1))
      ok "trial $trial kill $attempt: landed mid-run (after a commit, before the end)"
    else
      bad "trial $trial kill $attempt: did not land mid-run (exit status $status, documents $before -> $after)"
    fi
    check "trial $trial kill $attempt: store consistent" consistent "$db"
    st=$("$KILN" --db "$db" sources --json | $PY -c 'import json,sys; print(",".join(json.loads(l)["status"] for l in sys.stdin))')
    case "$st" in *running*) bad "trial $trial kill $attempt: a dead ingest shown as running ($st)";; *) ok "trial $trial kill $attempt: statuses $st";; esac
  done
  check "trial $trial: every kill landed mid-run ($kills of 3)" [ "$kills" = 3 ]
  "$KILN" --db "$db" ingest -q "${inputs[@]}"; rc=$?
  check "trial $trial: resumed ingest exits 0 ($rc)" [ "$rc" = 0 ]
  "$KILN" --db "$db" docs dump --jsonl > "k$trial.jsonl"
  check "trial $trial: same documents, order and ids as the uninterrupted run" cmp -s ref.jsonl "k$trial.jsonl"
  check "trial $trial: every source complete" [ "$("$KILN" --db "$db" stats --json | $PY -c 'import json,sys; print(json.load(sys.stdin)["status"]["complete"])')" = 2 ]
  check "trial $trial: consistent at the end" consistent "$db"
done
# SIGINT: stops at a batch boundary, commits, exits 130; the next run completes.
# The signal goes after the first commit: a background job of a script
# starts with SIGINT ignored until kiln installs its handler, so a signal
# sent at a fixed delay could land before that on a loaded machine (under
# ASan it did) and be lost
"$KILN" --db int.db ingest "${inputs[@]}" >/dev/null 2>int.err &
pid=$!
while [ "$(committed int.db)" = 0 ] && kill -0 "$pid" 2>/dev/null; do sleep 0.005; done
kill -INT "$pid"
wait "$pid"; rc=$?
check "SIGINT: exit 130 ($rc)" [ "$rc" = 130 ]
grep -q "interrupted" int.err && ok "SIGINT: says interrupted" || bad "SIGINT: says interrupted"
check "SIGINT: store consistent" consistent int.db
"$KILN" --db int.db ingest -q "${inputs[@]}"
"$KILN" --db int.db docs dump --jsonl > int.jsonl
check "SIGINT: resumed run equals the uninterrupted one" cmp -s ref.jsonl int.jsonl
finish
