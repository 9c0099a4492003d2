"""tests/ref/distill_parity.py: checks kiln's knowledge-distillation step
(trainer/distill.h, trainer/distill.c) against PyTorch.

Usage: /usr/bin/python3 tests/ref/distill_parity.py FILE.safetensors...
(files written by `kiln_trainer_ref distill DIR`, see distill_one in
tests/ref/trainer_ref.c: distill_distilbert, distill_all, distill_tinybert,
distill_tinybert_pred)

For each file: rebuilds the teacher (teacher.* tensors) and the student from
torch_models.py (BertForPreTraining, AlbertForPreTraining or
DistilBertForMaskedLM: Hugging Face's names; the unused pooler / sentence
heads are the only parameters not in the file), loads both by name, and runs
the file's batch in float64 (kiln works in float32; the reference is exact
up to float64 rounding). Only real tokens (t < lengths[b]) count anywhere;
DistilBERT reads no token types. Per-layer hidden states come from forward
hooks on the embedding output (ALBERT: embedding_hidden_mapping_in, after the
E -> H mapping) and on each layer module; the per-layer pre-softmax scores
S = q k^T / sqrt(D) (D each model's own head width, before the padding mask
is added) from torch_models.attention, wrapped to record them. The losses,
as trainer/distill.h defines them:
  mlm_loss  the student's masked-LM CE at the masked slots, sum(w CE) / sum(w)
            (w = masked_weights; slots of weight 0 do not count)
  ce_loss   T^2 KL(softmax(t / T) || softmax(s / T)) per slot (t, s the
            teacher's and the student's MLM logits); positions "masked":
            weighted mean over the masked slots of weight > 0; positions "all":
            mean over every real token
  cos_loss  mean over the real tokens of 1 - s.t / sqrt((|s|^2 + 1e-12)
            (|t|^2 + 1e-12)), the last layers' hidden states
  att_loss  sum over student layers m = 1..M of sum_{b, h, i, j < n_b}
            (S_s,m - S_t,mk)^2 / (NH sum_b n_b^2), k = teacher / student layers
  hid_loss  sum over m = 1..M of mean over (real tokens x Ht) of
            (h_s,m W_h^T + b_h - h_t,mk)^2 (W_h, b_h: distill.fit_dense.*)
  emb_loss  the same at m = 0 with distill.fit_emb.* (the embedding outputs)
and the pass's loss = sum of weight * term with the file's loss_weights (a
term of weight 0 is reported, not differentiated).

Checks (one line each; exit 1 when any fails, 2 when the input is unusable):
  - the reported terms are the ones of the method / stage (DistilBERT:
    mlm_loss, ce_loss, cos_loss; TinyBERT intermediate: mlm_loss, ce_loss,
    att_loss, hid_loss, emb_loss; prediction: mlm_loss, ce_loss)
  - every loss term of the training pass (out.losses) against torch:
    |kiln - torch| <= max(ABS 1e-5, REL 1e-4 |torch|)
  - the evaluation pass's terms (out.eval_losses): equal to out.losses
    (|diff| <= 1e-9 max(1, |term|); no dropout anywhere) and to torch as above
  - out.loss against torch's sum of weight * term (same tolerance), and
    against the sum over kiln's own terms
  - the gradient of every student tensor (grad.<name>, the fit projections
    included) against torch autograd of that loss: max |kiln - torch| <=
    2e-4 max(1, max |g_torch|) per tensor; the worst tensor is reported
  - every student tensor of the file has its grad.<name> and no other
    grad.* exists (in particular no teacher gradient)
"""
import math
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch_models  # noqa: E402
from torch_parity import read_safetensors  # noqa: E402

LOSS_REL, LOSS_ABS = 1e-4, 1e-5
EVAL_REL = 1e-9
GRAD_REL = 2e-4
EXPECTED_TERMS = {("distilbert", "prediction"): ["mlm_loss", "ce_loss", "cos_loss"],
                  ("distilbert", "intermediate"): ["mlm_loss", "ce_loss", "cos_loss"],
                  ("tinybert", "intermediate"): ["mlm_loss", "ce_loss", "att_loss", "hid_loss", "emb_loss"],
                  ("tinybert", "prediction"): ["mlm_loss", "ce_loss"]}
# parameters of torch_models' modules that kiln's MLM-only models do not have
UNUSED = ("bert.pooler.", "cls.seq_relationship.", "albert.pooler.", "sop_classifier.")

# ---- recording the pre-softmax scores ----------------------------------------------

_orig_attention = torch_models.attention
_scores = None  # list to append q k^T / sqrt(D) of each attention call to, or None


def _recording_attention(q, k, v, mask_add, nh):
    if _scores is not None:
        B, L, H = q.shape
        d = H // nh
        qh = q.view(B, L, nh, d).transpose(1, 2)
        kh = k.view(B, L, nh, d).transpose(1, 2)
        _scores.append(torch.matmul(qh, kh.transpose(-1, -2)) / math.sqrt(d))
    return _orig_attention(q, k, v, mask_add, nh)


torch_models.attention = _recording_attention


class Model:
    """A teacher or student of the file: the torch module, its kind, and
    forward() -> (hidden states [h_0 .. h_NL], scores [S_1 .. S_NL], a
    function of (rows, positions) giving the MLM logits there)."""

    def __init__(self, c):
        self.c, self.kind = c, c["model_type"]
        if self.kind == "bert":
            self.m = torch_models.BertForPreTraining(c)
        elif self.kind == "albert":
            self.m = torch_models.AlbertForPreTraining(c)
        elif self.kind == "distilbert":
            self.m = torch_models.DistilBertForMaskedLM(c)
        else:
            raise ValueError(f"model_type {self.kind} is not a distillation model here")
        self.m.double()
        self._hid = None
        emb, layers = self._hooked()
        emb.register_forward_hook(lambda mod, i, o: self._hid.append(o) if self._hid is not None else None)
        for lay in layers:
            lay.register_forward_hook(lambda mod, i, o: self._hid.append(o) if self._hid is not None else None)

    def _hooked(self):
        m = self.m
        if self.kind == "bert":
            return m.bert.embeddings, list(m.bert.encoder.layer)
        if self.kind == "albert":  # h_0 after the E -> H mapping; a group's layer fires once per use
            return m.albert.encoder.embedding_hidden_mapping_in, \
                [g.albert_layers[0] for g in m.albert.encoder.albert_layer_groups]
        return m.distilbert.embeddings, list(m.distilbert.transformer.layer)

    def load(self, T, prefix):
        """the file's tensors prefix + name into named_parameters; returns
        (names loaded, error or None)"""
        params = dict(self.m.named_parameters())
        names, err = [], None
        for n, p in params.items():
            if prefix + n in T:
                a = T[prefix + n]
                if list(a.shape) != list(p.shape):
                    return names, f"{prefix}{n}: shape {list(a.shape)} vs torch {list(p.shape)}"
                with torch.no_grad():
                    p.copy_(torch.from_numpy(a.astype(np.float64)))
                names.append(n)
            elif not n.startswith(UNUSED):
                return names, f"{prefix}{n} of the torch model is not in the file"
        own = [k[len(prefix):] for k in T if k.startswith(prefix) and
               (prefix or not k.startswith(("teacher.", "batch.", "out.", "grad.", "distill.")))]
        extra = [n for n in own if n not in params]
        if extra:
            err = f"tensors of the file not in the torch model: {extra[:5]}"
        return names, err

    def forward(self, ids, types, attn_mask):
        global _scores
        self._hid, _scores = [], []
        m = self.m
        if self.kind == "bert":
            h = m.bert(ids, types, attn_mask)
        elif self.kind == "albert":
            h = m.albert(ids, types, torch_models.mask_add(attn_mask))
        else:
            h = m.distilbert(ids, attn_mask)
        hid, sc = self._hid, _scores
        self._hid, _scores = None, None
        NL = self.c["num_hidden_layers"]
        if len(hid) != NL + 1 or len(sc) != NL:
            raise RuntimeError(f"{len(hid)} hidden states and {len(sc)} score sets recorded for {NL} layers")
        if not torch.equal(hid[-1], h):
            raise RuntimeError("the last recorded hidden state is not the model's output")

        def logits(rows, pos):
            x = h[rows, pos]
            if self.kind == "bert":
                p = m.cls.predictions
                t = p.transform.LayerNorm(m.act(p.transform.dense(x)))
                return torch.matmul(t, m.bert.embeddings.word_embeddings.weight.t()) + p.bias
            if self.kind == "albert":
                return m.predictions(x, m.albert.embeddings.word_embeddings.weight)
            return m.vocab_projector(m.vocab_layer_norm(m.act(m.vocab_transform(x))))

        return hid, sc, logits


def config(meta, who):
    c = {"model_type": meta[who + "model_type"], "hidden_act": meta[who + "hidden_act"],
         "layer_norm_eps": float(meta[who + "layer_norm_eps"]), "pad_token_id": 0}
    for k in ("vocab_size", "embedding_size", "hidden_size", "num_hidden_layers", "num_hidden_groups",
              "num_attention_heads", "intermediate_size", "max_position_embeddings", "type_vocab_size"):
        c[k] = int(meta[who + k])
    return c


def kl_soft(t, s, T):
    """T^2 KL(softmax(t / T) || softmax(s / T)) per row"""
    lt, ls = F.log_softmax(t / T, dim=-1), F.log_softmax(s / T, dim=-1)
    return T * T * (lt.exp() * (lt - ls)).sum(-1)


class Result:
    def __init__(self, tag):
        self.tag, self.failed = tag, 0

    def line(self, ok, text):
        if not ok:
            self.failed += 1
        print(f"  {'ok' if ok else 'FAILED'} {self.tag} {text}")


def main(path):
    tag = os.path.basename(path).split(".")[0]
    try:
        T, meta = read_safetensors(path)
        tc, sc = config(meta, "teacher_"), config(meta, "student_")
        method, positions, stage = meta["method"], meta["positions"], meta["stage"]
        temp = float(meta["temperature"])
        terms = meta["loss_terms"].split(",")
        weights = [float(w) for w in meta["loss_weights"].split(",")]
    except (OSError, KeyError, ValueError) as e:
        print(f"  FAILED {tag}: unusable input: {e}")
        return 2
    R = Result(tag)
    print(f"  {tag}: teacher {tc['model_type']} ({tc['num_hidden_layers']} layers, H {tc['hidden_size']}),"
          f" student {sc['model_type']} ({sc['num_hidden_layers']} layers, H {sc['hidden_size']}), {method},"
          f" positions {positions}, stage {stage}, T {temp:g}; terms "
          + " ".join(f"{t}x{w:g}" for t, w in zip(terms, weights)))
    want = EXPECTED_TERMS.get((method, stage))
    R.line(want == terms and len(weights) == len(terms),
           f"terms {terms} (weights {len(weights)}) are those of {method} / {stage}: {want}")
    wmap = dict(zip(terms, weights))
    if method == "tinybert" and stage == "intermediate" and wmap.get("mlm_loss", 0) != 0:
        # not a failure: the reference takes the file's weights
        print(f"  note {tag}: stage intermediate trains mlm_loss with weight {wmap['mlm_loss']:g}"
              f" (trainer/distill.h lists only att + hid + emb for this stage)")
    if len(weights) != len(terms) or len(T["out.losses"]) != len(terms) or len(T["out.eval_losses"]) != len(terms):
        print(f"  FAILED {tag}: out.losses / out.eval_losses / loss_weights do not have one entry per term")
        return 2

    torch.manual_seed(0)
    teacher, student = Model(tc), Model(sc)
    _, err = teacher.load(T, "teacher.")
    if err:
        print(f"  FAILED {tag}: teacher: {err}")
        return 2
    snames, err = student.load(T, "")
    if err:
        print(f"  FAILED {tag}: student: {err}")
        return 2
    for p in teacher.m.parameters():
        p.requires_grad_(False)
    sparams = dict(student.m.named_parameters())
    tiny = method == "tinybert"
    Ht, Hs = tc["hidden_size"], sc["hidden_size"]
    fit = {}
    for n in ("distill.fit_emb.weight", "distill.fit_emb.bias", "distill.fit_dense.weight", "distill.fit_dense.bias"):
        if n in T:
            fit[n] = torch.nn.Parameter(torch.from_numpy(T[n].astype(np.float64)))
    if tiny and len(fit) != 4:
        print(f"  FAILED {tag}: TinyBERT without the 4 distill.fit_* tensors (has {sorted(fit)})")
        return 2
    if tiny and (list(fit["distill.fit_dense.weight"].shape) != [Ht, Hs] or
                 list(fit["distill.fit_emb.weight"].shape) != [Ht, Hs]):
        print(f"  FAILED {tag}: the fit projections are not (Ht, Hs) = ({Ht}, {Hs})")
        return 2
    snames += list(fit)
    sparams.update(fit)
    print(f"  {tag}: loaded teacher and student by name ({len(snames)} student tensors,"
          f" {sum(sparams[n].numel() for n in snames)} floats)")

    # the batch
    ids = torch.from_numpy(T["batch.input_ids"]).long()
    types = torch.from_numpy(T["batch.token_type_ids"]).long()
    lengths = [int(x) for x in T["batch.lengths"]]
    B, L = ids.shape
    mask = torch.tensor([[1 if t < lengths[b] else 0 for t in range(L)] for b in range(B)])
    real = mask.bool()
    nm, pos, mids, mw = T["batch.n_masked"], T["batch.masked_positions"], T["batch.masked_ids"], \
        T["batch.masked_weights"]
    slots = [(b, p) for b in range(B) for p in range(int(nm[b]))]
    mrow = torch.tensor([b for b, p in slots])
    mpos = torch.tensor([int(pos[b, p]) for b, p in slots])
    mlab = torch.tensor([int(mids[b, p]) for b, p in slots])
    mwt = torch.tensor([float(mw[b, p]) for b, p in slots], dtype=torch.float64)
    arow = torch.tensor([b for b in range(B) for t in range(lengths[b])])
    apos = torch.tensor([t for b in range(B) for t in range(lengths[b])])
    N = len(arow)
    if not all(0 <= int(pos[b, p]) < lengths[b] for b, p in slots):
        print(f"  FAILED {tag}: a masked position past its row's length")
        return 2

    def run():
        """the loss terms by name (student with grad, teacher without)"""
        with torch.no_grad():
            th, ts, tlog = teacher.forward(ids, types, mask)
        sh, ss, slog = student.forward(ids, types, mask)
        out = {}
        keep = mwt > 0
        lg = slog(mrow, mpos)
        out["mlm_loss"] = torch_models.mlm_loss(lg[keep], mlab[keep], mwt[keep]) if bool(keep.any()) \
            else lg.sum() * 0
        if positions == "all":
            with torch.no_grad():
                t_all = tlog(arow, apos)
            out["ce_loss"] = kl_soft(t_all, slog(arow, apos), temp).mean()
        else:
            with torch.no_grad():
                t_m = tlog(mrow[keep], mpos[keep])
            kl = kl_soft(t_m, lg[keep], temp)
            w = mwt[keep]
            out["ce_loss"] = (kl * w).sum() / w.sum() if bool(keep.any()) else lg.sum() * 0
        if not tiny:  # the last hidden states, same width
            hs, ht = sh[-1][real], th[-1][real]  # (N, H) real tokens
            cos = (hs * ht).sum(-1) / torch.sqrt(((hs * hs).sum(-1) + 1e-12) * ((ht * ht).sum(-1) + 1e-12))
            out["cos_loss"] = (1 - cos).mean()
        if tiny:
            M, NLt = sc["num_hidden_layers"], tc["num_hidden_layers"]
            k = NLt // M
            if k * M != NLt:
                raise ValueError(f"teacher layers {NLt} not a multiple of student layers {M}")
            NH = sc["num_attention_heads"]
            if tc["num_attention_heads"] != NH:
                raise ValueError("TinyBERT needs the same heads")
            denom = NH * sum(n * n for n in lengths)
            att = 0
            for m in range(1, M + 1):
                S_s, S_t = ss[m - 1], ts[m * k - 1]
                acc = 0
                for b in range(B):
                    n = lengths[b]
                    acc = acc + ((S_s[b, :, :n, :n] - S_t[b, :, :n, :n]) ** 2).sum()
                att = att + acc / denom
            out["att_loss"] = att
            Wh, bh = fit["distill.fit_dense.weight"], fit["distill.fit_dense.bias"]
            We, be = fit["distill.fit_emb.weight"], fit["distill.fit_emb.bias"]
            hid = 0
            for m in range(1, M + 1):
                hid = hid + ((F.linear(sh[m][real], Wh, bh) - th[m * k][real]) ** 2).mean()
            out["hid_loss"] = hid
            out["emb_loss"] = ((F.linear(sh[0][real], We, be) - th[0][real]) ** 2).mean()
        return out

    try:
        ls = run()
    except (RuntimeError, ValueError) as e:
        print(f"  FAILED {tag}: {e}")
        return 2
    missing = [t for t in terms if t not in ls]
    if missing:
        print(f"  FAILED {tag}: loss terms {missing} of kiln are not computed here")
        return 2

    def close(a, b):
        return abs(a - b) <= max(LOSS_ABS, LOSS_REL * abs(b))

    kl_, ke_ = T["out.losses"], T["out.eval_losses"]
    for i, t in enumerate(terms):
        ref = float(ls[t])
        R.line(close(float(kl_[i]), ref), f"{t}: kiln {kl_[i]:.9f} torch {ref:.9f} (|diff| {abs(kl_[i] - ref):.2e})")
    dev = max(abs(float(a) - float(b)) / max(1.0, abs(float(a))) for a, b in zip(kl_, ke_))
    far = max(abs(float(ke_[i]) - float(ls[t])) / max(LOSS_ABS, LOSS_REL * abs(float(ls[t])))
              for i, t in enumerate(terms))
    R.line(dev <= EVAL_REL and far <= 1,
           f"eval pass terms = training pass terms (max relative diff {dev:.2e}), vs torch worst |diff|/tol {far:.3f}")
    total = sum(w * ls[t] for w, t in zip(weights, terms) if w != 0)
    tl, kl_tot = float(total), float(T["out.loss"][0])
    own = sum(w * float(kl_[i]) for i, w in enumerate(weights))
    R.line(close(kl_tot, tl) and abs(kl_tot - own) <= 1e-9 * max(1.0, abs(own)),
           f"loss: kiln {kl_tot:.9f} torch {tl:.9f} (|diff| {abs(kl_tot - tl):.2e}); sum of kiln's weighted terms"
           f" {own:.9f}")

    # gradients
    grads = {k[5:] for k in T if k.startswith("grad.")}
    no_grad = [n for n in snames if n not in grads]
    stray = sorted(grads - set(snames))
    R.line(not no_grad and not stray,
           f"{len(grads)} gradients: every student tensor has one ({len(snames)}, fit projections {len(fit)})"
           + (f"; missing {no_grad[:5]}" if no_grad else "") + (f"; not student tensors {stray[:5]}" if stray else ""))
    tg = [g for g in grads if g.startswith("teacher.")]
    R.line(not tg, f"no teacher gradient in the file ({len(tg)} found)")
    for p in sparams.values():
        p.grad = None
    total.backward()
    worst, worst_n, worst_d, bad = -1.0, "", 0.0, []
    unused = 0
    for n in snames:
        if n not in grads:
            continue
        g = sparams[n].grad
        g = np.zeros(tuple(sparams[n].shape)) if g is None else g.numpy()
        unused += sparams[n].grad is None
        k = T["grad." + n].astype(np.float64)
        if k.shape != g.shape:
            bad.append(f"{n}: shape {k.shape} vs {g.shape}")
            continue
        d = float(np.abs(k - g).max()) if k.size else 0.0
        tol = GRAD_REL * max(1.0, float(np.abs(g).max()) if g.size else 0.0)
        if d / tol > worst:
            worst, worst_n, worst_d = d / tol, n, d
        if d > tol:
            i = np.unravel_index(int(np.argmax(np.abs(k - g))), k.shape)
            bad.append(f"{n}: max |diff| {d:.3g} > {tol:.3g} at {tuple(int(x) for x in i)}: kiln {k[i]:.7g}"
                       f" torch {g[i]:.7g}")
    for b_ in bad:
        R.line(False, "grad " + b_)
    R.line(not bad, f"gradients of {len(grads)} tensors vs torch autograd ({unused} outside the loss, zero):"
           f" worst {worst_n} max |diff| {worst_d:.2e} = {worst:.3f} of its tolerance")
    return 1 if R.failed else 0


if __name__ == "__main__":
    if len(sys.argv) < 2:
        print(__doc__)
        sys.exit(2)
    torch.set_num_threads(1)
    rc = 0
    for f in sys.argv[1:]:
        print(f"{f}:")
        rc = max(rc, main(f))
    print("distill parity: " + ("FAILED" if rc else "all checks passed"))
    sys.exit(rc)
