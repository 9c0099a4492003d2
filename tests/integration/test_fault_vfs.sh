#!/usr/bin/env bash
# test_fault_vfs.sh: SQLite I/O faults (docs/reliability.md, "Fault injection:
# SQLite I/O"). tests/fault/faultvfs.c (libkiln_faultvfs.so, next to kiln),
# preloaded, wraps SQLite's default VFS and fails the Nth read, write, sync,
# lock, open or any file call with SQLITE_IOERR_* or SQLITE_FULL. For each of
# kiln ingest, kiln tokenize, kiln kg import, a short kiln train (metrics and
# checkpoints in the store) and kiln daemon handling spool files: the calls
# are counted in an undisturbed run, then N is swept over them (every call
# when few, else a spread that includes the first and the last) for each
# fault kind. After each faulted run: the exit code is 74 or 73 (0 only when
# the data is complete anyway, e.g. a failed checkpoint of the WAL at close;
# the daemon exits 0 on SIGTERM and retries store failures), never a signal;
# stderr names the store and what failed; PRAGMA integrity_check is ok; the
# store's counters equal its rows; and a rerun without faults exits 0 with
# exactly the result of the undisturbed run (a canonical dump of the tables,
# the checkpoint's bytes).
#
# FAULT_POINTS=N sets the points per kind (default 5; 3 under the
# sanitizers, KILN_SANITIZE=1, where every run is ~5x slower: the kinds and
# commands are the same, the spread coarser). FAULT_MATRIX=FILE writes the
# matrix (command, kind, calls counted, points, outcomes) there too.
source "$(dirname "$0")/lib.sh"
trap 'if [ -n "${KILN_TEST_KEEP:-}" ]; then echo "kept $WORK"; else rm -rf "$WORK"; fi' EXIT

SHIM="$(dirname "$KILN")/libkiln_faultvfs.so"
if [ ! -f "$SHIM" ]; then
  bad "no $SHIM (the kiln_faultvfs target of CMakeLists.txt)"
  finish
  exit 1
fi
# A sanitized kiln needs its sanitizer runtime first in the preload list
# (ASan checks it comes first; the shim is built with the same flags).
PRELOAD="$SHIM"
asan_rt=$(ldd "$KILN" | awk '/libasan\.so/ {print $3}')
[ -n "$asan_rt" ] && PRELOAD="$asan_rt $SHIM"
POINTS=${FAULT_POINTS:-5}
[ "${KILN_SANITIZE:-}" = 1 ] && POINTS=${FAULT_POINTS:-3}
MATRIX="$WORK/matrix.txt"
: > "$MATRIX"
T0=$(date +%s)

# ---- the data: small real excerpts -------------------------------------------------------------
$PY - "$DATA" "$ROOT/examples/kg" <<'PY'
import bz2, gzip, json, tarfile, sys
data, kg = sys.argv[1], sys.argv[2]
t = bz2.open(f"{data}/enwiki-sample.xml.bz2", "rt", encoding="utf-8").read()
head, rest = t.split("<page>", 1)
pages = rest.split("<page>")
with bz2.open("wiki.xml.bz2", "wt", encoding="utf-8") as f:
    f.write(head + "".join("<page>" + p for p in pages[:10]).split("</mediawiki>")[0] + "</mediawiki>\n")
lines = [l.strip() for l in open(f"{data}/lee_background.txt", encoding="utf-8", errors="replace") if l.strip()]
with open("lee.jsonl", "w") as f:
    for i, l in enumerate(lines[:120]):
        f.write(json.dumps({"id": i, "text": l}) + "\n")
    f.write(json.dumps({"id": "dup", "text": lines[3]}) + "\n")     # a duplicate inside the file
with open("note.txt", "w") as f:
    f.write(lines[5] + "\n")                                        # a duplicate of another file's
    f.write(lines[200] + "\n")
# KG: 21,000 FB15k-237 triples (two import transactions) and their names
tr = tarfile.open(f"{kg}/FB15k-237.tar.gz")
m = next(x for x in tr.getmembers() if x.name.endswith("train.txt"))
rows = tr.extractfile(m).read().decode().splitlines()[:21000]
open("kg.tsv", "w").write("\n".join(rows) + "\n")
ents = {e for r in rows for e in (r.split("\t")[0], r.split("\t")[2])}
with gzip.open(f"{kg}/fb15k-237-entity2text.txt.gz", "rt", encoding="utf-8") as f, open("names.txt", "w") as o:
    o.write("".join([l for l in f if l.split("\t")[0] in ents][:3000]))
PY
INPUTS=(wiki.xml.bz2 lee.jsonl note.txt)
cat > tiny.json <<'EOF'
{
  "model": {"type": "albert", "embedding_size": 16, "hidden_size": 32, "num_hidden_layers": 1,
            "num_attention_heads": 2, "intermediate_size": 64, "max_position_embeddings": 32},
  "data": {"objectives": ["mlm", "sop"], "seq_len": 32, "batch_size": 4, "valid_every": 2, "valid_batches": 1},
  "optimizer": {"lr": 1e-3, "warmup_steps": 2},
  "budget": {"steps": 6},
  "checkpoint": {"dir": "CKDIR", "every": 2, "keep": 2},
  "threads": 1
}
EOF
echo '{"train_threads": 1, "ingest_threads": 1, "retry_seconds": 0.1}' > daemon.json

# ---- checks and canonical dumps (python: one process per store) ---------------------------------
cat > fv.py <<'PY'
import hashlib, json, os, sqlite3, struct, sys
# check - DB: integrity and counters; check WHAT DB [DIR]: that, then (if ok) the dump of WHAT
mode, what, db = sys.argv[1], sys.argv[2], sys.argv[3]
c = sqlite3.connect(db, timeout=10)
q = lambda s, *a: c.execute(s, a).fetchall()
def has(t): return q("SELECT count(*) FROM sqlite_master WHERE name = ?", t)[0][0] > 0
if mode == "check":
    bad = []
    ic = q("PRAGMA integrity_check")
    if ic != [("ok",)]: bad.append(f"integrity_check: {ic[:3]}")
    if has("sources"):
        for sid, n, s, b in q("SELECT id, documents, sentences, text_bytes FROM sources"):
            got = q("SELECT count(*), coalesce(sum(n_sentences),0), coalesce(sum(n_bytes),0) FROM documents WHERE source_id = ?", sid)[0]
            if got != (n, s, b): bad.append(f"source {sid}: counters {(n, s, b)} != rows {got}")
        if q("SELECT count(*) FROM documents WHERE source_id NOT IN (SELECT id FROM sources)")[0][0]:
            bad.append("documents without a source")
    if has("vocab_progress"):
        for v, thr, docs, toks, counted, ctoks, lthr in q("SELECT vocab_id, tokenized_through, docs, tokens, counted, counted_tokens, linked_through FROM vocab_progress"):
            got = q("SELECT count(*), coalesce(sum(n_tokens),0) FROM doc_tokens WHERE vocab_id = ?", v)[0]
            if got != (docs, toks): bad.append(f"vocab {v}: docs/tokens {(docs, toks)} != rows {got}")
            if counted:
                tot = sum(sum(struct.unpack(f"<{len(b)//8}Q", b)) for (b,) in q("SELECT counts FROM token_counts WHERE vocab_id = ?", v))
                if not (tot == ctoks == toks): bad.append(f"vocab {v}: token_counts {tot}, counted_tokens {ctoks}, tokens {toks}")
            miss = q("SELECT count(*) FROM documents d WHERE d.id <= ? AND NOT EXISTS (SELECT 1 FROM doc_tokens t WHERE t.vocab_id = ? AND t.doc_id = d.id)", thr, v)[0][0]
            if miss: bad.append(f"vocab {v}: {miss} document(s) up to tokenized_through {thr} without tokens")
            if lthr > thr: bad.append(f"vocab {v}: linked_through {lthr} > tokenized_through {thr}")
    if has("kg_files"):
        rows = dict(q("SELECT file_id, count(*) FROM kg_triples GROUP BY file_id"))
        for fid, st, n in q("SELECT id, status, triples FROM kg_files"):
            if rows.get(fid, 0) != n: bad.append(f"kg file {fid} ({st}): triples {n} != rows {rows.get(fid, 0)}")
    if has("jobs"):
        for jid, step in q("SELECT id, step FROM jobs"):
            got = q("SELECT coalesce(max(step),0) FROM metrics WHERE job_id = ?", jid)[0][0]
            if got != step: bad.append(f"job {jid}: step {step} != last metrics step {got}")
    print("; ".join(bad) if bad else "ok")
    if bad or what == "-": sys.exit(1 if bad else 0)
    mode = "dump"
# dump WHAT DB [CKDIR]: the result a rerun must reproduce
h = hashlib.sha256()
def put(*rows):
    for r in rows: h.update(repr(r).encode())
if what == "ingest":
    put(q("SELECT * FROM documents ORDER BY id"))
    put(q("SELECT id, path, content_hash, size, format, status, error, documents, duplicates, skipped, bytes_in, sentences, text_bytes FROM sources ORDER BY id"))
if what == "tokenize":
    put(q("SELECT * FROM doc_tokens ORDER BY vocab_id, doc_id"))
    put(q("SELECT * FROM vocab_progress ORDER BY vocab_id"), q("SELECT * FROM token_counts ORDER BY vocab_id, chunk"))
if what == "daemon":
    # by content: which files go in which batch depends on timing (retries
    # included), and with it the ids, which source counts a document found in
    # two files, and the linker's frequency guard (docs/daemon.md)
    put(q("SELECT d.content_hash, d.entry, d.ext_id, d.title, d.url, d.n_sentences, d.n_bytes, d.text, d.sent_ends, "
          "s.content_hash FROM documents d JOIN sources s ON s.id = d.source_id ORDER BY d.content_hash"))
    put(sorted((os.path.basename(p), h, n, f, st, e) for p, h, n, f, st, e in q("SELECT path, content_hash, size, format, status, error FROM sources")))
    put(q("SELECT d.content_hash, t.vocab_id, t.layout, t.n_tokens, t.tokens, t.sent_ends, t.word_starts FROM doc_tokens t "
          "JOIN documents d ON d.id = t.doc_id ORDER BY d.content_hash, t.vocab_id"))
    put(q("SELECT vocab_id, tokenized_through = (SELECT max(id) FROM documents), docs, tokens, counted, counted_tokens, "
          "linked_through = tokenized_through, linked_generation = (SELECT value FROM kg_meta WHERE key = 'alias_generation') "
          "FROM vocab_progress ORDER BY vocab_id"), q("SELECT * FROM token_counts ORDER BY vocab_id, chunk"))
    put(q("SELECT count(*) FROM kg_linked WHERE generation = (SELECT value FROM kg_meta WHERE key = 'alias_generation')"))
    sp = sys.argv[4]
    put(sorted(os.listdir(sp)), {d: sorted(os.listdir(os.path.join(sp, d))) for d in ("done", "failed") if os.path.isdir(os.path.join(sp, d))})
if what == "kg":
    put(q("SELECT id, path, content_hash, kind, options, status, error, triples, names, bad_lines FROM kg_files ORDER BY id"))
    for t in ("kg_entities", "kg_relations", "kg_triples", "kg_aliases", "kg_meta"):
        n = len(q(f"SELECT * FROM {t} LIMIT 1")[0]) if q(f"SELECT count(*) FROM {t}")[0][0] else 1
        put(q(f"SELECT * FROM {t} ORDER BY " + ", ".join(str(i + 1) for i in range(n))))
if what == "train":
    ck = sys.argv[4]
    steps = sorted(os.listdir(ck))
    last = os.path.join(ck, steps[-1])
    for f in sorted(os.listdir(last)):
        if f == "state.json":
            s = json.load(open(os.path.join(last, f)))
            s.get("extra", {}).pop("job_id", None); s.pop("seconds", None)
            for k in [k for k in s if k in ("created_at", "time")]: s.pop(k)
            put(f, json.dumps(s, sort_keys=True, default=str))
        else:
            put(f, hashlib.sha256(open(os.path.join(last, f), "rb").read()).hexdigest())
    job = json.load(open(os.path.join(last, "state.json"))).get("extra", {}).get("job_id")
    put(steps)
    put(q("SELECT step, name, value FROM metrics WHERE job_id = ? AND name NOT IN ('tokens_per_s', 'seconds') ORDER BY step, name", job))
    put(q("SELECT step, path, val_loss FROM checkpoints WHERE job_id = ? ORDER BY id", job))
    put(q("SELECT name, kind, state, step, config FROM jobs WHERE id = ?", job))
print(h.hexdigest())
PY
consistent() { $PY fv.py check - "$1"; }
quiet_consistent() { consistent "$1" >/dev/null; }
dump() { $PY fv.py dump "$@"; }
check_dump_of() {   # check_dump_of CMD DB: "ok" and the dump, or what is wrong
  case $1 in
    train) $PY fv.py check train "$2" "$2.ck" ;;
    daemon) $PY fv.py check daemon "$2" "$2.spool" ;;
    *) $PY fv.py check "$1" "$2" ;;
  esac
}

# spread COUNT K: K call numbers from 1 to COUNT (all when COUNT <= K), the first and last included
spread() {
  local n=$1 k=$2
  if [ "$n" -le "$k" ]; then seq 1 "$n"; return; fi
  $PY -c 'import sys; n, k = int(sys.argv[1]), int(sys.argv[2]); print("\n".join(str(x) for x in sorted({1 + round(i * (n - 1) / (k - 1)) for i in range(k)})))' "$n" "$k"
}

# ---- the commands: prep (the store before), run, dump ------------------------------------------
# Each command runs against ./f.db (the store under test; its checkpoints and spool beside it),
# with the environment FENV (the shim and its settings) given to kiln only.
FENV=()
run_ingest()   { env "${FENV[@]}" "$KILN" --db "$1" ingest -q --threads 2 "${INPUTS[@]}"; }
run_tokenize() { env "${FENV[@]}" "$KILN" --db "$1" tokenize -q --threads 2; }
run_kg()       { env "${FENV[@]}" "$KILN" --db "$1" kg import -q --names names.txt kg.tsv; }
run_train()    { env "${FENV[@]}" "$KILN" --db "$1" train -q --config tiny.json --set "checkpoint.dir=$1.ck" --resume; }
# the daemon: the spool filled before it starts (old mtimes: ready at once), stopped with SIGTERM
# once every file has left the spool, or once a fault made a file wait (a sticky fault does not go away)
run_daemon() {
  local db=$1 sp=$1.spool
  mkdir -p "$sp"
  for f in "${INPUTS[@]}"; do [ -e "$sp/done/$f" ] || cp "$f" "$sp/$f"; done
  touch -d '2 minutes ago' "$sp"/* 2>/dev/null
  env "${FENV[@]}" "$KILN" --db "$db" daemon -q --spool "$sp" --socket "$db.sock" --config daemon.json &
  local pid=$! i
  # ready (its signal handlers set) once the socket listens, or gone (the store failed at start)
  for i in $(seq 1 400); do [ -S "$db.sock" ] && break; kill -0 "$pid" 2>/dev/null || break; sleep 0.02; done
  for i in $(seq 1 600); do
    kill -0 "$pid" 2>/dev/null || break
    [ -z "$(find "$sp" -maxdepth 1 -type f ! -name '.*' -print -quit)" ] && break
    [ -s "$WORK/flog.txt" ] && [ "$i" -gt 20 ] && break
    sleep 0.05
  done
  kill -TERM "$pid" 2>/dev/null
  wait "$pid"
}
prep_ingest()   { "$KILN" --db "$1" init -q >/dev/null; }
prep_tokenize() { prep_ingest "$1" && run_ingest "$1" && "$KILN" --db "$1" vocab import -q "$ROOT/examples/vocab/bert-base-uncased-vocab.txt"; }
prep_kg()       { prep_ingest "$1"; }
prep_train()    { prep_tokenize "$1" && run_tokenize "$1"; }
prep_daemon()   { prep_ingest "$1" && "$KILN" --db "$1" vocab import -q "$ROOT/examples/vocab/bert-base-uncased-vocab.txt" && run_kg "$1"; }
dump_of() {   # dump_of CMD DB
  case $1 in
    train) dump train "$2" "$2.ck" ;;
    daemon) dump daemon "$2" "$2.spool" ;;
    *) dump "$1" "$2" ;;
  esac
}
fresh() {   # fresh CMD DB: a copy of the command's store before
  rm -rf "$2" "$2-wal" "$2-shm" "$2.ck" "$2.spool" "$2.sock" "$2.snapshots" "$2.daemon" "$2.daemon.lock"
  cp "tpl_$1.db" "$2"
  [ -d "tpl_$1.db.snapshots" ] && cp -r "tpl_$1.db.snapshots" "$2.snapshots"
  return 0
}

# ---- the sweep ------------------------------------------------------------------------------------
# kinds: CLASS/ERR[/sticky]; "open" fails with SQLITE_CANTOPEN whatever ERR says
KINDS=(${FAULT_KINDS:-read/ioerr write/ioerr write/full/sticky sync/ioerr lock/ioerr open/ioerr any/ioerr})

sweep() {
  local cmd=$1
  local t0=$(date +%s)
  rm -rf "tpl_$cmd.db"*
  if ! prep_"$cmd" "tpl_$cmd.db" >/dev/null 2>prep.err; then bad "$cmd: preparing the store"; sed 's/^/  | /' prep.err | head; return; fi
  # the undisturbed run, on f.db itself (paths stored in the store are the same in every run)
  FENV=()
  rm -f flog.txt
  fresh "$cmd" f.db
  run_"$cmd" f.db >/dev/null 2>ref.err; local rc=$?
  check "$cmd: the undisturbed run exits 0 ($rc)" [ "$rc" = 0 ]
  local ref; ref=$(dump_of "$cmd" f.db)
  check "$cmd: the undisturbed store is consistent" quiet_consistent f.db
  # counted: the shim loaded, no fault (the same result, or the comparison means nothing)
  fresh "$cmd" f.db
  FENV=(KILN_FAULT_COUNT="$WORK/count.txt" LD_PRELOAD="$PRELOAD")
  run_"$cmd" f.db >/dev/null 2>count.err; rc=$?
  FENV=()
  check "$cmd: the counting run (shim loaded, no fault) exits 0 ($rc)" [ "$rc" = 0 ]
  check "$cmd: the counting run gives the undisturbed result" [ "$(dump_of "$cmd" f.db)" = "$ref" ]
  check "$cmd: the shim counted calls" [ "$(awk '$1 == "any" {print $2}' count.txt)" -gt 0 ]
  for kind in "${KINDS[@]}"; do
    IFS=/ read -r cls err sticky <<< "$kind"
    local total; total=$(awk -v c="$cls" '$1 == c {print $2}' count.txt)
    local pts=0 n74=0 n73=0 n0=0 nbad=0 nfired=0
    for n in $(spread "${total:-0}" "$POINTS"); do
      pts=$((pts + 1))
      fresh "$cmd" f.db
      rm -f flog.txt
      FENV=(KILN_FAULT_OP="$cls" KILN_FAULT_N="$n" KILN_FAULT_ERR="$err" KILN_FAULT_STICKY="${sticky:+1}"
            KILN_FAULT_LOG="$WORK/flog.txt" LD_PRELOAD="$PRELOAD")
      run_"$cmd" f.db >/dev/null 2>err.txt
      rc=$?
      FENV=()
      local fired=0 why=""
      [ -s flog.txt ] && fired=1 && nfired=$((nfired + 1))
      case $rc in
        74|73)
          [ "$rc" = 74 ] && n74=$((n74 + 1)) || n73=$((n73 + 1))
          [ "$fired" = 1 ] || why="exit $rc without a fault"
          grep -qE "store [^ ]*f\.db: .*(disk I/O error|database or disk is full|unable to open)" err.txt ||
            why="$why; stderr does not name the store and the failure"
          ;;
        0)
          n0=$((n0 + 1))
          # 0 only if nothing was lost: the result is complete as it stands
          if [ "$cmd" != daemon ] && [ "$(dump_of "$cmd" f.db)" != "$ref" ]; then why="exit 0 with an incomplete result"; fi
          ;;
        *) why="exit $rc" ;;
      esac
      local cons; cons=$(consistent f.db) || why="$why; inconsistent after the fault: $cons"
      rm -f flog.txt
      run_"$cmd" f.db >/dev/null 2>rerun.err; local rc2=$?
      [ "$rc2" = 0 ] || why="$why; rerun exit $rc2 ($(head -c 300 rerun.err | tr '\n' ' '))"
      if cons=$(check_dump_of "$cmd" f.db); then
        [ "$(echo "$cons" | tail -1)" = "$ref" ] || why="$why; the rerun's result differs from the undisturbed run's"
      else
        why="$why; inconsistent after the rerun: $cons"
      fi
      if [ -n "$why" ]; then
        nbad=$((nbad + 1))
        bad "$cmd $kind N=$n of $total: ${why#; }"
        sed 's/^/  | /' err.txt | head -5
        [ -s flog.txt ] && sed 's/^/  | /' flog.txt
      fi
    done
    local res="74 x$n74"; [ "$n73" -gt 0 ] && res="$res, 73 x$n73"; [ "$n0" -gt 0 ] && res="$res, 0 x$n0"
    [ "$nbad" = 0 ] && ok "$cmd $kind: $pts point(s) of $total call(s), fault fired in $nfired: $res; all consistent, every rerun equal to the undisturbed run"
    printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$cmd" "$kind" "$total" "$pts" "$res" "$([ "$nbad" = 0 ] && echo ok || echo "$nbad FAILED")" >> "$MATRIX"
  done
  echo "$cmd: $(( $(date +%s) - t0 )) s"
}

for cmd in ${FAULT_COMMANDS:-ingest tokenize kg train daemon}; do sweep "$cmd"; done

echo "--- matrix (command, kind, calls counted, points, exit codes, result)"
column -t -s $'\t' "$MATRIX"
[ -n "${FAULT_MATRIX:-}" ] && cp "$MATRIX" "$FAULT_MATRIX"
echo "total: $(( $(date +%s) - T0 )) s"
finish
