#!/usr/bin/env bash
# test_plot.sh: kiln plot and kiln metrics (docs/observe.md) on two real
# kiln train runs over the bundled corpus: the SVG parses as XML and holds
# the series asked for (every step of each training series as a path, the
# validation points as markers, the unigram baseline's value), axis labels
# and "nice" tick labels; --compare overlays two runs; --x tokens and time,
# --log-y; PNG and PDF have the sizes asked for; errors name the run or
# metric; kiln metrics writes every metric of a run exactly (CSV and JSON
# lines, compared with the store).
source "$(dirname "$0")/lib.sh"

if [ -n "${KILN_SANITIZE:-}" ]; then STEPS=30; EVERY=10; else STEPS=60; EVERY=20; fi
NVAL=$((STEPS / EVERY))

expect_exit 0 "kiln plot --help" "$KILN" plot --help
expect_exit 0 "kiln metrics --help" "$KILN" metrics --help
expect_exit 0 "ingest" "$KILN" ingest -q "$DATA/state_union.zip"
expect_exit 0 "ingest lines" "$KILN" ingest -q --split line "$DATA/lee_background.txt"
expect_exit 0 "vocab train 3k" "$KILN" vocab train -q --size 3000 --name v3k
expect_exit 0 "tokenize" "$KILN" tokenize -q
expect_exit 66 "plot before any run: nothing to draw" "$KILN" plot
grep_err "no run .* has metrics" "says there is no run"
cat > tiny.json <<EOF
{
  "model": {"type": "albert", "embedding_size": 32, "hidden_size": 64, "num_hidden_layers": 2,
            "num_attention_heads": 2, "intermediate_size": 128, "max_position_embeddings": 64},
  "data": {"objectives": ["ngram", "sop"], "seq_len": 48, "batch_size": 8, "valid_every": $EVERY, "valid_batches": 3},
  "optimizer": {"type": "lamb", "lr": 2e-3, "warmup_steps": 10},
  "budget": {"steps": $STEPS},
  "checkpoint": {"dir": "ckA", "every": 0, "keep": 1}
}
EOF
expect_exit 0 "run A ($STEPS steps)" "$KILN" train -q --config tiny.json --set threads=1
expect_exit 0 "run B (another seed and lr)" "$KILN" train -q --config tiny.json --set threads=1 \
    --set checkpoint.dir=ckB --set optimizer.lr=5e-3 --set data.seed=7
check "the seconds metric: every step, increasing" [ "$(sqlite3 "$KILN_DB" \
    "select count(*) from metrics a join metrics b on a.job_id = b.job_id and b.step = a.step + 1 and a.name = b.name
     where a.job_id = 1 and a.name = 'seconds' and b.value > a.value")" = $((STEPS - 1)) ]

# svgcheck FILE EXPECT_JSON: the SVG parses; <text> holds the labels; paths hold the series
cat > svgcheck.py <<'EOF'
import json, math, re, sys
import xml.etree.ElementTree as ET
path, want = sys.argv[1], json.loads(sys.argv[2])
root = ET.parse(path).getroot()
NS = "{http://www.w3.org/2000/svg}"
assert root.tag == NS + "svg", root.tag
texts = [t.text or "" for t in root.iter(NS + "text")]
for s in want.get("texts", []):
    assert s in texts, "no text %r in %s" % (s, texts)
for s in want.get("text_prefixes", []):
    assert any(t.startswith(s) for t in texts), "no text starting %r" % s
for s in want.get("absent", []):
    assert s not in texts, "unexpected text %r" % s
# a path's vertices: M and L commands (Cairo writes one path per stroke)
def counts(d):
    d = re.sub(r"Z M [-\d.]+ [-\d.]+\s*$", "Z", d)  # the current point Cairo restates after the last closed sub-path
    return len(re.findall(r"[ML]", d)), len(re.findall(r"M", d)), len(re.findall(r"C", d))
ds = [p.get("d") for p in root.iter(NS + "path") if p.get("d")]
paths = [counts(d) for d in ds]
n_lines = sum(1 for v, m, c in paths if m == 1 and c == 0 and v == want["points"])
if "min_lines" in want:  # Cairo merges collinear segments: flat stretches (accuracy 0, a schedule) lose points
    assert n_lines >= want["min_lines"], "paths of %d points: %d, expected %d or more" % (want["points"], n_lines, want["min_lines"])
else:
    assert n_lines == want["lines"], "paths of %d points: %d, expected %d" % (want["points"], n_lines, want["lines"])
# validation markers: a path of k circles (k sub-paths of curves) a series (Cairo may write
# its fill and its outline as two elements of the same geometry: counted once)
n_mark = len({d for d, (v, m, c) in zip(ds, paths) if m == want["markers"] and c >= 2 * want["markers"]})
assert n_mark == want["marker_paths"], "marker paths of %d circles: %d, expected %d" % (
    want["markers"], n_mark, want["marker_paths"])
# tick labels (when "axes" is asked: figures of one panel a column): numbers,
# each axis's evenly spaced by 1, 2 or 5 x 10^k
ticks = {}
for t in root.iter(NS + "text"):
    s = (t.text or "").strip()
    if not re.fullmatch(r"-?\d+(\.\d+)?(e-?\d+)?k?", s) or t.get("transform"):
        continue
    # y ticks share their x (one panel a column here), x ticks their y (panels of a row share the axis)
    key = (t.get("text-anchor"), t.get("x") if t.get("text-anchor") == "end" else t.get("y"))
    v = float(s[:-1]) * 1000 if s.endswith("k") else float(s)
    ticks.setdefault(key, set()).add(v)
axes = [sorted(v) for v in ticks.values() if len(v) >= 3] if "axes" in want else []
assert len(axes) >= want.get("axes", 0), "axes with 3+ numeric ticks: %d" % len(axes)
for a in axes:
    d = [round(b - x, 12) for x, b in zip(a, a[1:])]
    assert max(d) - min(d) <= 1e-9 * max(1, abs(max(d))), "uneven ticks %s" % a
    step = d[0]
    m = step / 10 ** math.floor(math.log10(step) + 1e-12)
    assert any(abs(m - k) < 1e-6 for k in (1, 2, 5)), "tick step %g is not 1, 2 or 5 x 10^k (%s)" % (step, a)
print("ok: %d texts, %d paths, %d numeric axes" % (len(texts), len(paths), len(axes)))
EOF
svg_ok() { $PY svgcheck.py "$1" "$2" >svg.txt 2>&1 || { cat svg.txt; return 1; }; }

# --- one run, two metrics: loss (with val_loss) and mlm_loss (with val_mlm_loss and the baseline)
expect_exit 0 "plot run 1: loss, mlm_loss (SVG)" "$KILN" plot --run 1 --metrics loss,mlm_loss --out a.svg --json
check "--json: two panels, what was drawn" $PY - "$STEPS" "$NVAL" <<'EOF'
import json, sys
steps, nval = int(sys.argv[1]), int(sys.argv[2])
o = json.load(open("out.txt"))
assert o["out"] == "a.svg" and o["format"] == "svg" and o["runs"] == [1], o
p = {x["metric"]: {s["metric"]: s for s in x["series"]} for x in o["panels"]}
assert list(p) == ["loss", "mlm_loss"], p.keys()
assert p["loss"]["loss"]["points"] == steps and p["loss"]["val_loss"]["points"] == nval, p["loss"]
assert p["mlm_loss"]["unigram_loss"]["style"] == "baseline" and p["mlm_loss"]["val_mlm_loss"]["style"] == "points"
EOF
U=$(sqlite3 "$KILN_DB" "select printf('%.3f', value) from metrics where job_id = 1 and name = 'unigram_loss' order by step desc limit 1")
check "SVG: XML, labels, every step of loss and mlm_loss (raw + smoothed), $NVAL validation markers, baseline $U" \
  svg_ok a.svg "{\"texts\": [\"step\", \"loss\", \"mlm_loss\", \"val_loss\", \"val_mlm_loss\", \"training loss\",
    \"masked LM loss\", \"unigram baseline ($U)\", \"run 1: ckA\"], \"absent\": [\"lr\", \"mlm_acc\"],
    \"points\": $STEPS, \"lines\": 4, \"markers\": $NVAL, \"marker_paths\": 2, \"axes\": 3}"
check "SVG: size in points" grep -q 'width="[0-9]*pt" height="[0-9]*pt"' a.svg

# --- every metric by default, the newest run, the default file name
expect_exit 0 "plot with no run: the newest" "$KILN" plot
check "default name run-2.svg" test -s run-2.svg
check "default panels: the usual metrics, not tokens or seconds" svg_ok run-2.svg \
  "{\"texts\": [\"training loss\", \"masked LM loss\", \"masked LM accuracy\", \"sentence-order loss\",
    \"sentence-order accuracy\", \"learning rate\", \"gradient norm\", \"throughput (tokens/s)\"],
    \"absent\": [\"tokens trained on\", \"training time (s)\"], \"points\": $STEPS, \"min_lines\": 4,
    \"markers\": $NVAL, \"marker_paths\": 5}"

# --- two runs on the same axes
expect_exit 0 "--compare 1,2" "$KILN" plot --compare 1,2 --metrics mlm_loss --out c.svg
check "compare: both runs' series, labelled" svg_ok c.svg \
  "{\"texts\": [\"run 1: mlm_loss\", \"run 2: mlm_loss\", \"run 1: val_mlm_loss\", \"run 2: val_mlm_loss\", \"runs 1, 2\"],
    \"text_prefixes\": [\"run 1: unigram baseline (\", \"run 2: unigram baseline (\"],
    \"points\": $STEPS, \"lines\": 4, \"markers\": $NVAL, \"marker_paths\": 2}"
expect_exit 0 "--run 2 --compare 1: run 2 first" "$KILN" plot --run 2 --compare 1 --metrics loss --out c2.svg --json
check "--run with --compare" [ "$(json runs)" = "[2, 1]" ]

# --- x axes, log scale, validation only
expect_exit 0 "--x tokens" "$KILN" plot --run 1 --metrics loss --x tokens --out xt.svg
check "x axis: tokens" svg_ok xt.svg "{\"texts\": [\"tokens\"], \"absent\": [\"step\"], \"points\": $STEPS, \"lines\": 2, \"axes\": 2,
    \"markers\": $NVAL, \"marker_paths\": 1}"
expect_exit 0 "--x time" "$KILN" plot --run 1 --metrics loss --x time --out xs.svg
check "x axis: time (s)" svg_ok xs.svg "{\"texts\": [\"time (s)\"], \"points\": $STEPS, \"lines\": 2, \"axes\": 2,
    \"markers\": $NVAL, \"marker_paths\": 1}"
expect_exit 0 "--log-y on" "$KILN" plot --run 1 --metrics loss --log-y on --out lg.svg
check "log scale: the y label says so" svg_ok lg.svg "{\"texts\": [\"loss (log)\"], \"points\": $STEPS, \"lines\": 2, \"axes\": 2,
    \"markers\": $NVAL, \"marker_paths\": 1}"
expect_exit 0 "--metrics val_mlm_loss alone" "$KILN" plot --run 1 --metrics val_mlm_loss --out v.svg
check "validation only: markers and baseline, no training line" svg_ok v.svg \
  "{\"texts\": [\"val_mlm_loss\"], \"text_prefixes\": [\"unigram baseline (\"], \"points\": $STEPS, \"lines\": 0,
    \"markers\": $NVAL, \"marker_paths\": 1}"
expect_exit 0 "--smooth 0: raw lines only" "$KILN" plot --run 1 --metrics loss --smooth 0 --out raw.svg
check "raw only: one line a series" svg_ok raw.svg "{\"points\": $STEPS, \"lines\": 1, \"markers\": $NVAL, \"marker_paths\": 1}"

# --- PNG and PDF sizes
pngsize() { $PY -c 'import struct,sys; d=open(sys.argv[1],"rb").read(24); assert d[:8]==b"\x89PNG\r\n\x1a\n", d[:8]; print("%dx%d" % struct.unpack(">II", d[16:24]))' "$1"; }
expect_exit 0 "PNG 800x500" "$KILN" plot --run 1 --out a.png --size 800x500
check "PNG: 800 x 500 pixels ($(pngsize a.png))" [ "$(pngsize a.png)" = 800x500 ]
expect_exit 0 "PNG --scale 2" "$KILN" plot --run 1 --metrics loss --out a2.png --size 640x360 --scale 2
check "PNG at scale 2: 1280 x 720 ($(pngsize a2.png))" [ "$(pngsize a2.png)" = 1280x720 ]
expect_exit 0 "PDF 600x400" "$KILN" plot --run 1 --out a.pdf --size 600x400
check "PDF: a PDF of one 600 x 400 pt page" $PY - <<'EOF'
import re
d = open("a.pdf", "rb").read()
assert d.startswith(b"%PDF-"), d[:8]
boxes = re.findall(rb"/MediaBox\s*\[\s*0 0 ([\d.]+) ([\d.]+)\s*\]", d)
assert boxes and all(float(w) == 600 and float(h) == 400 for w, h in boxes), boxes
assert len(re.findall(rb"/Type\s*/Page\b", d)) == 1
EOF

# --- errors
expect_exit 66 "no such run" "$KILN" plot --run 99
grep_err "no run 99" "names the run"
expect_exit 66 "no such metric" "$KILN" plot --run 1 --metrics loss,nope
grep_err "no metric 'nope'.*has: " "names the metric and lists the run's"
expect_exit 64 "a format kiln cannot write" "$KILN" plot --run 1 --out a.gif
grep_err "\.svg, \.png or \.pdf" "says which"
expect_exit 64 "--x must be step, tokens or time" "$KILN" plot --run 1 --x epoch
expect_exit 64 "a size too small" "$KILN" plot --run 1 --size 10x10
expect_exit 73 "a folder that does not exist" "$KILN" plot --run 1 --out nodir/a.svg
grep_err "nodir/a.svg" "names the file"
check "no temporary file left" [ -z "$(ls nodir* *.tmp-* 2>/dev/null)" ]

# --- kiln metrics: every metric, exactly
expect_exit 0 "metrics --run 1 (CSV)" "$KILN" metrics --run 1
cp out.txt m.csv
check "CSV: a row a step, a column a metric, the stored values exactly" $PY - "$KILN_DB" "$STEPS" "$EVERY" <<'EOF'
import csv, sqlite3, sys
db, steps, every = sqlite3.connect(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
rows = list(csv.reader(open("m.csv")))
head, body = rows[0], rows[1:]
names = [r[0] for r in db.execute("select distinct name from metrics where job_id = 1")]
assert head[0] == "step" and sorted(head[1:]) == sorted(names), head
assert head[1:5] == ["loss", "val_loss", "mlm_loss", "val_mlm_loss"], head[:5]
assert [int(r[0]) for r in body] == list(range(1, steps + 1)), [r[0] for r in body][:5]
want = {(s, n): v for s, n, v in db.execute("select step, name, value from metrics where job_id = 1")}
got = 0
for r in body:
    for n, cell in zip(head[1:], r[1:]):
        k = (int(r[0]), n)
        if k in want:
            assert cell != "" and float(cell) == want[k], (k, cell, want[k])
            got += 1
        else:
            assert cell == "", (k, cell)
assert got == len(want), (got, len(want))
assert all(r[head.index("val_loss")] == "" for r in body if int(r[0]) % every), "val_loss only at validations"
EOF
expect_exit 0 "metrics --format jsonl" "$KILN" metrics --run 1 --format jsonl
check "JSON lines: an object a step, the stored values exactly" $PY - "$KILN_DB" "$STEPS" "$EVERY" <<'EOF'
import json, sqlite3, sys
db, steps, every = sqlite3.connect(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
lines = [json.loads(l) for l in open("out.txt")]
assert len(lines) == steps and all(o["run"] == 1 for o in lines), len(lines)
want = {(s, n): v for s, n, v in db.execute("select step, name, value from metrics where job_id = 1")}
n = 0
for o in lines:
    for k, v in o.items():
        if k in ("run", "step"):
            continue
        assert want[(o["step"], k)] == v, (o["step"], k, v)
        n += 1
assert n == len(want)
assert "val_mlm_loss" in lines[every - 1] and "val_mlm_loss" not in lines[0]
EOF
expect_exit 0 "metrics --job 2 --metrics loss,lr --json" "$KILN" metrics --job 2 --metrics loss,lr --json
check "only the metrics asked" $PY -c 'import json; o=[json.loads(l) for l in open("out.txt")]; assert set(o[0]) == {"run","step","loss","lr"} and o[0]["run"] == 2, o[0]'
expect_exit 0 "metrics --out FILE" "$KILN" metrics --run 1 --out m2.csv
check "--out: the same bytes as standard output" cmp m.csv m2.csv
expect_exit 66 "metrics: no such run" "$KILN" metrics --run 99
expect_exit 66 "metrics: no such metric" "$KILN" metrics --run 1 --metrics nope
expect_exit 64 "metrics: a bad format" "$KILN" metrics --run 1 --format xml
finish
