#!/usr/bin/env bash
# test_wordpiece_parity.sh: `kiln encode` must give exactly the tokens and ids
# of Hugging Face transformers' slow BertTokenizer (4.40), as modelled by
# tests/ref/bert_ref.py, for bert-base-uncased and bert-base-cased (and each
# with strip_accents the other way: uncased false, cased true), on the
# hand-made edge cases of tests/ref/texts.txt and on random lines of many
# scripts (tests/ref/random_texts.py); and `kiln decode` of those ids must
# give what transformers' decode gives. On a mismatch the first 10 differing
# lines are shown: input, expected, got.
source "$(dirname "$0")/lib.sh"

REF="$ROOT/tests/ref"
VOCAB="$ROOT/examples/vocab"
UNCASED="$VOCAB/bert-base-uncased-vocab.txt"
CASED="$VOCAB/bert-base-cased-vocab.txt"
SEED=20240426
NRANDOM=2000
NDECODE=300

# same_lines INPUT EXPECTED GOT LABEL: line-by-line comparison, with the first
# 10 differences shown (lines are split on '\n' only, as kiln and bert_ref do)
cat > cmp.py <<'EOF'
import sys
sys.stdout.reconfigure(errors="backslashreplace")
def lines(path):
    data = open(path, "rb").read()
    if not data:
        return []
    out = data.split(b"\n")
    if data.endswith(b"\n"):
        out.pop()
    return out
inp, exp, got, label = sys.argv[1:5]
I, E, G = lines(inp), lines(exp), lines(got)
if len(E) != len(G):
    print(f"  {label}: kiln gave {len(G)} lines, expected {len(E)}")
bad = [i for i in range(max(len(E), len(G)))
       if i >= len(E) or i >= len(G) or E[i] != G[i]]
if bad:
    print(f"  {label}: {len(bad)} of {len(E)} lines differ; first {min(10, len(bad))}:")
    show = lambda L, i: L[i].decode("utf-8", "replace") if i < len(L) else "<no line>"
    for i in bad[:10]:
        print(f"  line {i + 1}: input {show(I, i)!r}")
        print(f"    expected: {show(E, i)}")
        print(f"    got:      {show(G, i)}")
        if i < len(E) and i < len(G):
            e, g = show(E, i).split(" "), show(G, i).split(" ")
            k = next((k for k in range(min(len(e), len(g))) if e[k] != g[k]), min(len(e), len(g)))
            print(f"    first difference at field {k + 1}: expected "
                  f"{e[k] if k < len(e) else '<end>'!r}, got {g[k] if k < len(g) else '<end>'!r}")
sys.exit(1 if bad else 0)
EOF
same_lines() { $PY cmp.py "$@"; }

# run_kiln OUT DESCRIPTION ARGS...: kiln with stdin as given, stdout to OUT,
# passes when it exits 0 (stderr shown otherwise)
run_kiln() {
  local out=$1 d=$2; shift 2
  "$KILN" "$@" >"$out" 2>err.txt
  local rc=$?
  if [ $rc = 0 ]; then ok "$d"; return 0; fi
  bad "$d: exit $rc"; sed 's/^/  | /' err.txt | head -20; return 1
}

# --- inputs and reference outputs
check "edge-case corpus present" [ -s "$REF/texts.txt" ]
cp "$REF/texts.txt" texts.txt
$PY "$REF/random_texts.py" "$SEED" "$NRANDOM" > random.txt
check "random corpus: $NRANDOM lines" [ "$($PY -c 'import sys; print(open(sys.argv[1],"rb").read().count(b"\n"))' random.txt)" = "$NRANDOM" ]
for mode in uncased cased; do
  voc=$UNCASED; [ $mode = cased ] && voc=$CASED
  for corpus in texts random; do
    for what in ids tokens; do
      $PY "$REF/bert_ref.py" "$voc" $mode $what < $corpus.txt > exp.$mode.$corpus.$what ||
        bad "bert_ref.py $mode $what of $corpus.txt failed"
    done
  done
done

# --- vocabularies
run_kiln import.out "import bert-base-uncased" vocab import "$UNCASED" --uncased --name bert-uncased
run_kiln import.out "import bert-base-cased" vocab import "$CASED" --cased --name bert-cased
run_kiln use.out "use bert-uncased" vocab use bert-uncased

# --- encode: uncased through the active vocabulary, cased through --vocab
for mode in uncased cased; do
  sel=(); [ $mode = cased ] && sel=(--vocab bert-cased)
  for corpus in texts random; do
    for what in ids tokens; do
      if run_kiln got.$mode.$corpus.$what "$mode encode --$what of $corpus.txt runs" \
           encode --$what "${sel[@]}" < $corpus.txt; then
        check "$mode $what of $corpus.txt match transformers" \
          same_lines $corpus.txt exp.$mode.$corpus.$what got.$mode.$corpus.$what "$mode $what"
      fi
    done
  done
done

# --- decode round trip: kiln decode of the reference ids == transformers' decode
{ head -n $((NDECODE / 2)) exp.uncased.texts.ids; head -n $((NDECODE / 2)) exp.uncased.random.ids; } > dec.uncased.in
{ head -n $((NDECODE / 2)) exp.cased.texts.ids; head -n $((NDECODE / 2)) exp.cased.random.ids; } > dec.cased.in
for mode in uncased cased; do
  voc=$UNCASED; [ $mode = cased ] && voc=$CASED
  [ $mode = cased ] && run_kiln use.out "use bert-cased" vocab use bert-cased
  $PY "$REF/bert_ref.py" "$voc" $mode decode < dec.$mode.in > exp.dec.$mode ||
    bad "bert_ref.py $mode decode failed"
  if run_kiln got.dec.$mode "$mode decode of $NDECODE id lines runs" decode < dec.$mode.in; then
    check "$mode decode matches transformers" \
      same_lines dec.$mode.in exp.dec.$mode got.dec.$mode "$mode decode"
  fi
  # ids as arguments: a few non-empty lines
  n=0; mism=0
  while IFS= read -r ids && [ $n -lt 8 ]; do
    [ -z "$ids" ] && continue
    n=$((n + 1))
    exp=$(printf '%s\n' "$ids" | $PY "$REF/bert_ref.py" "$voc" $mode decode)
    # shellcheck disable=SC2086  # one argument per id
    got=$("$KILN" decode $ids 2>err.txt) || { mism=$((mism + 1)); echo "  kiln decode $ids: failed"; continue; }
    if [ "$got" != "$exp" ]; then
      mism=$((mism + 1))
      printf '  kiln decode %s\n    expected: %s\n    got:      %s\n' "$ids" "$exp" "$got"
    fi
  done < dec.$mode.in
  check "$mode decode ID... ($n lines) matches transformers" [ "$mism" = 0 -a "$n" -gt 0 ]
done

# --- transformers' strip_accents on top of the casing (issue #20): uncased
# without stripping (lowercase only), cased with stripping; through
# --vocab-file, on the same corpora
for mode in uncased cased; do
  voc=$UNCASED; flag=--no-strip-accents; ref=false; cs=()
  [ $mode = cased ] && { voc=$CASED; flag=--strip-accents; ref=true; cs=(--cased); }
  for corpus in texts random; do
    $PY "$REF/bert_ref.py" "$voc" $mode ids --strip-accents $ref < $corpus.txt > exp.acc.$mode.$corpus ||
      bad "bert_ref.py $mode --strip-accents $ref failed"
    if run_kiln got.acc.$mode.$corpus "$mode $flag encode of $corpus.txt runs" \
         encode --ids --vocab-file "$voc" "${cs[@]}" $flag < $corpus.txt; then
      check "$mode strip_accents=$ref ids of $corpus.txt match transformers" \
        same_lines $corpus.txt exp.acc.$mode.$corpus got.acc.$mode.$corpus "$mode $flag ids"
    fi
  done
done
if cmp -s exp.acc.uncased.random exp.uncased.random.ids; then bad "strip_accents false gave the ids of the default"
else ok "strip_accents false changes ids on the random corpus (the check can fail)"; fi

# --- the active vocabulary is the one `vocab use` chose (bert-cased now)
if run_kiln got.active.ids "encode with the active vocabulary (cased)" encode --ids < texts.txt; then
  check "active vocabulary follows vocab use" \
    same_lines texts.txt exp.cased.texts.ids got.active.ids "active cased ids"
fi

finish
