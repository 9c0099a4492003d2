#!/usr/bin/env bash
# test_tokenize.sh: the vocabulary and tokenization commands on real data:
# vocab import/export/list/use, kiln tokenize (incremental, kill -9 safe,
# deterministic across thread counts), kiln encode/decode framing, and
# kiln vocab train (deterministic, usable, a low [UNK] rate).
source "$(dirname "$0")/lib.sh"
VOC="$ROOT/examples/vocab"

for c in vocab tokenize encode decode; do
  expect_exit 0 "kiln $c --help" "$KILN" "$c" --help
done
expect_exit 66 "tokenize with no vocabulary" "$KILN" tokenize
expect_exit 0 "ingest the sample corpus" "$KILN" ingest -q "$DATA/enwiki-sample.xml.bz2" "$DATA/state_union.zip"
expect_exit 66 "tokenize with no vocabulary yet" "$KILN" tokenize
grep_err "no active vocabulary" "says how to get one"

# --- import, list, use, export
expect_exit 0 "import uncased" "$KILN" vocab import "$VOC/bert-base-uncased-vocab.txt"
expect_exit 0 "import cased" "$KILN" vocab import --cased --name cased "$VOC/bert-base-cased-vocab.txt"
expect_exit 0 "re-import: no-op" "$KILN" vocab import "$VOC/bert-base-uncased-vocab.txt"
grep_err "already imported" "re-import reported"
expect_exit 65 "import a different file under a taken name" "$KILN" vocab import --name cased "$VOC/bert-base-uncased-vocab.txt"
printf 'a\nb\n' > nounk.txt
expect_exit 65 "import a vocabulary without [UNK]" "$KILN" vocab import nounk.txt
grep_err "no \[UNK\]" "missing [UNK] named"
expect_exit 66 "import a missing file" "$KILN" vocab import nope.txt
"$KILN" vocab list --json > list.json
check "two vocabularies listed" [ "$(wc -l < list.json)" = 2 ]
check "the first import is active" grep -q '"name": "bert-base-uncased-vocab", "size": 30522, "cased": false, "active": true' list.json
expect_exit 0 "export" "$KILN" vocab export out.txt
check "export == import, byte for byte" cmp -s out.txt "$VOC/bert-base-uncased-vocab.txt"
expect_exit 66 "use an unknown vocabulary" "$KILN" vocab use nope

# --- encode / decode framing
printf 'Hello, World!\n\nunaffable\n' > in.txt
"$KILN" encode < in.txt > ids.txt
check "encode: one line per input line" [ "$(wc -l < ids.txt)" = 3 ]
check "encode: ids" [ "$(sed -n 1p ids.txt)" = "7592 1010 2088 999" ]
check "encode: empty line stays empty" [ -z "$(sed -n 2p ids.txt)" ]
check "encode --tokens" [ "$("$KILN" encode --tokens unaffable)" = "una ##ffa ##ble" ]
check "encode TEXT words joined" [ "$("$KILN" encode Hello World)" = "7592 2088" ]
check "encode --vocab cased" [ "$("$KILN" encode --tokens --vocab cased Héllo)" = "H ##é ##llo" ]
check "encode --vocab-file" [ "$("$KILN" encode --tokens --vocab-file "$VOC/bert-base-cased-vocab.txt" --cased Héllo)" = "H ##é ##llo" ]
check "decode ids" [ "$("$KILN" decode 7592 1010 2088 999)" = "hello, world!" ]
check "decode lines" [ "$("$KILN" decode < ids.txt | head -1)" = "hello, world!" ]
expect_exit 65 "decode a bad id" "$KILN" decode 7592 99999999
head -c 300000 /dev/urandom > rnd.bin
"$KILN" encode < rnd.bin > rnd.out; rc=$?
check "encode random bytes: exit 0, line count kept" [ "$rc" = 0 ] && [ "$(wc -l < rnd.out)" = "$(tr -cd '\n' < rnd.bin | wc -c)" ] || [ "$(wc -l < rnd.out)" = "$(( $(tr -cd '\n' < rnd.bin | wc -c) + 1 ))" ]
for t in 1 2; do "$KILN" encode --threads $t < "$ROOT/examples/data/lee_background.txt" > "lee$t.ids"; done
check "encode: same output with 1 and 2 threads" cmp -s lee1.ids lee2.ids
check "encode: 300 lines in, 300 out" [ "$(wc -l < lee1.ids)" = 300 ]

# --- tokenize: incremental and deterministic
expect_exit 0 "tokenize" "$KILN" tokenize --json
check "tokenize: 172 documents" [ "$(json documents)" = 172 ]
check "tokenize: [UNK] rare (< 0.5%)" [ "$($PY -c "import json; d=json.load(open('out.txt')); print(int(d['unk'] * 1000 < d['tokens'] * 5))")" = 1 ]
expect_exit 0 "tokenize again: nothing to do" "$KILN" tokenize --json
check "tokenize again: 0 documents" [ "$(json documents)" = 0 ]
expect_exit 0 "ingest more" "$KILN" ingest --json --split line "$DATA/lee_background.txt"
new=$(json documents)
expect_exit 0 "tokenize the new documents" "$KILN" tokenize --json
check "tokenize: only the $new new ones" [ "$(json documents)" = "$new" ]
dump() { sqlite3 "$1" "SELECT doc_id, layout, n_tokens, hex(tokens), hex(sent_ends), hex(word_starts) FROM doc_tokens WHERE vocab_id = ${2:-1} ORDER BY doc_id"; }
cp "$KILN_DB" a.db; rm -f a.db-wal a.db-shm
sqlite3 a.db 'DELETE FROM doc_tokens'
"$KILN" --db a.db tokenize -q --threads 1
check "1 thread and 2 threads store the same blobs" [ "$(dump a.db | md5sum)" = "$(dump "$KILN_DB" | md5sum)" ]
$PY - "$KILN_DB" > blobs.txt <<'PY'
import sqlite3, struct, sys
db = sqlite3.connect(sys.argv[1])
bad = 0
for doc, n, toks, ends, ws, nsent in db.execute("SELECT t.doc_id, t.n_tokens, t.tokens, t.sent_ends, t.word_starts, d.n_sentences FROM doc_tokens t JOIN documents d ON d.id = t.doc_id WHERE vocab_id = 1"):
    ids = struct.unpack("<%dH" % n, toks)
    e = struct.unpack("<%dI" % (len(ends) // 4), ends)
    if len(e) != nsent or (e and e[-1] != n) or list(e) != sorted(e) or len(ws) != (n + 7) // 8:
        bad += 1
    if n and not ws[0] & 1:
        bad += 1
print(bad)
PY
check "blob layouts: sentence ends and word starts consistent" [ "$(cat blobs.txt)" = 0 ]
$PY - "$KILN_DB" <<'PY'
import sqlite3, struct, sys
db = sqlite3.connect(sys.argv[1])
with open("sent.txt", "w") as st, open("sent.ids", "w") as si:
    for doc, text, dends, n, toks, tends in db.execute("SELECT d.id, d.text, d.sent_ends, t.n_tokens, t.tokens, t.sent_ends FROM documents d JOIN doc_tokens t ON t.doc_id = d.id AND t.vocab_id = 1 WHERE d.id % 7 = 1"):
        raw = text.encode()
        de = struct.unpack("<%dI" % (len(dends) // 4), dends)
        te = struct.unpack("<%dI" % (len(tends) // 4), tends)
        ids = struct.unpack("<%dH" % n, toks)
        b = t = 0
        for i in range(len(de)):
            st.write(raw[b:de[i]].decode() + "\n")
            si.write(" ".join(map(str, ids[t:te[i]])) + "\n")
            b, t = de[i] + 1, te[i]
PY
"$KILN" encode < sent.txt > sent.enc
check "stored tokens of every sentence equal kiln encode of its text ($(wc -l < sent.txt) sentences)" cmp -s sent.ids sent.enc

# --- kill -9 during tokenize: resumes, same result
cp "$KILN_DB" k.db; rm -f k.db-wal k.db-shm
sqlite3 k.db 'DELETE FROM doc_tokens'
for i in 1 2 3; do
  "$KILN" --db k.db tokenize -q --threads 1 & pid=$!
  sleep 0.0$((RANDOM % 9 + 1)); kill -9 $pid 2>/dev/null; wait $pid 2>/dev/null
  check "kill $i: integrity ok" [ "$(sqlite3 k.db 'PRAGMA integrity_check')" = ok ]
done
"$KILN" --db k.db tokenize -q
check "after kills: same blobs as an uninterrupted run" [ "$(dump k.db | md5sum)" = "$(dump "$KILN_DB" | md5sum)" ]

# --- vocab train
expect_exit 0 "vocab train" "$KILN" vocab train --size 8000 --name t1 --threads 2 --json
check "trained: 8000 pieces" [ "$(json size)" = 8000 ]
expect_exit 0 "vocab train, 1 thread" "$KILN" vocab train --size 8000 --name t2 --threads 1
"$KILN" vocab export --name t1 t1.txt; "$KILN" vocab export --name t2 t2.txt
check "training is deterministic across thread counts" cmp -s t1.txt t2.txt
check "specials first" [ "$(head -5 t1.txt | tr '\n' ' ')" = "[PAD] [UNK] [CLS] [SEP] [MASK] " ]
check "continuation pieces present" grep -q '^##' t1.txt
check "pieces unique" [ "$(sort t1.txt | uniq -d | wc -l)" = 0 ]
expect_exit 0 "use the trained vocabulary" "$KILN" vocab use t1
expect_exit 0 "tokenize with it" "$KILN" tokenize --json
check "trained vocabulary: [UNK] rare (< 0.5%)" [ "$($PY -c "import json; d=json.load(open('out.txt')); print(int(d['unk'] * 1000 < d['tokens'] * 5))")" = 1 ]
expect_exit 64 "train without --size" "$KILN" vocab train
finish
