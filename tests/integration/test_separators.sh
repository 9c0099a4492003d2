#!/usr/bin/env bash
# test_separators.sh: Unicode line separators inside records (issue #18). A
# web text often holds raw U+2028 LINE SEPARATOR (bytes E2 80 A8), U+2029 or
# NEL (C2 85): legal inside a JSON string, and not a line end in any of
# kiln's line-based formats, where only "\n" (with a CR before it) ends a
# line. Each reader gets real-looking data: C4 / Common-Crawl-style JSONL
# lines made of real news sentences (plain, CRLF, gzip, one over a 1 MiB
# read-block boundary), plain text with --split line / blank-line, a KG
# names file, TSV triples and N-Triples, a vocab.txt. (The labelled datasets
# of kiln finetune: tests/unit/test_dataset.c, test_unicode_separators.)
source "$(dirname "$0")/lib.sh"
LS=$'\xe2\x80\xa8' PS=$'\xe2\x80\xa9' NEL=$'\xc2\x85'

# --- JSONL: a C4-style extract; line 2 holds raw U+2028 (twice), U+2029 and
# NEL inside its text, line 3 ends in CRLF, line 4 is malformed on purpose
# (so that the line numbers after the separators are checked), line 5 good.
$PY - "$DATA/lee_background.txt" c4.jsonl <<'EOF'
import json, sys
arts = [l.strip() for l in open(sys.argv[1], encoding="utf-8") if l.strip()]
def sents(a, k): return [s.strip() + "." for s in a.split(". ") if len(s) > 20][:k]
def rec(i, text): return json.dumps({"text": text, "timestamp": "2019-04-25T12:57:54Z",
                                     "url": f"https://www.abc.net.au/news/{1000 + i}"}, ensure_ascii=False)
a, b, c, d = (sents(arts[i], 4) for i in (3, 7, 11, 19))
with open(sys.argv[2], "w", encoding="utf-8", newline="") as f:
    f.write(rec(1, " ".join(a)) + "\n")
    f.write(rec(2, b[0] + "\u2028" + b[1] + "\u2028" + b[2] + "\u2029" + b[3] + "\u0085(ABC)") + "\n")
    f.write(rec(3, " ".join(c)) + "\r\n")
    f.write('{"text": "an unterminated record\n')
    f.write(rec(5, " ".join(d)) + "\n")
EOF
check "the JSONL holds raw E2 80 A8 bytes" grep -q "$LS" c4.jsonl
check "the JSONL has 5 lines" [ "$(wc -l < c4.jsonl)" = 5 ]
expect_exit 65 "JSONL with raw U+2028: exit 65 for the one malformed line" "$KILN" ingest --json c4.jsonl
check "4 documents stored" [ "$(json documents)" = 4 ]
check "exactly 1 malformed line (not 4)" [ "$(json errors)" = 1 ]
grep_err "c4.jsonl:4: malformed JSON" "the malformed line keeps its number (4)"
check "no other line reported" [ "$(grep -c 'malformed' err.txt)" = 1 ]
"$KILN" docs dump --jsonl > dump.jsonl
$PY - dump.jsonl "$DATA/lee_background.txt" <<'EOF' && ok "the U+2028 record is one document, its text whole and cleaned" || bad "the U+2028 record is one document, its text whole and cleaned"
import json, sys
docs = [json.loads(l) for l in open(sys.argv[1])]
arts = [l.strip() for l in open(sys.argv[2], encoding="utf-8") if l.strip()]
b = [s.strip() + "." for s in arts[7].split(". ") if len(s) > 20][:4]
two = [d for d in docs if d["sentences"] and d["sentences"][0].startswith(b[0][:30])]
assert len(two) == 1, two
text = " ".join(two[0]["sentences"])
assert all(s in text for s in b), (text, b)
assert not any(ch in text for ch in "\u2028\u2029\u0085\n"), repr(text)
assert text.endswith("(ABC)"), text
EOF
check "the url of the U+2028 record is kept" [ "$(sqlite3 "$KILN_DB" "select count(*) from documents where url = 'https://www.abc.net.au/news/1002'")" = 1 ]

# the same bytes gzipped (libarchive's filter hands them over in other blocks)
gzip -c c4.jsonl > c4b.jsonl.gz
"$KILN" --db gz.db ingest --json c4b.jsonl.gz >out.txt 2>err.txt
check "gzip: 4 documents, 1 malformed" [ "$(json documents)/$(json errors)" = 4/1 ]

# a lone CR in JSONL is white space between tokens, not a line end: line 2
# holds two objects (malformed, one error), line 3 is line 3
printf '{"text": "A carriage return between tokens is white space."\r}\n{"text": "one"}\r{"text": "two"}\n{"text": "The third line is still line three."}\n' > cr.jsonl
"$KILN" --db cr.db ingest --json cr.jsonl >out.txt 2>err.txt
check "lone CR: 2 documents, 1 malformed line" [ "$(json documents)/$(json errors)" = 2/1 ]
grep_err "cr.jsonl:2: malformed JSON" "lone CR: the malformed line is line 2"

# a U+2028 straddling the 1 MiB read block, and a CR LF over it
$PY - big.jsonl <<'EOF'
import json, sys
out = bytearray()
i = 0
def line(i, pad):
    return (json.dumps({"id": i, "text": f"Record {i} of the big file. " + "word " * pad + "\u2028and after the separator."}, ensure_ascii=False) + "\n").encode()
while len(out) < (1 << 20) - 4000:
    out += line(i, 200); i += 1
# the next line's separator lands on byte 1 MiB (its E2 just before)
probe = line(i, 0)
pos = probe.index("\u2028".encode())
pad = ((1 << 20) - 1 - len(out) - pos) // 5
l = line(i, pad)
out += l[:-1] + b"\r\n"; i += 1
while len(out) < (1 << 20) + 200000:
    out += line(i, 200); i += 1
open(sys.argv[1], "wb").write(bytes(out))
print(i, file=open("big.count", "w"))
EOF
"$KILN" --db big.db ingest --json big.jsonl >out.txt 2>err.txt; rc=$?
check "1 MiB boundary: exit 0 ($rc)" [ "$rc" = 0 ]
check "1 MiB boundary: every line a document ($(cat big.count))" [ "$(json documents)" = "$(cat big.count)" ]
check "1 MiB boundary: no malformed line" [ "$(json errors)" = 0 ]

# --- plain text, a document a line and a document per blank-line block
{
  printf 'The first news story begins here.%sIt goes on after a line separator.\n' "$LS"
  printf 'A second story has a paragraph separator%sinside, and a NEL%shere.\r\n' "$PS" "$NEL"
  printf 'A third story, plain.\n'
} > lines.txt
"$KILN" --db lines.db ingest --json --split line lines.txt >out.txt 2>err.txt
check "--split line: 3 documents for 3 lines" [ "$(json documents)" = 3 ]
check "--split line: the separator is a space inside the document" \
  [ "$(sqlite3 lines.db "select count(*) from documents where text like 'The first news story begins here.%It goes on after a line separator.' and text not like '%$LS%'")" = 1 ]
printf 'First sentence of one%sdocument.\nIts second sentence.\n\nAnother document%swith one sentence.\n' "$LS" "$LS" > blank.txt
"$KILN" --db blank.db ingest --json --split blank-line blank.txt >out.txt 2>err.txt
check "--split blank-line: 2 documents, 3 sentences (a line is a sentence)" [ "$(json documents)/$(json sentences)" = 2/3 ]
# a document per file: U+2028 is a soft line break in the text, as '\n' is
"$KILN" --db doc.db ingest --json lines.txt >out.txt 2>err.txt
check "a document per file: 1 document, the separators white space in it" \
  [ "$(json documents)/$(sqlite3 doc.db "select count(*) from documents where text like '%a paragraph separator inside, and a NEL here.%' and text not like '%$LS%'")" = 1/1 ]

# --- knowledge graphs: a names file, TSV triples, N-Triples
printf '/m/0kiln1\tKiln%sWorks Ltd\n/m/0kiln2\tPottery Barn\n/m/0kiln3\tGlaze%sLab\n' "$LS" "$NEL" > names.txt
printf '/m/0kiln1\t/business/industry\t/m/0kiln2\n/m/0kiln2\t/location/in\t/m/0kiln3%sannex\n/m/0kiln3\t/location/in\t/m/0kiln1\n' "$LS" > triples.tsv
expect_exit 0 "KG: TSV triples with a U+2028 inside a field" "$KILN" --db kg.db kg import --json --names names.txt triples.tsv
check "KG: 3 triples, no bad line" [ "$(json triples)/$(json bad_lines)" = 3/0 ]
"$KILN" --db kg.db kg show --json /m/0kiln1 > show.json
check "KG names: the whole name is the label" [ "$(json label show.json)" = "Kiln${LS}Works Ltd" ]
check "KG names: its alias is normalized (the separator a space)" \
  [ "$(sqlite3 kg.db "select alias from kg_aliases a join kg_entities e on e.id = a.entity_id where e.ext_id = '/m/0kiln1'")" = "Kiln Works Ltd" ]
check "KG names: 3 entities named" [ "$("$KILN" --db kg.db kg stats --json | $PY -c 'import json,sys; print(json.load(sys.stdin)["aliases"])')" = 3 ]
printf '<http://www.wikidata.org/entity/Q31> <http://www.w3.org/2000/01/rdf-schema#label> "Kingdom of%sBelgium"@en .\n<http://www.wikidata.org/entity/Q31> <http://www.wikidata.org/prop/direct/P36> <http://www.wikidata.org/entity/Q239> .\n' "$LS" > q.nt
expect_exit 0 "N-Triples: a literal with a raw U+2028" "$KILN" --db nt.db kg import --json q.nt
check "N-Triples: 1 triple, 1 label" [ "$(json triples)/$(json aliases)" = 1/1 ]

# --- a vocab.txt with a piece holding a U+2028: one piece, one line
cp "$ROOT/examples/vocab/bert-base-uncased-vocab.txt" v.txt
printf 'web%stext\n' "$LS" >> v.txt
n=$(wc -l < v.txt)
expect_exit 0 "vocab import" "$KILN" --db v.db vocab import --json v.txt
"$KILN" --db v.db vocab list --json > vl.json
check "vocab: $n pieces (the U+2028 does not split its line)" [ "$(json size vl.json)" = "$n" ]
expect_exit 0 "vocab export" "$KILN" --db v.db vocab export v2.txt
check "vocab: exported byte for byte" cmp -s v.txt v2.txt

finish
