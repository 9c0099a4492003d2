# lib.sh: helpers for kiln's integration tests (sourced). Each test runs the
# real kiln binary on real files in its own empty temporary directory.
# Usage in a test: source lib.sh "$@"  (args: path of kiln, repo root)
set -uo pipefail
KILN=$(readlink -f "$1")
ROOT=$(readlink -f "$2")
DATA="$ROOT/examples/data"
PY=/usr/bin/python3
WORK=$(mktemp -d /tmp/kiln-itest-XXXXXX)
trap 'rm -rf "$WORK"' EXIT
cd "$WORK"
export KILN_DB="$WORK/t.db"
PASSED=0
FAILED=0

ok()   { PASSED=$((PASSED + 1)); echo "ok: $*"; }
bad()  { FAILED=$((FAILED + 1)); echo "FAILED: $*"; }
# check DESCRIPTION COMMAND...: passes when the command succeeds
check() { local d=$1; shift; if "$@"; then ok "$d"; else bad "$d"; fi; }
# expect_exit CODE DESCRIPTION COMMAND...: runs the command (stderr to err.txt)
expect_exit() {
  local want=$1 d=$2; shift 2
  "$@" >out.txt 2>err.txt; local got=$?
  if [ "$got" = "$want" ]; then ok "$d (exit $got)"; else bad "$d: exit $got, expected $want"; sed 's/^/  | /' err.txt | head -20; fi
}
# grep_err PATTERN DESCRIPTION: the last command's stderr matches
grep_err() { if grep -qE -- "$1" err.txt; then ok "$2"; else bad "$2: stderr lacks /$1/"; sed 's/^/  | /' err.txt | head -20; fi; }
# json FIELD [JSON-FILE]: a field of a JSON object (dotted path)
json() { $PY -c 'import json,sys; d=json.load(open(sys.argv[2])); [d:=d[k] for k in sys.argv[1].split(".")]; print(d)' "$1" "${2:-out.txt}"; }
stats() { "$KILN" stats --json > stats.json && json "$1" stats.json; }
integrity() { [ "$(sqlite3 "$KILN_DB" 'PRAGMA integrity_check')" = ok ]; }
finish() {
  echo "$PASSED passed, $FAILED failed"
  [ "$FAILED" -eq 0 ]
}
