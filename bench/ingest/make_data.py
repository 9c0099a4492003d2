#!/usr/bin/python3
"""make_data.py: builds the ingest benchmark inputs (>= 100 MB each, uncompressed)
from the bundled real data in examples/data, every replica made distinct (a copy
number in each document) so that deduplication does not skip the work:

  text.txt     one document a line (news articles and speech paragraphs)
  docs.jsonl   {"id", "title", "text"} a line (the same documents)
  wiki.xml     a MediaWiki export: the sample dump's article pages, replicated

Usage: make_data.py EXAMPLES_DATA_DIR OUT_DIR [MB]"""
import bz2, io, json, os, re, sys, zipfile

src, out = sys.argv[1], sys.argv[2]
target = int(sys.argv[3]) * 1000 * 1000 if len(sys.argv) > 3 else 100 * 1000 * 1000
os.makedirs(out, exist_ok=True)

docs = []
for line in open(os.path.join(src, "lee_background.txt"), encoding="utf-8", errors="replace"):
    if line.strip():
        docs.append(line.strip())
with zipfile.ZipFile(os.path.join(src, "state_union.zip")) as z:
    for name in sorted(z.namelist()):
        if name.endswith(".txt"):
            text = z.read(name).decode("utf-8", errors="replace")
            for para in re.split(r"\n\s*\n", text):
                para = " ".join(para.split())
                if len(para) > 40:
                    docs.append(para)

def replicas():
    copy = 0
    while True:
        for i, d in enumerate(docs):
            yield copy, i, f"Copy {copy}. {d}"
        copy += 1

with open(os.path.join(out, "text.txt"), "w", encoding="utf-8") as f:
    n = 0
    for copy, i, d in replicas():
        n += f.write(d + "\n")
        if n >= target:
            break
with open(os.path.join(out, "docs.jsonl"), "w", encoding="utf-8") as f:
    n = 0
    for copy, i, d in replicas():
        n += len(d)
        f.write(json.dumps({"id": f"{copy}-{i}", "title": f"doc {copy}-{i}", "text": d}) + "\n")
        if n >= target:
            break

xml = bz2.open(os.path.join(src, "enwiki-sample.xml.bz2"), "rt", encoding="utf-8").read()
head = xml[: xml.index("<page>")]
pages = re.findall(r"  <page>.*?</page>\n", xml, flags=re.S)
pages = [p for p in pages if "<redirect" not in p and "<ns>0</ns>" in p]
with open(os.path.join(out, "wiki.xml"), "w", encoding="utf-8") as f:
    f.write(head)
    n, copy = 0, 0
    while n < target:
        for p in pages:
            p = re.sub(r"<title>(.*?)</title>", lambda m: f"<title>{m.group(1)} (copy {copy})</title>", p, count=1)
            p = p.replace('<text xml:space="preserve">', f'<text xml:space="preserve">Copy {copy}. ', 1)
            n += f.write(p)
        copy += 1
    f.write("</mediawiki>\n")
