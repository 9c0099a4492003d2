"""tests/ref/torch_parity.py: checks kiln's trainer math against PyTorch.

Usage: /usr/bin/python3 tests/ref/torch_parity.py FILE.safetensors...
(files written by `kiln_trainer_ref parity DIR`, see tests/ref/trainer_ref.c,
each with its registry manifest FILE.manifest.json next to it)

For each file: reads kiln's registry manifest (trainer/registry.h) and
rebuilds the model it describes from torch.nn modules (torch_models.py:
Hugging Face's AlbertForPreTraining / BertForPreTraining, or
*ForSequenceClassification for the classify head; pre_ln and causal as
flags of the BERT model; ELECTRA's pair = ElectraForPreTraining + a
`generator` ElectraForMaskedLM sharing its embeddings module, or
ElectraForSequenceClassification; GPT-2 = GPT2LMHeadModel with Conv1D
layers; DistilBertForMaskedLM and DistilBertForSequenceClassification). The registry must equal torch's named_parameters strictly: same
names, same order, same shapes (a tensor flagged transpose, GPT-2's Conv1D
weights, with its shape reversed: kiln keeps [out, in], Conv1D [in, out]; the
file's parameters, gradients and optimizer results of such a tensor are
transposed before anything is compared); every decay flag must agree with
torch_models.no_decay, the transpose flags with torch_models.transposed (no
tensor frozen), tensors with init "one" / "zero" must hold ones / zeros, and
the aliases must be Hugging Face's tied decoder (when the model has the MLM
head; GPT-2's lm_head.weight). Then
loads kiln's initial parameters by name, runs the same batch and compares,
elementwise, |kiln - torch| <= ATOL + RTOL |torch|:
  - the eval logits of each head (MLM at the masked slots, sentence,
    classifier, ELECTRA's discriminator at every real token, GPT-2's LM
    logits at every real token: kiln's final hidden state times wte, and
    the same logits by kiln's incremental decoding, trainer/generate.c)
                                                        RTOL 1e-4, ATOL 1e-5
  - each loss term of kiln (out.losses, named by the metadata loss_terms:
    mlm_loss, sop_loss / nsp_loss, cls_loss = CE over rows with label >= 0,
    mse = MSE over rows with a non-NaN target, disc_loss = BCE with logits
    over the real tokens, lm_loss = mean next-token CE over the real tokens
    whose next token is real), and the pass's loss out.loss = sum of
    weight * term (weights: metadata loss_weights; ELECTRA's disc_loss has
    disc_weight)                                         relative 1e-5
  - the gradient of every parameter after one pass of that weighted sum
                                                         RTOL 1e-4, ATOL 1e-5
  - every parameter after 5 AdamW steps (torch.optim.AdamW, decay / no-decay
    groups from the manifest's decay flags, clip_grad_norm_, linear warmup +
    decay) and after 5 LAMB steps (the formula of trainer/optim.h, cosine
    schedule), and the loss before each step            RTOL 1e-4, ATOL 1e-5
    except the attention key biases (DistilBERT's k_lin.bias; GPT-2: the
    middle third of c_attn.bias):
    their gradient is zero up to rounding
    (softmax ignores a shift shared by a row's scores), so Adam's normalized
    update turns rounding noise into steps of up to lr * |g| / eps in either
    direction, in both implementations alike. For them the gradients must be
    below 1e-6 (checked), and the parameters agree within ATOL 1e-4.
ELECTRA's pair samples in kiln only: the file holds kiln's discriminator
input and labels of every pass (eval, the gradient pass, each optimizer
step), which torch's discriminator reads as is (no gradient through them).
They are checked for form (the batch's ids except at the masked slots of
weight > 0, which hold a draw; label 1 exactly where the draw differs from
the original token, 0 at the other real tokens, -1 past the length) and
for content: torch redoes each draw by inverse CDF of softmax(its own
generator logits + bias) in float64 at kiln's uniform number (<pass>.rtd_u)
and must find kiln's token, except where u lies within 1e-4 of a CDF
boundary between the two tokens (reported as "at a boundary").
With KILN_PARITY_PRECISION=bf16 (files of kiln_trainer_ref parity DIR
--precision bf16: kiln's products on bfloat16 operands), each tensor is
compared as a whole, ||kiln - torch||_2 <= 2e-2 ||torch||_2 + 1e-5 sqrt(n),
losses within relative 5e-3, the zero gradients below 1e-4, and the
parameters after the optimizer steps are not compared (the losses of the
steps are).
Prints the worst error of each check; exits 1 when any check fails, 2 when
the input is unusable.
"""
import json
import math
import os
import struct
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch_models  # noqa: E402

RTOL, ATOL = 1e-4, 1e-5
LOSS_RTOL = 1e-5
DEAD_GRAD, DEAD_ATOL = 1e-6, 1e-4
BF16 = os.environ.get("KILN_PARITY_PRECISION") == "bf16"
if BF16:
    # kiln_trainer_ref parity DIR --precision bf16: kiln's products on bf16
    # operands (8 significant bits: a relative rounding of 2^-9 per operand)
    # against torch in fp32. Elementwise bounds do not hold there (an element
    # that is a difference of large terms keeps their rounding), so each
    # tensor is compared as a whole: ||kiln - torch||_2 <= RTOL ||torch||_2 +
    # ATOL sqrt(n). The attention key biases' zero gradients carry bf16
    # rounding noise (below DEAD_GRAD). The parameters after the optimizer
    # steps are not compared (Adam's and LAMB's normalised updates turn the
    # noise of near-zero gradients into steps of about lr); the losses of
    # the steps are (LOSS_RTOL).
    RTOL, ATOL = 2e-2, 1e-5
    LOSS_RTOL = 5e-3
    DEAD_GRAD = 1e-4
DTYPES = {"F32": np.float32, "F64": np.float64, "I32": np.int32, "I64": np.int64, "U8": np.uint8}


def read_safetensors(path):
    raw = open(path, "rb").read()
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8:8 + n])
    meta = header.pop("__metadata__", {})
    data = raw[8 + n:]
    out = {}
    for name, t in header.items():
        b, e = t["data_offsets"]
        out[name] = np.frombuffer(data[b:e], dtype=DTYPES[t["dtype"]]).reshape(t["shape"]).copy()
    return out, meta


class Checker:
    def __init__(self, tag):
        self.tag, self.failed, self.lines = tag, 0, []

    def close(self, what, kiln, ref, rtol=RTOL, atol=ATOL):
        kiln = np.asarray(kiln, dtype=np.float64)
        ref = np.asarray(ref, dtype=np.float64)
        if kiln.shape != ref.shape:
            self.failed += 1
            print(f"  FAILED {self.tag} {what}: shape {kiln.shape} vs torch {ref.shape}")
            return
        if BF16 and kiln.size:
            e2, r2 = float(np.linalg.norm(kiln - ref)), float(np.linalg.norm(ref))
            tol2 = atol * math.sqrt(kiln.size) + rtol * r2
            if e2 > tol2:
                self.failed += 1
                print(f"  FAILED {self.tag} {what}: ||kiln - torch|| {e2:.3g} > {tol2:.3g} (||torch|| {r2:.3g})")
            return e2 / tol2, float(np.abs(kiln - ref).max() / max(np.abs(ref).max(), 1e-30)), int(e2 > tol2)
        err = np.abs(kiln - ref)
        tol = atol + rtol * np.abs(ref)
        bad = int((err > tol).sum())
        worst = float((err / tol).max()) if err.size else 0.0
        rel = float(err.max() / max(np.abs(ref).max(), 1e-30)) if err.size else 0.0
        if bad:
            self.failed += 1
            i = np.unravel_index(int(np.argmax(err / tol)), err.shape)
            print(f"  FAILED {self.tag} {what}: {bad} of {err.size} elements off; worst at {tuple(int(x) for x in i)}:"
                  f" kiln {kiln[i]:.9g} torch {ref[i]:.9g}")
        return worst, rel, bad

    def group(self, label, items):
        """items: (what, kiln, ref[, atol]) checked together; one summary line with the worst
        err / tol and the worst max|err| / max|ref| of a tensor (tensors above 1e-6, at the default ATOL)."""
        worst, rel, n = 0.0, 0.0, 0
        for it in items:
            what, k, r = it[:3]
            res = self.close(what, k, r, RTOL, it[3] if len(it) > 3 else ATOL)
            if res:
                worst, n = max(worst, res[0]), n + 1
                if np.abs(r).max() > 1e-6 and (len(it) == 3 or it[3] == ATOL):
                    rel = max(rel, res[1])
        print(f"  {self.tag} {label}: {n} tensors, worst err/tol {worst:.3f}, max |err| / max |ref| {rel:.2e}")


def lr_at(meta, kind, step):
    lr = float(meta["opt_lr_" + kind])
    w, total = int(meta["opt_warmup_steps"]), int(meta["opt_total_steps"])
    rmin = float(meta["opt_min_lr_ratio"])
    sched = meta["opt_schedule_" + kind]
    if w > 0 and step <= w:
        return lr * step / w
    if sched == "constant" or total <= w:
        return lr
    t = min(1.0, (step - w) / (total - w))
    if sched == "cosine":
        return lr * (rmin + (1 - rmin) * 0.5 * (1 + math.cos(math.pi * t)))
    return lr * (rmin + (1 - rmin) * (1 - t))


def read_manifest(path):
    """kiln's registry manifest next to the safetensors file (trainer/registry.h)."""
    with open(path, encoding="utf-8") as f:
        man = json.load(f)
    if man.get("format") != "kiln-registry" or man.get("version") != 1:
        raise ValueError(f"{path}: not a kiln-registry version 1 manifest")
    return man


def shape_of(t):
    """a manifest tensor's shape as Hugging Face holds it ([in, out] for a transposed one)"""
    shape = [int(d) for d in t["shape"]]
    return shape[::-1] if t["transpose"] else shape


def to_hf_layout(man, T):
    """kiln's tensors flagged transpose (GPT-2's Conv1D weights, kept [out, in])
    in the file, as parameters, gradients and optimizer results, turned to
    Hugging Face's [in, out] in place"""
    for t in man["tensors"]:
        if t["transpose"]:
            for pre in ("", "grad.", "adamw.", "lamb."):
                if pre + t["name"] in T:
                    T[pre + t["name"]] = np.ascontiguousarray(T[pre + t["name"]].T)


def check_registry(ck, man, model, T):
    """kiln's registered tensors against torch's named_parameters (names,
    order, shapes), its flags against torch_models' conventions, its aliases
    against Hugging Face's tied decoder, and the file's tensors against the
    list. Returns the names (state_dict order) or None when they differ."""
    tag = ck.tag
    kiln = [(t["name"], shape_of(t)) for t in man["tensors"]]
    ref = [(n, list(p.shape)) for n, p in model.named_parameters()]
    if kiln != ref:
        kn, rn = dict(kiln), dict(ref)
        missing = [n for n in rn if n not in kn]
        extra = [n for n in kn if n not in rn]
        shapes = [f"{n} {kn[n]} vs {rn[n]}" for n in kn if n in rn and kn[n] != rn[n]]
        order = next((f"#{i}: kiln {k[0]}, torch {r[0]}" for i, (k, r) in enumerate(zip(kiln, ref)) if k[0] != r[0]),
                     "")
        print(f"  FAILED {tag}: registry differs from Hugging Face's named_parameters: missing {missing[:5]},"
              f" extra {extra[:5]}, shapes {shapes[:5]}, first order difference {order}")
        ck.failed += 1
        return None
    names = [n for n, _ in kiln]
    for t in man["tensors"]:
        n = t["name"]
        if n not in T or list(T[n].shape) != shape_of(t):
            print(f"  FAILED {tag}: {n} of the manifest is not in the file with its shape")
            ck.failed += 1
            return None
        flags = (bool(t["decay"]), bool(t["frozen"]), bool(t["transpose"]))
        want = (not torch_models.no_decay(n), False, torch_models.transposed(man["model_type"], n))
        if flags != want:
            print(f"  FAILED {tag}: {n}: (decay, frozen, transpose) {flags}, torch_models expects {want}")
            ck.failed += 1
        init = {"one": 1.0, "zero": 0.0}.get(t["init"])
        if init is not None and not np.all(T[n] == init):
            print(f"  FAILED {tag}: {n}: init '{t['init']}' but other values")
            ck.failed += 1
    extra = [n for n in T if n.split(".")[0] not in ("batch", "out", "grad", "adamw", "lamb", "eval", "train") and n not in names]
    if extra:
        print(f"  FAILED {tag}: tensors of the file not in the manifest: {extra[:5]}")
        ck.failed += 1
    kind = man["model_type"] + ("_pair" if man["model_type"] == "electra" and "token" in man["heads"] else "")
    want = [list(torch_models.TIED_DECODER[kind])] if "mlm" in man["heads"] or kind == "gpt2" else []
    got = [[a["name"], a["target"]] for a in man["aliases"]]
    if got != want:
        print(f"  FAILED {tag}: aliases {got}, Hugging Face ties {want}")
        ck.failed += 1
    return names


def rtd_form(ck, what, T, rids, rlab):
    """kiln's corrupted input and labels (B, L) against the batch (see the docstring)."""
    ids, lengths = T["batch.input_ids"], T["batch.lengths"]
    nm, pos, mids, mw = T["batch.n_masked"], T["batch.masked_positions"], T["batch.masked_ids"], \
        T["batch.masked_weights"]
    B, L = ids.shape
    want_ids, want_lab = ids.copy(), np.full((B, L), -1, dtype=np.int64)
    for b in range(B):
        want_lab[b, :lengths[b]] = 0
        for p in range(nm[b]):
            if mw[b, p] > 0:
                t = pos[b, p]
                want_ids[b, t] = rids[b, t]
                want_lab[b, t] = int(rids[b, t] != mids[b, p])
    bad_ids = int((rids != want_ids).sum())
    bad_lab = int((rlab != want_lab).sum())
    if bad_ids or bad_lab:
        ck.failed += 1
        print(f"  FAILED {ck.tag} {what}: {bad_ids} input ids outside the masked slots changed, {bad_lab} labels"
              f" differ from (masked and draw != original)")
    return int((want_lab == 1).sum())


def rtd_draws(T, u, glog, rids):
    """Redoes kiln's draws from torch's generator logits glog (M, V, bias
    included) at kiln's uniform numbers u (B, P): (slots, same, at a boundary,
    differing)."""
    nm, pos, mw = T["batch.n_masked"], T["batch.masked_positions"], T["batch.masked_weights"]
    z = glog.detach().double().numpy()
    n = same = edge = off = 0
    i = 0
    for b in range(len(nm)):
        for p in range(nm[b]):
            row, i = z[i], i + 1
            if not mw[b, p] > 0:
                continue
            e = np.exp(row - row.max())
            cdf = np.cumsum(e) / e.sum()
            want = min(int(np.searchsorted(cdf, u[b, p], side="right")), len(cdf) - 1)
            got = int(rids[b, pos[b, p]])
            n += 1
            if got == want:
                same += 1
                continue
            lo, hi = min(got, want), max(got, want)
            if np.min(np.abs(cdf[lo:hi] - u[b, p])) < 1e-4:
                edge += 1
            else:
                off += 1
    return n, same, edge, off


def load(model, tensors):
    """Loads tensors (by named_parameters name) into model, strictly: the
    state_dict names that hold a Parameter listed under another name (ELECTRA's
    shared embeddings, the tied generator decoder) get the same tensor."""
    by_id = {id(p): n for n, p in model.named_parameters()}
    model.load_state_dict({k: tensors[by_id[id(v)]] for k, v in model.state_dict(keep_vars=True).items()},
                          strict=True)


def main(path):
    tag = os.path.basename(path).split(".")[0]
    T, meta = read_safetensors(path)
    man = read_manifest(path[:-len(".safetensors")] + ".manifest.json")
    c = {k: meta[k] for k in ("model_type", "hidden_act")}
    for k in ("vocab_size", "embedding_size", "hidden_size", "num_hidden_layers", "num_hidden_groups",
              "num_attention_heads", "intermediate_size", "max_position_embeddings", "type_vocab_size",
              "pad_token_id"):
        c[k] = int(meta[k])
    if c["model_type"] == "electra":
        for k in ("generator_hidden_size", "generator_num_hidden_layers", "generator_num_attention_heads",
                  "generator_intermediate_size"):
            c[k] = int(meta[k])
    c["layer_norm_eps"] = float(meta["layer_norm_eps"])
    c["classifier_dropout"] = max(0.0, float(meta.get("classifier_dropout", "0")))
    if man["model_type"] != c["model_type"]:
        print(f"  FAILED {tag}: manifest model_type {man['model_type']}, file {c['model_type']}")
        return 1
    heads = man["heads"]
    to_hf_layout(man, T)
    ck = Checker(tag)
    torch.manual_seed(0)
    model = torch_models.build(c, man)
    names = check_registry(ck, man, model, T)
    if names is None:
        return 1
    init = {n: torch.from_numpy(T[n]) for n in names}
    load(model, init)
    print(f"  {tag} ({', '.join(heads)}{', pre-LN' if man['pre_ln'] else ''}{', causal' if man['causal'] else ''}"
          f"{', %d labels' % man['num_labels'] if 'classify' in heads else ''}): registry = named_parameters,"
          f" {len(names)} tensors loaded by name ({sum(v.numel() for v in init.values())} floats),"
          f" aliases {len(man['aliases'])}")

    # the batch
    ids = torch.from_numpy(T["batch.input_ids"]).long()
    types = torch.from_numpy(T["batch.token_type_ids"]).long()
    lengths = T["batch.lengths"]
    B, L = ids.shape
    mask = torch.tensor([[1 if t < lengths[b] else 0 for t in range(L)] for b in range(B)])
    mrow = mpos = mlab = mwt = None
    if "mlm" in heads:
        nm, pos, mids, mw = T["batch.n_masked"], T["batch.masked_positions"], T["batch.masked_ids"], \
            T["batch.masked_weights"]
        mrow = torch.tensor([b for b in range(B) for p in range(nm[b])])
        mpos = torch.tensor([int(pos[b, p]) for b in range(B) for p in range(nm[b])])
        mlab = torch.tensor([int(mids[b, p]) for b in range(B) for p in range(nm[b])])
        mwt = torch.tensor([float(mw[b, p]) for b in range(B) for p in range(nm[b])])
    labels = torch.from_numpy(T["batch.labels"]).long()
    targets = torch.from_numpy(T["batch.targets"]) if "batch.targets" in T else None
    terms = meta["loss_terms"].split(",")
    weights = [float(w) for w in meta["loss_weights"].split(",")] if "loss_weights" in meta else [1.0] * len(terms)
    pair = "mlm" in heads and "token" in heads
    rtd = {}  # pass -> (discriminator input, labels, uniforms) of kiln
    if pair:
        for p in ("eval", "train"):
            rtd[p] = (T[p + ".rtd_ids"], T[p + ".rtd_labels"], T[p + ".rtd_u"])
        for p in ("adamw", "lamb"):
            for s in range(5):
                rtd[f"{p}.{s + 1}"] = (T[p + ".rtd_ids"][s], T[p + ".rtd_labels"][s], T[p + ".rtd_u"][s])
        said = []
        for p, (rids, rlab, _) in rtd.items():
            said.append(rtd_form(ck, f"{p} draws", T, rids, rlab))
        same = all(np.array_equal(rtd["train"][k], rtd[p][k]) for p in ("adamw.1", "lamb.1") for k in (0, 1))
        if not same:
            ck.failed += 1
            print(f"  FAILED {tag}: the first optimizer steps (same weights, key 1) drew other tokens than the"
                  f" gradient pass")
        print(f"  {tag} draws: {len(rtd)} passes of kiln's discriminator input well formed;"
              f" replaced tokens per pass {min(said)} to {max(said)} of {int(mask.sum())}")
    draws, redone = [0, 0, 0, 0], set()
    cur = ["train"]
    if pair:
        w = dict(zip(terms, weights))
        if terms != ["mlm_loss", "disc_loss"] or w["mlm_loss"] != 1.0 or w["disc_loss"] != float(meta["disc_weight"]):
            ck.failed += 1
            print(f"  FAILED {tag}: loss terms {terms} weights {weights}, want mlm_loss 1 and disc_loss"
                  f" disc_weight = {meta['disc_weight']}")

    def run():
        """(outputs by file name, loss terms by kiln's name); ELECTRA's pair
        reads kiln's draws of pass cur[0]"""
        if pair:
            rids, rlab, u = rtd[cur[0]]
            glog, dlog = model(ids, types, mask, mrow, mpos, torch.from_numpy(rids).long())
            dl = torch.from_numpy(rlab).long()
            mlm = torch_models.mlm_loss(glog, mlab, mwt)
            if cur[0] not in redone:
                redone.add(cur[0])
                for k, v in enumerate(rtd_draws(T, u, glog, rids)):
                    draws[k] += v
            return {"out.mlm_logits": glog, "out.token_logits": dlog * mask}, \
                {"mlm_loss": mlm, "disc_loss": torch_models.disc_loss(dlog, dl)}
        if c["model_type"] == "distilbert" and "classify" in heads:  # no token types
            cl = model(ids, mask)
            name = "cls_loss" if cl.shape[1] > 1 else "mse"
            return {"out.class_logits": cl}, {name: torch_models.class_loss(cl, labels, targets)}
        if c["model_type"] == "distilbert":  # no token types
            lg = model(ids, mask, mrow, mpos)
            return {"out.mlm_logits": lg}, {"mlm_loss": torch_models.mlm_loss(lg, mlab, mwt)}
        if c["model_type"] == "gpt2":
            lg = model(ids, mask)
            out = {"out.lm_logits": lg * mask[:, :, None]}
            if "out.gen_logits" in T:  # trainer/generate.c's incremental decoding of the same rows
                out["out.gen_logits"] = out["out.lm_logits"]
            return out, {"lm_loss": torch_models.lm_loss(lg, ids, lengths)}
        if "classify" in heads:
            cl = model(ids, types, mask)
            name = "cls_loss" if cl.shape[1] > 1 else "mse"
            return {"out.class_logits": cl}, {name: torch_models.class_loss(cl, labels, targets)}
        lg, sl = model(ids, types, mask, mrow, mpos)
        mlm, sent = torch_models.losses(lg, sl, mlab, mwt, labels)
        return {"out.mlm_logits": lg, "out.sent_logits": sl}, \
            {"mlm_loss": mlm, "sop_loss": sent, "nsp_loss": sent}

    def total():
        out, ls = run()
        missing = [t for t in terms if t not in ls]
        if missing:
            raise ValueError(f"loss terms {missing} of kiln are not computed here")
        return sum(w * ls[t] for w, t in zip(weights, terms))

    # forward
    cur[0] = "eval"
    with torch.no_grad():
        out, ls = run()
    ck.group("logits", [(k.split(".")[1].replace("_", " "), T[k], v.numpy()) for k, v in out.items()])
    cur[0] = "train"  # the loss terms are the gradient pass's (ELECTRA: its own draws)
    with torch.no_grad():
        out, ls = run()
    said_k, said_t, rel = [], [], 0.0
    for i, t in enumerate(terms):
        res = ck.close(t, T["out.losses"][i], float(ls[t]), LOSS_RTOL, 0)
        rel = max(rel, res[1] if res else math.inf)
        said_k.append(f"{t} {T['out.losses'][i]:.7f}")
        said_t.append(f"{t} {float(ls[t]):.7f}")
    with torch.no_grad():
        tl = float(total())
    res = ck.close("loss", T["out.loss"][0], tl, LOSS_RTOL, 0)
    rel = max(rel, res[1] if res else math.inf)
    said_k.append(f"loss {T['out.loss'][0]:.7f}")
    said_t.append(f"loss {tl:.7f}")
    print(f"  {tag} losses: kiln {' '.join(said_k)}; torch {' '.join(said_t)}; worst relative error {rel:.2e}")

    # gradients
    model.zero_grad()
    total().backward()
    params = dict(model.named_parameters())
    ck.group("gradients", [(f"grad {n}", T["grad." + n], params[n].grad.numpy()) for n in names])
    # the key biases (GPT-2: the middle third of c_attn.bias)
    dead = {n: slice(None) for n in names if n.endswith(("key.bias", "k_lin.bias"))}  # DistilBERT: k_lin
    if c["model_type"] == "gpt2":
        H = c["hidden_size"]
        dead.update({n: slice(H, 2 * H) for n in names if n.endswith("c_attn.bias")})
    for n, sl in dead.items():
        top = max(np.abs(T["grad." + n][sl]).max(), float(params[n].grad[sl].abs().max()))
        if top > DEAD_GRAD:
            ck.failed += 1
            print(f"  FAILED {tag} grad {n}: {top:.3g}, should be zero up to rounding")

    # optimizers: decay flags from kiln's manifest (checked against no_decay above)
    flags = {t["name"]: bool(t["decay"]) for t in man["tensors"]}
    decay = [n for n in names if flags[n]]
    nodecay = [n for n in names if not flags[n]]
    for kind in ("adamw", "lamb"):
        load(model, init)
        b1, b2 = float(meta["opt_beta1"]), float(meta["opt_beta2"])
        eps, wd, clip = float(meta["opt_eps"]), float(meta["opt_weight_decay"]), float(meta["opt_clip_norm"])
        opt = None
        if kind == "adamw":
            opt = torch.optim.AdamW([{"params": [params[n] for n in decay], "weight_decay": wd},
                                     {"params": [params[n] for n in nodecay], "weight_decay": 0.0}],
                                    lr=1.0, betas=(b1, b2), eps=eps)
        state = {n: (torch.zeros_like(params[n]), torch.zeros_like(params[n])) for n in names}
        step_losses = []
        for step in range(1, 6):
            model.zero_grad()
            cur[0] = f"{kind}.{step}"
            loss = total()
            step_losses.append(float(loss))
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
            lr = lr_at(meta, kind, step)
            if opt is not None:
                for g in opt.param_groups:
                    g["lr"] = lr
                opt.step()
                continue
            bc1, bc2 = 1 - b1 ** step, 1 - b2 ** step
            with torch.no_grad():
                for n in names:
                    p, (m, v) = params[n], state[n]
                    g = p.grad
                    m.mul_(b1).add_(g, alpha=1 - b1)
                    v.mul_(b2).addcmul_(g, g, value=1 - b2)
                    u = (m / bc1) / ((v / bc2).sqrt() + eps)
                    r = 1.0
                    if flags[n]:
                        u = u + wd * p
                        wn, un = float(p.norm()), float(u.norm())
                        r = wn / un if wn > 0 and un > 0 else 1.0
                    p.sub_(lr * r * u)
        res = ck.close(f"{kind} losses", T[kind + ".losses"], np.array(step_losses))
        if BF16:  # the trajectory is checked by the losses of the steps (above), not element by element
            print(f"  {ck.tag} parameters after 5 {kind} steps: not compared in bf16 (Adam's and LAMB's "
                  f"normalised updates turn bf16 noise of near-zero gradients into steps of about lr)")
        else:
            ck.group(f"parameters after 5 {kind} steps",
                     [(f"{kind} {n}", T[kind + "." + n], params[n].detach().numpy(),
                       DEAD_ATOL if n in dead else ATOL) for n in names])
        print(f"  {tag} {kind} loss per step: " + " ".join(f"{x:.5f}" for x in step_losses) +
              (f"; worst err/tol {res[0]:.3f}" if res else ""))
    if pair:
        n, same, edge, off = draws
        if off:
            ck.failed += 1
        print(f"  {'FAILED ' if off else ''}{tag} draws redone by inverse CDF from torch's generator logits:"
              f" {n} slots over {len(redone)} passes, {same} the same token, {edge} at a boundary, {off} different")
    return 1 if ck.failed else 0


if __name__ == "__main__":
    if len(sys.argv) < 2:
        print(__doc__)
        sys.exit(2)
    torch.set_num_threads(1)
    rc = 0
    for f in sys.argv[1:]:
        print(f"{f}:")
        rc |= main(f)
    print("torch parity: " + ("FAILED" if rc else "all checks passed"))
    sys.exit(rc)
