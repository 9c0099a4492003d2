#!/usr/bin/python3
"""drive.py: the daemon side of bench/daemon/run. Starts `kiln daemon` on a
store, drops files into its spool by rename (as writers do), waits until the
spool is idle and every dropped file is in done/ or failed/, and prints JSON.

  drive.py KILN DB SPOOL CONFIG LOG phases.json
      phases.json: a list of phases, each
        {"name": ..., "drop": [paths], "batch": true}   drop all at once, wait
        {"name": ..., "drop": [paths], "batch": false}  one file at a time
        {"name": ..., "grow_to_gb": G, "grow": [paths]} drop growth files one by
                                                        one until the store holds G GB
  Prints one JSON object per phase: name, files, seconds, per_file_ms (wall
  clock), cpu_per_file_ms (the daemon's user + system CPU time: less
  sensitive to other load on the machine), ingest_s, tokenize_s, link_s (the
  daemon's own account of its batches, from its log), store_gb (before and after),
  rss_mb (the daemon's VmHWM so far); failed files are counted. The dropped files are moved (the spool takes them); done/
  is emptied after each phase to keep the disk small."""
import json, os, re, shutil, signal, subprocess, sys, time

kiln, db, spool, config, log = sys.argv[1:6]
phases = json.load(open(sys.argv[6]))
os.makedirs(spool, exist_ok=True)


def store_gb():
    n = 0
    for suffix in ("", "-wal"):
        try:
            n += os.path.getsize(db + suffix)
        except OSError:
            pass
    return n / 1e9


def rss_mb(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def cpu_s(pid):
    """User + system CPU seconds of the process (all its threads) so far."""
    f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")


def steps_since(offset):
    """Seconds of ingest, tokenize and link of the batches logged after offset."""
    t = [0.0, 0.0, 0.0]
    with open(log, errors="replace") as f:
        f.seek(offset)
        for m in re.finditer(r"ingest ([0-9.]+) s, tokenize ([0-9.]+) s, link ([0-9.]+) s", f.read()):
            for i in range(3):
                t[i] += float(m.group(i + 1))
    return t


def count(sub):
    try:
        return sum(1 for n in os.listdir(os.path.join(spool, sub)) if not n.endswith(".error"))
    except FileNotFoundError:
        return 0


def wait_out(base, n, proc):
    """Until n files more than base are in done/ or failed/ (a file leaves
    the spool only when it is finished: ingested, tokenized, linked). Polls
    every 2 ms at first, then less often (at most every 50 ms: a thousandth
    of the time waited so far), so that listing done/ takes no CPU from the
    daemon in a long wait."""
    t0 = time.time()
    while True:
        if proc.poll() is not None:
            sys.exit(f"the daemon exited ({proc.returncode}); see {log}")
        if count("done") + count("failed") >= base + n:
            return
        time.sleep(min(0.05, max(0.002, (time.time() - t0) / 1000)))


def drop(path):
    name = os.path.basename(path)
    shutil.move(path, os.path.join(spool, name))


with open(log, "a") as lf:
    proc = subprocess.Popen([kiln, "--db", db, "daemon", "--spool", spool, "--config", config],
                            stdout=lf, stderr=lf)
try:
    for _ in range(600):  # ready when it answers
        if subprocess.run([kiln, "--db", db, "status"], stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL).returncode == 0:
            break
        time.sleep(0.05)
    for ph in phases:
        base_failed = count("failed")
        base = count("done") + base_failed
        gb0 = store_gb()
        c0 = cpu_s(proc.pid)
        l0 = os.path.getsize(log)
        t0 = time.time()
        files = 0
        if "grow_to_gb" in ph:
            for p in ph["grow"]:
                if store_gb() >= ph["grow_to_gb"]:
                    break
                if not os.path.exists(p):
                    continue  # dropped by an earlier phase
                drop(p)
                files += 1
                wait_out(base, files, proc)
        elif ph.get("batch", True):
            for p in ph["drop"]:
                drop(p)
            files = len(ph["drop"])
            wait_out(base, files, proc)
        else:
            for p in ph["drop"]:
                drop(p)
                files += 1
                wait_out(base, files, proc)
        secs = time.time() - t0
        cpu = cpu_s(proc.pid) - c0
        ti, tt, tl = steps_since(l0)
        failed = count("failed") - base_failed
        print(json.dumps({"name": ph["name"], "files": files, "failed": failed, "seconds": round(secs, 3),
                          "per_file_ms": round(1000 * secs / max(files, 1), 1),
                          "cpu_per_file_ms": round(1000 * cpu / max(files, 1), 1),
                          "ingest_s": round(ti, 2), "tokenize_s": round(tt, 2), "link_s": round(tl, 2),
                          "store_gb_before": round(gb0, 3), "store_gb": round(store_gb(), 3),
                          "rss_mb": round(rss_mb(proc.pid), 1)}), flush=True)
        shutil.rmtree(os.path.join(spool, "done"), ignore_errors=True)
        os.makedirs(os.path.join(spool, "done"), exist_ok=True)
finally:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=120)
    except subprocess.TimeoutExpired:
        proc.kill()
