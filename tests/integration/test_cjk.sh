#!/usr/bin/env bash
# test_cjk.sh: Korean and Japanese through the whole tokenizer path (issue
# #20), on the bundled UDHR excerpts (examples/data/udhr-{ko,ja}.txt):
#  - sentence splits of the real paragraphs with ICU's rules, --lang ko / ja
#    and the default en giving the same sentences as a plain reading of the
#    terminators (". " in Korean, 。 in Japanese, which has no spaces);
#  - vocab train in both casings and both accent settings, the census
#    figures and the automatic keep-accents decision with its message;
#  - Hangul syllables and kana voicing marks kept when accents are kept, jamo
#    and bare kana when they are stripped;
#  - encode and decode equal to transformers' BertTokenizer (modelled by
#    tests/ref/bert_ref.py) reading the folder kiln vocab export --hf wrote,
#    and the folder imported back (tokenizer_config.json round trip);
#  - whole-word and n-gram masking over ICU's words on Japanese: the two
#    ideographs of a dictionary word are masked together, never apart (and
#    with BERT's words they are, so the check can fail).
source "$(dirname "$0")/lib.sh"
REF="$ROOT/tests/ref"
KO="$DATA/udhr-ko.txt"
JA="$DATA/udhr-ja.txt"

check "Korean sample present" [ -s "$KO" ]
check "Japanese sample present" [ -s "$JA" ]
"$KILN" vocab --help > help.txt
check "vocab --help documents --strip-accents and --no-strip-accents" grep -q -- '--no-strip-accents' help.txt
check "vocab --help: --words icu" grep -q -- '--words bert|icu' help.txt
check "vocab --help: export --hf" grep -q -- 'export --hf' help.txt
"$KILN" encode --help > help.txt
check "encode --help documents --no-strip-accents" grep -q -- '--no-strip-accents' help.txt
"$KILN" ingest --help > help.txt
check "ingest --help documents --lang for Korean and Japanese" grep -q -- 'ko, ja' help.txt

# ---- sentences: ICU's rules on real paragraphs, per --lang
cat > sents.py <<'EOF'
import json, re, sys
# the reference reading: Korean sentences end with '.' followed by a space
# (or the line's end), Japanese ones with 。！？ (no space after them)
src, lang, dump = sys.argv[1:4]
exp = []
for line in open(src, encoding="utf-8"):
    line = line.strip()
    if lang == "ko":
        parts = re.split(r"(?<=[.!?]) +", line)
    else:
        parts = re.split(r"(?<=[。！？])", line)
    exp.append([p.strip() for p in parts if p.strip()])
got = [json.loads(l)["sentences"] for l in open(dump, encoding="utf-8")]
if got != exp:
    for i, (e, g) in enumerate(zip(exp, got)):
        if e != g:
            print(f"  document {i + 1}: expected {e}\n  got {g}")
            break
    print(f"  {len(got)} documents, expected {len(exp)}")
    sys.exit(1)
print(sum(map(len, got)))
EOF
for lang in ko ja; do
  src=$KO; [ $lang = ja ] && src=$JA
  for l in $lang en; do
    rm -f s.db*
    expect_exit 0 "ingest the $lang sample with --lang $l" "$KILN" --db s.db ingest --split line --lang $l "$src"
    "$KILN" --db s.db docs dump --jsonl > dump.jsonl
    n=$($PY sents.py "$src" $lang dump.jsonl) && ok "$lang sentences with --lang $l: $n, as the terminators say" ||
      bad "$lang sentences with --lang $l differ from the terminators"
  done
done
# Japanese without spaces: ！ and ？ end sentences too
printf '東京は晴れ！本当？ではまた。\n' > jp2.txt
rm -f s.db*
"$KILN" --db s.db ingest -q --split line --lang ja jp2.txt
check "Japanese: ！ and ？ end sentences" [ "$("$KILN" --db s.db docs dump | grep -c .)" = 3 ]

# ---- the corpus, and vocabularies in both casings and accent settings
expect_exit 0 "ingest Korean" "$KILN" ingest --split line --lang ko "$KO"
expect_exit 0 "ingest Japanese" "$KILN" ingest --split line --lang ja "$JA"
expect_exit 64 "--strip-accents and --no-strip-accents together" \
  "$KILN" vocab train --size 500 --strip-accents --no-strip-accents
expect_exit 64 "--words must be bert or icu" "$KILN" vocab train --size 500 --words mecab

expect_exit 0 "vocab train uncased, no accent flag" "$KILN" vocab train --size 2000 --name auto --json
cp out.txt auto.json
grep_err "keeping accents" "says it keeps accents"
grep_err "Hangul: 839 of 839 letters \(100\.0%" "with the Hangul figures"
grep_err "Hiragana: 189 of 1961 letters" "and the Hiragana figures"
check "auto: stored with strip_accents false, decided by the census" \
  $PY -c 'import json; d=json.load(open("auto.json")); assert d["strip_accents"] is False and d["accents_kept_by_census"] is True and d["cased"] is False'
"$KILN" docs dump > corpus.txt
cat > census.py <<'EOF'
import json, sys, unicodedata as u
# figures the census must give, from Python's own Unicode data: every Hangul
# syllable decomposes; a hiragana letter changes when NFD changes it
text = open("corpus.txt", encoding="utf-8").read()
d = json.load(open(sys.argv[1]))
by = {s["script"]: s for s in d["scripts"]}
hangul = [c for c in text if 0xAC00 <= ord(c) <= 0xD7A3]
hira = [c for c in text if u.name(c, "").startswith("HIRAGANA")]
# Han: the ideographs, and 々 (the iteration mark of 人々, script Han too)
han = [c for c in text if u.name(c, "").startswith("CJK UNIFIED IDEOGRAPH") or c == "々"]
assert by["Hangul"]["letters"] == len(hangul) == by["Hangul"]["changed"], (by["Hangul"], len(hangul))
assert by["Hiragana"]["changed"] == sum(u.normalize("NFD", c) != c for c in hira), by["Hiragana"]
assert by["Han"]["letters"] == len(han) and by["Han"]["changed"] == 0, by["Han"]
print(by["Hangul"]["letters"], by["Hiragana"]["letters"], by["Hiragana"]["changed"], by["Han"]["letters"])
EOF
figs=$($PY census.py auto.json) && ok "census figures match Python's Unicode data (Hangul, Hiragana changed/letters, Han): $figs" ||
  bad "census figures differ from Python's Unicode data"

expect_exit 0 "vocab train uncased --strip-accents" "$KILN" vocab train --size 2000 --name strip --strip-accents --json
check "strip: strip_accents true, not by the census" \
  $PY -c 'import json; d=json.load(open("out.txt")); assert d["strip_accents"] is True and d["accents_kept_by_census"] is False'
grep_err "stripping accents as asked" "the damage is still reported"
expect_exit 0 "vocab train uncased --no-strip-accents" "$KILN" vocab train --size 2000 --name keep --no-strip-accents --json
check "keep: the same pieces as the census's choice" cmp -s <("$KILN" vocab export --name keep -) <("$KILN" vocab export --name auto -)
expect_exit 0 "vocab train --cased" "$KILN" vocab train --size 2000 --name cased --cased --json
check "cased: strip_accents null (not stripped)" $PY -c 'import json; d=json.load(open("out.txt")); assert d["strip_accents"] is None and d["cased"] is True'
expect_exit 0 "vocab train --cased --strip-accents" "$KILN" vocab train --size 2000 --name cased-strip --cased --strip-accents --json
expect_exit 0 "vocab train on English only: no census decision" "$KILN" --db en.db ingest -q --split line "$DATA/lee_background.txt"
expect_exit 0 "vocab train uncased on English" "$KILN" --db en.db vocab train --size 3000 --json
check "English: accents stripped as BERT does (strip_accents null)" \
  $PY -c 'import json; d=json.load(open("out.txt")); assert d["strip_accents"] is None and d["accents_kept_by_census"] is False'
if grep -q "keeping accents" err.txt; then bad "English corpus: no keep-accents message"; else ok "English corpus: no keep-accents message"; fi

"$KILN" vocab list --json > list.json
check "vocab list: strip_accents and words of each" $PY -c '
import json
v = {d["name"]: d for d in map(json.loads, open("list.json"))}
assert v["auto"]["strip_accents"] is False and v["strip"]["strip_accents"] is True
assert v["keep"]["strip_accents"] is False and v["cased"]["strip_accents"] is None
assert v["cased-strip"]["strip_accents"] is True and all(d["words"] == "bert" for d in v.values())'

for v in auto strip keep cased cased-strip; do
  expect_exit 0 "tokenize the corpus with $v" "$KILN" tokenize --vocab $v --json
  check "$v: 35 documents, no [UNK]" $PY -c 'import json; d=json.load(open("out.txt")); assert d["documents"] == 35 and d["unk"] == 0, d'
done

# ---- jamo and voicing marks: kept when accents are kept
S="모든 인간은 태어날 때부터 자유로우며 그 존엄과 권리에 있어 동등하다. 平等である。ではない"
cat > letters.py <<'EOF'
import sys
pieces = sys.stdin.read()
jamo = any(0x1100 <= ord(c) <= 0x11FF for c in pieces)
want = sys.argv[1]
if want == "kept":
    assert not jamo and "で" in pieces and "태" in pieces, pieces
else:
    assert jamo and "で" not in pieces and "て" in pieces, pieces
EOF
for v in auto keep cased; do
  check "$v: Hangul syllables and で kept" $PY letters.py kept < <("$KILN" encode --tokens --vocab $v "$S")
done
for v in strip cased-strip; do
  check "$v: jamo and て (BERT's damage, asked for)" $PY letters.py stripped < <("$KILN" encode --tokens --vocab $v "$S")
done

# ---- transformers' ids from the exported folders, and the round trip
{ cat "$KO" "$JA"; printf '%s\n' "$S" "Café ÅNGSTRÖM naïve ΟΔΟΣ" "हिन्दी है ภาษาไทย" "[MASK] は 人間 [SEP]" ""; } > lines.txt
cat "$REF/texts.txt" >> lines.txt
for v in auto strip cased cased-strip; do
  expect_exit 0 "vocab export --hf ($v)" "$KILN" vocab export --hf --name $v hf-$v
  check "$v: vocab.txt, tokenizer_config.json, special_tokens_map.json" \
    test -s hf-$v/vocab.txt -a -s hf-$v/tokenizer_config.json -a -s hf-$v/special_tokens_map.json
  $PY "$REF/bert_ref.py" hf-$v hf ids < lines.txt > exp.$v || bad "bert_ref.py on hf-$v failed"
  "$KILN" encode --ids --vocab $v < lines.txt > got.$v
  check "$v: kiln encode == BertTokenizer from the exported folder ($(wc -l < lines.txt) lines)" cmp -s exp.$v got.$v
  $PY "$REF/bert_ref.py" hf-$v hf decode < exp.$v > expdec.$v
  "$KILN" decode --vocab $v < exp.$v > gotdec.$v
  check "$v: kiln decode == BertTokenizer's decode" cmp -s expdec.$v gotdec.$v
done
check "tokenizer_config.json: do_lower_case and strip_accents of each" $PY -c '
import json
c = {v: json.load(open(f"hf-{v}/tokenizer_config.json")) for v in ("auto", "strip", "cased", "cased-strip")}
assert (c["auto"]["do_lower_case"], c["auto"]["strip_accents"]) == (True, False)
assert (c["strip"]["do_lower_case"], c["strip"]["strip_accents"]) == (True, True)
assert (c["cased"]["do_lower_case"], c["cased"]["strip_accents"]) == (False, None)
assert (c["cased-strip"]["do_lower_case"], c["cased-strip"]["strip_accents"]) == (False, True)
assert all(x["tokenizer_class"] == "BertTokenizer" and x["tokenize_chinese_chars"] for x in c.values())
m = json.load(open("hf-auto/special_tokens_map.json"))
assert m["mask_token"] == "[MASK]" and m["unk_token"] == "[UNK]"'
check "the exported vocab.txt is the stored one" cmp -s hf-auto/vocab.txt <("$KILN" vocab export --name auto -)
expect_exit 73 "export --hf over existing files without --force" "$KILN" vocab export --hf --name auto hf-auto
expect_exit 0 "export --hf --force" "$KILN" vocab export --hf --force --name auto hf-auto
check "encode --vocab-file with --no-strip-accents == the stored vocabulary" \
  cmp -s got.auto <("$KILN" encode --ids --vocab-file hf-auto/vocab.txt --no-strip-accents < lines.txt)
check "encode --vocab-file --cased --strip-accents == the stored one" \
  cmp -s got.cased-strip <("$KILN" encode --ids --vocab-file hf-cased-strip/vocab.txt --cased --strip-accents < lines.txt)
expect_exit 64 "encode --strip-accents with a stored vocabulary" "$KILN" encode --vocab auto --strip-accents x
expect_exit 0 "vocab import a tokenizer folder" "$KILN" vocab import --json hf-auto --name back
check "imported back: uncased, strip_accents false" \
  $PY -c 'import json; d=json.load(open("out.txt")); assert d["cased"] is False and d["strip_accents"] is False'
check "imported back: the same ids" cmp -s got.auto <("$KILN" encode --ids --vocab back < lines.txt)
expect_exit 0 "vocab import the same folder again" "$KILN" vocab import hf-auto --name back
grep_err "already imported" "is a no-op"
expect_exit 0 "vocab import it with --strip-accents: another vocabulary" "$KILN" vocab import --json hf-auto --strip-accents --name back-strip
check "the flag overrides tokenizer_config.json" $PY -c 'import json; assert json.load(open("out.txt"))["strip_accents"] is True'
expect_exit 0 "vocab import hf-cased-strip" "$KILN" vocab import --json hf-cased-strip --name back-cs
check "cased + strip_accents true read back" \
  $PY -c 'import json; d=json.load(open("out.txt")); assert d["cased"] is True and d["strip_accents"] is True'
expect_exit 0 "vocab import --words icu" "$KILN" vocab import --json hf-auto --words icu --name imp-icu
check "imported with ICU's words" $PY -c 'import json; d=json.load(open("out.txt")); assert d["words"] == "icu" and d["strip_accents"] is False'
mkdir -p badcfg && cp hf-auto/vocab.txt badcfg/ && echo '{"do_lower_case": "yes"}' > badcfg/tokenizer_config.json
expect_exit 65 "a tokenizer_config.json with a bad do_lower_case" "$KILN" vocab import badcfg
grep_err "badcfg/tokenizer_config.json" "names the file"

# ---- whole words: ICU's on Japanese
expect_exit 0 "vocab train --words icu" "$KILN" vocab train --size 2000 --name icu --words icu --json
check "icu: the same pieces as with BERT's words" cmp -s <("$KILN" vocab export --name icu -) <("$KILN" vocab export --name auto -)
expect_exit 0 "tokenize (icu)" "$KILN" tokenize --vocab icu
check "icu: the same token ids as BERT's words" [ "$(sqlite3 "$KILN_DB" "select group_concat(hex(tokens)) from (select tokens from doc_tokens where vocab_id = (select id from vocabularies where name = 'icu') order by doc_id)")" = \
  "$(sqlite3 "$KILN_DB" "select group_concat(hex(tokens)) from (select tokens from doc_tokens where vocab_id = (select id from vocabularies where name = 'auto') order by doc_id)")" ]
cat > words.py <<'EOF'
import json, sys
# Masking units over ICU's words: in every sample, the two ideographs of a
# dictionary word (人間, 自由, 権利, 平等, 尊厳, 国籍) are masked together or not
# at all. Prints: pairs seen, pairs split by the masking.
pieces = open(sys.argv[1], encoding="utf-8").read().split("\n")
ids = {p: i for i, p in enumerate(pieces)}
pairs = {(ids[a], ids[b]) for a, b in ("人間", "自由", "権利", "平等", "尊厳", "国籍")}
seen = split = 0
for line in open(sys.argv[2]):
    s = json.loads(line)
    orig = list(s["input_ids"])
    for p, t in zip(s["masked_positions"], s["masked_ids"]):
        orig[p] = t
    masked = set(s["masked_positions"])
    for i in range(len(orig) - 1):
        if (orig[i], orig[i + 1]) in pairs:
            seen += 1
            split += (i in masked) != (i + 1 in masked)
print(seen, split)
EOF
"$KILN" vocab export --name icu icu.txt
for obj in wwm ngram; do
  for v in icu auto; do
    "$KILN" sample --vocab $v --objective $obj --seed 5 --count 3000 --seq-len 64 --mask-prob 0.3 > s.$obj.$v.jsonl ||
      bad "sample $obj with $v"
    read -r seen split < <($PY words.py icu.txt s.$obj.$v.jsonl)
    if [ $v = icu ]; then
      check "$obj over ICU's words: $seen two-ideograph words seen, never masked apart" [ "$seen" -gt 100 -a "$split" = 0 ]
    else
      check "$obj over BERT's words: the same words masked apart $split times of $seen" [ "$split" -gt 0 ]
    fi
  done
done
check "icu: fewer word starts than BERT's words" $PY - "$KILN_DB" <<'EOF'
import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
def starts(name):
    return sum(bin(b).count("1") for (w,) in db.execute(
        "select word_starts from doc_tokens where vocab_id = (select id from vocabularies where name = ?)", (name,))
        for b in w)
a, b = starts("icu"), starts("auto")
print(f"  word starts: icu {a}, bert {b}")
assert 0 < a < b
EOF
# ---- the daemon's vocab jobs take the same options
echo '{"size": 2000, "name": "job", "strip_accents": false, "words": "icu"}' > job.json
expect_exit 0 "run submit --kind vocab with strip_accents and words" "$KILN" run submit --kind vocab --config job.json --json
id=$(json id)
"$KILN" run show "$id" --json > show.json
check "the job's config keeps them" $PY -c 'import json; c=json.load(open("show.json"))["config"]; assert c["strip_accents"] is False and c["words"] == "icu"'
echo '{"size": 2000, "words": "mecab"}' > job2.json
expect_exit 78 "a vocab job with words mecab" "$KILN" run submit --kind vocab --config job2.json
grep_err '"bert" or "icu"' "says what words may be"
"$KILN" run cancel "$id" --wait 0 >/dev/null 2>&1

# ---- a model trained on a keep-accents vocabulary: its checkpoint, export,
# import and predict keep the setting (strip_accents false in tokenizer_config.json)
cat > tiny.json <<'EOF'
{"model": {"type": "bert", "hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2,
           "intermediate_size": 64, "max_position_embeddings": 64},
 "data": {"objectives": ["mlm"], "seq_len": 48, "batch_size": 4, "valid_every": 0, "vocab": "keep"},
 "budget": {"steps": 2}, "checkpoint": {"dir": "ckKeep"}}
EOF
expect_exit 0 "train a tiny BERT on the keep-accents vocabulary" "$KILN" train --config tiny.json
check "the checkpoint says strip_accents false" grep -q '"strip_accents":false' ckKeep/step-000000002/state.json
expect_exit 0 "export it" "$KILN" export --checkpoint ckKeep --out hfKeep
check "its tokenizer_config.json: do_lower_case true, strip_accents false" $PY -c '
import json; c=json.load(open("hfKeep/tokenizer_config.json")); assert c["do_lower_case"] is True and c["strip_accents"] is False'
expect_exit 0 "import the folder" "$KILN" import --from hf hfKeep --out impKeep
check "the imported checkpoint keeps strip_accents false" grep -q '"strip_accents":false' impKeep/step-000000000/state.json
expect_exit 0 "predict keeps the syllables" "$KILN" predict --checkpoint ckKeep --json "인간은 [MASK] 태어날"
check "predict fills the mask with the keep-accents tokenizer" $PY -c '
import json,sys; d=json.loads(open("out.txt").readline()); sys.exit(0 if d["masks"] else 1)'

check "store integrity" integrity
finish
