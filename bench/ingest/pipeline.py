#!/usr/bin/python3
"""pipeline.py: the reference for bench/ingest: a straightforward Python ingest
pipeline doing the same work as kiln ingest (read, extract text, NFKC with
unicodedata, split sentences with a regex, hash for deduplication, insert into
SQLite in one transaction). Wikitext is stripped with a few regexes only, much
less than kiln's converter does, so the comparison flatters Python.

Usage: pipeline.py FORMAT INPUT DB   (FORMAT: text | jsonl | mediawiki)
Prints: seconds and MB/s of uncompressed input."""
import hashlib, json, re, sqlite3, sys, time, unicodedata
import xml.etree.ElementTree as ET

fmt, path, dbpath = sys.argv[1:4]
SENT = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(])")
WIKI = [(re.compile(r"\{\{[^{}]*\}\}"), ""), (re.compile(r"<ref[^>]*/>"), ""),
        (re.compile(r"<ref.*?</ref>", re.S), ""), (re.compile(r"\[\[(?:[^|\]]*\|)?([^\]]*)\]\]"), r"\1"),
        (re.compile(r"'{2,}"), ""), (re.compile(r"<[^>]+>"), "")]

def docs():
    if fmt == "text":
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                yield None, line
    elif fmt == "jsonl":
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                d = json.loads(line)
                yield d.get("title"), d["text"]
    else:
        ns = ""
        for ev, el in ET.iterparse(path, events=("end",)):
            tag = el.tag.rsplit("}", 1)[-1]
            if tag == "page":
                title = el.findtext("{*}title") or el.findtext("title")
                text = el.findtext("{*}revision/{*}text") or el.findtext("revision/text") or ""
                for rx, rep in WIKI:
                    text = rx.sub(rep, text)
                el.clear()
                yield title, text

t0 = time.time()
db = sqlite3.connect(dbpath)
db.execute("PRAGMA journal_mode=WAL")
db.execute("CREATE TABLE IF NOT EXISTS documents(id INTEGER PRIMARY KEY, title TEXT, hash BLOB UNIQUE, text TEXT, n INTEGER)")
db.execute("BEGIN")
for title, text in docs():
    text = unicodedata.normalize("NFKC", text)
    sents = []
    for para in re.split(r"\n\s*\n", text):
        para = " ".join(para.split())
        if para:
            sents.extend(SENT.split(para))
    if not sents:
        continue
    body = "\n".join(sents)
    h = hashlib.blake2b(body.encode(), digest_size=16).digest()
    db.execute("INSERT OR IGNORE INTO documents(title, hash, text, n) VALUES (?, ?, ?, ?)", (title, h, body, len(sents)))
db.commit()
db.close()
secs = time.time() - t0
import os
mb = os.path.getsize(path) / 1e6
print(f"{secs:.3f} {mb / secs:.2f}")
