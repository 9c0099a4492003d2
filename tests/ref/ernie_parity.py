"""tests/ref/ernie_parity.py: checks kiln's ERNIE (trainer/ernie.c inside
trainer/model.c) against PyTorch.

Usage: /usr/bin/python3 tests/ref/ernie_parity.py FILE.safetensors...
(files written by `kiln_trainer_ref ernie DIR`, see tests/ref/trainer_ref.c,
each with its registry manifest FILE.manifest.json next to it)

For each file: rebuilds the model from the metadata's config
(ernie_models.ErnieForPreTraining: ERNIE on BERT or ALBERT, the math in
ernie_models.py's docstring; intermediate.dense_ent with a bias, added at
every token as upstream does, when kiln registers one, else without: kiln
leaves it out) and holds kiln's registry to it: the same names and shapes
as torch's named_parameters (as sets: kiln registers each fusion layer's
entity side right after its text layer, so the two orders differ), heads
mlm, sentence and dea, the decay flags of
torch_models.no_decay, no tensor transposed, ernie.entity_embeddings.weight
the only frozen tensor (no decay, registered init zero, row 0 zero and
rows 1.. filled by the helper), the other "one" / "zero" inits holding
ones / zeros, the tied MLM decoder the only alias. The batch must hold what
the test is about (entity inputs and labels zero past a row's length;
padding; a row with three entities or more; a row without; a dEA-dropped
alignment, input 0 and label not 0; a replaced one, input != label not 0)
and kiln must have computed in fp32 (metadata precision). Then loads kiln's
initial parameters by name, runs the same batch (dropout 0) and compares,
elementwise, |kiln - torch| <= ATOL + RTOL |torch|:
  - the eval logits of the MLM and sentence heads    RTOL 1e-4, ATOL 1e-5
    (kiln's inference model on the same parameters, spec.inference, whose
    fusion layers scatter the entity rows in place: the same bytes)
  - the loss terms mlm_loss, nsp_loss (BERT) / sop_loss (ALBERT), dea_loss
    and the pass's loss (their sum, weights 1), of the training pass and of
    the inference model's evaluation                  relative 1e-5
  - dea_acc (share of the targets whose largest logit is the label's; a
    near tie of the two largest torch logits, within 1e-5, is reported and
    not counted) and dea_candidates (their number)   exactly
  - the gradient of every trainable parameter        RTOL 1e-4, ATOL 1e-5
    (the frozen table's gradient in kiln: exactly 0 everywhere)
  - every parameter after 3 AdamW steps (torch.optim.AdamW; decay groups
    from the manifest's flags; clip_grad_norm_; linear schedule with
    warmup) and the loss before each step           RTOL 1e-4, ATOL 1e-5
    (the frozen table: bit for bit its initial value)
  as torch_parity.py, the attention key biases (text and entity attention)
  excepted: their gradient is zero up to rounding (must be below 1e-6) and
  their values after the steps agree within ATOL 1e-4.
Prints the worst error of each check (worst err / tol, and the largest
|kiln - torch| of the group); exits 1 when any check fails or a file does
not describe an ERNIE model, 2 without files or with
KILN_PARITY_PRECISION=bf16 (fp32 only).
"""
import math
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ernie_models  # noqa: E402
import torch_models  # noqa: E402
import torch_parity  # noqa: E402
from torch_parity import ATOL, DEAD_ATOL, DEAD_GRAD, LOSS_RTOL, RTOL  # noqa: E402

TABLE = "ernie.entity_embeddings.weight"
STEPS = 3


def group(ck, label, items):
    """torch_parity's Checker.group, plus the largest |kiln - torch| of the group"""
    ck.group(label, items)
    top = max(float(np.abs(np.asarray(k, dtype=np.float64) - np.asarray(r, dtype=np.float64)).max(initial=0))
              for _, k, r, *_ in items)
    print(f"  {ck.tag} {label}: max |kiln - torch| {top:.3g}")


def check_registry(ck, man, model, T):
    """kiln's manifest against the torch model (see the docstring); the
    names of the trainable tensors in kiln's order, or None."""
    tag = ck.tag
    kiln = {t["name"]: [int(d) for d in t["shape"]] for t in man["tensors"]}
    ref = {n: list(p.shape) for n, p in model.named_parameters()}
    if kiln != ref or len(kiln) != len(man["tensors"]):
        missing = [n for n in ref if n not in kiln]
        extra = [n for n in kiln if n not in ref]
        shapes = [f"{n} {kiln[n]} vs {ref[n]}" for n in kiln if n in ref and kiln[n] != ref[n]]
        print(f"  FAILED {tag}: registry differs from the torch model's named_parameters: missing {missing[:5]},"
              f" extra {extra[:5]}, shapes {shapes[:5]}")
        ck.failed += 1
        return None
    if man["heads"] != ["mlm", "sentence", "dea"] or man["pre_ln"] or man["causal"]:
        print(f"  FAILED {tag}: heads {man['heads']} pre_ln {man['pre_ln']} causal {man['causal']},"
              f" want mlm, sentence, dea, post-LN, bidirectional")
        ck.failed += 1
    for t in man["tensors"]:
        n = t["name"]
        if n not in T or list(T[n].shape) != kiln[n]:
            print(f"  FAILED {tag}: {n} of the manifest is not in the file with its shape")
            ck.failed += 1
            return None
        flags = (bool(t["decay"]), bool(t["frozen"]), bool(t["transpose"]))
        want = (False, True, False) if n == TABLE else (not torch_models.no_decay(n), False, False)
        if flags != want:
            print(f"  FAILED {tag}: {n}: (decay, frozen, transpose) {flags}, want {want}")
            ck.failed += 1
        init = {"one": 1.0, "zero": 0.0}.get(t["init"])
        if n == TABLE:
            if t["init"] != "zero" or np.any(T[n][0] != 0) or not np.all(np.any(T[n][1:] != 0, axis=1)):
                print(f"  FAILED {tag}: {n}: init '{t['init']}', want zero (kmodel_init), row 0 zero and the"
                      f" helper's vectors in rows 1..")
                ck.failed += 1
        elif init is not None and not np.all(T[n] == init):
            print(f"  FAILED {tag}: {n}: init '{t['init']}' but other values")
            ck.failed += 1
    extra = [n for n in T if n.split(".")[0] not in ("batch", "out", "inference", "grad", "adamw") and n not in kiln]
    if extra:
        print(f"  FAILED {tag}: tensors of the file not in the manifest: {extra[:5]}")
        ck.failed += 1
    want = [list(torch_models.TIED_DECODER[man["model_type"]])]
    got = [[a["name"], a["target"]] for a in man["aliases"]]
    if got != want:
        print(f"  FAILED {tag}: aliases {got}, want the tied decoder {want}")
        ck.failed += 1
    return [t["name"] for t in man["tensors"] if t["name"] != TABLE]


def check_batch(ck, T):
    """the batch holds the cases the test is about (see the docstring)"""
    ids, lengths = T["batch.input_ids"], T["batch.lengths"]
    ent, lab = T["batch.entity_ids"], T["batch.entity_labels"]
    B, L = ids.shape
    past = np.arange(L)[None, :] >= lengths[:, None]
    per_row = (ent != 0).sum(axis=1)
    cases = {
        "entities zero past the lengths": not np.any(ent[past]) and not np.any(lab[past]),
        "padding": bool(past.any()),
        "a row with 3 entities or more": bool((per_row >= 3).any()),
        "a row without entities": bool((per_row == 0).any()),
        "a dEA-dropped alignment": bool(((ent == 0) & (lab != 0)).any()),
        "a replaced alignment": bool(((ent != 0) & (lab != 0) & (ent != lab)).any()),
    }
    missing = [k for k, v in cases.items() if not v]
    if missing:
        print(f"  FAILED {ck.tag}: the batch lacks {', '.join(missing)}")
        ck.failed += 1
    return int((ent != 0).sum()), int((lab != 0).sum())


def main(path):
    tag = os.path.basename(path).split(".")[0]
    T, meta = torch_parity.read_safetensors(path)
    man = torch_parity.read_manifest(path[:-len(".safetensors")] + ".manifest.json")
    c = {k: meta[k] for k in ("model_type", "hidden_act")}
    for k in ("vocab_size", "embedding_size", "hidden_size", "num_hidden_layers", "num_hidden_groups",
              "num_attention_heads", "intermediate_size", "max_position_embeddings", "type_vocab_size",
              "pad_token_id", "fusion_layers", "entity_vocab_size", "entity_dim", "entity_hidden_size",
              "entity_attention_heads"):
        c[k] = int(meta[k])
    c["layer_norm_eps"] = float(meta["layer_norm_eps"])
    # intermediate.dense_ent with a bias (upstream's layout) exactly when kiln registers one
    c["dense_ent_bias"] = any(t["name"].endswith("intermediate.dense_ent.bias") for t in man["tensors"])
    ck = torch_parity.Checker(tag)
    if man["model_type"] != c["model_type"] or c["model_type"] not in ("bert", "albert"):
        print(f"  FAILED {tag}: manifest model_type {man['model_type']}, file {c['model_type']}")
        return 1
    if meta.get("precision") != "fp32":
        print(f"  FAILED {tag}: kiln's products in {meta.get('precision')}, this test is for fp32")
        ck.failed += 1
    torch.manual_seed(0)
    model = ernie_models.ErnieForPreTraining(c)
    names = check_registry(ck, man, model, T)
    if names is None:
        return 1
    init = {t["name"]: torch.from_numpy(T[t["name"]]) for t in man["tensors"]}
    torch_parity.load(model, init)
    params = dict(model.named_parameters())
    n_ent, n_lab = check_batch(ck, T)
    W, DE = c["entity_hidden_size"], c["entity_dim"]
    print(f"  {tag} (ERNIE on {c['model_type']}, {c['fusion_layers']} fusion layers of {c['num_hidden_layers']},"
          f" entity stream {W}{' projected from ' + str(DE) if W != DE else ''},"
          f" {c['entity_attention_heads']} entity heads, dense_ent {'with' if c['dense_ent_bias'] else 'without'}"
          f" bias): registry = named_parameters as sets,"
          f" {len(init)} tensors loaded by name, the table frozen; {n_ent} entity inputs, {n_lab} dEA targets")

    # the batch
    ids = torch.from_numpy(T["batch.input_ids"]).long()
    types = torch.from_numpy(T["batch.token_type_ids"]).long()
    lengths = T["batch.lengths"]
    B, L = ids.shape
    mask = torch.tensor([[1 if t < lengths[b] else 0 for t in range(L)] for b in range(B)])
    nm, pos, mids, mw = T["batch.n_masked"], T["batch.masked_positions"], T["batch.masked_ids"], \
        T["batch.masked_weights"]
    mrow = torch.tensor([b for b in range(B) for p in range(nm[b])])
    mpos = torch.tensor([int(pos[b, p]) for b in range(B) for p in range(nm[b])])
    mlab = torch.tensor([int(mids[b, p]) for b in range(B) for p in range(nm[b])])
    mwt = torch.tensor([float(mw[b, p]) for b in range(B) for p in range(nm[b])])
    labels = torch.from_numpy(T["batch.labels"]).long()
    ent, elab = T["batch.entity_ids"], T["batch.entity_labels"]
    eids = torch.from_numpy(ent).long()
    cand = sorted(set(int(x) for x in ent[ent != 0]) | set(int(x) for x in elab[elab != 0]))
    where = np.argwhere(elab != 0)  # row-major: kiln's order of the targets
    arow, apos = torch.from_numpy(where[:, 0]).long(), torch.from_numpy(where[:, 1]).long()
    atarget = torch.tensor([cand.index(int(elab[b, t])) for b, t in where])
    cand = torch.tensor(cand)
    sent_term = "nsp_loss" if c["model_type"] == "bert" else "sop_loss"
    terms = meta["loss_terms"].split(",")
    weights = [float(w) for w in meta["loss_weights"].split(",")]
    if sorted(terms) != sorted(["mlm_loss", sent_term, "dea_loss"]) or weights != [1.0] * len(terms):
        print(f"  FAILED {tag}: loss terms {terms} weights {weights}, want mlm_loss, {sent_term}, dea_loss of"
              f" weight 1")
        return 1

    def run():
        mlm, sent, dea = model(ids, types, mask, eids, mrow, mpos, arow, apos, cand)
        lm, ls = torch_models.losses(mlm, sent, mlab, mwt, labels)
        return (mlm, sent, dea), {"mlm_loss": lm, sent_term: ls, "dea_loss": ernie_models.dea_loss(dea, atarget)}

    def total():
        return sum(w * run()[1][t] for w, t in zip(weights, terms))

    # forward
    with torch.no_grad():
        (mlm, sent, dea), ls = run()
    group(ck, "logits", [("mlm logits", T["out.mlm_logits"], mlm.numpy()),
                         ("sent logits", T["out.sent_logits"], sent.numpy())])
    said_k, said_t, rel = [], [], 0.0
    for i, t in enumerate(terms):
        res = ck.close(t, T["out.losses"][i], float(ls[t]), LOSS_RTOL, 0)
        rel = max(rel, res[1] if res else math.inf)
        said_k.append(f"{t} {T['out.losses'][i]:.7f}")
        said_t.append(f"{t} {float(ls[t]):.7f}")
    tl = sum(w * float(ls[t]) for w, t in zip(weights, terms))
    res = ck.close("loss", T["out.loss"][0], tl, LOSS_RTOL, 0)
    rel = max(rel, res[1] if res else math.inf)
    said_k.append(f"loss {T['out.loss'][0]:.7f}")
    said_t.append(f"loss {tl:.7f}")
    print(f"  {tag} losses: kiln {' '.join(said_k)}; torch {' '.join(said_t)}; worst relative error {rel:.2e}")
    # kiln's inference model (no backward buffers: the entity rows scattered in place) on the same parameters
    same = [k for k in ("mlm_logits", "sent_logits") if np.array_equal(T["inference." + k], T["out." + k])]
    if len(same) != 2:
        ck.failed += 1
        print(f"  FAILED {tag} inference model: logits other than the training model's evaluation")
    rel = 0.0
    for i, t in enumerate(terms + ["loss"]):
        k = T["inference.losses"][i] if t != "loss" else T["inference.loss"][0]
        r = float(ls[t]) if t != "loss" else tl
        res = ck.close(f"inference {t}", k, r, LOSS_RTOL, 0)
        rel = max(rel, res[1] if res else math.inf)
    print(f"  {tag} inference model: the same logits (bytes) as the training model's evaluation; loss terms of its"
          f" evaluation worst relative error {rel:.2e}")
    # dea_acc, dea_candidates
    top2 = torch.topk(dea, 2, dim=1).values
    tie = (top2[:, 0] - top2[:, 1]).abs() <= 1e-5
    hit = (dea.argmax(dim=1) == atarget) & ~tie
    k_acc, k_nc = T["out.dea_stats"]
    lo, hi = float(hit.sum()) / len(atarget), float((hit | tie).sum()) / len(atarget)
    if not (lo - 1e-12 <= k_acc <= hi + 1e-12) or k_nc != len(cand):
        ck.failed += 1
        print(f"  FAILED {tag} dEA: kiln dea_acc {k_acc} with {k_nc:g} candidates, torch {lo} to {hi} with"
              f" {len(cand)}")
    print(f"  {tag} dEA: {len(atarget)} targets, {len(cand)} candidates {cand.tolist()}, dea_acc kiln {k_acc:.4f}"
          f" torch {lo:.4f}{f' ({int(tie.sum())} near ties)' if int(tie.sum()) else ''}")

    # gradients: the trainable tensors; the frozen table's in kiln exactly zero
    model.zero_grad()
    total().backward()
    group(ck, "gradients", [(f"grad {n}", T["grad." + n], params[n].grad.numpy()) for n in names])
    if params[TABLE].grad is not None or np.any(T["grad." + TABLE] != 0):
        ck.failed += 1
        print(f"  FAILED {tag} grad {TABLE}: kiln's is not all zero ({int(np.count_nonzero(T['grad.' + TABLE]))}"
              f" elements), or torch made one")
    else:
        print(f"  {tag} grad {TABLE}: kiln's exactly 0 ({T['grad.' + TABLE].size} elements)")
    dead = [n for n in names if n.endswith("key.bias")]
    for n in dead:
        top = max(np.abs(T["grad." + n]).max(), float(params[n].grad.abs().max()))
        if top > DEAD_GRAD:
            ck.failed += 1
            print(f"  FAILED {tag} grad {n}: {top:.3g}, should be zero up to rounding")

    # AdamW: decay groups from kiln's manifest (checked against no_decay above); the table not a parameter of it
    flags = {t["name"]: bool(t["decay"]) for t in man["tensors"]}
    torch_parity.load(model, init)
    b1, b2 = float(meta["opt_beta1"]), float(meta["opt_beta2"])
    eps, wd, clip = float(meta["opt_eps"]), float(meta["opt_weight_decay"]), float(meta["opt_clip_norm"])
    opt = torch.optim.AdamW([{"params": [params[n] for n in names if flags[n]], "weight_decay": wd},
                             {"params": [params[n] for n in names if not flags[n]], "weight_decay": 0.0}],
                            lr=1.0, betas=(b1, b2), eps=eps)
    step_losses = []
    for step in range(1, STEPS + 1):
        model.zero_grad()
        loss = total()
        step_losses.append(float(loss))
        loss.backward()
        torch.nn.utils.clip_grad_norm_([params[n] for n in names], clip)
        for g in opt.param_groups:
            g["lr"] = torch_parity.lr_at(meta, "adamw", step)
        opt.step()
    res = ck.close("adamw losses", T["adamw.losses"], np.array(step_losses))
    group(ck, f"parameters after {STEPS} adamw steps",
          [(f"adamw {n}", T["adamw." + n], params[n].detach().numpy(), DEAD_ATOL if n in dead else ATOL)
           for n in names])
    if not np.array_equal(T["adamw." + TABLE], T[TABLE]):
        ck.failed += 1
        print(f"  FAILED {tag} adamw {TABLE}: the frozen table changed")
    print(f"  {tag} adamw loss per step: " + " ".join(f"{x:.5f}" for x in step_losses) +
          (f"; worst err/tol {res[0]:.3f}" if res else "") + f"; {TABLE} unchanged")
    return 1 if ck.failed else 0


if __name__ == "__main__":
    if len(sys.argv) < 2:
        print(__doc__)
        sys.exit(2)
    if RTOL != 1e-4 or ATOL != 1e-5:
        print("ernie_parity.py compares fp32 runs only (unset KILN_PARITY_PRECISION)")
        sys.exit(2)
    torch.set_num_threads(1)
    rc = 0
    for f in sys.argv[1:]:
        print(f"{f}:")
        rc |= main(f)
    print("ERNIE torch parity: " + ("FAILED" if rc else "all checks passed"))
    sys.exit(rc)
