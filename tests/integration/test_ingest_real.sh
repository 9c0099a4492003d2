#!/usr/bin/env bash
# test_ingest_real.sh: kiln ingest on the bundled real data (Wikipedia XML in
# bz2, a zip of speeches, one-article-a-line news) and on archives and
# encodings made from it: counts, markup left, deduplication, re-ingest,
# determinism across thread counts, formats and compressions.
source "$(dirname "$0")/lib.sh"

# --- the command line itself
expect_exit 0 "kiln --version" "$KILN" --version
grep -q "^kiln [0-9]" out.txt && ok "version printed" || bad "version printed"
for c in init ingest stats sources docs; do
  expect_exit 0 "kiln $c --help" "$KILN" "$c" --help
  grep -q "usage: kiln $c" out.txt && ok "$c help text" || bad "$c help text"
done
expect_exit 64 "unknown command" "$KILN" frobnicate
expect_exit 64 "unknown option" "$KILN" ingest --no-such-option x
expect_exit 64 "ingest without paths" "$KILN" ingest
expect_exit 66 "stats without a store" "$KILN" stats
grep_err "no store at" "missing store named"
expect_exit 0 "kiln init" "$KILN" init
expect_exit 0 "kiln init again (idempotent)" "$KILN" init

# --- the real data
expect_exit 0 "ingest wiki + zip" "$KILN" ingest --json "$DATA/enwiki-sample.xml.bz2" "$DATA/enwiki-table-markup.xml.bz2" "$DATA/state_union.zip"
cp out.txt ingest1.json
check "summary: 3 files" [ "$(json files ingest1.json)" = 3 ]
check "summary: 111 wiki articles + 66 zip entries" [ "$(json documents ingest1.json)" = 177 ]
check "summary: 100 redirects skipped" [ "$(json skipped ingest1.json)" = 100 ]
check "stats: 177 documents" [ "$(stats documents)" = 177 ]
check "stats: 3 sources complete" [ "$(stats status.complete)" = 3 ]
check "stats: sentences counted" [ "$(stats sentences)" -gt 30000 ]
check "integrity_check ok" integrity

"$KILN" docs dump --jsonl > docs.jsonl
check "docs dump: 177 lines" [ "$(wc -l < docs.jsonl)" = 177 ]
$PY - docs.jsonl > check.txt <<'PY'
import json, sys, re
docs = [json.loads(l) for l in open(sys.argv[1])]
by_title = {d["title"]: d for d in docs}
out = []
a = by_title.get("Anarchism")
out.append("anarchism-first=%s" % (a["sentences"][0][:60] if a else None))
text = "\n".join(s for d in docs[:111] for s in d["sentences"])
for pat in ["{{", "}}", "[[", "]]", "<ref", "{|", "|}", "'''", "thumb|", "&nbsp;", "<!--"]:
    out.append("left[%s]=%d" % (pat, text.count(pat)))
out.append("keys=%s" % ",".join(sorted(docs[0].keys())))
out.append("truman=%s" % any(d["title"] == "1945-Truman" for d in docs))
out.append("empty=%d" % sum(1 for d in docs for s in d["sentences"] if not s.strip() or s != s.strip() or "  " in s))
print("\n".join(out))
PY
cat check.txt
check "Anarchism's first sentence" grep -q "^anarchism-first=Anarchism is a political philosophy" check.txt
for pat in '{{' '}}' '[[' ']]' '<ref' '{|' "'''" 'thumb|' '&nbsp;' '<!--'; do
  n=$(grep -F "left[$pat]=" check.txt | cut -d= -f2)
  check "no '$pat' left in the wiki text ($n)" [ "${n:-1}" -le 2 ]
done
check "dump keys" grep -q "^keys=id,sentences,source,title$" check.txt
check "zip entries titled by file name" grep -q "^truman=True" check.txt
check "sentences trimmed, no double spaces, none empty" grep -q "^empty=0$" check.txt

# --- re-ingest: a no-op
expect_exit 0 "re-ingest the same files" "$KILN" ingest "$DATA/enwiki-sample.xml.bz2" "$DATA/state_union.zip"
grep_err "already ingested" "re-ingest reported as such"
check "re-ingest: still 177 documents" [ "$(stats documents)" = 177 ]
check "re-ingest: still 3 sources" [ "$(stats sources)" = 3 ]
cp "$DATA/enwiki-sample.xml.bz2" renamed.bz2
expect_exit 0 "same bytes under another name" "$KILN" ingest renamed.bz2
grep_err "already ingested" "identified by content, not name"

# --- same documents in other containers: deduplicated by content
bzcat "$DATA/enwiki-sample.xml.bz2" > wiki.xml
xz -k -T1 wiki.xml
expect_exit 0 "same XML as .xz" "$KILN" ingest --json wiki.xml.xz
check "xz copy: 0 new documents" [ "$(json documents)" = 0 ]
check "xz copy: 106 duplicates" [ "$(json duplicates)" = 106 ]
check "stats: 4 sources" [ "$(stats sources)" = 4 ]

# --- other compressions and archive formats
mkdir -p tree/sub
printf 'First document. It has two sentences.\n' > tree/a.txt
printf '{"id": 7, "title": "J1", "url": "http://x/1", "text": "JSON one. Second sentence."}\n{"id": "k2", "text": "JSON two."}\n\n{"text": "JSON three."}\n' > tree/sub/b.jsonl
printf 'Zstd text file, unique.\n' > z.txt && zstd -q z.txt -o z.txt.zst
printf 'LZ4 text file, unique.\n' > l.txt && lz4 -q l.txt l.txt.lz4
printf 'Gzip text file, unique.\n' > g.txt && gzip -k g.txt
(cd tree && tar czf ../tree.tar.gz a.txt sub)
(cd tree && zip -qr ../tree.zip a.txt sub) 
printf 'Seven zip text, unique.\n' > s.txt && 7z a -bd -bso0 s.7z s.txt
printf 'Cpio text, unique.\n' > c.txt && echo c.txt | cpio -o --quiet > c.cpio
expect_exit 0 "tar.gz with text + JSONL" "$KILN" ingest --json tree.tar.gz
check "tar.gz: 1 + 3 documents" [ "$(json documents)" = 4 ]
"$KILN" sources --json | tail -1 > src.json
check "tar.gz: format mixed" [ "$(json format src.json)" = mixed ]
expect_exit 0 "zip of the same tree" "$KILN" ingest --json tree.zip
check "zip: all 4 are duplicates" [ "$(json duplicates)" = 4 ]
expect_exit 0 "zst lz4 gz 7z cpio" "$KILN" ingest --json z.txt.zst l.txt.lz4 g.txt.gz s.7z c.cpio
check "zst/lz4/gz/7z/cpio: 5 documents" [ "$(json documents)" = 5 ]
"$KILN" docs dump --jsonl > all.jsonl
check "JSONL title kept" grep -q '"title": "J1"' all.jsonl
check "compressed file titled without suffix" grep -q '"title": "z"' all.jsonl

# --- encodings
$PY -c 'open("u16le.txt","wb").write("\ufeffUTF-16 café naïve. 😀 Zweiter Satz.\n".encode("utf-16-le"))'
$PY -c 'open("u16be.txt","wb").write("\ufeffBig endian text here.\n".encode("utf-16-be"))'
printf 'Bad \xff\xfe bytes and \xc3 here. Café naïve déjà Ü vu. Control\x01 char.\n' > badutf8.txt
printf 'Only \xff\xfe bad \xc3 bytes.\n' > forced.txt
expect_exit 0 "UTF-16 LE/BE and invalid UTF-8" "$KILN" ingest --json u16le.txt u16be.txt badutf8.txt
check "invalid UTF-8 counted" [ "$(json invalid_utf8)" = 3 ]
expect_exit 0 "--encoding utf-8 forces UTF-8" "$KILN" ingest --json --encoding utf-8 forced.txt
check "forced UTF-8: invalid counted" [ "$(json invalid_utf8)" = 3 ]
"$KILN" docs dump --jsonl > enc.jsonl
check "UTF-16 LE decoded" grep -q 'UTF-16 café naïve.' enc.jsonl
check "UTF-16 BE decoded" grep -q 'Big endian text here.' enc.jsonl
check "invalid bytes became U+FFFD, control dropped" grep -q 'Bad �� bytes and � here.", "Café naïve déjà Ü vu.", "Control char.' enc.jsonl
check "forced UTF-8 file" grep -q 'Only �� bad � bytes.' enc.jsonl

# --- legacy encodings: detected when the text is mostly not UTF-8, or forced
$PY - <<'PY'
open("l1.txt","wb").write("Café crème brûlée. Ça va très bien, naïve façade. Über große Straße.\n".encode("latin-1"))
open("sjis.txt","wb").write("日本語のテキストです。これは二番目の文です。東京は日本の首都です。\n".encode("shift_jis"))
open("gb.txt","wb").write("这是一个中文文本。北京是中国的首都。我们喜欢学习语言。\n".encode("gb18030"))
open("cyr.txt","wb").write("Это русский текст. Москва является столицей России. Мы любим читать книги.\n".encode("cp1251"))
open("l2.txt","wb").write("Zażółć gęślą jaźń, to jest polski tekst.\n".encode("iso-8859-2"))
PY
expect_exit 0 "Latin-1, Shift_JIS, GB18030, windows-1251" "$KILN" ingest --json l1.txt sjis.txt gb.txt cyr.txt
check "legacy files: 12 sentences" [ "$(json sentences)" = 12 ]
grep_err "sjis.txt: not UTF-8, decoded as Shift_JIS" "detected charset reported"
expect_exit 0 "--encoding ISO-8859-2" "$KILN" ingest --encoding ISO-8859-2 l2.txt
expect_exit 64 "--encoding unknown" "$KILN" ingest --encoding no-such-charset l2.txt
"$KILN" docs dump > legacy.txt
check "Latin-1 decoded" grep -q "^Café crème brûlée.$" legacy.txt
check "Shift_JIS decoded" grep -q "^東京は日本の首都です。$" legacy.txt
check "GB18030 decoded" grep -q "^北京是中国的首都。$" legacy.txt
check "windows-1251 decoded" grep -q "^Москва является столицей России.$" legacy.txt
check "ISO-8859-2 forced" grep -q "^Zażółć gęślą jaźń, to jest polski tekst.$" legacy.txt

# --- split modes
printf 'Sentence one of doc one.\nSentence two of doc one.\n\nDoc two only line.\n\n\n' > bl.txt
expect_exit 0 "--split blank-line" "$KILN" ingest --json --split blank-line bl.txt
check "blank-line: 2 documents" [ "$(json documents)" = 2 ]
check "blank-line: 3 sentences" [ "$(json sentences)" = 3 ]
head -50 "$DATA/lee_background.txt" > lee50.txt
expect_exit 0 "--split line" "$KILN" ingest --json --split line lee50.txt
check "line: 50 documents" [ "$(json documents)" = 50 ]

# --- determinism: 1 thread and 2 threads store the same bytes
for t in 1 2; do
  "$KILN" --db "d$t.db" ingest -q --threads $t "$DATA/enwiki-sample.xml.bz2" "$DATA/state_union.zip"
  "$KILN" --db "d$t.db" docs dump --jsonl > "dump$t.jsonl"
done
check "threads 1 and 2: identical documents and ids" cmp -s dump1.jsonl dump2.jsonl
check "docs dump text layout: blank line between documents" [ "$("$KILN" --db d1.db docs dump | grep -c '^$')" -ge 172 ]

finish
