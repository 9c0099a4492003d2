#!/usr/bin/env bash
# test_status_page.sh: kiln daemon --http (docs/observe.md): refusals before
# anything starts (a non-loopback address without a token, bad tokens and
# addresses); the daemon on a free loopback port with a training job and a
# spool holding a good and a bad file: every JSON endpoint checked with curl
# against the store and kiln status (security headers on every response,
# 405 for anything but GET and HEAD, 404, 400, 421 for another Host);
# malformed and oversized requests get 4xx and the daemon and its job go on;
# a real browser (headless Chromium) loads the page twice and its DOM shows
# the job with its step advancing and its charts, and a screenshot is
# written under the build folder; kiln status --watch on a terminal and off
# one; with a token (a non-loopback bind, and $KILN_HTTP_TOKEN) every
# request needs it.
source "$(dirname "$0")/lib.sh"

DPIDS=()
cleanup() {
  for p in "${DPIDS[@]}"; do kill -9 "$p" 2>/dev/null; done
  wait 2>/dev/null
  cd / && if [ -n "${KILN_TEST_KEEP:-}" ]; then echo "kept $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
SHOTS=$(dirname "$KILN")   # the build folder: the screenshot stays there
T=${KILN_SANITIZE:+4}; T=${T:-1}   # time factor: the sanitizer build is slower

# start_daemon ARGS...: kiln daemon in the background (DPID), ready when it answers; URL its page
start_daemon() {
  "$KILN" daemon --spool spool --config d.json "$@" >>daemon.log 2>&1 &
  DPID=$!
  DPIDS+=("$DPID")
  for _ in $(seq 1 $((300 * T))); do
    if "$KILN" status --json >st.json 2>/dev/null; then
      URL=$(json daemon.http st.json)
      return 0
    fi
    kill -0 "$DPID" 2>/dev/null || return 1
    sleep 0.1
  done
  return 1
}
# stuck PID: what a process that outlived its deadline is doing (each thread's
# wait channel and system call), for the failure message
stuck() {
  local p=$1 t
  echo "  | pid $p ($(tr '\0' ' ' < /proc/$p/cmdline 2>/dev/null | cut -c1-80)): state $(awk '/^State/ {print $2}' /proc/$p/status 2>/dev/null)"
  for t in /proc/$p/task/*; do echo "  |   thread ${t##*/}: wchan $(cat $t/wchan 2>/dev/null), syscall $(cut -d' ' -f1 $t/syscall 2>/dev/null)"; done
}
# ended PID SECONDS: 0 when the child PID has exited (a zombie or gone) within SECONDS;
# else prints what it is doing, kills it (-9) and returns 1. Nothing here waits unbounded.
ended() {
  local p=$1 n=$(( $2 * 10 ))
  while [ "$n" -gt 0 ]; do
    { [ ! -e /proc/$p ] || [ "$(awk '/^State/ {print $2}' /proc/$p/status 2>/dev/null)" = Z ]; } && return 0
    sleep 0.1; n=$((n - 1))
  done
  stuck "$p"; kill -KILL "$p" 2>/dev/null; return 1
}
stop_daemon() {
  kill -TERM "$DPID"
  ended "$DPID" $((120 * T)) || bad "the daemon did not stop within $((120 * T)) s of SIGTERM (killed)"
  wait "$DPID"
}
field() { "$KILN" run show "$1" --json 2>/dev/null | $PY -c 'import json,sys; v=json.load(sys.stdin)[sys.argv[1]]; print("" if v is None else v)' "$2"; }
wait_step() { for _ in $(seq 1 $(( $3 * 10 * T ))); do s=$(field "$1" step); [ -n "$s" ] && [ "$s" -ge "$2" ] && return 0; kill -0 "$DPID" || return 1; sleep 0.1; done; return 1; }
# get PATH [CURL ARGS...]: GET URL/PATH; body in body.txt, headers in head.txt; prints the status
get() { local p=$1; shift; curl -s --max-time $((20 * T)) -D head.txt -o body.txt -w '%{http_code}' "$@" "${URL%/}$p"; }
has_header() { grep -qi "^$1" head.txt; }
secure_headers() {
  has_header "Content-Security-Policy: default-src 'self'" && has_header "X-Content-Type-Options: nosniff" &&
    has_header "X-Frame-Options: DENY" && has_header "Referrer-Policy: no-referrer" && has_header "Cache-Control: no-store"
}
# expect_get CODE DESCRIPTION PATH [CURL ARGS...]: the status, and the security headers every response carries
expect_get() {
  local want=$1 d=$2 p=$3 got; shift 3
  got=$(get "$p" "$@")
  if [ "$got" != "$want" ]; then bad "$d: HTTP $got, expected $want"; sed 's/^/  | /' body.txt 2>/dev/null | head -5
  elif ! secure_headers; then bad "$d: security headers missing"; sed 's/^/  | /' head.txt
  else ok "$d (HTTP $got)"; fi
}

expect_exit 0 "kiln daemon --help mentions --http" "$KILN" daemon --help
grep -q -- "--http-token" out.txt && ok "--help: --http-token" || bad "--help: --http-token"
expect_exit 0 "ingest" "$KILN" ingest -q "$DATA/state_union.zip"
expect_exit 0 "ingest lines" "$KILN" ingest -q --split line "$DATA/lee_background.txt"
expect_exit 0 "vocab train 3k" "$KILN" vocab train -q --size 3000 --name v3k
expect_exit 0 "tokenize" "$KILN" tokenize -q
cat > long.json <<'EOF'
{
  "model": {"type": "albert", "embedding_size": 32, "hidden_size": 64, "num_hidden_layers": 2,
            "num_attention_heads": 2, "intermediate_size": 128, "max_position_embeddings": 64},
  "data": {"objectives": ["ngram", "sop"], "seq_len": 48, "batch_size": 8, "valid_every": 10, "valid_batches": 2},
  "optimizer": {"type": "lamb", "lr": 2e-3, "warmup_steps": 10},
  "budget": {"steps": 1000000},
  "checkpoint": {"dir": "ck", "every": 50, "keep": 2}
}
EOF
echo '{"train_threads": 1, "ingest_threads": 1, "retry_seconds": 1}' > d.json
mkdir spool

# --- refused before anything starts
expect_exit 64 "a non-loopback address without a token is refused" "$KILN" daemon --spool spool --http 0.0.0.0:0
grep_err "not a loopback address.*--http-token" "says why and what to do"
expect_exit 64 "a short token is refused" "$KILN" daemon --spool spool --http 0.0.0.0:0 --http-token short
grep_err "16 to 256 characters" "says what a token is"
expect_exit 64 "a token with a quote is refused" "$KILN" daemon --spool spool --http 0.0.0.0:0 --http-token 'abcdefghijklmnop"q'
expect_exit 64 "not an address" "$KILN" daemon --spool spool --http 999.1.1.1:80
expect_exit 64 "a port out of range" "$KILN" daemon --spool spool --http 127.0.0.1:70000
expect_exit 64 "an IPv6 address without brackets" "$KILN" daemon --spool spool --http ::1:80
expect_exit 64 "--http-token without --http" "$KILN" daemon --spool spool --http-token abcdefghijklmnopqrst
check "nothing was started" [ ! -e "$KILN_DB.daemon/sock" ]
# an address another program holds: the daemon (of another store) stops at start, 73
$PY -c 'import socket, time; s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen(); print(s.getsockname()[1], flush=True); time.sleep(120)' > port.txt &
HOLDER=$!
DPIDS+=("$HOLDER")
for _ in $(seq 1 100); do [ -s port.txt ] && break; sleep 0.05; done
mkdir spool2
expect_exit 73 "an address already taken" "$KILN" --db other.db daemon --spool spool2 --http "127.0.0.1:$(cat port.txt)"
grep_err "cannot listen there" "says so"
check "its control socket is removed" [ ! -e other.db.daemon/sock ]
kill "$HOLDER"

# --- the daemon on a free loopback port, a job, a good and a bad spool file
start_daemon --http 127.0.0.1:0 || bad "start the daemon with --http"
check "kiln status --json: the page's address ($URL)" $PY -c 'import re,sys; assert re.fullmatch(r"http://127\.0\.0\.1:\d+/", sys.argv[1]), sys.argv[1]' "$URL"
check "the log names the page" grep -q "status page: $URL" daemon.log
expect_exit 0 "kiln status shows the page" "$KILN" status
grep -q "page    $URL" out.txt && ok "status: page line" || bad "status: page line: $(cat out.txt)"
printf '{"text": "Kilns fire clay at high temperatures. Potters load them carefully."}\n' > .good.jsonl
mv .good.jsonl spool/good.jsonl
printf 'not json at all\n' > .bad.jsonl && mv .bad.jsonl spool/bad.jsonl
printf 'Glazes melt in the kiln.\n' > .latin1 && mv .latin1 "spool/$(printf 'gr\xfcn.txt')"   # a name that is not UTF-8
for _ in $(seq 1 $((300 * T))); do
  [ -e spool/done/good.jsonl ] && [ -e spool/failed/bad.jsonl.error ] && [ -e "spool/done/$(printf 'gr\xfcn.txt')" ] && break
  sleep 0.1
done
check "the spool handled the three files" test -e spool/done/good.jsonl -a -e spool/failed/bad.jsonl
"$KILN" run submit --json --config long.json --name live > sub.json 2>err.txt
J=$(json id sub.json)
check "the job runs past its first validation ($J)" wait_step "$J" 12 $((120 * T))

# --- the page and its JSON, with curl
expect_get 200 "GET / is the page" /
check "the page: Content-Type text/html" has_header "Content-Type: text/html"
check "the page: HTML with its script and style from kiln" grep -q '<script src="status.js" defer>' body.txt
check "the page: no file from elsewhere" $PY -c 'import re; s=open("body.txt").read(); assert not re.search(r"(src|href)=\"(https?:)?//", s), re.findall(r"(?:src|href)=\"[^\"]*\"", s)'
expect_get 200 "status.js" /status.js
check "status.js: Content-Type JavaScript" has_header "Content-Type: text/javascript"
expect_get 200 "status.css" /status.css
check "status.css: Content-Type CSS" has_header "Content-Type: text/css"
expect_get 200 "/api/status" /api/status
check "/api/status: Content-Type JSON" has_header "Content-Type: application/json"
check "/api/status: the daemon, the running job, the spool" $PY - "$J" "$URL" <<'EOF'
import json, sys
s = json.load(open("body.txt"))
r = s["running"]
assert s["daemon"]["http"] == sys.argv[2] and s["daemon"]["state"] == "running", s["daemon"]
assert r["id"] == int(sys.argv[1]) and r["kind"] == "train" and r["step"] >= 1 and r["loss"] > 0, r
assert s["spool"]["done"] >= 1 and s["spool"]["failed"] >= 1, s["spool"]
assert [q["id"] for q in s["queue"]] == [int(sys.argv[1])], s["queue"]
EOF
expect_get 200 "/api/metrics" "/api/metrics?run=$J"
check "/api/metrics: every step of loss so far, validations every 10, matching the store" $PY - "$J" "$KILN_DB" <<'EOF'
import json, sqlite3, sys
j, db = int(sys.argv[1]), sqlite3.connect(sys.argv[2])
m = json.load(open("body.txt"))
loss = m["series"]["loss"]
last = m["last_step"]
assert m["run"] == j and m["state"] == "running" and m["more"] is False, {k: m[k] for k in ("run", "state", "more")}
assert loss["steps"] == list(range(1, last + 1)), loss["steps"][:5]
assert m["series"]["val_loss"]["steps"] == list(range(10, last + 1, 10))
want = dict(db.execute("select step, value from metrics where job_id = ? and name = 'loss' and step <= ?", (j, last)))
assert all(abs(v - want[s]) <= 1e-9 * abs(want[s]) for s, v in zip(loss["steps"], loss["values"]))
EOF
expect_get 200 "/api/metrics?after=2&max=3" "/api/metrics?run=$J&after=2&max=3"
check "after and max: the rows after step 2, whole steps, more to come" $PY -c '
import json; m = json.load(open("body.txt"))
assert m["series"]["loss"]["steps"] == [3] and m["last_step"] == 3 and m["more"] is True, m["series"]["loss"]
assert all(s["steps"] == [3] for s in m["series"].values())'
expect_get 200 "/api/metrics?names=lr" "/api/metrics?run=$J&names=lr"
check "names=lr: only lr" $PY -c 'import json; assert list(json.load(open("body.txt"))["series"]) == ["lr"]'
expect_get 200 "/api/runs" /api/runs
check "/api/runs: the job with its last values" $PY - "$J" <<'EOF'
import json, sys
runs = {r["id"]: r for r in json.load(open("body.txt"))["runs"]}
r = runs[int(sys.argv[1])]
assert r["state"] == "running" and r["last"]["loss"][0] >= 1 and r["last"]["val_loss"][0] % 10 == 0, r
EOF
expect_get 200 "/api/runs/$J" "/api/runs/$J"
check "/api/runs/$J: config and metric names" $PY -c 'import json; r=json.load(open("body.txt")); assert r["config"]["data"]["valid_every"] == 10 and r["metrics"]["loss"] >= 1 and "unigram_loss" in r["metrics"], r.keys()'
expect_get 200 "/api/spool" /api/spool
check "/api/spool: done and failed files, with the failure's reason" $PY - <<'EOF'
import json
s = json.load(open("body.txt"))
assert sorted(f["name"] for f in s["done"]) == ["good.jsonl", "gr\ufffdn.txt"] and s["done_count"] == 2, s["done"]
f = s["failed"][0]
assert f["name"] == "bad.jsonl" and f["reason"] and "reason:" in f["error"], f
assert s["waiting"] == [] and s["failed_count"] == 1, s
EOF
"$KILN" stats --json > stats.json
expect_get 200 "/api/corpus" /api/corpus
check "/api/corpus: the totals kiln stats shows, the vocabulary" $PY - <<'EOF'
import json
c, s = json.load(open("body.txt")), json.load(open("stats.json"))
assert c["totals"]["documents"] == s["documents"] and c["totals"]["sources"] == s["sources"], (c["totals"], s)
assert [v["name"] for v in c["vocabularies"]] == ["v3k"] and c["vocabularies"][0]["active"], c["vocabularies"]
assert c["kg"]["entities"] == 0 and c["sources"]["complete"] == s["status"]["complete"], c
EOF
expect_get 404 "no such endpoint" /api/nope
expect_get 404 "no such page" /etc/passwd
expect_get 404 "/api/metrics: no such run" "/api/metrics?run=9999"
expect_get 404 "/api/runs/9999: no such run" /api/runs/9999
expect_get 400 "/api/metrics: a run that is not a number" "/api/metrics?run=abc"
expect_get 400 "/api/runs/1x: not a run id" /api/runs/1x
expect_get 400 "/api/metrics: max out of range" "/api/metrics?run=$J&max=99999999"
for m in POST PUT DELETE PATCH OPTIONS; do
  expect_get 405 "$m: read-only" /api/status -X "$m"
  check "$m: Allow: GET, HEAD" has_header "Allow: GET, HEAD"
done
expect_get 200 "HEAD /" / -I
expect_get 421 "another Host (DNS rebinding)" /api/status -H 'Host: evil.example:80'
P0=${URL##*:}
expect_get 200 "localhost as Host is this server" /api/status -H "Host: localhost:${P0%/}"

# --- malformed and oversized requests: 4xx, and the daemon goes on
s0=$(field "$J" step)
check "malformed and oversized requests get 4xx" $PY - "${URL%/}" <<'EOF'
import socket, sys, urllib.parse
u = urllib.parse.urlparse(sys.argv[1])
host, port = u.hostname, u.port
H = b"Host: %s:%d\r\n" % (host.encode(), port)
def status(data):
    s = socket.create_connection((host, port), timeout=30)
    try:
        s.sendall(data)
        r = s.recv(4096)
    finally:
        s.close()
    return int(r.split(b" ")[1]) if r.startswith(b"HTTP/1.") else r
cases = {
    "a URL of 100 kB": (b"GET /" + b"a" * 100000 + b" HTTP/1.1\r\n" + H + b"\r\n", 414),
    "60 kB of headers": (b"GET / HTTP/1.1\r\n" + H + b"".join(b"X-H%d: %s\r\n" % (i, b"v" * 200) for i in range(300)) + b"\r\n", 431),
    "a GET with a 10 MB body": (b"GET / HTTP/1.1\r\n" + H + b"Content-Length: 10000000\r\n\r\nabc", 413),
    "a chunked GET": (b"GET /api/status HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", 413),
    "a header line without a colon": (b"GET / HTTP/1.1\r\n" + H + b"not a header\r\n\r\n", 400),
    "HTTP/1.1 without Host": (b"GET / HTTP/1.1\r\n\r\n", 400),
    "no HTTP version": (b"GET /\r\n\r\n", 400),
    "a version that is not HTTP": (b"GET / JUNK/1.0\r\n" + H + b"\r\n", 400),
    "HTTP/9.9": (b"GET / HTTP/9.9\r\n" + H + b"\r\n", 505),
    "an unknown method": (b"BREW / HTTP/1.1\r\n" + H + b"\r\n", 405),
    "a POST with a body": (b"POST /api/status HTTP/1.1\r\n" + H + b"Content-Length: 5\r\n\r\nhello", 405),
}
bad = []
for name, (data, want) in cases.items():
    got = status(data)
    if got != want:
        bad.append("%s: %r, expected %d" % (name, got, want))
assert not bad, bad
# a burst of connections, 24 at a time (under the per-address limit of 32): all answered
import concurrent.futures
with concurrent.futures.ThreadPoolExecutor(24) as ex:
    codes = list(ex.map(lambda _: status(b"GET /api/status HTTP/1.1\r\n" + H + b"\r\n"), range(48)))
assert codes == [200] * 48, codes
EOF
check "the daemon is alive" kill -0 "$DPID"
expect_exit 0 "it answers kiln status" "$KILN" status
check "its job goes on (step $s0 -> more)" wait_step "$J" $((s0 + 2)) $((60 * T))
expect_get 200 "/api/status still answers" /api/status

# --- a real browser: the DOM shows the job and its step advancing; a screenshot
CHROMIUM=$(command -v chromium || command -v chromium-browser || true)
if [ -z "$CHROMIUM" ]; then
  bad "headless Chromium is not installed (scripts/install-deps installs the chromium package): the browser test cannot run"
else
  export HOME="$WORK/home"; mkdir -p "$HOME"   # chromium's profile stays in the test's folder
  dom() {
    timeout $((90 * T)) "$CHROMIUM" --headless --no-sandbox --disable-gpu --no-first-run --user-data-dir="$WORK/chrome" \
      --virtual-time-budget=4000 --dump-dom "$URL" 2>chrome.err
  }
  domstep() { $PY -c 'import re,sys; m=re.search(r"id=\"run-step\">(\d+)<", open(sys.argv[1]).read()); print(m.group(1) if m else "")' "$1"; }
  dom > dom1.html; rc=$?
  check "chromium --dump-dom ran (exit $rc)" [ "$rc" = 0 ] || sed 's/^/  | /' chrome.err | tail -20
  a=$(domstep dom1.html)
  check "the page's script ran: status shown" grep -q 'data-ready="1"' dom1.html
  check "the DOM shows the running job $J" grep -q "id=\"run-id\">$J<" dom1.html
  check "the DOM shows its step ($a)" [ "${a:-0}" -ge 1 ]
  check "the DOM has its live charts (loss, masked LM loss)" $PY - <<'EOF'
import re
s = open("dom1.html").read()
assert re.search(r'data-metric="loss"', s) and re.search(r'data-metric="mlm_loss"', s), "no chart"
assert re.search(r'<path d="M[\d.]+ [\d.]+L', s), "no curve drawn"
assert "unigram baseline (" in s and 'class="val"' in s, "no baseline or validation markers"
EOF
  check "the DOM lists the spool's failed file" grep -q ">bad.jsonl<" dom1.html
  check "the DOM shows the corpus" grep -q "id=\"corpus-docs\">[1-9]" dom1.html
  sleep 2
  dom > dom2.html
  b=$(domstep dom2.html)
  check "loaded again: the step advanced ($a -> $b)" [ "${b:-0}" -gt "${a:-0}" ]
  rm -f "$SHOTS/status-page.png"
  timeout $((90 * T)) "$CHROMIUM" --headless --no-sandbox --disable-gpu --no-first-run --user-data-dir="$WORK/chrome" \
    --hide-scrollbars --window-size=1400,1800 --virtual-time-budget=4000 --screenshot="$SHOTS/status-page.png" "$URL" 2>>chrome.err
  check "a screenshot of the page: $SHOTS/status-page.png" $PY -c '
import struct, sys
d = open(sys.argv[1], "rb").read()
assert d[:8] == b"\x89PNG\r\n\x1a\n" and struct.unpack(">II", d[16:24]) == (1400, 1800) and len(d) > 20000, len(d)' "$SHOTS/status-page.png"
fi

# --- kiln status --watch
"$KILN" status --watch --interval 0.5 > watch.txt 2>watch.err &
wp=$!
sleep $((4 * T)); kill -INT "$wp"
ended "$wp" $((20 * T)) || bad "--watch off a terminal: still running $((20 * T)) s after Ctrl-C (killed)"
wait "$wp"; rc=$?
check "--watch off a terminal: Ctrl-C ends it, exit 0 ($rc)" [ "$rc" = 0 ]
check "--watch off a terminal: plain text, no escape codes" $PY -c 'import sys; s=open("watch.txt").read(); assert "\x1b" not in s and s.count("-- ") >= 2 and "running: job" in s, s[:300]'
check "--watch on a terminal: redrawn in place, Ctrl-C quits" $PY - "$KILN" "$J" "$T" <<'EOF'
import os, pty, select, signal, sys, time
pid, fd = pty.fork()
if pid == 0:
    os.execv(sys.argv[1], [sys.argv[1], "status", "--watch", "--interval", "0.3"])

def drain(seconds, until_exit=False):
    """reads the terminal for up to seconds (never blocking past them); with
    until_exit, returns the wait status once the child has exited, else None"""
    global out
    t0 = time.time()
    while time.time() - t0 < seconds:
        if until_exit:
            p, st = os.waitpid(pid, os.WNOHANG)
            if p == pid:
                return st
        r, _, _ = select.select([fd], [], [], 0.1)
        if r:
            try:
                out += os.read(fd, 65536)
            except OSError:
                if not until_exit:
                    return None
    return None

out = b""
drain(3)
os.kill(pid, signal.SIGINT)
st = drain(20 * int(sys.argv[3]), until_exit=True)  # the terminal keeps being read: a full one cannot block the exit
if st is None:
    state = open(f"/proc/{pid}/status").read().split("State:")[1].split("\n")[0].strip()
    wchan = open(f"/proc/{pid}/wchan").read()
    os.kill(pid, signal.SIGKILL)
    raise AssertionError(f"still running 20 s after Ctrl-C (killed): state {state}, wchan {wchan}")
assert os.WIFEXITED(st) and os.WEXITSTATUS(st) == 0, st
assert out.count(b"\x1b[H\x1b[2J") >= 3, out[:200]
assert b"running: job %s" % sys.argv[2].encode() in out and b"Ctrl-C quits" in out, out[:400]
EOF

# --- with a token: a non-loopback bind; every request carries it
stop_daemon; rc=$?
check "SIGTERM with the page on: exit 0 ($rc)" [ "$rc" = 0 ]
TOKEN=kiln-test-token-0123456789abcdef
start_daemon --http 0.0.0.0:0 --http-token "$TOKEN" || bad "start with a token on 0.0.0.0"
PORT=${URL##*:}; PORT=${PORT%/}
URL="http://127.0.0.1:$PORT/"
expect_get 401 "no token" /api/status
check "401: WWW-Authenticate: Bearer" has_header 'WWW-Authenticate: Bearer'
expect_get 401 "no token: not even the page" /
expect_get 401 "no token: not even its script" /status.js
expect_get 401 "a wrong token" /api/status -H "Authorization: Bearer ${TOKEN}x"
expect_get 401 "a token of another length" /api/status -H "Authorization: Bearer ${TOKEN:0:20}"
expect_get 401 "a wrong ?token=" "/api/status?token=nope"
expect_get 200 "Authorization: Bearer TOKEN" /api/status -H "Authorization: Bearer $TOKEN"
expect_get 200 "?token=TOKEN" "/api/runs?token=$TOKEN"
expect_get 200 "with the token, any Host name" "/api/status?token=$TOKEN" -H 'Host: kiln.example:80'
expect_get 200 "the page with ?token=" "/?token=$TOKEN"
check "the page links its script and style with the token" grep -q "status.js?token=$TOKEN" body.txt
expect_get 200 "its script with the token" "/status.js?token=$TOKEN"
check "the refusals are logged" grep -q "http: refused GET /api/status from 127.0.0.1: no token" daemon.log
stop_daemon
KILN_HTTP_TOKEN=$TOKEN start_daemon --http 127.0.0.1:0 || bad "start with \$KILN_HTTP_TOKEN"
expect_get 401 "\$KILN_HTTP_TOKEN: loopback too needs it" /api/status
expect_get 200 "\$KILN_HTTP_TOKEN: with it" /api/status -H "Authorization: Bearer $TOKEN"
stop_daemon; rc=$?
check "stopped cleanly ($rc)" [ "$rc" = 0 ]
check "integrity" integrity
finish
