"""heads_parity.py: kiln's task heads (trainer/heads.c) against PyTorch.

Reads the arrays that tests/unit/test_heads.c writes with KILN_HEADS_DUMP=DIR
(DIR/manifest.txt: "NAME f32|i32 ROWS COLS" per raw little-endian DIR/NAME.bin)
and redoes each case with torch.nn.functional in float64 on the same float32
inputs and weights:
  cls     F.linear + F.cross_entropy(ignore_index=-1)         (BertForSequenceClassification)
  reg     F.linear + F.mse_loss over the non-NaN targets       (num_labels == 1)
  bin*    F.linear, F.gelu (erf / tanh), F.linear,
          F.binary_cross_entropy_with_logits over labels >= 0  (ElectraDiscriminatorPredictions)
  lm*     F.linear (tied weights, optional bias) + F.cross_entropy(ignore_index=-1)
Every loss is the mean times the case's loss scale; gradients by autograd.
Tolerances: outputs (logits, logsumexp, the loss) relative 1e-5 + absolute
1e-6 (2e-6 for the GELU cases: kiln's erf is a polynomial with absolute error
< 1e-6); gradients relative 1e-4 + absolute 1e-6; counts (accuracy,
precision / recall) exact.
Usage: heads_parity.py DIR   (exit 0 when everything matches)
"""
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F

torch.set_default_dtype(torch.float64)


def load(d):
    arrs = {}
    with open(os.path.join(d, "manifest.txt")) as f:
        for line in f:
            name, typ, rows, cols = line.split()
            a = np.fromfile(os.path.join(d, name + ".bin"), dtype="<f4" if typ == "f32" else "<i4")
            arrs[name] = a.reshape(int(rows), int(cols))
    return arrs


FAIL = []


def cmp(what, got, want, rtol, atol):
    got = np.asarray(got, dtype=np.float64)
    want = np.asarray(want, dtype=np.float64)
    err = np.abs(got - want) - (atol + rtol * np.abs(want))
    worst = float(np.max(np.abs(got - want))) if got.size else 0.0
    if got.shape != want.shape or (err > 0).any():
        FAIL.append(what)
        print(f"FAILED {what}: max abs diff {worst:.3g}")
    else:
        print(f"ok {what} (max abs diff {worst:.2g})")


def t(a, grad=False):
    return torch.tensor(np.asarray(a, dtype=np.float64), requires_grad=grad)


def case_cls(A, p, reg):
    x, w, b = t(A[p + "_pooled"], True), t(A[p + "_w"], True), t(A[p + "_b"][0], True)
    st = A[p + "_stats"][0]
    scale = float(st[6])
    logits = F.linear(x, w, b)
    if reg:
        y = t(A[p + "_targets"][0])
        m = ~torch.isnan(y)
        loss = F.mse_loss(logits[:, 0][m], y[m])
        correct = 0
    else:
        y = torch.tensor(A[p + "_labels"][0].astype(np.int64))
        loss = F.cross_entropy(logits, y, ignore_index=-1)
        m = y >= 0
        correct = int((logits.argmax(1)[m] == y[m]).sum())
    (loss * scale).backward()
    cmp(p + " logits", A[p + "_logits"], logits.detach(), 1e-5, 1e-6)
    cmp(p + " loss", st[0], loss.item(), 1e-5, 1e-6)
    cmp(p + " count, correct", st[1:3], [int(m.sum()), correct], 0, 0)
    cmp(p + " dW", A[p + "_dw"], w.grad, 1e-4, 1e-6)
    cmp(p + " db", A[p + "_db"][0], b.grad, 1e-4, 1e-6)
    cmp(p + " dpooled", A[p + "_dpooled"], x.grad, 1e-4, 1e-6)


def case_bin(A, p):
    x, w, b = t(A[p + "_x"], True), t(A[p + "_w"], True), t(A[p + "_b"][0], True)
    wp, bp = t(A[p + "_wp"], True), t(A[p + "_bp"][0], True)
    st = A[p + "_stats"][0]
    scale = float(st[6])
    h = F.gelu(F.linear(x, w, b), approximate="none" if p == "binerf" else "tanh")
    z = F.linear(h, wp, bp)[:, 0]
    y = torch.tensor(A[p + "_labels"][0].astype(np.int64))
    m = y >= 0
    loss = F.binary_cross_entropy_with_logits(z[m], y[m].double())
    (loss * scale).backward()
    pred, lab = (z.detach()[m] > 0), (y[m] == 1)
    counts = [int(m.sum()), int((pred == lab).sum()), int((pred & lab).sum()), int(pred.sum()), int(lab.sum())]
    cmp(p + " logit", A[p + "_logit"][0], z.detach(), 1e-5, 2e-6)
    cmp(p + " loss", st[0], loss.item(), 1e-5, 2e-6)
    cmp(p + " count, correct, tp, predicted and actual positives", st[1:6], counts, 0, 0)
    for name, g in (("dx", x.grad), ("dw", w.grad), ("db", b.grad), ("dwp", wp.grad), ("dbp", bp.grad)):
        got = A[p + "_" + name]
        cmp(f"{p} {name}", got.reshape(g.shape), g, 1e-4, 1e-6)


def case_lm(A, p):
    x, w = t(A[p + "_x"], True), t(A[p + "_w"], True)
    bias = t(A[p + "_bias"][0], True) if p + "_bias" in A else None
    st = A[p + "_stats"][0]
    scale = float(st[6])
    y = torch.tensor(A[p + "_labels"][0].astype(np.int64))
    logits = F.linear(x, w, bias)
    loss = F.cross_entropy(logits, y, ignore_index=-1)
    (loss * scale).backward()
    m = y >= 0
    lse = torch.logsumexp(logits.detach(), 1)
    correct = int((logits.detach().argmax(1)[m] == y[m]).sum())
    cmp(p + " logsumexp", A[p + "_lse"][0][m.numpy()], lse[m], 1e-5, 1e-6)
    cmp(p + " loss", st[0], loss.item(), 1e-5, 1e-6)
    cmp(p + " count, correct", st[1:3], [int(m.sum()), correct], 0, 0)
    cmp(p + " dx", A[p + "_dx"], x.grad, 1e-4, 1e-6)
    cmp(p + " dW", A[p + "_dw"], w.grad, 1e-4, 1e-6)
    if bias is not None:
        cmp(p + " dbias", A[p + "_dbias"][0], bias.grad, 1e-4, 1e-6)


def main():
    A = load(sys.argv[1])
    cases = sorted({k.rsplit("_", 1)[0] for k in A if k.endswith("_stats")})
    for p in cases:
        if p in ("cls", "reg"):
            case_cls(A, p, p == "reg")
        elif p.startswith("bin"):
            case_bin(A, p)
        elif p.startswith("lm"):
            case_lm(A, p)
        else:
            FAIL.append(p)
            print(f"FAILED unknown case {p}")
    want = {"cls", "reg", "binerf", "bintanh", "lmbias8", "lmbias64", "lm8", "lm64"}
    if set(cases) != want:
        FAIL.append("cases")
        print(f"FAILED cases: got {sorted(cases)}, want {sorted(want)}")
    print(f"{len(cases)} cases, {len(FAIL)} failures")
    return 1 if FAIL else 0


if __name__ == "__main__":
    sys.exit(main())
