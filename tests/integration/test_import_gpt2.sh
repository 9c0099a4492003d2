#!/usr/bin/env bash
# test_import_gpt2.sh: kiln import --from hf of GPT-2 folders with the real
# binary. A tiny GPT-2 trained on the bundled text with OpenAI's vocabulary
# (kiln vocab import --bpe) is exported, imported and exported again:
# model.safetensors byte-identical (same tensor order), vocab.json,
# merges.txt and config.json identical; the imported checkpoint says
# "tokenizer": "bpe" and its eot_id, and kiln eval --perplexity reads it
# with the trained checkpoint's numbers. The export is read by python
# (safetensors parsed by hand): Conv1D weights [in, out], no lm_head.weight.
# Folders made from the export by python import too: the hub's naming
# (no "transformer."), the attn.bias / masked_bias buffers, lm_head.weight
# tied. Refusals with their exit codes: merges.txt missing, tokenizer.json
# only (66), scale_attn_weights false, an lm_head.weight that differs, a
# vocabulary of another size than vocab_size (65).
source "$(dirname "$0")/lib.sh"

G="$ROOT/examples/vocab/gpt2"
expect_exit 0 "kiln import --help mentions GPT-2" "$KILN" import --help
check "help: GPT-2" grep -q "GPT2LMHeadModel" out.txt
expect_exit 0 "ingest" "$KILN" ingest -q --split blank-line "$DATA/lee_background.txt"
expect_exit 0 "vocab import --bpe (OpenAI's files)" "$KILN" vocab import --bpe --name gpt2 "$G/encoder.json" "$G/vocab.bpe"
expect_exit 0 "tokenize" "$KILN" tokenize -q --vocab gpt2

cat > gpt2.json <<'JSON'
{"model": {"type": "gpt2", "n_embd": 32, "n_layer": 1, "n_head": 2, "n_positions": 64},
 "data": {"seq_len": 32, "batch_size": 4, "vocab": "gpt2", "valid_every": 0},
 "optimizer": {"type": "adamw", "lr": 1e-3},
 "budget": {"steps": 5},
 "checkpoint": {"dir": "ck", "every": 0, "keep": 1}}
JSON
expect_exit 0 "train a tiny GPT-2 (5 steps)" "$KILN" train -q --config gpt2.json
expect_exit 0 "export" "$KILN" export --checkpoint ck --out hf
expect_exit 0 "import" "$KILN" import --from hf hf --out im --json
check "import: json" $PY -c "
import json; d = json.load(open('out.txt'))
assert d['checkpoint'] == 'im/step-000000000' and d['architecture'] == 'GPT2LMHeadModel', d
assert d['tensors'] == 2 + 12 + 2, d"
check "import: checkpoint files" test -s im/step-000000000/model.safetensors -a -s im/step-000000000/vocab.json -a -s im/step-000000000/merges.txt
check "import: vocab.json and merges.txt as exported" bash -c 'cmp hf/vocab.json im/step-000000000/vocab.json && cmp hf/merges.txt im/step-000000000/merges.txt'
check "import: state.json" $PY -c "
import json; s = json.load(open('im/step-000000000/state.json'))
e = s['extra'] if 'extra' in s else s['extra_json']
e = json.loads(e) if isinstance(e, str) else e
assert e['model_type'] == 'gpt2' and e['architecture'] == 'GPT2LMHeadModel' and e['tokenizer'] == 'bpe', e
assert e['eot_id'] == 50256 and e['imported_from'].endswith('/hf'), e
c = s['config'] if 'config' in s else json.loads(s['config_json'])
assert c['model']['type'] == 'gpt2' and c['model']['n_embd'] == 32 and c['data']['objectives'] == ['clm'], c
assert c['data']['seq_len'] == 64, c"
expect_exit 0 "export the imported checkpoint" "$KILN" export --checkpoint im --out hf2
for f in model.safetensors vocab.json merges.txt config.json tokenizer_config.json special_tokens_map.json; do
  check "round trip: $f byte-identical" cmp hf/$f hf2/$f
done

check "the export as transformers reads it: Conv1D [in, out], no lm_head" $PY - <<'PY'
import json, struct
b = open("hf/model.safetensors", "rb").read()
n = struct.unpack("<Q", b[:8])[0]
h = json.loads(b[8:8 + n]); h.pop("__metadata__", None)
E = 32
want = {"attn.c_attn": [E, 3 * E], "attn.c_proj": [E, E], "mlp.c_fc": [E, 4 * E], "mlp.c_proj": [4 * E, E]}
for k, s in want.items():
    assert h["transformer.h.0.%s.weight" % k]["shape"] == s, (k, h["transformer.h.0.%s.weight" % k])
assert "lm_head.weight" not in h and h["transformer.wte.weight"]["shape"] == [50257, E]
assert all(v["dtype"] == "F32" for v in h.values())
PY

printf 'The quick brown fox jumps over the lazy dog. It was a bright cold day in April.\n' > ppl.txt
expect_exit 0 "eval --perplexity of the trained checkpoint" "$KILN" eval --checkpoint ck --perplexity ppl.txt --json
cp out.txt ppl_ck.json
expect_exit 0 "eval --perplexity of the imported one" "$KILN" eval --checkpoint im --perplexity ppl.txt --json
check "the same perplexity" $PY -c "
import json; a = json.load(open('ppl_ck.json')); b = json.load(open('out.txt'))
keys = ('tokens', 'scored', 'nll', 'perplexity', 'bits_per_byte', 'accuracy')
a = {k: a[k] for k in keys}
b = {k: b[k] for k in keys}
assert a == b, (a, b)"

# derive.py SRC DST MODE: a GPT-2 folder made from SRC
cat > derive.py <<'PY'
import json, os, shutil, struct, sys
import numpy as np
src, dst, mode = sys.argv[1:4]
os.makedirs(dst, exist_ok=True)
for f in os.listdir(src):
    if f != "model.safetensors": shutil.copy(os.path.join(src, f), dst)
b = open(os.path.join(src, "model.safetensors"), "rb").read()
n = struct.unpack("<Q", b[:8])[0]
h = json.loads(b[8:8 + n]); h.pop("__metadata__", None)
t = {k: np.frombuffer(b[8 + n + v["data_offsets"][0]:8 + n + v["data_offsets"][1]], dtype=np.float32).reshape(v["shape"]) for k, v in h.items()}
cfg = json.load(open(os.path.join(src, "config.json")))
P = cfg["n_positions"]
if mode == "hub":  # the hub's gpt2: no prefix, the causal-mask buffers, GPT2Model
    t = {k[len("transformer."):]: v for k, v in t.items()}
    for l in range(cfg["n_layer"]):
        t["h.%d.attn.bias" % l] = np.tril(np.ones((P, P), dtype=np.float32)).reshape(1, 1, P, P)
        t["h.%d.attn.masked_bias" % l] = np.array(-1e4, dtype=np.float32)
    cfg["architectures"] = ["GPT2Model"]
    cfg["n_ctx"] = 1024
elif mode == "tied":
    t["lm_head.weight"] = t["transformer.wte.weight"]
elif mode == "tied_bad":
    t["lm_head.weight"] = t["transformer.wte.weight"] + 1
elif mode == "noscale":
    cfg["scale_attn_weights"] = False
elif mode == "vocab":
    cfg["vocab_size"] = 50258
    t["transformer.wte.weight"] = np.concatenate([t["transformer.wte.weight"], t["transformer.wte.weight"][:1]])
json.dump(cfg, open(os.path.join(dst, "config.json"), "w"), indent=2)
hdr, off, names = {"__metadata__": {"format": "pt"}}, 0, list(t)
for k in names:
    a = np.ascontiguousarray(t[k])
    hdr[k] = {"dtype": "F32", "shape": list(a.shape), "data_offsets": [off, off + a.nbytes]}
    off += a.nbytes
hj = json.dumps(hdr).encode()
hj += b" " * ((8 - (8 + len(hj)) % 8) % 8)
with open(os.path.join(dst, "model.safetensors"), "wb") as f:
    f.write(struct.pack("<Q", len(hj)) + hj)
    for k in names: f.write(np.ascontiguousarray(t[k]).tobytes())
PY

check "make a hub-style folder" $PY derive.py hf hub hub
expect_exit 0 "import the hub's naming (no prefix, buffers, GPT2Model)" "$KILN" import --from hf hub --out imHub
check "hub naming: the same checkpoint tensors" cmp im/step-000000000/model.safetensors imHub/step-000000000/model.safetensors
check "make a folder with lm_head.weight" $PY derive.py hf tied tied
expect_exit 0 "import with lm_head.weight tied (checked, dropped)" "$KILN" import --from hf tied --out imTied
check "lm_head.weight is not stored" cmp im/step-000000000/model.safetensors imTied/step-000000000/model.safetensors

# --- refusals
cp -r hf nomerges; rm nomerges/merges.txt
expect_exit 66 "no merges.txt" "$KILN" import --from hf nomerges --out x
grep_err "merges.txt: missing" "names merges.txt"
cp -r hf fast; rm fast/vocab.json fast/merges.txt; echo '{}' > fast/tokenizer.json
expect_exit 66 "tokenizer.json only" "$KILN" import --from hf fast --out x
grep_err "tokenizer.json.*vocab.json and merges.txt" "says kiln needs vocab.json + merges.txt"
check "make an untied lm_head" $PY derive.py hf tiedbad tied_bad
expect_exit 65 "an lm_head.weight that differs from wte" "$KILN" import --from hf tiedbad --out x
grep_err "lm_head.weight' differs" "says so"
check "make scale_attn_weights false" $PY derive.py hf noscale noscale
expect_exit 65 "scale_attn_weights false" "$KILN" import --from hf noscale --out x
grep_err "scale_attn_weights false is not supported" "names it"
check "make a vocab_size the vocabulary does not have" $PY derive.py hf vocab vocab
expect_exit 65 "vocab_size 50258 with 50257 tokens" "$KILN" import --from hf vocab --out x
grep_err "50257 tokens.*vocab_size is 50258" "names both numbers"
echo '{"a": 0}' > vocab/vocab.json
expect_exit 65 "a vocab.json kbpe refuses" "$KILN" import --from hf vocab --out x
grep_err "vocab.json" "names the file"
check "nothing written by the refusals" test ! -e x
check "no temporary folders left" bash -c '! ls -a | grep -q "^\.import-"'

finish
