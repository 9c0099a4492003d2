#!/usr/bin/env bash
# test_import.sh: kiln import --from hf with the real binary. A tiny ALBERT
# and a tiny BERT trained on the bundled corpus are exported, imported and
# exported again: the two model.safetensors hold byte-identical tensors
# (parsed by hand: 8-byte header length, JSON header, data) and config.json's
# fields are kept. Folders made from the export by a python script import
# too: BertModel naming (no "bert." prefix, heads removed), an F16 copy, a
# sequence classifier with labels (its checkpoint says so in state.json).
# Refusals with their exit codes: missing files (66), pytorch_model.bin
# only, spiece.model only, an unknown architecture or model_type (65), a
# tensor of the wrong shape (65, both shapes named), an unknown tensor, a
# truncated safetensors file (65), an existing --out (73) and --force.
source "$(dirname "$0")/lib.sh"

expect_exit 0 "kiln import --help" "$KILN" import --help
expect_exit 0 "ingest" "$KILN" ingest -q "$DATA/enwiki-sample.xml.bz2"
expect_exit 0 "vocab train 3k" "$KILN" vocab train -q --size 3000 --name v3k
expect_exit 0 "tokenize" "$KILN" tokenize -q

cat > albert.json <<'JSON'
{
  "model": {"type": "albert", "embedding_size": 16, "hidden_size": 32, "num_hidden_layers": 2,
            "num_attention_heads": 2, "intermediate_size": 64, "max_position_embeddings": 64},
  "data": {"objectives": ["mlm", "sop"], "seq_len": 32, "batch_size": 4, "valid_every": 0},
  "optimizer": {"type": "lamb", "lr": 2e-3, "warmup_steps": 1},
  "budget": {"steps": 5},
  "checkpoint": {"dir": "ckA", "every": 0, "keep": 1}
}
JSON
sed -e 's/"albert", "embedding_size": 16,/"bert",/' -e 's/"sop"/"nsp"/' -e 's/ckA/ckB/' albert.json > bert.json
expect_exit 0 "train a tiny ALBERT (5 steps)" "$KILN" train -q --config albert.json
expect_exit 0 "train a tiny BERT (5 steps)" "$KILN" train -q --config bert.json

# compare.py A B: same tensor names, dtypes, shapes and bytes in two safetensors files
cat > compare.py <<'PY'
import json, struct, sys
def read(p):
    b = open(p, "rb").read()
    n = struct.unpack("<Q", b[:8])[0]
    h = json.loads(b[8:8 + n])
    h.pop("__metadata__", None)
    return {k: (v["dtype"], v["shape"], b[8 + n + v["data_offsets"][0]:8 + n + v["data_offsets"][1]]) for k, v in h.items()}
a, b = read(sys.argv[1]), read(sys.argv[2])
assert sorted(a) == sorted(b), (sorted(set(a) ^ set(b)))
for k in a:
    assert a[k] == b[k], k
print(len(a), "tensors identical")
PY

for m in A B; do
  expect_exit 0 "export $m" "$KILN" export --checkpoint ck$m --out hf$m
  expect_exit 0 "import $m" "$KILN" import --from hf hf$m --out im$m --json
  check "import $m: json" $PY -c "
import json; d = json.load(open('out.txt'))
assert d['checkpoint'] == 'im$m/step-000000000' and d['tensors'] > 10, d
assert d['architecture'] == ('AlbertForPreTraining' if '$m' == 'A' else 'BertForPreTraining'), d"
  check "import $m: checkpoint files" test -s im$m/step-000000000/model.safetensors -a -s im$m/step-000000000/state.json -a -s im$m/step-000000000/vocab.txt
  check "import $m: vocab.txt copied" cmp hf$m/vocab.txt im$m/step-000000000/vocab.txt
  check "import $m: state.json" $PY -c "
import json; s = json.load(open('im$m/step-000000000/state.json'))
assert s['step'] == 0
e = s['extra'] if 'extra' in s else s['extra_json']
e = json.loads(e) if isinstance(e, str) else e
assert e['architecture'].endswith('ForPreTraining') and sorted(e['heads']) == ['mlm', 'sentence'] and e['pooler'], e
assert e['imported_from'].endswith('/hf$m') and e['num_labels'] == 0 and e['cased'] is False, e"
  expect_exit 0 "export the imported $m" "$KILN" export --checkpoint im$m --out hf2$m
  check "round trip $m: byte-identical tensors" $PY compare.py hf$m/model.safetensors hf2$m/model.safetensors
  check "round trip $m: config.json kept" $PY -c "
import json; a = json.load(open('hf$m/config.json')); b = json.load(open('hf2$m/config.json'))
assert a == b, [k for k in set(a) | set(b) if a.get(k) != b.get(k)]"
  check "round trip $m: tokenizer files kept" cmp hf$m/tokenizer_config.json hf2$m/tokenizer_config.json
done
expect_exit 0 "predict with an imported checkpoint" "$KILN" predict --checkpoint imA "the [MASK] of the city"

# --- BertModel naming: no prefix, no heads (made by python from the BERT export)
cat > derive.py <<'PY'
# derive.py SRC DST MODE: a Hugging Face folder made from SRC
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
H = cfg["hidden_size"]
if mode == "basemodel":
    t = {k[len("bert."):]: v for k, v in t.items() if k.startswith("bert.")}
    t["embeddings.position_ids"] = np.arange(cfg["max_position_embeddings"], dtype=np.int64).reshape(1, -1)
    cfg["architectures"] = ["BertModel"]
elif mode == "f16":
    t = {k: v.astype(np.float16) for k, v in t.items()}
elif mode == "tied":
    t["cls.predictions.decoder.weight"] = t["bert.embeddings.word_embeddings.weight"]
    t["cls.predictions.decoder.bias"] = t["cls.predictions.bias"]
elif mode == "tied_bad":
    t["cls.predictions.decoder.weight"] = t["bert.embeddings.word_embeddings.weight"] + 1
elif mode == "classifier":
    t = {k: v for k, v in t.items() if k.startswith("bert.")}
    t["classifier.weight"] = np.arange(3 * H, dtype=np.float32).reshape(3, H) / 100
    t["classifier.bias"] = np.array([0.5, -0.5, 0.25], dtype=np.float32)
    cfg["architectures"] = ["BertForSequenceClassification"]
    cfg["id2label"] = {"0": "neg", "1": "neu\"tral", "2": "pos"}
    cfg["label2id"] = {"neg": 0, "neu\"tral": 1, "pos": 2}
elif mode == "badshape":
    t["bert.encoder.layer.0.attention.self.query.weight"] = np.zeros((H, H + 1), dtype=np.float32)
elif mode == "extra":
    t["bert.encoder.layer.0.attention.self.rotary.weight"] = np.zeros((H,), dtype=np.float32)
elif mode == "arch":
    cfg["architectures"] = ["BertForTokenClassification"]
elif mode == "modeltype":
    cfg["model_type"] = "roberta"
json.dump(cfg, open(os.path.join(dst, "config.json"), "w"), indent=2)
names = sorted(t)
hdr, off = {"__metadata__": {"format": "pt"}}, 0
dt = {np.dtype(np.float32): "F32", np.dtype(np.float16): "F16", np.dtype(np.int64): "I64"}
for k in names:
    a = np.ascontiguousarray(t[k])
    hdr[k] = {"dtype": dt[a.dtype], "shape": list(a.shape), "data_offsets": [off, off + a.nbytes]}
    off += a.nbytes
hj = json.dumps(hdr).encode()
hj += b" " * ((8 - (8 + len(hj)) % 8) % 8)
with open(os.path.join(dst, "model.safetensors"), "wb") as f:
    f.write(struct.pack("<Q", len(hj)) + hj)
    for k in names: f.write(np.ascontiguousarray(t[k]).tobytes())
PY

check "make a BertModel folder" $PY derive.py hfB base basemodel
expect_exit 0 "import BertModel naming" "$KILN" import --from hf base --out imBase --json
check "BertModel: architecture and count" $PY -c "
import json; d = json.load(open('out.txt')); assert d['architecture'] == 'BertModel' and d['tensors'] > 10, d"
check "BertModel: kiln's prefixed names, same bytes" $PY - <<'PY'
import json, struct
def read(p):
    b = open(p, "rb").read(); n = struct.unpack("<Q", b[:8])[0]; h = json.loads(b[8:8 + n]); h.pop("__metadata__", None)
    return {k: b[8 + n + v["data_offsets"][0]:8 + n + v["data_offsets"][1]] for k, v in h.items()}
a, b = read("hfB/model.safetensors"), read("imBase/step-000000000/model.safetensors")
want = {k: v for k, v in a.items() if k.startswith("bert.")}
assert set(b) == set(want), set(b) ^ set(want)
assert all(b[k] == want[k] for k in b)
PY

check "make an F16 folder" $PY derive.py hfB f16 f16
expect_exit 0 "import F16 tensors (converted)" "$KILN" import --from hf f16 --out imF16
check "F16: the F32 values are the F16 values" $PY - <<'PY'
import json, struct
import numpy as np
def read(p):
    b = open(p, "rb").read(); n = struct.unpack("<Q", b[:8])[0]; h = json.loads(b[8:8 + n]); h.pop("__metadata__", None)
    return {k: (v["dtype"], b[8 + n + v["data_offsets"][0]:8 + n + v["data_offsets"][1]]) for k, v in h.items()}
a, b = read("f16/model.safetensors"), read("imF16/step-000000000/model.safetensors")
assert set(a) == set(b)
for k in a:
    assert a[k][0] == "F16" and b[k][0] == "F32"
    assert np.frombuffer(a[k][1], np.float16).astype(np.float32).tobytes() == b[k][1], k
PY
check "make a folder with tied copies" $PY derive.py hfB tied tied
expect_exit 0 "import with tied decoder copies (checked, dropped)" "$KILN" import --from hf tied --out imTied
check "tied copies are not stored" cmp imB/step-000000000/model.safetensors imTied/step-000000000/model.safetensors

check "make a classifier folder" $PY derive.py hfB cls classifier
expect_exit 0 "import BertForSequenceClassification" "$KILN" import --from hf cls --out imCls --json
check "classifier: state.json heads and labels" $PY -c "
import json; s = json.load(open('imCls/step-000000000/state.json'))
e = s['extra'] if 'extra' in s else s['extra_json']
e = json.loads(e) if isinstance(e, str) else e
assert e['heads'] == ['classify'] and e['num_labels'] == 3 and e['id2label'] == ['neg', 'neu\"tral', 'pos'], e
assert e['problem_type'] == 'single_label_classification' and e['architecture'] == 'BertForSequenceClassification', e"

# --- refusals
mkdir -p empty
expect_exit 66 "a folder without config.json" "$KILN" import --from hf empty --out x
grep_err "config.json" "names config.json"
expect_exit 66 "a missing folder" "$KILN" import --from hf nope --out x
cp -r hfB novocab; rm novocab/vocab.txt
expect_exit 66 "no vocab.txt" "$KILN" import --from hf novocab --out x
grep_err "vocab.txt" "names vocab.txt"
touch novocab/spiece.model
expect_exit 66 "spiece.model only" "$KILN" import --from hf novocab --out x
grep_err "spiece.model.*WordPiece" "says kiln needs a WordPiece vocab.txt"
cp -r hfB pt; mv pt/model.safetensors pt/pytorch_model.bin
expect_exit 66 "pytorch_model.bin only" "$KILN" import --from hf pt --out x
grep_err "pytorch_model.bin.*safetensors only" "says only safetensors"
check "make an unknown architecture" $PY derive.py hfB arch arch
expect_exit 65 "unknown architecture" "$KILN" import --from hf arch --out x
grep_err "BertForTokenClassification" "names it"
check "make an unknown model_type" $PY derive.py hfB mt modeltype
expect_exit 65 "unknown model_type" "$KILN" import --from hf mt --out x
grep_err "roberta" "names it"
check "make a wrong shape" $PY derive.py hfB bad badshape
expect_exit 65 "a tensor of the wrong shape" "$KILN" import --from hf bad --out x
grep_err "bert.encoder.layer.0.attention.self.query.weight' has shape \[32, 33\], config.json implies \[32, 32\]" "names the tensor and both shapes"
check "make an unknown tensor" $PY derive.py hfB extra extra
expect_exit 65 "an unknown tensor" "$KILN" import --from hf extra --out x
grep_err "rotary.weight' is not a tensor of BertForPreTraining" "names it"
check "make an untied decoder" $PY derive.py hfB tiedbad tied_bad
expect_exit 65 "a decoder copy that differs from the embeddings" "$KILN" import --from hf tiedbad --out x
grep_err "differs" "says so"
cp -r hfB trunc; head -c 5000 hfB/model.safetensors > trunc/model.safetensors
expect_exit 65 "a truncated safetensors file" "$KILN" import --from hf trunc --out x
grep_err "model.safetensors" "names the file"
check "nothing written by the refusals" test ! -e x
expect_exit 73 "an existing --out" "$KILN" import --from hf hfA --out imB
check "the existing checkpoint is untouched" cmp imB/step-000000000/model.safetensors imTied/step-000000000/model.safetensors
expect_exit 0 "--force replaces it whole" "$KILN" import --from hf hfA --out imB --force
check "replaced: the ALBERT now" grep -q albert imB/step-000000000/state.json
check "no temporary folders left" bash -c '! ls -a | grep -q "^\.import-"'
expect_exit 64 "--from other than hf" "$KILN" import --from torch hfA --out y
expect_exit 64 "no --out" "$KILN" import --from hf hfA

finish
