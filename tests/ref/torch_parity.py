"""tests/ref/torch_parity.py: checks kiln's trainer math against PyTorch.

Usage: /usr/bin/python3 tests/ref/torch_parity.py FILE.safetensors...
(files written by `kiln_trainer_ref parity DIR`, see tests/ref/trainer_ref.c)

For each file: rebuilds the model from torch.nn modules (torch_models.py,
Hugging Face's AlbertForPreTraining / BertForPreTraining), loads kiln's initial
parameters by name (strict: same names, same shapes), runs the same batch
and compares, elementwise, |kiln - torch| <= ATOL + RTOL |torch|:
  - MLM logits at the masked slots and sentence logits   RTOL 1e-4, ATOL 1e-5
  - MLM and sentence losses                              relative 1e-5
  - the gradient of every parameter after one pass       RTOL 1e-4, ATOL 1e-5
  - every parameter after 5 AdamW steps (torch.optim.AdamW, decay / no-decay
    groups, clip_grad_norm_, linear warmup + decay) and after 5 LAMB steps
    (the formula of trainer/optim.h, cosine schedule), and the loss before
    each step                                            RTOL 1e-4, ATOL 1e-5
    except the attention key biases: their gradient is zero up to rounding
    (softmax ignores a shift shared by a row's scores), so Adam's normalized
    update turns rounding noise into steps of up to lr * |g| / eps in either
    direction, in both implementations alike. For them the gradients must be
    below 1e-6 (checked), and the parameters agree within ATOL 1e-4.
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


def main(path):
    tag = os.path.basename(path).split(".")[0]
    T, meta = read_safetensors(path)
    c = {k: meta[k] for k in ("model_type", "hidden_act")}
    for k in ("vocab_size", "embedding_size", "hidden_size", "num_hidden_layers", "num_hidden_groups",
              "num_attention_heads", "intermediate_size", "max_position_embeddings", "type_vocab_size",
              "pad_token_id"):
        c[k] = int(meta[k])
    c["layer_norm_eps"] = float(meta["layer_norm_eps"])
    ck = Checker(tag)
    torch.manual_seed(0)
    model = torch_models.build(c)
    names = [n for n, _ in model.named_parameters()]
    init = {n: torch.from_numpy(T[n]) for n in names if n in T}
    missing = [n for n in names if n not in T]
    extra = [n for n in T if "." in n and not n.split(".")[0] in ("batch", "out", "grad", "adamw", "lamb")
             and n not in init]
    if missing or extra:
        print(f"  FAILED {tag}: parameter names differ from Hugging Face's: missing {missing[:5]}, extra {extra[:5]}")
        return 1
    model.load_state_dict(init, strict=True)
    print(f"  {tag}: {len(names)} parameters loaded by name ({sum(v.numel() for v in init.values())} floats)")

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
    slab = torch.from_numpy(T["batch.labels"]).long()

    def losses():
        lg, sl = model(ids, types, mask, mrow, mpos)
        return (lg, sl) + torch_models.losses(lg, sl, mlab, mwt, slab)

    # forward
    with torch.no_grad():
        lg, sl, mlm, sop = losses()
    ck.group("logits", [("mlm logits", T["out.mlm_logits"], lg.numpy()),
                        ("sentence logits", T["out.sent_logits"], sl.numpy())])
    ck.close("mlm loss", T["out.losses"][0], float(mlm), LOSS_RTOL, 0)
    ck.close("sentence loss", T["out.losses"][1], float(sop), LOSS_RTOL, 0)
    print(f"  {tag} losses: kiln mlm {T['out.losses'][0]:.7f} sop {T['out.losses'][1]:.7f};"
          f" torch mlm {float(mlm):.7f} sop {float(sop):.7f}")

    # gradients
    model.zero_grad()
    _, _, mlm, sop = losses()
    (mlm + sop).backward()
    params = dict(model.named_parameters())
    ck.group("gradients", [(f"grad {n}", T["grad." + n], params[n].grad.numpy()) for n in names])
    dead = [n for n in names if n.endswith("key.bias")]
    for n in dead:
        top = max(np.abs(T["grad." + n]).max(), float(params[n].grad.abs().max()))
        if top > 1e-6:
            ck.failed += 1
            print(f"  FAILED {tag} grad {n}: {top:.3g}, should be zero up to rounding")

    # optimizers
    for kind in ("adamw", "lamb"):
        model.load_state_dict(init, strict=True)
        b1, b2 = float(meta["opt_beta1"]), float(meta["opt_beta2"])
        eps, wd, clip = float(meta["opt_eps"]), float(meta["opt_weight_decay"]), float(meta["opt_clip_norm"])
        decay = [n for n in names if not torch_models.no_decay(n)]
        nodecay = [n for n in names if torch_models.no_decay(n)]
        opt = None
        if kind == "adamw":
            opt = torch.optim.AdamW([{"params": [params[n] for n in decay], "weight_decay": wd},
                                     {"params": [params[n] for n in nodecay], "weight_decay": 0.0}],
                                    lr=1.0, betas=(b1, b2), eps=eps)
        state = {n: (torch.zeros_like(params[n]), torch.zeros_like(params[n])) for n in names}
        step_losses = []
        for step in range(1, 6):
            model.zero_grad()
            _, _, mlm, sop = losses()
            loss = mlm + sop
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
                    if n in decay:
                        u = u + wd * p
                        wn, un = float(p.norm()), float(u.norm())
                        r = wn / un if wn > 0 and un > 0 else 1.0
                    p.sub_(lr * r * u)
        ck.close(f"{kind} losses", T[kind + ".losses"], np.array(step_losses))
        ck.group(f"parameters after 5 {kind} steps",
                 [(f"{kind} {n}", T[kind + "." + n], params[n].detach().numpy(), 1e-4 if n in dead else ATOL)
                  for n in names])
        print(f"  {tag} {kind} loss per step: " + " ".join(f"{x:.5f}" for x in step_losses))
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
