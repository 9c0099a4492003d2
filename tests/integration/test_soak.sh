#!/usr/bin/env bash
# test_soak.sh: kiln daemon under load, the bounded version (docs/reliability.md,
# "Load"; the driver is tests/load/soak.py). 1,500 small files cut from the
# real corpora (text, JSONL, gz/bz2/xz, zip, MediaWiki XML; truncated
# archives, binary junk, malformed JSONL, empty files; duplicates, same-name
# re-drops, files renamed in or written slowly in place) and two 8 MB JSONL
# files dropped at random moments over 60 s while a training job runs and
# another process loops kiln status / kiln run list: every file in done/ or
# failed/ (with a reason) as expected, every document of a valid file stored
# exactly once, integrity_check, counters = rows, peak RSS bounded, training
# going on during the load. About 2 minutes in Release.
# The sanitizer build (KILN_SANITIZE=1) runs a smaller load: 300 files and
# two 2 MB files over 30 s, with a higher RSS bound (ASan's shadow and
# quarantine). KILN_SOAK_SMALL, KILN_SOAK_BIG_MB, KILN_SOAK_DURATION,
# KILN_SOAK_SEED override the counts.
source "$(dirname "$0")/lib.sh"

if [ -n "${KILN_SANITIZE:-}" ]; then
  small=300 big_mb=2 duration=30 baseline=10 rss=2048
else
  small=1500 big_mb=8 duration=60 baseline=15 rss=400
fi
small=${KILN_SOAK_SMALL:-$small}
big_mb=${KILN_SOAK_BIG_MB:-$big_mb}
duration=${KILN_SOAK_DURATION:-$duration}
seed=${KILN_SOAK_SEED:-$(( $(date +%s) % 100000 ))}
echo "soak: seed $seed, $small small files, 2 x $big_mb MB over $duration s (KILN_SOAK_SEED=$seed reproduces the files and the schedule)"

$PY "$ROOT/tests/load/soak.py" --kiln "$KILN" --work "$WORK/soak" --seed "$seed" --small "$small" \
  --big 2 --big-mb "$big_mb" --duration "$duration" --baseline "$baseline" --rss-limit-mb "$rss" \
  --drain-timeout 900 > soak.out 2>&1
rc=$?
cat soak.out
check "soak.py: every check passed (exit $rc)" [ "$rc" = 0 ]
if [ -s soak/report.json ]; then
  check "the load was dropped ($(json files.dropped soak/report.json) files)" \
    [ "$(json files.dropped soak/report.json)" -ge "$small" ]
  check "training made progress during the load ($(json training_steps_during_load soak/report.json) steps)" \
    [ "$(json training_steps_during_load soak/report.json)" -gt 0 ]
else
  bad "no report.json"
fi
if [ "$rc" != 0 ]; then
  echo "--- the daemon's log (last 40 lines)"; tail -40 soak/daemon.log
  keep=/tmp/kiln-soak-failed/$seed-$$
  mkdir -p "$keep" && cp soak/daemon.log soak/schedule.jsonl soak/report.json "$keep" 2>/dev/null
  echo "the daemon's log, the schedule and the report are kept in $keep"
fi

finish
