#!/usr/bin/env bash
# test_gpt2.sh: the causal model end to end on the bundled tiny Shakespeare
# (docs/generate.md): a byte-level BPE trained on the corpus; kiln train of
# model.type gpt2 (terms, perplexities, the unigram baseline beaten); same
# config and seed -> same bytes, a resumed run -> the bytes of an
# uninterrupted one; the checkpoint's vocabulary (kind, files, hashes);
# kiln export as GPT2LMHeadModel + GPT2Tokenizer files; and against a
# PyTorch GPT-2 loaded from that folder (tests/ref/gpt2_check.py: full
# recomputation, no cache, its own BPE encoder): eval --perplexity, generate
# --greedy (ids and log-probs) and eval --fewshot's scores and accuracies;
# generate's sampling determinism, stop strings, templates, stdin; the
# refusals, named, with their exit codes.
source "$(dirname "$0")/lib.sh"

expect_exit 0 "ingest tiny Shakespeare, one document a speech" "$KILN" ingest -q --split blank-line "$DATA/tinyshakespeare.txt.gz"
expect_exit 0 "vocab train --bpe 1000" "$KILN" vocab train -q --bpe --size 1000 --name bpe1k
expect_exit 0 "tokenize" "$KILN" tokenize -q
expect_exit 0 "a WordPiece vocabulary too" "$KILN" vocab import -q "$DATA/../vocab/bert-base-uncased-vocab.txt" --name wp
expect_exit 0 "tokenize with it" "$KILN" tokenize -q --vocab wp

# --- refusals, named
cat > g.json <<'EOF'
{"model": {"type": "gpt2", "n_embd": 32, "n_layer": 2, "n_head": 2, "n_positions": 64},
 "data": {"seq_len": 32, "batch_size": 8, "seed": 3, "valid_every": 10, "valid_batches": 3, "valid_fraction": 0.05, "vocab": "bpe1k"},
 "optimizer": {"type": "adamw", "lr": 2e-3, "warmup_steps": 4},
 "budget": {"steps": 20}, "threads": 2,
 "checkpoint": {"dir": "ckA", "every": 10, "keep": 3}}
EOF
expect_exit 78 "gpt2 with a WordPiece vocabulary refused" "$KILN" train --config g.json --set data.vocab=wp --set checkpoint.dir=ckX
grep_err 'gpt2 needs a byte-level BPE vocabulary' "the message says which vocabulary it needs"
cat > b.json <<'EOF'
{"model": {"type": "bert", "hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 64,
           "max_position_embeddings": 64},
 "data": {"objectives": ["mlm"], "seq_len": 32, "batch_size": 4, "vocab": "bpe1k"}, "budget": {"steps": 2},
 "checkpoint": {"dir": "ckB"}}
EOF
expect_exit 78 "bert with a BPE vocabulary refused" "$KILN" train --config b.json
grep_err 'no \[CLS\], \[SEP\] or \[MASK\]|trains model.type gpt2' "the message says why"
expect_exit 78 "clm with bert refused (config)" "$KILN" train --config b.json --set 'data.objectives=["clm"]' --set data.vocab=wp
grep_err 'data.objectives.*model.type "gpt2"' "the message names the key and the model"
expect_exit 78 "sample mlm from a BPE vocabulary refused" "$KILN" sample --vocab bpe1k --objective mlm --count 1
expect_exit 0 "sample clm from a BPE vocabulary" "$KILN" sample --vocab bpe1k --objective clm --seq-len 16 --count 3
check "clm rows are 16 ids, <|endoftext|> (id 999 here) between documents" \
  $PY -c 'import json,sys; r=[json.loads(l) for l in open("out.txt")]; assert len(r)==3 and all(len(x["input_ids"])==16 for x in r), r'

# --- a short run: terms, perplexities; determinism; resume
expect_exit 0 "train A" "$KILN" train --config g.json --json
cp out.txt a.json
for k in lm_loss lm_acc val_lm_loss perplexity val_perplexity unigram_perplexity; do
  check "the summary has $k" $PY -c "import json,math; v=json.load(open('a.json'))['$k']; assert v is not None and math.isfinite(v), v"
done
check "perplexity = exp(lm_loss)" $PY -c "import json,math; d=json.load(open('a.json')); assert abs(d['perplexity']-math.exp(d['lm_loss']))<1e-3*d['perplexity']"
check "state.json: a BPE vocabulary with both files, sized and hashed" $PY - <<'EOF'
import json, os
s = json.load(open("ckA/step-000000020/state.json"))
v = s["vocab"]
assert v["kind"] == "bpe" and v["file"] == "vocab.json" and v["merges"]["file"] == "merges.txt", v
assert os.path.getsize("ckA/step-000000020/vocab.json") == v["bytes"]
assert os.path.getsize("ckA/step-000000020/merges.txt") == v["merges"]["bytes"]
assert not os.path.exists("ckA/step-000000020/vocab.txt")
x = json.loads(s["extra"]) if isinstance(s["extra"], str) else s["extra"]
assert x["tokenizer"] == "bpe" and x["eot_id"] == 999, x
EOF
sed 's/"ckA"/"ckB2"/' g.json > g2.json
expect_exit 0 "train B, same config and seed" "$KILN" train --config g2.json
check "same config and seed: the same model bytes" cmp ckA/step-000000020/model.safetensors ckB2/step-000000020/model.safetensors
sed 's/"ckA"/"ckC"/' g.json > g3.json
expect_exit 0 "train C to step 10" "$KILN" train --config g3.json --pause-at 10
expect_exit 0 "resume C" "$KILN" train --config g3.json --resume
check "resumed: the bytes of the uninterrupted run" cmp ckA/step-000000020/model.safetensors ckC/step-000000020/model.safetensors
check "resumed: the same optimizer state" cmp ckA/step-000000020/optimizer.safetensors ckC/step-000000020/optimizer.safetensors

# --- a damaged vocabulary is refused by name
cp -r ckA/step-000000020 damaged
printf 'x y\n' >> damaged/merges.txt
expect_exit 65 "a checkpoint whose merges.txt changed refused" "$KILN" generate --checkpoint damaged "To be"
grep_err 'merges.txt.*damaged or replaced' "the message names merges.txt"

# --- export: GPT2LMHeadModel with the tokenizer files
expect_exit 0 "export" "$KILN" export --checkpoint ckA --out hf
for f in model.safetensors config.json vocab.json merges.txt tokenizer_config.json special_tokens_map.json; do
  check "export wrote $f" test -s "hf/$f"
done
check "config.json and tokenizer_config.json as transformers reads them" $PY - <<'EOF'
import json
c = json.load(open("hf/config.json"))
assert c["model_type"] == "gpt2" and c["architectures"] == ["GPT2LMHeadModel"] and c["n_embd"] == 32, c
assert c["vocab_size"] == 1000 and c["bos_token_id"] == c["eos_token_id"] == 999 and c["n_positions"] == 64, c
t = json.load(open("hf/tokenizer_config.json"))
assert t["tokenizer_class"] == "GPT2Tokenizer" and t["eos_token"] == "<|endoftext|>", t
assert open("hf/merges.txt").readline().startswith("#version")
assert len(json.load(open("hf/vocab.json"))) == 1000
EOF

# --- continued: the exported folder imported, then a run started from it (config "init")
expect_exit 0 "import the exported folder" "$KILN" import --from hf hf --out imp
expect_exit 0 "a run from the imported weights (init)" "$KILN" train --config g.json --set init=imp --set checkpoint.dir=ckI --json
cp out.txt i.json
grep_err 'init: 28 tensors from imp' "it says what it took"
check "continued: its validation loss below the run it came from" $PY -c '
import json; a = json.load(open("a.json")); i = json.load(open("i.json")); assert i["val_lm_loss"] < a["val_lm_loss"], (i, a)'
expect_exit 78 "init from a checkpoint of another vocabulary refused" "$KILN" train --config b.json --set data.vocab=wp --set init=imp --set checkpoint.dir=ckJ
grep_err 'init: .* another vocabulary' "the message says why"

# --- against PyTorch on the exported folder (full recomputation, no cache)
zcat "$DATA/tinyshakespeare.txt.gz" | tail -c 6000 > heldout.txt
expect_exit 0 "eval --perplexity" "$KILN" eval --checkpoint ckA --perplexity heldout.txt --window 64 --stride 24 --json
cp out.txt ppl.json
check "perplexity: tokens, scored tokens and NLL as torch's sliding window" $PY "$ROOT/tests/ref/gpt2_check.py" ppl hf heldout.txt 64 24 ppl.json
expect_exit 0 "eval --perplexity: a window above n_positions, a stride above it" "$KILN" eval --checkpoint ckA --perplexity heldout.txt --window 500 --json
grep_err 'window 500 is more than the model.s 64 positions: windows of 64' "the lowered window is said"
check "windows of 64, stride 32" $PY - <<'EOF'
import json
d = json.load(open("out.txt"))
assert d["window"] == 64 and d["stride"] == 32 and d["windows"] > 1, d
EOF
expect_exit 0 "eval --perplexity: non-overlapping windows" "$KILN" eval --checkpoint ckA --perplexity heldout.txt --window 64 --stride 64 --json
cp out.txt ppl64.json
check "stride = window: as torch's sliding window (each window's first token unscored: no context)" $PY "$ROOT/tests/ref/gpt2_check.py" ppl hf heldout.txt 64 64 ppl64.json
check "stride = window: tokens - windows scored" $PY -c '
import json; b = json.load(open("ppl64.json")); assert b["scored"] == b["tokens"] - b["windows"] and b["windows"] == -(-b["tokens"] // 64), b'
expect_exit 64 "eval --perplexity: --stride above --window refused" "$KILN" eval --checkpoint ckA --perplexity heldout.txt --window 32 --stride 40
expect_exit 0 "generate --greedy --json" "$KILN" generate --checkpoint ckA --greedy --max-new-tokens 20 --json "ROMEO:" "" "What say you, my lord"
cp out.txt greedy.jsonl
check "greedy: torch picks the same ids, log-probs within 1e-4" $PY "$ROOT/tests/ref/gpt2_check.py" greedy hf greedy.jsonl
cat > task.json <<'EOF'
{"name": "sst2-slice", "train": "train.tsv", "eval": "dev.tsv", "template": "Review: {sentence}\nSentiment:",
 "label": "label", "choices": {"0": " negative", "1": " positive"}, "limit": 12}
EOF
cp "$DATA/sst2/train.tsv" "$DATA/sst2/dev.tsv" .
expect_exit 0 "eval --fewshot 0,2" "$KILN" eval --checkpoint ckA --fewshot 0,2 --task task.json --scores scores.jsonl --json
cp out.txt fs.json
check "few-shot: every candidate's log-likelihood as torch's, accuracies from them" $PY "$ROOT/tests/ref/gpt2_check.py" scores hf scores.jsonl fs.json
check "few-shot: k = 0 example 1 decodes to the template and its first answer" $PY - "$ROOT" <<'EOF'
import json, sys
sys.path.insert(0, sys.argv[1] + "/tests/ref")
import gpt2_bpe
enc = gpt2_bpe.Encoder("hf/vocab.json", "hf/merges.txt")
dec = {v: k for k, v in enc.encoder.items()}
back = {c: b for b, c in enc.byte_char.items()}
r = json.loads(open("scores.jsonl").readline())
text = bytes(back[ch] for i in r["ids"] for ch in dec[i]).decode()
first = open("dev.tsv").read().split("\n")[1].split("\t")[0]
want = "Review: " + first + "\nSentiment: negative"
assert r["k"] == 0 and r["index"] == 0 and r["choice"] == 0 and text == want, (text, want)
EOF
check "few-shot: k = 2 prompts hold two solved examples" $PY -c '
import json
rows = [json.loads(l) for l in open("scores.jsonl")]
k2 = [r for r in rows if r["k"] == 2]
k0 = [r for r in rows if r["k"] == 0]
assert len(k2) == len(k0) == 24 and all(len(a["ids"]) > len(b["ids"]) or len(a["ids"]) == 65 for a, b in zip(k2, k0))
assert any(len(a["ids"]) == 65 for a in k2)  # cut from the left to n_positions + 1, as the harness'
expect_exit 0 "few-shot table (text)" "$KILN" eval --checkpoint ckA --fewshot 0 --task task.json
check "the table has a row for k = 0" grep -qE '^ +0 +[0-9.]+%' out.txt
# multiple choice: answers from each record (a list; ARC's object of "text"
# and "label" lists) or from the task's answer templates; the gold answer as
# an index (0- or 1-based), a label, a letter or the answer's text; a JSON
# array file; dotted field paths
cat > hs.jsonl <<'EOF'
{"ctx": "The cat sat on the", "endings": ["mat.", "moon.", "idea.", "river."], "label": "2"}
{"ctx": "She opened the door and", "endings": ["walked in.", "flew away.", "ate it."], "label": 0}
EOF
cat > arc.json <<'EOF'
[{"question": {"stem": "Which is a planet?"}, "choices": {"text": ["Paris", "Mars", "Milk"], "label": ["A", "B", "C"]}, "answerKey": "B"},
 {"question": {"stem": "Which is a color?"}, "choices": {"text": ["Dog", "Run", "Red"], "label": ["1", "2", "3"]}, "answerKey": "3"},
 {"question": {"stem": "Which is a fruit?"}, "choices": [{"text": "Apple", "label": "A"}, {"text": "Stone", "label": "B"}], "answerKey": "A"}]
EOF
cat > wg.jsonl <<'EOF'
{"sentence": "The trophy did not fit in the suitcase because it was too big.", "option1": "trophy", "option2": "suitcase", "answer": "1", "text": "trophy", "key": "a"}
{"sentence": "The trophy did not fit in the suitcase because it was too small.", "option1": "trophy", "option2": "suitcase", "answer": "2", "text": "suitcase", "key": "B"}
EOF
echo '{"train": "hs.jsonl", "eval": "hs.jsonl", "template": "{ctx}", "target_delimiter": " ", "choices_field": "endings", "gold_field": "label"}' > t-hs.json
echo '{"train": "arc.json", "eval": "arc.json", "template": "Question: {question.stem}\nAnswer:", "target_delimiter": " ", "choices_field": "choices", "gold_field": "answerKey"}' > t-arc.json
for g in index1:answer text:text letter:key; do
  echo "{\"train\": \"wg.jsonl\", \"eval\": \"wg.jsonl\", \"template\": \"{sentence} It refers to the\", \"target_delimiter\": \" \", \"choices\": [\"{option1}\", \"{option2}\"], \"gold_field\": \"${g#*:}\", \"gold\": \"${g%:*}\"}" > "t-wg-${g%:*}.json"
done
for t in hs arc wg-index1 wg-text wg-letter; do
  expect_exit 0 "multiple choice: $t" "$KILN" eval --checkpoint ckA --fewshot 0,1 --task "t-$t.json" --scores "s-$t.jsonl" --json
  cp out.txt "fs-$t.json"
done
check "multiple choice: the gold answers as the records give them, every record's answers scored" $PY - <<'EOF'
import json
want = {"hs": [(2, 4), (0, 3)], "arc": [(1, 3), (2, 3), (0, 2)], "wg-index1": [(0, 2), (1, 2)],
        "wg-text": [(0, 2), (1, 2)], "wg-letter": [(0, 2), (1, 2)]}
for t, w in want.items():
    rows = [json.loads(l) for l in open("s-%s.jsonl" % t)]
    for k in (0, 1):
        got = [(min(r["gold"] for r in rows if r["k"] == k and r["index"] == i),
                sum(1 for r in rows if r["k"] == k and r["index"] == i)) for i in range(len(w))]
        assert got == w, (t, k, got, w)
EOF
check "multiple choice: every answer's log-likelihood as torch's, accuracies from them" $PY "$ROOT/tests/ref/gpt2_check.py" scores hf s-arc.jsonl fs-arc.json
check "multiple choice: the answer templates filled, after the delimiter" $PY - "$ROOT" <<'EOF'
import json, sys
sys.path.insert(0, sys.argv[1] + "/tests/ref")
import gpt2_bpe
enc = gpt2_bpe.Encoder("hf/vocab.json", "hf/merges.txt")
dec = {v: k for k, v in enc.encoder.items()}
back = {c: b for b, c in enc.byte_char.items()}
rows = [json.loads(l) for l in open("s-wg-text.jsonl") if json.loads(l)["k"] == 0]
texts = [bytes(back[ch] for i in r["ids"] for ch in dec[i]).decode() for r in rows]
assert texts[1] == "The trophy did not fit in the suitcase because it was too big. It refers to the suitcase", texts
EOF
echo '{"ctx": "x", "endings": ["a", "b"], "label": "7"}' > hs-bad.jsonl
sed 's/"eval": "hs.jsonl"/"eval": "hs-bad.jsonl"/' t-hs.json > t-bad.json
expect_exit 65 "multiple choice: a gold answer that names none of the answers refused" "$KILN" eval --checkpoint ckA --fewshot 0 --task t-bad.json
grep_err 'hs-bad.jsonl: example 1: the gold answer "label" = "7" names none of its 2 answers' "the message names the file, the example and the value"
sed 's/"gold": "text"/"gold": "word"/' t-wg-text.json > t-bad.json
expect_exit 65 "an unknown \"gold\" mode refused" "$KILN" eval --checkpoint ckA --fewshot 0 --task t-bad.json
grep_err '"gold" is one of' "the message lists the modes"

# --- generate: determinism, sampling options, stop strings, templates, stdin
expect_exit 0 "sample, seed 7, 2 threads" "$KILN" generate --checkpoint ckA --seed 7 --top-k 50 --top-p 0.9 --temperature 0.8 --max-new-tokens 30 --threads 2 --json "To be"
cp out.txt s7a.jsonl
grep_err "decode: 29 tokens in .* tokens/s\); 2 threads$" "the closing line: decode timing, on the 2 threads asked for"
expect_exit 0 "sample, seed 7 again, 1 thread" "$KILN" generate --checkpoint ckA --seed 7 --top-k 50 --top-p 0.9 --temperature 0.8 --max-new-tokens 30 --threads 1 --json "To be"
grep_err "; 1 thread$" "on 1 thread"
check "same seed: the same ids, text and log-probs (1 or 2 threads)" cmp s7a.jsonl out.txt
expect_exit 0 "sample, seed 8" "$KILN" generate --checkpoint ckA --seed 8 --top-k 50 --top-p 0.9 --temperature 0.8 --max-new-tokens 30 --json "To be"
check "another seed: another continuation" $PY -c 'import json,sys; a=json.load(open("s7a.jsonl")); b=json.load(open("out.txt")); assert a["ids"]!=b["ids"]'
expect_exit 0 "top-k 1" "$KILN" generate --checkpoint ckA --top-k 1 --seed 99 --max-new-tokens 20 --json "ROMEO:"
check "top-k 1 is greedy" $PY -c 'import json; a=json.loads(open("greedy.jsonl").readline()); b=json.load(open("out.txt")); assert a["ids"]==b["ids"], (a["ids"], b["ids"])'
check "json fields: prompt, ids, text, logprobs, stop" $PY -c '
import json, math
g = json.loads(open("greedy.jsonl").readline())
assert g["prompt"] == "ROMEO:" and len(g["ids"]) == len(g["logprobs"]) == 20 and g["stop"] == "max_new_tokens", g
assert all(l <= 0 and math.isfinite(l) for l in g["logprobs"])'
STOP=$($PY -c 'import json; t=json.loads(open("greedy.jsonl").readline())["text"]; print(t[3:6] if len(t.strip()) >= 6 else t[-2:])')
expect_exit 0 "a stop string" "$KILN" generate --checkpoint ckA --greedy --max-new-tokens 20 --stop "$STOP" --json "ROMEO:"
check "the text ends before the stop string, stop = stop_string" $PY - "$STOP" <<'EOF'
import json, sys
stop = sys.argv[1]
g = json.load(open("out.txt")); full = json.loads(open("greedy.jsonl").readline())
assert g["stop"] == "stop_string" and stop not in g["text"] and full["text"].startswith(g["text"] + stop), (g, stop)
assert full["ids"][:len(g["ids"])] == g["ids"]
EOF
# two stop strings: the text ends before the first one met
read -r STOP_A STOP_B < <($PY -c '
import json; t = json.loads(open("greedy.jsonl").readline())["text"]
w = [x for x in t.split() if len(x) >= 2]
print(w[-1][:2] if len(w) > 1 else t[-2:], w[0][:2] if w else t[:2])')
expect_exit 0 "two stop strings" "$KILN" generate --checkpoint ckA --greedy --max-new-tokens 20 --stop "$STOP_A" --stop "$STOP_B" --json "ROMEO:"
check "the text ends before the first stop string met" $PY - "$STOP_A" "$STOP_B" <<'EOF'
import json, sys
a, b = sys.argv[1], sys.argv[2]
g = json.load(open("out.txt")); full = json.loads(open("greedy.jsonl").readline())["text"]
cut = min(i for i in (full.find(a), full.find(b)) if i >= 0)
assert g["stop"] == "stop_string" and g["text"] == full[:cut], (g, a, b, full)
EOF
echo 'ROMEO:' > pf.txt
expect_exit 64 "--prompt-file and PROMPT arguments together refused" "$KILN" generate --checkpoint ckA --prompt-file pf.txt "x"
expect_exit 66 "a missing --prompt-file" "$KILN" generate --checkpoint ckA --prompt-file nowhere.txt
grep_err 'nowhere.txt' "the message names the file"
expect_exit 66 "a missing --template" "$KILN" generate --checkpoint ckA --template nowhere.txt "x"
printf 'Summary of:\n{prompt}\nTL;DR:' > tmpl.txt
expect_exit 0 "a template" "$KILN" generate --checkpoint ckA --greedy --max-new-tokens 5 --template tmpl.txt --json "the king is dead"
check "the template's prompt is what the model continued" $PY -c '
import json; g = json.load(open("out.txt")); assert g["prompt"] == "the king is dead" and g["prompt_tokens"] > 8, g'
# a prompt longer than the context (n_positions 64) keeps its last tokens:
# room for --max-new-tokens N (64 + 1 - N of them), but at least half the context
expect_exit 0 "a prompt longer than the context, 20 new tokens" "$KILN" generate --checkpoint ckA --greedy --max-new-tokens 20 --prompt-file heldout.txt --json
check "its last 45 tokens kept, then 20 new ones" $PY -c '
import json; g = json.load(open("out.txt")); assert g["prompt_tokens"] == 45 and len(g["ids"]) == 20 and g["stop"] == "max_new_tokens", g'
grep_err "its first [0-9]* are dropped" "the cut is said on stderr"
expect_exit 0 "a prompt longer than the context, 50 new tokens" "$KILN" generate --checkpoint ckA --greedy --max-new-tokens 50 --prompt-file heldout.txt --json
check "half the context kept for the prompt, the rest to the context's end" $PY -c '
import json; g = json.load(open("out.txt")); assert g["prompt_tokens"] == 32 and len(g["ids"]) == 33 and g["stop"] == "context", g'
expect_exit 0 "a short prompt, more new tokens than the context holds" "$KILN" generate --checkpoint ckA --greedy --max-new-tokens 100 --json "ROMEO:"
check "a prompt that fits is kept whole" $PY -c '
import json; g = json.load(open("out.txt")); s = json.loads(open("greedy.jsonl").readline()); assert s["prompt"] == "ROMEO:"
assert g["prompt_tokens"] == s["prompt_tokens"] and g["prompt_tokens"] + len(g["ids"]) == 65 and g["stop"] == "context", g'
printf 'ROMEO:\nWhat say you, my lord\n' | "$KILN" generate --checkpoint ckA --greedy --max-new-tokens 20 --json > stdin.jsonl 2>err.txt
check "prompts from stdin, one a line, as the same prompts given as arguments" $PY -c '
import json
a = [json.loads(l) for l in open("stdin.jsonl")]; g = [json.loads(l) for l in open("greedy.jsonl")]
assert [x["ids"] for x in a] == [g[0]["ids"], g[2]["ids"]]'
expect_exit 0 "text output" "$KILN" generate --checkpoint ckA --greedy --max-new-tokens 5 "ROMEO:"
check "text output: the prompt and its continuation" grep -q '^ROMEO:' out.txt
# --- generate --precision bf16: same seed, same bytes (1 or 2 threads); the
# greedy continuation's log-probs near fp32's; refused without AVX512_BF16
if grep -qw avx512_bf16 /proc/cpuinfo; then
  expect_exit 0 "sample in bf16, seed 7" "$KILN" generate --checkpoint ckA --precision bf16 --seed 7 --top-k 50 --max-new-tokens 30 --json "To be"
  cp out.txt b7a.jsonl
  expect_exit 0 "sample in bf16, seed 7, 1 thread" "$KILN" generate --checkpoint ckA --precision bf16 --seed 7 --top-k 50 --max-new-tokens 30 --threads 1 --json "To be"
  check "bf16: the same seed gives the same bytes (1 or 2 threads)" cmp b7a.jsonl out.txt
  expect_exit 0 "greedy in bf16" "$KILN" generate --checkpoint ckA --precision bf16 --greedy --max-new-tokens 20 --json "ROMEO:" "" "What say you, my lord"
  cp out.txt greedy_bf16.jsonl
  check "bf16 greedy: first new tokens as fp32's (2 of 3 at least), log-probs within 0.1 where the ids agree" $PY - <<'EOF'
import json
a = [json.loads(l) for l in open("greedy.jsonl")]
b = [json.loads(l) for l in open("greedy_bf16.jsonl")]
assert len(a) == len(b) == 3
for x, y in zip(a, b):
    assert abs(x["logprobs"][0] - y["logprobs"][0]) < 0.1 or x["ids"][0] != y["ids"][0], (x["logprobs"][0], y["logprobs"][0])
assert sum(x["ids"][0] == y["ids"][0] for x, y in zip(a, b)) >= 2
EOF
fi
expect_exit 69 "--precision bf16 without AVX512_BF16 refused" env KILN_CPU_NO_BF16=1 "$KILN" generate --checkpoint ckA --precision bf16 "x"
check "the refusal names AVX512_BF16" grep -q AVX512_BF16 err.txt
expect_exit 64 "--precision fp16 refused" "$KILN" generate --checkpoint ckA --precision fp16 "x"
expect_exit 64 "--top-p 0 refused" "$KILN" generate --checkpoint ckA --top-p 0 "x"
expect_exit 64 "--temperature 0 refused" "$KILN" generate --checkpoint ckA --temperature 0 "x"
expect_exit 66 "a missing checkpoint" "$KILN" generate --checkpoint nowhere "x"
expect_exit 65 "a template without {prompt}" "$KILN" generate --checkpoint ckA --template heldout.txt "x"
expect_exit 0 "export a BERT to get a non-causal checkpoint" "$KILN" train --config b.json --set data.vocab=wp --set checkpoint.dir=ckW
expect_exit 65 "generate with a BERT checkpoint refused" "$KILN" generate --checkpoint ckW "x"
grep_err 'not a causal model' "the message says so"
expect_exit 64 "eval: --perplexity and --fewshot together refused" "$KILN" eval --checkpoint ckA --perplexity heldout.txt --fewshot 0 --task task.json
head -4 train.tsv > tr3.tsv
sed 's/"train.tsv"/"tr3.tsv"/' task.json > task3.json
expect_exit 65 "few-shot k above the training examples refused" "$KILN" eval --checkpoint ckA --fewshot 4 --task task3.json
grep_err 'k = 4 but the training file has 3 examples' "the message gives both numbers"
printf 'sentence\tlabel\nfine\t7\n' > dev.tsv
expect_exit 65 "a label outside the task's choices refused, named" "$KILN" eval --checkpoint ckA --fewshot 0 --task task.json
grep_err 'dev.tsv: example 1: label "7"' "the message names the file, the example and the label"

# --- the daemon runs a GPT-2 job too (a relative init made absolute by kiln run submit)
mkdir -p spool sub
echo '{"train_threads": 1, "ingest_threads": 1, "retry_seconds": 1}' > d.json
"$KILN" daemon --spool spool --config d.json > daemon.log 2>&1 &
DPID=$!
for _ in $(seq 1 300); do "$KILN" status >/dev/null 2>&1 && break; sleep 0.05; done
(cd sub && "$KILN" run submit --json --config ../g.json --set checkpoint.dir=ckQ --set init=../imp --set budget.steps=6 > ../sub.json 2>../err.txt)
JOB=$(json id sub.json)
check "submitted: init and checkpoint.dir made absolute" $PY -c '
import json, subprocess, sys
j = json.loads(subprocess.run([sys.argv[1], "run", "show", sys.argv[2], "--json"], capture_output=True, text=True).stdout)
c = j["config"]; assert c["init"].startswith("/") and c["init"].endswith("/imp") and c["checkpoint"]["dir"].endswith("/sub/ckQ"), c' "$KILN" "$JOB"
for _ in $(seq 1 600); do
  st=$("$KILN" run show "$JOB" --json 2>/dev/null | $PY -c 'import json,sys; print(json.load(sys.stdin)["state"])')
  [ "$st" = done ] || [ "$st" = failed ] && break; sleep 0.1
done
check "the daemon's GPT-2 job is done" [ "$st" = done ]
check "its checkpoint carries the BPE vocabulary" test -s sub/ckQ/step-000000006/merges.txt
kill -TERM "$DPID"; wait "$DPID" 2>/dev/null

# --- learning (outside the sanitizer build: it takes a minute there)
if [ -z "${KILN_SANITIZE:-}" ]; then
  cat > l.json <<'EOF'
{"model": {"type": "gpt2", "n_embd": 64, "n_layer": 2, "n_head": 2, "n_positions": 64, "resid_pdrop": 0, "embd_pdrop": 0, "attn_pdrop": 0},
 "data": {"seq_len": 64, "batch_size": 16, "seed": 5, "valid_every": 100, "valid_batches": 8, "valid_fraction": 0.05, "vocab": "bpe1k"},
 "optimizer": {"type": "adamw", "lr": 3e-3, "warmup_steps": 20},
 "budget": {"steps": 200}, "threads": 2,
 "checkpoint": {"dir": "ckL", "every": 100, "keep": 1}}
EOF
  expect_exit 0 "a learning run (200 steps)" "$KILN" train --config l.json --json
  cp out.txt l.out
  check "validation perplexity well below the unigram model's (< 0.6x)" $PY -c '
import json; d = json.load(open("l.out")); print("  val perplexity %.1f, unigram %.1f" % (d["val_perplexity"], d["unigram_perplexity"]))
assert d["val_perplexity"] < 0.6 * d["unigram_perplexity"], d'
fi
finish
