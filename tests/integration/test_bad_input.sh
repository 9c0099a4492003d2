#!/usr/bin/env bash
# test_bad_input.sh: a generated corpus of bad input, each case checked for
# its message (file, entry, line or offset), exit code (sysexits.h), what is
# kept, and a store that stays consistent: truncated archives and dumps,
# corrupt entries, malformed JSON, hostile sizes, missing paths, symlink
# loops, foreign and newer store files.
source "$(dirname "$0")/lib.sh"

# --- missing and odd paths
expect_exit 66 "missing path" "$KILN" ingest no-such-file.txt
grep_err "no-such-file.txt: No such file" "missing path named"
printf 'Good text stays.\n' > good.txt
expect_exit 66 "missing path among good ones: the rest is ingested" "$KILN" ingest good.txt nope.txt
check "good file ingested despite the missing one" [ "$(stats documents)" = 1 ]
: > empty.txt
expect_exit 0 "empty file" "$KILN" ingest empty.txt
grep_err "empty.txt: empty file" "empty file named"
mkdir -p loop/d && ln -s .. loop/d/up && printf 'Inside the loop dir.\n' > loop/d/x.txt
expect_exit 0 "directory with a symlink loop" "$KILN" ingest loop
grep_err "directory loop" "loop reported"
check "file inside looping dir ingested once" [ "$(stats documents)" = 2 ]
ln -s dangling-target broken-link
expect_exit 66 "broken symlink" "$KILN" ingest broken-link
grep_err "broken-link" "broken link named"
if [ "$(id -u)" != 0 ]; then
  printf 'secret\n' > unreadable.txt && chmod 000 unreadable.txt
  expect_exit 66 "unreadable file" "$KILN" ingest unreadable.txt
fi

# --- truncated compressed dump: complete pages kept, source partial, 65
bzcat "$DATA/enwiki-sample.xml.bz2" > wiki.xml
size=$(stat -c %s "$DATA/enwiki-sample.xml.bz2")
head -c $((size / 2)) "$DATA/enwiki-sample.xml.bz2" > cut.xml.bz2
expect_exit 65 "truncated bz2 dump" "$KILN" ingest --json cut.xml.bz2
cp out.txt cut.json
n=$(json documents cut.json)
check "truncated bz2: complete pages kept ($n)" [ "$n" -gt 20 ] && [ "$n" -lt 106 ]
"$KILN" sources --json | tail -1 > src.json
check "truncated bz2: source partial" [ "$(json status src.json)" = partial ]
grep_err "cut.xml.bz2" "truncation message names the file"
check "integrity ok after truncation" integrity
expect_exit 0 "truncated file ingested again: no-op" "$KILN" ingest cut.xml.bz2
grep_err "already ingested" "partial source not re-read"

# XML cut mid-page, uncompressed: pages before the cut kept
head -c 3000000 wiki.xml > cutpage.xml
expect_exit 65 "XML cut mid-page" "$KILN" ingest --json cutpage.xml
grep_err "cutpage.xml: XML error at line [0-9]+" "XML error names file and line"
check "XML cut: documents before the cut kept (new or already stored)" [ $(( $(json documents) + $(json duplicates) )) -gt 40 ]

# truncated tar.gz: entries before the cut kept
mkdir -p t && for i in $(seq 1 40); do head -c 20000 /dev/urandom | base64 -w 76 | sed "s/^/Doc $i line. /" > t/f$i.txt; done
tar czf t.tar.gz t
head -c $(( $(stat -c %s t.tar.gz) * 2 / 3 )) t.tar.gz > tcut.tar.gz
expect_exit 65 "truncated tar.gz" "$KILN" ingest --json tcut.tar.gz
n=$(json documents)
check "truncated tar.gz: earlier entries kept ($n)" [ "$n" -gt 10 ] && [ "$n" -lt 40 ]

# --- zip with a corrupt entry: others ingested, message names archive + entry
mkdir -p z && for i in 1 2 3; do head -c 30000 /dev/urandom | base64 -w 76 | sed "s/^/Zip $i text. /" > z/e$i.txt; done
(cd z && zip -q ../z.zip e1.txt e2.txt e3.txt)
$PY - z.zip <<'PY'
import sys, zipfile
p = sys.argv[1]
zf = zipfile.ZipFile(p); info = zf.getinfo("e2.txt"); zf.close()
data = bytearray(open(p, "rb").read())
start = info.header_offset + 30 + len(info.filename) + len(info.extra)
for i in range(start + 100, start + 400): data[i] ^= 0x5A
open(p, "wb").write(data)
PY
expect_exit 65 "zip with a corrupt entry" "$KILN" ingest --json z.zip
grep_err "z.zip:e2.txt" "corrupt entry named archive:entry"
grep_err "offset" "corrupt entry message has an offset"
check "zip: the other two entries stored" [ "$(json documents)" = 2 ]

# --- JSONL: malformed lines skipped with file:line
printf '{"text": "Line one is fine."}\n{"text": broken\n[1, 2]\n{"title": "no text"}\n{"text": "Line five is fine."}\n' > j.jsonl
expect_exit 65 "JSONL with malformed lines" "$KILN" ingest --json j.jsonl
grep_err "j.jsonl:2: malformed JSON" "malformed line named with file:line"
grep_err "j.jsonl:3: .*a JSON line must be an object" "non-object line named"
grep_err 'j.jsonl:4: no string field "text"' "missing field named"
check "JSONL: 2 good lines stored" [ "$(json documents)" = 2 ]
check "JSONL: 3 errors counted" [ "$(json errors)" = 3 ]
"$KILN" sources --json | tail -1 > src.json
check "JSONL: source complete with an error summary" [ "$(json status src.json)" = complete ]
grep -q "3 malformed record" src.json && ok "error summary stored" || bad "error summary stored"
printf '{"body": "Other field."}\n' > o.jsonl
expect_exit 0 "--text-field" "$KILN" ingest --text-field body --json o.jsonl
check "--text-field: the body field stored" [ "$(json documents)" = 1 ]

# --- hostile sizes
$PY -c 'print("{\"text\": \"" + "x" * 2000000 + "\"}"); print("{\"text\": \"Short line after the long one.\"}")' > long.jsonl
expect_exit 65 "line over --max-line-bytes" "$KILN" ingest --json --max-line-bytes 1M long.jsonl
grep_err "long.jsonl:1: line longer than --max-line-bytes" "long line named"
check "line after the long one kept" [ "$(json documents)" = 1 ]
head -c 3000000 /dev/zero | tr '\0' 'w' > bigdoc.txt
expect_exit 65 "document over --max-doc-bytes" "$KILN" ingest --max-doc-bytes 1M bigdoc.txt
grep_err "bigdoc.txt:1: document longer than --max-doc-bytes" "long document named"
$PY -c 'print("a" * 5000000)' > hugeword.txt
expect_exit 0 "a 5 MB word" "$KILN" ingest --json hugeword.txt
check "huge word stored as one sentence" [ "$(json sentences)" = 1 ]
# decompression bomb: 100 MB of one letter gzip to ~100 kB
head -c 100000000 /dev/zero | tr '\0' 'a' | gzip -9 > bomb.txt.gz
expect_exit 65 "decompression bomb" "$KILN" ingest --max-ratio 100 bomb.txt.gz
grep_err "bomb.txt.gz: expands more than --max-ratio" "bomb named"
"$KILN" sources --json | tail -1 > src.json
check "bomb: source partial" [ "$(json status src.json)" = partial ]
expect_exit 65 "entry over --max-entry-size" "$KILN" ingest --max-entry-size 10k t.tar.gz
grep_err "larger than --max-entry-size" "entry size limit named"

# --- hostile XML
printf '<?xml version="1.0"?>\n<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;"><!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;"><!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;"><!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;"><!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;"><!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;"><!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;"><!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">]>\n<mediawiki><page><title>Bomb</title><ns>0</ns><id>1</id><revision><text>&lol9;</text></revision></page></mediawiki>\n' > lol.xml
timeout 60 "$KILN" ingest lol.xml > out.txt 2> err.txt; rc=$?
check "billion laughs: refused, no hang, no crash (exit $rc)" [ "$rc" = 65 ]
$PY -c 'print("<mediawiki><page><title>Deep</title><ns>0</ns><id>2</id><revision><text>" + "{{" * 200000 + "[[" * 200000 + "</text></revision></page></mediawiki>")' > deep.xml
expect_exit 0 "deeply nested wikitext" "$KILN" ingest deep.xml
printf '<mediawiki><page><title>Bad &amp; <ns>0</ns></page>\x01 junk &undefined; <<' > junk.xml
expect_exit 65 "malformed XML" "$KILN" ingest junk.xml
grep_err "junk.xml: XML error" "malformed XML named"
head -c 200000 /dev/urandom > random.bin
expect_exit 0 "binary file" "$KILN" ingest random.bin
grep_err "binary data, skipped" "binary file reported"
cp "$DATA/state_union.zip" notreally.txt.gz
expect_exit 0 "misnamed file: detected by content" "$KILN" ingest --json notreally.txt.gz
check "misnamed zip still read (66 entries, duplicates none)" [ "$(json documents)" = 66 ]

# --- store files that are not ours
printf 'this is not a database, just text padding it out to more than one page\n%.0s' $(seq 1 100) > notadb.db
expect_exit 65 "a text file as the store" "$KILN" --db notadb.db stats
grep_err "not a kiln store" "non-SQLite file refused"
sqlite3 foreign.db 'CREATE TABLE t(x); INSERT INTO t VALUES (1);'
sum1=$(md5sum < foreign.db)
expect_exit 65 "a foreign SQLite file" "$KILN" --db foreign.db ingest good.txt
grep_err "not a kiln store" "foreign file refused"
check "foreign file untouched" [ "$(md5sum < foreign.db)" = "$sum1" ]
cp t.db newer.db && sqlite3 newer.db 'PRAGMA user_version = 999'
expect_exit 65 "a newer kiln store" "$KILN" --db newer.db stats
grep_err "newer than this kiln" "newer store refused"
expect_exit 65 "a directory as the store" "$KILN" --db loop stats

check "integrity ok after all of it" integrity
check "no half-written rows: every source's documents counted" [ "$(sqlite3 t.db 'SELECT (SELECT count(*) FROM documents) = (SELECT sum(documents) FROM sources)')" = 1 ]
finish
