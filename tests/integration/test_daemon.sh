#!/usr/bin/env bash
# test_daemon.sh: kiln daemon's spool and process (docs/daemon.md): the real
# sample corpora split into 30 files, and a big generated
# JSONL file, (MediaWiki XML plain, bz2 and gz, text,
# JSONL, the zip) dropped into a spool; the daemon killed with -9 at random
# moments while it ingests and restarted until done: every file ingested
# exactly once, no document lost (the same content hashes as a direct kiln
# ingest), tokens for every document, integrity_check ok, and after each kill
# every file in done/ complete in the store. Then: malformed and hostile files
# end in failed/ with .error files while the daemon goes on; a store locked by
# another process is waited for; a full disk (a 2 MB tmpfs) is retried until
# there is room, without damage; a second daemon on the same store or spool is
# refused; the socket refuses other users (SO_PEERCRED) and sits in a 0700
# folder; sd_notify READY/STATUS/STOPPING; SIGTERM exits 0, a second SIGINT
# exits at once.
source "$(dirname "$0")/lib.sh"

DPIDS=()
cleanup() {
  for p in "${DPIDS[@]}"; do kill -9 "$p" 2>/dev/null; done
  [ -n "${LOCKPID:-}" ] && kill "$LOCKPID" 2>/dev/null
  [ -n "${NOTIFYPID:-}" ] && kill "$NOTIFYPID" 2>/dev/null
  wait 2>/dev/null
  if mountpoint -q "$WORK/full" 2>/dev/null; then umount "$WORK/full" 2>/dev/null || umount -l "$WORK/full"; fi
  cd / && if [ -n "${KILN_TEST_KEEP:-}" ]; then echo "kept $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

# start_daemon DB LOG ARGS...: kiln daemon in the background (DPID), ready when it answers
start_daemon() {
  local db=$1 log=$2; shift 2
  "$KILN" --db "$db" daemon "$@" >>"$log" 2>&1 &
  DPID=$!
  DPIDS+=("$DPID")
  for _ in $(seq 1 300); do
    "$KILN" --db "$db" status >/dev/null 2>&1 && return 0
    kill -0 "$DPID" 2>/dev/null || return 1
    sleep 0.05
  done
  return 1
}
# spool_idle DB: nothing waiting, nothing in hand
spool_idle() {
  "$KILN" --db "$1" status --json > idle.json 2>/dev/null &&
  $PY -c 'import json,sys; s=json.load(open("idle.json"))["spool"]; sys.exit(0 if s["waiting"] == 0 and s["current"] is None else 1)'
}
wait_idle() { for _ in $(seq 1 $(( $2 * 10 ))); do spool_idle "$1" && return 0; kill -0 "$DPID" || return 1; sleep 0.1; done; return 1; }
# drop SRC NAME [SPOOL]: a writer's drop: copy under a dot-name, then rename
drop() { local sp=${3:-spool}; cp -p "$1" "$sp/.incoming" && mv "$sp/.incoming" "$sp/$2"; }
consistent() {
  [ "$(sqlite3 "$1" 'PRAGMA integrity_check')" = ok ] &&
  [ "$(sqlite3 "$1" 'SELECT (SELECT count(*) FROM documents) = (SELECT coalesce(sum(documents),0) FROM sources)')" = 1 ]
}
# every file in SPOOL/done has a complete source row named after it
done_files_complete() {
  "$KILN" sources --json > src.json
  $PY - "$1" <<'EOF'
import json, os, sys
spool = sys.argv[1]
rows = [json.loads(l) for l in open("src.json")]
complete = {os.path.basename(r["path"]) for r in rows if r["status"] == "complete"}
missing = [n for n in os.listdir(os.path.join(spool, "done")) if n not in complete]
sys.exit(1 if missing else 0)
EOF
}

expect_exit 0 "kiln daemon --help" "$KILN" daemon --help
expect_exit 64 "no --spool" "$KILN" daemon
echo '{"train_threads": 1, "ingest_threads": 1, "retry_seconds": 1}' > d.json
echo '{"train_threads": 1, "ingest_treads": 1}' > bad.json
expect_exit 78 "a bad config file is refused" "$KILN" daemon --spool sp0 --config bad.json
grep_err "ingest_treads" "names the unknown key"

# --- the corpora as 30 files
mkdir parts
$PY - "$DATA" parts <<'EOF'
import bz2, gzip, json, shutil, sys
data, out = sys.argv[1], sys.argv[2]
t = bz2.open(f"{data}/enwiki-sample.xml.bz2", "rt", encoding="utf-8").read()
head, rest = t.split("<page>", 1)
pages = ["<page>" + p for p in rest.rsplit("</mediawiki>", 1)[0].split("<page>")]
n = 14
for i in range(n):
    xml = head + "".join(pages[i::n]) + "</mediawiki>\n"
    name = f"{out}/wiki-{i:02d}.xml"
    if i % 3 == 0: open(name, "w", encoding="utf-8").write(xml)
    elif i % 3 == 1: bz2.open(name + ".bz2", "wt", encoding="utf-8").write(xml)
    else: gzip.open(name + ".gz", "wt", encoding="utf-8").write(xml)
shutil.copy(f"{data}/enwiki-table-markup.xml.bz2", out)
shutil.copy(f"{data}/state_union.zip", out)
lines = [l for l in open(f"{data}/lee_background.txt", encoding="utf-8") if l.strip()]
for i in range(10):
    open(f"{out}/lee-{i:02d}.txt", "w", encoding="utf-8").write("".join(lines[i::14]))
for i in range(10, 14):
    with open(f"{out}/lee-{i:02d}.jsonl", "w", encoding="utf-8") as f:
        for k, l in enumerate(lines[i::14]):
            f.write(json.dumps({"id": f"{i}-{k}", "text": l.strip()}) + "\n")
# and one big file (a kill lands inside it): 24,000 distinct documents
with open(f"{out}/zz-big.jsonl", "w", encoding="utf-8") as f:
    for i in range(24000):
        f.write(json.dumps({"id": i, "text": f"Document {i} of the big file. " + " ".join(lines[(i + k) % len(lines)].split(". ")[0] + "." for k in range(3))}) + "\n")
EOF
nparts=$(ls parts | wc -l)
check "31 spool files ($nparts)" [ "$nparts" = 31 ]
"$KILN" --db ref.db ingest -q parts/* || bad "reference ingest"
ref_docs=$(sqlite3 ref.db 'select count(*) from documents')
sqlite3 ref.db 'select hex(content_hash) from documents order by 1' > ref.hashes
check "reference: documents ($ref_docs)" [ "$ref_docs" -gt 20000 ]

expect_exit 0 "init" "$KILN" init
expect_exit 0 "vocab import" "$KILN" vocab import -q "$ROOT/examples/vocab/bert-base-uncased-vocab.txt"
mkdir spool
for f in parts/*; do drop "$f" "$(basename "$f")"; done

# --- sd_notify: a datagram socket standing for systemd's
$PY - "$WORK/notify.sock" notify.txt <<'EOF' &
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
s.settimeout(5)
with open(sys.argv[2], "w") as f:
    while True:
        try: d = s.recv(4096)
        except socket.timeout: continue
        f.write(d.decode() + "\n"); f.flush()
EOF
NOTIFYPID=$!
for _ in $(seq 1 50); do [ -S "$WORK/notify.sock" ] && break; sleep 0.05; done

# --- kill -9 at random moments while it ingests, then restart: inside the
# big file, during an ingest, during a tokenization, at a random time. (The
# ready files are taken as one batch, in name order: the big file, last, is
# inside the first start's batch; the later starts complete it.)
# phase_is DB PHASE [FILE]: the daemon is in that phase (of that file)
phase_is() {
  local st
  st=$("$KILN" --db "$1" status --json 2>/dev/null) || return 1
  case $st in *"\"phase\":\"$2\""*) ;; *) return 1;; esac
  [ -z "${3:-}" ] && return 0
  case $st in *"\"current\":\"$3\""*) return 0;; esac
  return 1
}
export NOTIFY_SOCKET="$WORK/notify.sock"
kills=0
for k in 1 2 3 4; do
  start_daemon "$KILN_DB" daemon.log --spool spool --config d.json || bad "start $k"
  case $k in
    1) big_running="select count(*) from sources where path like '%/zz-big.jsonl' and status = 'running' and documents > 0"
       for _ in $(seq 1 3000); do [ "$(sqlite3 "$KILN_DB" "$big_running" 2>/dev/null)" = 1 ] && break; sleep 0.005; done
       check "kill 1 lands inside zz-big.jsonl (documents stored, more to come)" [ "$(sqlite3 "$KILN_DB" "$big_running")" = 1 ] ;;
    2) for _ in $(seq 1 500); do phase_is "$KILN_DB" ingest && break; done
       sleep "0.0$(( RANDOM % 10 ))" ;;
    3) for _ in $(seq 1 500); do phase_is "$KILN_DB" tokenize && break; done ;;
    4) sleep "0.$(( RANDOM % 3 ))$(( RANDOM % 10 ))" ;;
  esac
  left=$(ls spool | grep -vc '^done$\|^failed$')
  kill -9 "$DPID"; wait "$DPID" 2>/dev/null
  [ "$left" -gt 0 ] && kills=$((kills + 1))
  check "kill $k ($left files were waiting): store consistent" consistent "$KILN_DB"
  check "kill $k: every file in done/ is complete in the store" done_files_complete spool
done
check "kills landed while files waited ($kills)" [ "$kills" -ge 3 ]
check "sd_notify: READY=1" grep -q '^READY=1' notify.txt
check "sd_notify: STATUS" grep -q '^STATUS=' notify.txt
start_daemon "$KILN_DB" daemon.log --spool spool --config d.json || bad "final start"
check "the spool is worked off" wait_idle "$KILN_DB" 120
check "31 files in done/" [ "$(ls spool/done | wc -l)" = 31 ]
check "none failed" [ "$(ls spool/failed | wc -l)" = 0 ]
check "none left" [ "$(ls spool | grep -vc '^done$\|^failed$')" = 0 ]
check "each file ingested exactly once: 31 sources, all complete" \
  [ "$(sqlite3 "$KILN_DB" "select count(*) || ' ' || sum(status = 'complete') from sources")" = "31 31" ]
check "same number of documents as a direct ingest ($ref_docs)" [ "$(sqlite3 "$KILN_DB" 'select count(*) from documents')" = "$ref_docs" ]
sqlite3 "$KILN_DB" 'select hex(content_hash) from documents order by 1' > got.hashes
check "same documents (content hashes) as a direct ingest" cmp -s ref.hashes got.hashes
check "every document tokenized with the active vocabulary" \
  [ "$(sqlite3 "$KILN_DB" 'select (select count(*) from doc_tokens) = (select count(*) from documents)')" = 1 ]
check "the tokenize cursor is at the last document, the counts exact (the next file starts there)" \
  [ "$(sqlite3 "$KILN_DB" 'select tokenized_through = (select max(id) from documents) and counted = 1 and docs = (select count(*) from doc_tokens) and counted_tokens = tokens and tokens = (select sum(n_tokens) from doc_tokens) from vocab_progress where vocab_id = 1')" = 1 ]
check "store consistent" consistent "$KILN_DB"
check "the log says the interrupted file was completed" grep -q "zz-big.jsonl: completing source [0-9]*, interrupted after [1-9]" daemon.log
check "files dropped together went through in a batch" grep -q "(a batch of [0-9]* files" daemon.log
expect_exit 0 "kiln status" "$KILN" status
grep -q "31 done" out.txt && ok "status shows the spool" || bad "status shows the spool: $(cat out.txt)"

# --- malformed and hostile files
head -c 300000 "$DATA/enwiki-sample.xml.bz2" > trunc.xml.bz2
head -c 200000 /dev/urandom > junk.bin
printf '{not json\n{"text": 5}\n[1, 2]\n' > bad.jsonl
printf '{"text": "One good line among bad ones, about kilns and pottery."}\n{oops\n' > mixed.jsonl
: > empty.txt
echo "The same text under two names is stored once." > twice.txt
for f in trunc.xml.bz2 junk.bin bad.jsonl mixed.jsonl empty.txt twice.txt; do drop "$f" "$f"; done
drop twice.txt twice-again.txt
mkfifo spool/fifo.txt
ln -s /etc/hostname spool/link.txt
echo hidden > spool/.hidden; echo part > spool/upload.part; echo tmp > spool/x.tmp
sleep 1.5
check "hostile files worked off" wait_idle "$KILN_DB" 60
drop bad.jsonl bad.jsonl
sleep 0.3
check "the same bad name again" wait_idle "$KILN_DB" 30
check "the daemon is still up" kill -0 "$DPID"
for f in trunc.xml.bz2 junk.bin bad.jsonl mixed.jsonl empty.txt fifo.txt link.txt; do
  check "$f in failed/ with an .error file" test -e "spool/failed/$f" -a -s "spool/failed/$f.error"
done
check "the second bad.jsonl got a suffix" test -e spool/failed/bad.1.jsonl -a -s spool/failed/bad.1.jsonl.error
check ".error: truncated bz2 says why" grep -qi "reason: partial" spool/failed/trunc.xml.bz2.error
check ".error: binary junk" grep -qi "no document" spool/failed/junk.bin.error
check ".error: invalid JSONL names the malformed records" grep -q "malformed" spool/failed/bad.jsonl.error
check ".error: the FIFO is not a regular file" grep -q "not a regular file" spool/failed/fifo.txt.error
check ".error: the symbolic link" grep -q "symbolic link" spool/failed/link.txt.error
check "good files in done/ (a duplicate too)" test -e spool/done/twice.txt -a -e spool/done/twice-again.txt
check "the good line of mixed.jsonl is stored" [ "$(sqlite3 "$KILN_DB" "select count(*) from documents where text like 'One good line among bad ones%'")" = 1 ]
check "temporary names untouched" test -e spool/.hidden -a -e spool/upload.part -a -e spool/x.tmp
check "the same text under two names is stored once" [ "$(sqlite3 "$KILN_DB" "select count(*) from documents where text like 'The same text under two names%'")" = 1 ]
check "store consistent after hostile files" consistent "$KILN_DB"

# --- one daemon per store, one per spool
expect_exit 75 "a second daemon on the same store is refused" "$KILN" daemon --spool spool2 --config d.json
grep_err "another kiln daemon \(pid $DPID\) already serves" "names the running daemon"
expect_exit 75 "a second daemon on the same spool is refused" "$KILN" --db other.db daemon --spool spool --config d.json
grep_err "served by another kiln daemon" "says the spool is taken"

# --- the control socket: a 0700 folder, a 0600 socket, other users refused
sock="$KILN_DB.daemon/sock"
check "socket folder is 0700" [ "$(stat -c %a "$KILN_DB.daemon")" = 700 ]
check "socket is 0600" [ "$(stat -c %a "$sock")" = 600 ]
check "the lock file names the daemon" grep -q "^$DPID\$" "$KILN_DB.daemon.lock"
NOBODY=(setpriv --reuid=nobody --regid=nogroup --clear-groups)
"${NOBODY[@]}" "$KILN" status --socket "$sock" >out.txt 2>err.txt; rc=$?
check "nobody cannot reach the socket through its folder (exit $rc)" [ "$rc" -ne 0 ]
chmod 711 "$WORK" "$KILN_DB.daemon"; chmod 666 "$sock"
expect_exit 77 "nobody is refused by the daemon (peer credentials)" "${NOBODY[@]}" "$KILN" status --socket "$sock"
grep_err "permission denied: uid 65534" "says why"
check "the daemon logs the refusal" grep -q "refused a connection from uid 65534" daemon.log
chmod 700 "$WORK" "$KILN_DB.daemon"; chmod 600 "$sock"
expect_exit 0 "its own user is served" "$KILN" status --socket "$sock"

# --- a store locked by another process: the daemon waits and retries
echo "A file dropped while another process held the store locked." > locked.txt
( echo 'BEGIN EXCLUSIVE;'; sleep 13; echo 'COMMIT;' ) | sqlite3 "$KILN_DB" &
LOCKPID=$!
sleep 0.5
drop locked.txt locked.txt
for _ in $(seq 1 150); do grep -q "locked.txt waits in the spool.*locked" daemon.log && break; sleep 0.1; done
check "the daemon says the store is locked and the file waits" grep -q "locked.txt waits in the spool.*locked by another process" daemon.log
check "the file is still in the spool" test -e spool/locked.txt
expect_exit 0 "status answers while the store is locked" "$KILN" status --json
wait "$LOCKPID"; LOCKPID=
check "after the lock: ingested" wait_idle "$KILN_DB" 30
check "after the lock: in done/" test -e spool/done/locked.txt
check "after the lock: stored" [ "$(sqlite3 "$KILN_DB" "select count(*) from documents where text like 'A file dropped while another%'")" = 1 ]
check "store consistent after the lock" consistent "$KILN_DB"

# --- SIGTERM: exit 0, STOPPING=1 (this daemon was started with NOTIFY_SOCKET)
kill -TERM "$DPID"; wait "$DPID"; rc=$?
check "SIGTERM: exit 0 ($rc)" [ "$rc" = 0 ]
check "SIGTERM: the socket is removed" test ! -e "$sock"
sleep 0.2
check "sd_notify: STOPPING=1" grep -q '^STOPPING=1' notify.txt
kill "$NOTIFYPID" 2>/dev/null; NOTIFYPID=
unset NOTIFY_SOCKET

# --- a second SIGINT exits at once (the daemon waits for a locked store at start)
( echo 'BEGIN EXCLUSIVE;'; sleep 8; echo 'COMMIT;' ) | sqlite3 "$KILN_DB" &
LOCKPID=$!
sleep 0.5
"$KILN" daemon --spool spool --config d.json >>daemon.log 2>&1 &
DPID=$!; DPIDS+=("$DPID")
sleep 1
t0=$(date +%s.%N)
kill -INT "$DPID"; sleep 0.2; kill -INT "$DPID"
wait "$DPID"; rc=$?
t1=$(date +%s.%N)
check "a second SIGINT: exit 130 ($rc)" [ "$rc" = 130 ]
check "a second SIGINT: at once" $PY -c "import sys; sys.exit(0 if $t1 - $t0 < 2 else 1)"
wait "$LOCKPID"; LOCKPID=
check "store consistent after the SIGINTs" consistent "$KILN_DB"

# --- a full disk: store and spool on a 2 MB tmpfs; retried until there is room
$PY - big.jsonl.gz <<'EOF'
import gzip, json, sys
words = "kiln fire clay glaze pottery oven heat stone ash brick wheel vase bowl".split()
with gzip.open(sys.argv[1], "wt") as f:
    for i in range(4000):
        sents = [f"Record {i} sentence {k} tells of the {words[(i + k) % 13]} and the {words[(i * k) % 13]} {i * 7 + k}." for k in range(8)]
        f.write(json.dumps({"id": i, "text": " ".join(sents)}) + "\n")
EOF
"$KILN" --db ref2.db ingest -q big.jsonl.gz
want=$(sqlite3 ref2.db 'select count(*) from documents')
mkdir full
if mount -t tmpfs -o size=2m tmpfs full; then
  ok "tmpfs mounted"
  "$KILN" --db full/f.db init -q >/dev/null || bad "init on tmpfs"
  mkdir full/spool
  start_daemon full/f.db full.log --spool full/spool --config d.json || bad "start on the tmpfs"
  drop big.jsonl.gz big.jsonl.gz full/spool
  for _ in $(seq 1 300); do grep -q "big.jsonl.gz waits in the spool" full.log && break; sleep 0.1; done
  check "full disk: the file waits, the reason is said" grep -q "big.jsonl.gz waits in the spool.*disk full or I/O error" full.log
  expect_exit 0 "full disk: the daemon goes on" "$KILN" --db full/f.db status
  check "full disk: the file is still in the spool" test -e full/spool/big.jsonl.gz
  check "full disk: the store is intact" [ "$(sqlite3 full/f.db 'PRAGMA integrity_check')" = ok ]
  mount -o remount,size=64m full
  check "room again: the file is ingested" wait_idle full/f.db 60
  check "room again: in done/" test -e full/spool/done/big.jsonl.gz
  check "room again: every document ($want)" [ "$(sqlite3 full/f.db "select count(*) from documents where text like 'Record %'")" = "$want" ]
  check "room again: store consistent" consistent full/f.db
  kill -TERM "$DPID"; wait "$DPID"
  umount full
else
  bad "cannot mount a tmpfs for the full-disk test (root needed)"
fi

finish
