#!/usr/bin/env bash
# test_kg.sh: kiln kg on real knowledge graphs: FB15k-237 and WN18RR (TSV in
# .tar.gz, names with and without glosses), the Wikidata N-Triples sample,
# hand-made broken lines; linking on the real Wikipedia excerpt
# (incremental, relinked after new aliases); a small TransE run whose MRR
# beats random by far, deterministic for a seed and thread count.
source "$(dirname "$0")/lib.sh"
KG="$ROOT/examples/kg"

expect_exit 0 "kiln kg --help" "$KILN" kg --help
expect_exit 64 "kiln kg nonsense" "$KILN" kg nonsense

# --- FB15k-237: triples from the members of a .tar.gz, names
expect_exit 0 "import FB15k-237 with names" "$KILN" kg import --json --names "$KG/fb15k-237-entity2text.txt.gz" --relation-names "$KG/fb15k-237-relation2text.txt" "$KG/FB15k-237.tar.gz"
check "310,116 triples" [ "$(json triples)" = 310116 ]
"$KILN" kg stats --json > s.json
check "splits from member names: 272,115 / 17,535 / 20,466" [ "$(json train s.json)/$(json valid s.json)/$(json test s.json)" = "272115/17535/20466" ]
check "237 relations" [ "$(json relations s.json)" = 237 ]
check "14,951 named entities" [ "$(json entities s.json)" = 14951 ]
check "stats has aliases and mentions" [ "$(json aliases s.json)" = 14951 ] && [ "$(json mentions s.json)" = 0 ]
expect_exit 0 "re-import: no-op" "$KILN" kg import --json "$KG/FB15k-237.tar.gz"
check "re-import: 0 new triples" [ "$(json triples)" = 0 ]
grep_err "already imported" "re-import reported"
mkdir -p fb && tar xzf "$KG/FB15k-237.tar.gz" -C fb
gzip -c fb/valid.txt > valid.txt.gz; bzip2 -c fb/test.txt > test.txt.bz2
expect_exit 0 "same triples again, .gz and .bz2 with the split from the name" "$KILN" kg import --json valid.txt.gz test.txt.bz2
check "no new triple, all duplicates" [ "$(json triples)" = 0 ] && [ "$(json duplicates)" = 37999 ]
"$KILN" kg show --json /m/0154j > show.json
check "show by external id: Belgium" [ "$(json label show.json)" = Belgium ]
expect_exit 0 "show by label" "$KILN" kg show "Belgium"
check "show lists triples" grep -q "Brussels" out.txt
expect_exit 66 "show an unknown entity" "$KILN" kg show "No Such Entity Anywhere"

# --- WN18RR: glosses become descriptions
expect_exit 0 "import WN18RR with glossed names" "$KILN" kg import --json --names "$KG/wn18rr-entity2text.txt.gz" "$KG/WN18RR.tar.gz"
check "93,003 WN18RR triples" [ "$(json triples)" = 93003 ]
grep_err 'names with glosses' "gloss detection reported"
"$KILN" kg show --json 00260881 > wn.json
check "WN18RR label without the gloss" [ "$(json label wn.json)" = "land reform" ]
check "WN18RR gloss as description" grep -q '"description": "a redistribution of agricultural land' wn.json

# --- N-Triples
expect_exit 0 "import the Wikidata sample" "$KILN" kg import --json "$ROOT/tests/data/kg/wikidata-dump-head.nt"
check "Wikidata: 68 triples (IRI objects)" [ "$(json triples)" = 68 ]
check "Wikidata: the English label only" [ "$(json aliases)" = 1 ]
"$KILN" kg show --json "http://www.wikidata.org/entity/Q946" > q.json
check "Wikidata label" [ "$(json label q.json)" = "Donald Tusk" ]
printf '<http://x/a> <http://x/p> <http://x/b> .\n<http://x/a> <http://x/p> .\n# comment\n<http://x/b> <http://x/p> "lit\\q" .\n<http://x/c> <http://www.w3.org/2000/01/rdf-schema#label> "Ce"@fr .\n<http://x/c> <http://www.w3.org/2000/01/rdf-schema#label> "See"@en-GB .\n_:n1 <http://x/p> <http://x/c> .\n' > bad.nt
expect_exit 65 "N-Triples with malformed lines" "$KILN" kg import --json bad.nt
grep_err "bad.nt:2: column [0-9]+" "missing object named with file:line:column"
grep_err "bad.nt:4: column [0-9]+" "bad escape named"
check "good N-Triples lines kept (2 triples)" [ "$(json triples)" = 2 ]
check "language filter: en-GB kept, fr skipped" [ "$(json aliases)" = 1 ]
printf 'a\tr\tb\nonly\ttwo\n\na\tr\tc\r\nx\t\ty\n' > bad.tsv
expect_exit 65 "TSV with malformed lines" "$KILN" kg import --json bad.tsv
grep_err "bad.tsv:2:" "two-field line named"
grep_err "bad.tsv:5:" "empty field named"
check "good TSV lines kept" [ "$(json triples)" = 2 ]
expect_exit 66 "missing file" "$KILN" kg import nope.tsv

# --- linking on the Wikipedia excerpt
expect_exit 66 "link before tokenizing" "$KILN" kg link
"$KILN" ingest -q "$DATA/enwiki-sample.xml.bz2"
"$KILN" vocab import -q "$ROOT/examples/vocab/bert-base-uncased-vocab.txt"
"$KILN" tokenize -q
expect_exit 0 "link" "$KILN" kg link --json
cp out.txt link.json
check "link: 106 documents" [ "$(json documents link.json)" = 106 ]
check "link: thousands of mentions" [ "$(json mentions link.json)" -gt 5000 ]
check "link: hundreds of entities" [ "$(json entities link.json)" -gt 500 ]
check "some aliases dropped as too common" [ "$(json aliases_too_common link.json)" -gt 0 ]
n=$(sqlite3 "$KILN_DB" "SELECT count(*) FROM kg_mentions m JOIN kg_entities e ON e.id = m.entity_id JOIN documents d ON d.id = m.doc_id WHERE e.label = 'Anarchism' AND d.title = 'Anarchism'")
check "Anarchism linked in its own article ($n)" [ "$n" -gt 10 ]
bad=$(sqlite3 "$KILN_DB" "SELECT count(*) FROM kg_mentions WHERE tok_end <= tok_start")
check "mention spans well formed" [ "$bad" = 0 ]
expect_exit 0 "link again: nothing to do" "$KILN" kg link --json
check "incremental: 0 documents" [ "$(json documents)" = 0 ]
printf '/m/new1\tanarchist philosophy of history\n' > more.txt
expect_exit 0 "new aliases" "$KILN" kg import --names more.txt
expect_exit 0 "link after new aliases" "$KILN" kg link --json
check "relinked all 106 documents" [ "$(json documents)" = 106 ]
check "same mention count or more" [ "$(json total_mentions)" -ge "$(json total_mentions link.json)" ]

# --- TransE on a small real graph (WN18RR-sized work is for bench/transe)
mkdir -p small && head -20000 fb/train.txt > small/train.txt
awk -F'\t' 'NR==FNR { e[$1]=1; e[$3]=1; next } ($1 in e) && ($3 in e)' small/train.txt fb/valid.txt | head -1000 > small/valid.txt
awk -F'\t' 'NR==FNR { e[$1]=1; e[$3]=1; next } ($1 in e) && ($3 in e)' small/train.txt fb/test.txt | head -1000 > small/test.txt
for t in 1 2; do
  export KILN_DB="$WORK/e$t.db"
  "$KILN" kg import -q small/train.txt small/valid.txt small/test.txt
done
for db in e1 e2; do
  KILN_DB="$WORK/$db.db" "$KILN" kg embed --json --dim 64 --epochs 15 --eval-every 5 --threads 2 --seed 7 > "$db.json" || bad "embed $db"
done
export KILN_DB="$WORK/e1.db"
expect_exit 0 "eval" "$KILN" kg eval --json
mrr=$(json mrr); n=$(json triples)
check "TransE MRR $mrr on $n test triples, far above random (> 0.05; random ~ 1e-3)" $PY -c "import sys; sys.exit(0 if $mrr > 0.05 else 1)"
check "eval json fields" $PY -c "import json; d = json.load(open('out.txt')); assert all(k in d for k in ('mrr', 'hits@1', 'hits@3', 'hits@10', 'triples'))"
check "same seed and threads: identical embeddings" [ "$(sqlite3 e1.db 'SELECT hex(entities) FROM kg_embeddings' | md5sum)" = "$(sqlite3 e2.db 'SELECT hex(entities) FROM kg_embeddings' | md5sum)" ]
expect_exit 0 "show with neighbours" "$KILN" kg show /m/027rn
check "neighbours listed" grep -q "nearest in the embedding" out.txt
finish
