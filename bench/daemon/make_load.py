#!/usr/bin/python3
"""make_load.py: the spool load of bench/daemon/run, made from the real data
in /work/shared/data (see its PROVENANCE.md: WikiText-2, Tiny Shakespeare,
State of the Union addresses, ABC news articles), every document distinct
(a numbered first sentence) so that deduplication does not skip the work.

  make_load.py DATA OUT load TEXT_FILES TEXT_KB JSONL_FILES JSONL_MB
      OUT/text-NNNN.txt   TEXT_FILES plain text files of ~TEXT_KB KB (one
                          document each: paragraphs separated by blank lines)
      OUT/web-N.jsonl     JSONL_FILES files of ~JSONL_MB MB, one document of
                          1 to 8 paragraphs a line: {"id", "url", "text"}
  make_load.py DATA OUT grow NAME MB
      OUT/NAME.jsonl      one JSONL file of ~MB MB (to grow a store)
  make_load.py DATA OUT probe TAG N KB
      OUT/TAG-NNN.txt     N plain text files of ~KB KB (a probe of the daemon)

Deterministic: the same arguments give the same bytes."""
import io, json, os, random, re, sys, zipfile

data, out, what = sys.argv[1], sys.argv[2], sys.argv[3]
os.makedirs(out, exist_ok=True)

paras = []
for name in ("wikitext-2-valid.tokens", "wikitext-2-test.tokens"):
    for p in open(os.path.join(data, "text", name), encoding="utf-8"):
        p = p.strip()
        if len(p) > 200 and not p.startswith("="):
            paras.append(p)
for line in open(os.path.join(data, "text", "lee_background.cor"), encoding="utf-8", errors="replace"):
    if len(line.strip()) > 200:
        paras.append(line.strip())
with zipfile.ZipFile(os.path.join(data, "text", "state_union.zip")) as z:
    for name in sorted(z.namelist()):
        if name.endswith(".txt"):
            text = z.read(name).decode("utf-8", errors="replace")
            for p in re.split(r"\n\s*\n", text):
                p = " ".join(p.split())
                if len(p) > 200:
                    paras.append(p)
shake = open(os.path.join(data, "text", "tinyshakespeare.txt"), encoding="utf-8").read()
for p in re.split(r"\n\s*\n", shake):
    p = " ".join(p.split())
    if len(p) > 200:
        paras.append(p)


def document(rng, tag, nbytes):
    parts, n = [f"{tag}."], 0
    while n < nbytes:
        p = rng.choice(paras)
        parts.append(p)
        n += len(p) + 2
    return parts


if what == "load":
    ntext, text_kb, njsonl, jsonl_mb = (int(x) for x in sys.argv[4:8])
    for i in range(ntext):
        rng = random.Random(1000003 * i + 7)
        parts = document(rng, f"Spool text file number {i} of the daemon benchmark", text_kb * 1000)
        with open(os.path.join(out, f"text-{i:04d}.txt"), "w", encoding="utf-8") as f:
            f.write("\n\n".join(parts) + "\n")
    for j in range(njsonl):
        rng = random.Random(7919 * j + 1)
        with open(os.path.join(out, f"web-{j}.jsonl"), "w", encoding="utf-8") as f:
            n, k = 0, 0
            while n < jsonl_mb * 1000 * 1000:
                parts = document(rng, f"Web page {k} of crawl file {j}", rng.randint(1, 8) * 600)
                line = json.dumps({"id": f"{j}-{k}", "url": f"https://example.org/{j}/{k}",
                                   "text": "\n\n".join(parts)}, ensure_ascii=False) + "\n"
                n += f.write(line)
                k += 1
elif what == "grow":
    name, mb = sys.argv[4], int(sys.argv[5])
    rng = random.Random(sum(map(ord, name)) * 1000003)
    with open(os.path.join(out, f"{name}.jsonl"), "w", encoding="utf-8") as f:
        n, k = 0, 0
        while n < mb * 1000 * 1000:
            parts = document(rng, f"Growth page {k} of {name}", rng.randint(1, 8) * 600)
            n += f.write(json.dumps({"id": f"{name}-{k}", "text": "\n\n".join(parts)}, ensure_ascii=False) + "\n")
            k += 1
elif what == "probe":
    tag, n, kb = sys.argv[4], int(sys.argv[5]), int(sys.argv[6])
    for i in range(n):
        rng = random.Random(sum(map(ord, tag)) * 7919 + i)
        parts = document(rng, f"Probe file {i} of {tag}", kb * 1000)
        with open(os.path.join(out, f"{tag}-{i:03d}.txt"), "w", encoding="utf-8") as f:
            f.write("\n\n".join(parts) + "\n")
else:
    sys.exit("usage: make_load.py DATA OUT load|grow|probe ...")
