#!/usr/bin/python3
"""soak.py: kiln daemon under load (docs/reliability.md, "Load").

Sets up a store (a vocabulary, a small real base corpus), starts `kiln
daemon` on a spool, queues a small training job and measures its steps/s
without load; then drops files cut from the real corpora of examples/data
into the spool at random moments (plain text, JSONL, gzip/bzip2/xz, zip,
MediaWiki XML; invalid ones: truncated archives, binary junk, malformed
JSONL, empty files; exact duplicates under other names, same-name re-drops,
some replacing a file still waiting; files renamed in from outside or from a
dot-name, files written slowly in place; a few big JSONL files) while another
process calls `kiln status`, `kiln run list` (and --json) in a loop and
checks every answer. Samples the daemon's RSS from /proc. At the end:

  - every dropped file is in done/ or failed/ as expected (by its bytes),
    every failed one with a NAME.error giving a reason, nothing left behind,
    nothing unknown;
  - every document of a valid file (and every good record of a malformed
    JSONL file) is in the store exactly once, no document twice (each
    generated document starts with a unique marker word, ksFFFFFFdDDDDD);
  - PRAGMA integrity_check ok; sum(sources.documents) = count(documents);
    every document tokenized; the daemon's done/failed counters equal the
    folders;
  - peak RSS (VmHWM) under --rss-limit-mb; the training job made progress
    during the load; the slowdown is reported.

Deterministic given --seed: the files' bytes and the schedule (logged to
WORK/schedule.jsonl) are; the interleaving with the daemon is not.
Exit 0 when every check passes; the figures go to WORK/report.json and stdout.

  soak.py --kiln build/kiln --work /tmp/soak --small 1500 --big 2 --big-mb 8 --duration 60
"""
import argparse, bz2, gzip, hashlib, io, json, lzma, os, random, re, shutil, signal
import sqlite3, subprocess, sys, threading, time, zipfile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DATA = os.path.join(ROOT, "examples", "data")
MARK = re.compile(r"ks(\d{6})d(\d{5})")


def log(*a):
    print("soak:", *a, flush=True)


# ---- real text ---------------------------------------------------------------

def load_pool():
    """Paragraph-sized chunks of real text, and MediaWiki pages (article namespace, no redirects)."""
    chunks = []
    for l in open(os.path.join(DATA, "lee_background.txt"), encoding="utf-8"):
        if l.strip():
            chunks.append(l.strip())
    with zipfile.ZipFile(os.path.join(DATA, "state_union.zip")) as z:
        for n in sorted(z.namelist()):
            if not n.endswith(".txt"):
                continue
            t = z.read(n).decode("latin-1")
            cur = ""
            for p in re.split(r"\n\s*\n", t):
                p = " ".join(p.split())
                if not p:
                    continue
                cur = (cur + " " + p).strip()
                if len(cur) > 400:
                    chunks.append(cur[:3000])
                    cur = ""
    for n in ("udhr-ja.txt", "udhr-ko.txt"):
        for p in re.split(r"\n\s*\n", open(os.path.join(DATA, n), encoding="utf-8").read()):
            if len(p.strip()) > 40:
                chunks.append(" ".join(p.split()))
    t = bz2.open(os.path.join(DATA, "enwiki-sample.xml.bz2"), "rt", encoding="utf-8").read()
    head = t.split("<page>", 1)[0]
    pages = []
    for p in re.findall(r"<page>.*?</page>", t, re.S):
        if "<ns>0</ns>" in p and "<redirect" not in p and re.search(r"<text[^>]*>[^<]{200,}", p):
            pages.append(p)
    return chunks, head, pages


# ---- files -------------------------------------------------------------------

class Gen:
    """Makes the bytes of spool files; each document gets a unique marker word."""

    def __init__(self, rng, chunks, head, pages):
        self.rng, self.chunks, self.head, self.pages = rng, chunks, head, pages
        self.nfile = 0
        self.recent_docs = []  # (marker, text) of earlier files: document-level duplicates

    def fid(self):
        self.nfile += 1
        return self.nfile

    def doc(self, f, d, k=None):
        m = "ks%06dd%05d" % (f, d)
        k = k or self.rng.randint(1, 3)
        i = self.rng.randrange(len(self.chunks))
        text = " ".join(self.chunks[(i + j) % len(self.chunks)] for j in range(k))
        return m, m + " " + text

    def jsonl_lines(self, f, n):
        docs = [self.doc(f, d) for d in range(n)]
        self.recent_docs = (self.recent_docs + docs)[-200:]
        lines = [json.dumps({"id": m, "title": "Soak %s" % m, "text": t}, ensure_ascii=False) for m, t in docs]
        return lines, [m for m, _ in docs]

    def make(self, kind):
        """Returns (bytes, extension, expect, markers, maybe_markers)."""
        r, f = self.rng, self.fid()
        if kind == "txt":
            m, t = self.doc(f, 0, r.randint(1, 4))
            return (t + "\n").encode(), "txt", "done", [m], []
        if kind == "badutf8":  # invalid UTF-8 in plain text: repaired, not refused (docs/architecture.md)
            m, t = self.doc(f, 0, 2)
            b = bytearray((t + "\n").encode())
            for _ in range(3):
                b[r.randrange(len(m) + 2, len(b) - 1)] = r.choice([0xff, 0xfe, 0xc3, 0x80])
            return bytes(b), "txt", "done", [m], []
        if kind in ("jsonl", "jsonl.gz", "jsonl.bz2", "jsonl.xz"):
            lines, ms = self.jsonl_lines(f, r.randint(1, 15))
            b = ("\n".join(lines) + "\n").encode()
            b = {"jsonl": lambda x: x, "jsonl.gz": lambda x: gzip.compress(x, mtime=0),
                 "jsonl.bz2": bz2.compress, "jsonl.xz": lzma.compress}[kind](b)
            return b, kind, "done", ms, []
        if kind == "docdup":  # new documents and documents already in earlier files
            lines, ms = self.jsonl_lines(f, r.randint(1, 5))
            old = r.sample(self.recent_docs, min(3, len(self.recent_docs)))
            lines += [json.dumps({"id": m, "text": t}, ensure_ascii=False) for m, t in old]
            r.shuffle(lines)
            return ("\n".join(lines) + "\n").encode(), "jsonl", "done", ms + [m for m, _ in old], []
        if kind == "zip":
            bio = io.BytesIO()
            ms = []
            with zipfile.ZipFile(bio, "w", zipfile.ZIP_DEFLATED) as z:
                for d in range(r.randint(2, 4)):
                    m, t = self.doc(f, d)
                    ms.append(m)
                    zi = zipfile.ZipInfo("part-%d.txt" % d, (2020, 1, 1, 0, 0, 0))
                    zi.compress_type = zipfile.ZIP_DEFLATED
                    z.writestr(zi, t + "\n")
            return bio.getvalue(), "zip", "done", ms, []
        if kind == "xml":
            ps, ms = [], []
            for d in range(r.randint(1, 4)):
                m = "ks%06dd%05d" % (f, d)
                p = r.choice(self.pages)
                p = re.sub(r"<title>(.*?)</title>", lambda x: "<title>%s %s</title>" % (x.group(1), m), p, 1)
                p = re.sub(r"(<text[^>]*>)", lambda x: x.group(1) + m + " ", p, 1)
                ps.append(p)
                ms.append(m)
            return (self.head + "".join(ps) + "</mediawiki>\n").encode(), "xml", "done", ms, []
        if kind in ("trunc.gz", "trunc.bz2"):  # a truncated archive: partial, failed; what came before may be stored
            lines, ms = self.jsonl_lines(f, r.randint(20, 60))
            raw = ("\n".join(lines) + "\n").encode()
            b = gzip.compress(raw, mtime=0) if kind == "trunc.gz" else bz2.compress(raw)
            return b[: len(b) * r.randint(30, 80) // 100], "jsonl." + kind[6:], "failed", [], ms
        if kind == "malformed":  # good records among bad ones: failed, the good ones stored
            lines, ms = self.jsonl_lines(f, r.randint(1, 6))
            for _ in range(r.randint(1, 3)):
                lines.insert(r.randrange(len(lines) + 1),
                             r.choice(['{"text": 5}', '{oops', '[1, 2]', '{"id": 3, "text": "unterminated',
                                       '{"title": "no text field"}', '"just a string"']))
            return ("\n".join(lines) + "\n").encode(), "jsonl", "failed", ms, []
        if kind == "allbad":
            return b'{not json\n{"text": 5}\n[1, 2]\n', "jsonl", "failed", [], []
        if kind == "junk":
            return bytes(r.getrandbits(8) for _ in range(r.randint(2000, 60000))), "bin", "failed", [], []
        if kind == "empty":
            return b"", "txt", "failed", [], []
        raise ValueError(kind)


SMALL_KINDS = [("txt", 30), ("jsonl", 25), ("jsonl.gz", 6), ("jsonl.bz2", 3), ("jsonl.xz", 2), ("zip", 4),
               ("xml", 4), ("badutf8", 2), ("docdup", 3), ("trunc.gz", 2), ("trunc.bz2", 1),
               ("malformed", 3), ("allbad", 1), ("junk", 2), ("empty", 1)]


def big_file(gen, path, mb):
    """A big JSONL file: real chunks with unique markers, about mb MB; returns its markers."""
    f = gen.fid()
    ms = []
    with open(path, "w", encoding="utf-8") as out:
        size, d = 0, 0
        while size < mb * 1000000:
            m, t = gen.doc(f, d)
            line = json.dumps({"id": m, "text": t}, ensure_ascii=False) + "\n"
            out.write(line)
            size += len(line.encode())
            ms.append(m)
            d += 1
    return ms


# ---- the daemon and its clients ------------------------------------------------

class Soak:
    def __init__(self, a):
        self.a = a
        self.kiln = os.path.abspath(a.kiln)
        self.work = os.path.abspath(a.work)
        self.db = os.path.join(self.work, "soak.db")
        self.spool = os.path.join(self.work, "spool")
        self.stage = os.path.join(self.work, "stage")
        self.env = dict(os.environ, KILN_DB=self.db)
        self.fail = []
        self.figures = {}

    def run(self, *args, check=True, **kw):
        p = subprocess.run([self.kiln] + list(args), env=self.env, capture_output=True, text=True, **kw)
        if check and p.returncode:
            raise SystemExit("kiln %s: exit %d: %s" % (" ".join(args), p.returncode, p.stderr[-2000:]))
        return p

    def check(self, ok, what):
        print(("ok: " if ok else "FAILED: ") + what, flush=True)
        if not ok:
            self.fail.append(what)

    def status(self):
        p = self.run("status", "--json", check=False)
        return json.loads(p.stdout) if p.returncode == 0 else None

    def setup(self):
        if os.path.exists(self.work):
            shutil.rmtree(self.work)
        os.makedirs(self.stage)
        os.makedirs(self.spool)
        self.run("init", "-q")
        self.run("vocab", "import", "-q", os.path.join(ROOT, "examples", "vocab", "bert-base-uncased-vocab.txt"))
        self.run("ingest", "-q", "--split", "line", os.path.join(DATA, "lee_background.txt"))
        self.run("ingest", "-q", os.path.join(DATA, "state_union.zip"))
        self.run("tokenize", "-q")
        json.dump({"train_threads": 1, "ingest_threads": 1, "retry_seconds": 1},
                  open(os.path.join(self.work, "daemon.json"), "w"))
        json.dump({
            "model": {"type": "albert", "embedding_size": 32, "hidden_size": 64, "num_hidden_layers": 2,
                      "num_attention_heads": 2, "intermediate_size": 128, "max_position_embeddings": 64},
            "data": {"objectives": ["mlm", "sop"], "seq_len": 48, "batch_size": 8, "valid_every": 0},
            "optimizer": {"lr": 1e-3, "warmup_steps": 10},
            "budget": {"steps": 100000000},
            "checkpoint": {"dir": os.path.join(self.work, "ck"), "every": 0, "keep": 1}},
            open(os.path.join(self.work, "train.json"), "w"))

    def start_daemon(self):
        self.dlog = open(os.path.join(self.work, "daemon.log"), "w")
        cmd = [self.kiln, "daemon", "--spool", self.spool, "--config", os.path.join(self.work, "daemon.json")]
        self.daemon = subprocess.Popen(cmd, env=self.env, stdout=self.dlog, stderr=subprocess.STDOUT)
        for _ in range(600):
            if self.status():
                return
            if self.daemon.poll() is not None:
                raise SystemExit("the daemon exited (%s): see daemon.log" % self.daemon.returncode)
            time.sleep(0.1)
        raise SystemExit("the daemon does not answer")

    def rss_sampler(self):
        """VmRSS every 0.25 s; VmHWM (the kernel's peak) at the end."""
        self.rss_peak_sampled = self.hwm = 0
        self.rss_series = []
        path = "/proc/%d/status" % self.daemon.pid
        t0 = time.time()
        while not self.stop_rss:
            try:
                s = open(path).read()
            except OSError:
                break
            m1, m2 = re.search(r"VmRSS:\s+(\d+)", s), re.search(r"VmHWM:\s+(\d+)", s)
            if not m1 or not m2:
                break  # exited (a zombie has no memory lines)
            kb, hwm = int(m1.group(1)), int(m2.group(1))
            self.rss_peak_sampled = max(self.rss_peak_sampled, kb)
            self.hwm = hwm
            if not self.rss_series or time.time() - t0 - self.rss_series[-1][0] >= 5:
                self.rss_series.append((round(time.time() - t0, 1), kb // 1024))
            time.sleep(0.25)

    def steps_at(self):
        s = self.status()
        r = s and s.get("running")
        return (time.time(), r.get("step") or 0) if r and r.get("id") == self.job else None

    # ---- the load ----------------------------------------------------------------

    def schedule(self, rng, gen):
        """The drops: a list of events sorted by time (seconds from the start of the load)."""
        a = self.a
        kinds = [k for k, w in SMALL_KINDS for _ in range(w)]
        ev = []
        names = []
        for i in range(a.small):
            t = rng.uniform(0, a.duration)
            kind = rng.choice(kinds)
            b, ext, expect, ms, maybe = gen.make(kind)
            name = "f%06d.%s" % (i, ext)
            how = rng.choices(["rename-out", "rename-dot", "slow"], [60, 30, 10])[0]
            ev.append({"t": t, "name": name, "kind": kind, "bytes": b, "expect": expect, "markers": ms,
                       "maybe": maybe, "how": how})
            names.append((name, b, expect, ms, maybe, kind))
        # duplicates: the same bytes under another name, the same name again (same or new bytes)
        for i in range(max(1, a.small // 50)):
            name, b, expect, ms, maybe, kind = rng.choice(names)
            ev.append({"t": rng.uniform(0, a.duration), "name": "dup%05d-%s" % (i, name), "kind": "dup:" + kind,
                       "bytes": b, "expect": expect, "markers": ms, "maybe": maybe, "how": "rename-out"})
        for i in range(max(1, a.small // 50)):
            k = rng.randrange(len(names))
            name, b, expect, ms, maybe, kind = names[k]
            if rng.random() < 0.5:
                kind2 = "redrop:" + kind
            else:  # new bytes of the same kind (the name says the format)
                b, _, expect, ms, maybe = gen.make(kind)
                kind2 = "redrop-new:" + kind
            # half of them soon after the first: it may still wait, or be in the daemon's hands
            t = ev[k]["t"] + rng.uniform(0, 5) if rng.random() < 0.5 else rng.uniform(0, a.duration * 1.1)
            ev.append({"t": t, "name": name, "kind": kind2, "bytes": b,
                       "expect": expect, "markers": ms, "maybe": maybe,
                       "how": rng.choice(["rename-out", "rename-dot"])})
        for i in range(a.big):
            path = os.path.join(self.stage, "big%d.jsonl" % i)
            ms = big_file(gen, path, a.big_mb)
            ev.append({"t": rng.uniform(0, a.duration * 0.8), "name": "big%d.jsonl" % i, "kind": "big",
                       "path": path, "expect": "done", "markers": ms, "maybe": [],
                       "how": "slow" if i % 2 else "rename-out"})
        ev.sort(key=lambda e: e["t"])
        with open(os.path.join(self.work, "schedule.jsonl"), "w") as f:
            for e in ev:
                f.write(json.dumps({"t": round(e["t"], 3), "name": e["name"], "kind": e["kind"], "how": e["how"],
                                    "expect": e["expect"], "docs": len(e["markers"]), "maybe_docs": len(e["maybe"]),
                                    "bytes": len(e["bytes"]) if "bytes" in e else os.path.getsize(e["path"])})
                        + "\n")
        return ev

    def drop(self, e, rng):
        """Puts one file into the spool as the event says. Runs in the scheduler or a writer thread."""
        dest = os.path.join(self.spool, e["name"])
        data = e.get("bytes")
        if e["how"] == "slow":  # written in place, in pieces, over a few seconds
            with open(dest, "wb") as out:
                if data is None:
                    with open(e["path"], "rb") as src:
                        while True:
                            piece = src.read(1 << 20)
                            if not piece:
                                break
                            out.write(piece)
                            out.flush()
                            time.sleep(0.02)
                else:
                    cuts = sorted(rng.sample(range(len(data) + 1), min(len(data) + 1, rng.randint(3, 12))))
                    prev = 0
                    for c in cuts + [len(data)]:
                        out.write(data[prev:c])
                        out.flush()
                        prev = c
                        time.sleep(rng.uniform(0.05, 0.6))
            return
        tmp = (os.path.join(self.stage, "w-" + e["name"]) if e["how"] == "rename-out"
               else os.path.join(self.spool, "." + e["name"] + ".tmp"))
        if data is None:
            shutil.copyfile(e["path"], tmp)
        else:
            with open(tmp, "wb") as out:
                out.write(data)
        os.rename(tmp, dest)

    def load(self, ev, seed):
        rng = random.Random(seed + 1)
        t0 = time.time()
        threads = []
        self.drops = []  # (event, replaced: the earlier file of that name was still in the spool)
        taken = {}
        for e in ev:
            while time.time() - t0 < e["t"]:
                time.sleep(max(0.0, min(0.05, e["t"] - (time.time() - t0))))
            dest = os.path.join(self.spool, e["name"])
            prev = taken.get(e["name"])
            if prev is not None:
                if prev["thread"] is not None:
                    prev["thread"].join()
                # the earlier file of this name may still wait: replaced by this one (the writer's doing)
                if os.path.exists(dest):
                    prev["replaced"] = True
            e["replaced"] = False
            e["thread"] = None
            taken[e["name"]] = e
            if e["how"] == "slow":
                th = threading.Thread(target=self.drop, args=(e, random.Random(rng.random())))
                th.start()
                e["thread"] = th
                threads.append(th)
            else:
                self.drop(e, rng)
            self.drops.append(e)
        for th in threads:
            th.join()
        return time.time() - t0

    def replace_in_hands(self, gen):
        """A file renamed over while the daemon ingests it (spool otherwise idle, so it is a batch
        of its own): the new bytes must be ingested, never moved on the old file's outcome."""
        dest = os.path.join(self.spool, "inhands.jsonl")
        old = os.path.join(self.stage, "inhands-old.jsonl")
        e_old = {"t": 0, "name": "inhands.jsonl", "kind": "inhands-old", "path": old, "expect": "done",
                 "markers": big_file(gen, old, self.a.inhands_mb), "maybe": [], "how": "rename-out",
                 "replaced": True, "thread": None}
        lines, ms = gen.jsonl_lines(gen.fid(), 5)
        e_new = {"t": 0, "name": "inhands.jsonl", "kind": "inhands-new", "bytes": ("\n".join(lines) + "\n").encode(),
                 "expect": "done", "markers": ms, "maybe": [], "how": "rename-out", "replaced": False, "thread": None}
        self.drop(e_old, None)
        seen, t0 = None, time.time()
        while time.time() - t0 < 120 and os.path.exists(dest):
            s = self.status()
            sp = s and s["spool"]
            if sp and (sp.get("current") or "").startswith("inhands.jsonl"):
                seen = sp.get("phase")
                break
            time.sleep(0.02)
        self.drop(e_new, None)
        self.drops += [e_old, e_new]
        self.check(seen is not None, "a file renamed over while the daemon had it in hands (phase %s)" % seen)

    # ---- checks ------------------------------------------------------------------

    def wait_drained(self, timeout):
        t0 = time.time()
        while time.time() - t0 < timeout:
            s = self.status()
            left = [n for n in os.listdir(self.spool) if n not in ("done", "failed") and not n.startswith(".")]
            if s and s["spool"]["waiting"] == 0 and s["spool"]["current"] is None and not left:
                return True
            if self.daemon.poll() is not None:
                return False
            time.sleep(0.5)
        return False

    def verify(self):
        def sha(p):
            h = hashlib.sha1()
            with open(p, "rb") as f:
                while True:
                    b = f.read(1 << 20)
                    if not b:
                        return h.hexdigest()
                    h.update(b)

        # files, by their bytes
        want = {}  # sha -> {"done": [required, maybe], "failed": [...], "markers": [...]}
        for e in self.drops:
            s = sha(e["path"]) if "path" in e else hashlib.sha1(e["bytes"]).hexdigest()
            w = want.setdefault(s, {"done": [0, 0], "failed": [0, 0], "markers": e["markers"], "name": e["name"]})
            w[e["expect"]][1 if e["replaced"] else 0] += 1
        got = {"done": {}, "failed": {}}
        errors_missing, reasons = [], 0
        for sub in ("done", "failed"):
            d = os.path.join(self.spool, sub)
            for n in os.listdir(d) if os.path.isdir(d) else []:
                if sub == "failed" and n.endswith(".error"):
                    continue
                got[sub].setdefault(sha(os.path.join(d, n)), []).append(n)
                if sub == "failed":
                    ep = os.path.join(d, n + ".error")
                    txt = open(ep, encoding="utf-8", errors="replace").read() if os.path.exists(ep) else ""
                    if re.search(r"^reason: \S", txt, re.M):
                        reasons += 1
                    else:
                        errors_missing.append(n)
        lost, extra, wrong = [], [], []
        for s, w in want.items():
            for sub in ("done", "failed"):
                req, maybe = w[sub]
                have = len(got[sub].get(s, []))
                if have < req:
                    lost.append("%s (%s: %d of %d)" % (w["name"], sub, have, req))
                if have > req + maybe:
                    extra.append("%s (%s: %d, expected %d..%d)" % (w["name"], sub, have, req, req + maybe))
        for sub in ("done", "failed"):
            for s, ns in got[sub].items():
                if s not in want:
                    wrong.append("%s/%s" % (sub, ns[0]))
        left = [n for n in os.listdir(self.spool) if n not in ("done", "failed", ".kiln-spool.lock")]
        n_done = sum(len(v) for v in got["done"].values())
        n_failed = sum(len(v) for v in got["failed"].values())
        self.check(not lost, "no file lost: %d in done/, %d in failed/ (%s)" % (n_done, n_failed, lost[:5]))
        self.check(not extra, "no file more often than dropped (%s)" % extra[:5])
        self.check(not wrong, "nothing unknown in done/ or failed/ (%s)" % wrong[:5])
        self.check(not left, "nothing left in the spool (%s)" % left[:5])
        self.check(not errors_missing, "every failed file has a NAME.error with a reason (%d; missing: %s)"
                   % (reasons, errors_missing[:5]))
        self.figures["files"] = {"dropped": len(self.drops), "done": n_done, "failed": n_failed,
                                 "replaced_while_waiting": sum(e["replaced"] for e in self.drops)}

        # documents, by their markers
        db = sqlite3.connect("file:%s?mode=ro" % self.db, uri=True)
        count = {}
        for (t,) in db.execute("SELECT substr(text, 1, 16) FROM documents"):
            m = MARK.match(t)
            if m:
                count[m.group(0)] = count.get(m.group(0), 0) + 1
        required, maybe = set(), set()
        for e in self.drops:
            (maybe if e["replaced"] else required).update(e["markers"])
            maybe.update(e["maybe"])
        maybe -= required
        # every file in done/ (and good records of failed ones) in the store, whoever dropped it
        for sub in ("done", "failed"):
            for s in got[sub]:
                if s in want:
                    required.update(want[s]["markers"])
                    maybe.difference_update(want[s]["markers"])
        missing = [m for m in required if count.get(m, 0) == 0]
        twice = [m for m, c in count.items() if c > 1]
        unknown = [m for m in count if m not in required and m not in maybe]
        self.check(not missing, "every document of a valid file stored: %d expected, %d missing (%s)"
                   % (len(required), len(missing), sorted(missing)[:5]))
        self.check(not twice, "no document stored twice (%s)" % twice[:5])
        self.check(not unknown, "no unexpected document (%s)" % unknown[:5])
        self.figures["documents"] = {"expected": len(required), "maybe": len(maybe),
                                     "maybe_stored": sum(1 for m in maybe if m in count),
                                     "stored_with_marker": len(count)}
        q = lambda sql: db.execute(sql).fetchone()[0]
        self.check(q("PRAGMA integrity_check") == "ok", "PRAGMA integrity_check ok")
        self.check(q("SELECT (SELECT count(*) FROM documents) = (SELECT coalesce(sum(documents), 0) FROM sources)"),
                   "sum(sources.documents) = count(documents)")
        self.check(q("SELECT count(*) FROM sources WHERE status = 'running'") == 0, "no source left running")
        self.check(q("SELECT (SELECT count(*) FROM documents) = (SELECT count(*) FROM doc_tokens WHERE vocab_id = "
                     "(SELECT id FROM vocabularies WHERE active = 1))"), "every document tokenized")
        self.check(q("SELECT docs = (SELECT count(*) FROM doc_tokens WHERE vocab_id = v.vocab_id) FROM "
                     "vocab_progress v WHERE vocab_id = (SELECT id FROM vocabularies WHERE active = 1)") in (1, None),
                   "vocab_progress.docs = doc_tokens rows")
        self.figures["store"] = {"documents": q("SELECT count(*) FROM documents"),
                                 "sources": q("SELECT count(*) FROM sources"),
                                 "mb": round(os.path.getsize(self.db) / 1e6, 1)}
        db.close()
        return got

    # ---- the whole run ------------------------------------------------------------

    def main(self):
        a = self.a
        t_start = time.time()
        rng = random.Random(a.seed)
        log("setup in", self.work)
        self.setup()
        chunks, head, pages = load_pool()
        gen = Gen(rng, chunks, head, pages)
        ev = self.schedule(rng, gen)
        in_bytes = sum(len(e["bytes"]) if "bytes" in e else os.path.getsize(e["path"]) for e in ev)
        log("%d drops, %.1f MB, over %d s (schedule.jsonl)" % (len(ev), in_bytes / 1e6, a.duration))
        self.start_daemon()
        self.stop_rss = False
        rss = threading.Thread(target=self.rss_sampler)
        rss.start()
        p = self.run("run", "submit", "--json", "--config", os.path.join(self.work, "train.json"), "--name", "soak")
        self.job = json.loads(p.stdout)["id"]
        # steps/s without load
        for _ in range(1200):
            s0 = self.steps_at()
            if s0 and s0[1] >= 5:
                break
            time.sleep(0.1)
        else:
            raise SystemExit("the training job does not start")
        time.sleep(a.baseline)
        s1 = self.steps_at()
        base = (s1[1] - s0[1]) / (s1[0] - s0[0])
        log("training without load: %.2f steps/s" % base)
        # the status / run list loop, in another process
        self.loop = loop = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--status-loop", "--kiln", self.kiln,
                                 "--work", self.work], env=self.env, stdout=subprocess.PIPE, text=True)
        l0 = self.steps_at()
        load_secs = self.load(ev, a.seed)
        log("all %d files dropped in %.0f s; waiting for the daemon" % (len(ev), load_secs))
        t_last = time.time()
        drained = self.wait_drained(a.drain_timeout)
        l1 = self.steps_at()
        drain = time.time() - l0[0]
        drain_after = time.time() - t_last
        self.check(drained, "the spool drained (%.0f s after the first drop)" % drain)
        self.replace_in_hands(gen)
        self.check(self.wait_drained(300), "the spool drained after the replaced file")
        loaded = (l1[1] - l0[1]) / (l1[0] - l0[0]) if l1 else 0
        self.check(l1 is not None and l1[1] > l0[1], "training went on during the load (steps %d -> %s)"
                   % (l0[1], l1 and l1[1]))
        l1b = self.steps_at()
        time.sleep(a.baseline)
        l2 = self.steps_at()
        after = (l2[1] - l1b[1]) / (l2[0] - l1b[0]) if l1b and l2 else 0
        os.kill(loop.pid, signal.SIGTERM)
        out, _ = loop.communicate()
        st = json.loads(out.strip().splitlines()[-1])
        self.check(st["calls"] > 0 and st["bad"] == 0, "status / run list answers: %d calls, %d bad (%s)"
                   % (st["calls"], st["bad"], st["first_bad"]))
        s = self.status()
        counters = (s["spool"]["done"], s["spool"]["failed"]) if s else None
        self.run("run", "cancel", str(self.job), "--wait", "120")
        self.daemon.send_signal(signal.SIGTERM)
        rc = self.daemon.wait(120)
        self.stop_rss = True
        rss.join()
        self.check(rc == 0, "the daemon exits 0 on SIGTERM (%s)" % rc)
        got = self.verify()
        nd = sum(len(v) for v in got["done"].values())
        nf = sum(len(v) for v in got["failed"].values())
        self.check(counters == (nd, nf), "the daemon's counters equal the folders (%s, %s)" % (counters, (nd, nf)))
        peak = self.hwm // 1024
        self.check(peak <= a.rss_limit_mb, "peak RSS %d MB <= %d MB" % (peak, a.rss_limit_mb))
        self.figures.update({
            "seed": a.seed, "small_files": a.small, "big_files": a.big, "big_mb": a.big_mb,
            "input_mb": round(in_bytes / 1e6, 1), "drop_seconds": round(load_secs, 1),
            "drain_seconds": round(drain, 1), "drain_after_last_drop_s": round(drain_after, 1),
            "max_waiting_files": st["max_waiting"], "peak_rss_mb": peak,
            "peak_rss_sampled_mb": self.rss_peak_sampled // 1024, "rss_every_5s_mb": self.rss_series,
            "steps_per_s": {"before": round(base, 3), "during_load": round(loaded, 3), "after": round(after, 3)},
            "slowdown": round(base / loaded, 2) if loaded else None,
            "training_steps_during_load": l1[1] - l0[1] if l1 else 0,
            "status_calls": st["calls"], "status_max_latency_s": st["max_latency"],
            "wall_seconds": round(time.time() - t_start, 1)})
        json.dump(self.figures, open(os.path.join(self.work, "report.json"), "w"), indent=1)
        fig = dict(self.figures)
        fig.pop("rss_every_5s_mb")
        print("soak figures:", json.dumps(fig), flush=True)
        print("%d check(s) failed" % len(self.fail) if self.fail else "all checks passed", flush=True)
        return 1 if self.fail else 0


def status_loop(a):
    """kiln status, status --json, run list, run list --json, until SIGTERM; every answer checked."""
    env = dict(os.environ)
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    calls, bad, first_bad, worst, backlog = 0, 0, None, 0.0, 0
    cmds = [["status"], ["status", "--json"], ["run", "list"], ["run", "list", "--json"]]
    parent = os.getppid()
    while not stop and os.getppid() == parent:
        for c in cmds:
            t = time.time()
            p = subprocess.run([a.kiln] + c, env=env, capture_output=True, text=True)
            worst = max(worst, time.time() - t)
            calls += 1
            why = None
            if p.returncode:
                why = "exit %d: %s" % (p.returncode, p.stderr.strip()[-300:])
            elif "--json" in c:
                try:
                    j = json.loads(p.stdout)
                    if c[0] == "status":
                        assert j["daemon"]["pid"] > 0 and "spool" in j and "queue" in j, "fields"
                        backlog = max(backlog, j["spool"]["waiting"])
                    else:
                        assert isinstance(j if isinstance(j, list) else j.get("jobs", j), (list, dict)), "jobs"
                except Exception as e:  # noqa: BLE001 (any parse failure counts)
                    why = "bad JSON (%s): %r" % (e, p.stdout[:200])
            elif not p.stdout.strip():
                why = "empty answer"
            if why:
                bad += 1
                first_bad = first_bad or "%s: %s" % (" ".join(c), why)
    print(json.dumps({"calls": calls, "bad": bad, "first_bad": first_bad, "max_latency": round(worst, 3),
                      "max_waiting": backlog}))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kiln", required=True)
    ap.add_argument("--work", required=True, help="a folder of its own (emptied first)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--small", type=int, default=1500, help="small files")
    ap.add_argument("--big", type=int, default=2, help="big JSONL files")
    ap.add_argument("--big-mb", type=float, default=8)
    ap.add_argument("--duration", type=float, default=60, help="seconds over which files are dropped")
    ap.add_argument("--baseline", type=float, default=15, help="seconds of training measured without load")
    ap.add_argument("--drain-timeout", type=float, default=1800)
    ap.add_argument("--inhands-mb", type=float, default=6, help="the file replaced while in the daemon's hands")
    ap.add_argument("--rss-limit-mb", type=int, default=1024)
    ap.add_argument("--status-loop", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.status_loop:
        return status_loop(a)
    soak = Soak(a)
    try:
        return soak.main()
    finally:
        lp = getattr(soak, "loop", None)
        if lp is not None and lp.poll() is None:
            lp.kill()
            lp.wait()
        d = getattr(soak, "daemon", None)
        if d is not None and d.poll() is None:
            d.kill()
            d.wait()


if __name__ == "__main__":
    sys.exit(main())
