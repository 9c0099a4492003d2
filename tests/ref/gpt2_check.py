#!/usr/bin/env python3
"""gpt2_check.py: checks kiln's GPT-2 commands against a brute-force PyTorch
reference built from a Hugging Face GPT-2 folder that `kiln export` wrote
(model.safetensors with Conv1D [in, out] weights, config.json, vocab.json,
merges.txt), with the model of torch_models.py (torch.nn modules, no cache:
every score is a full forward pass of the whole sequence) and the reference
BPE encoder of gpt2_bpe.py (so the text side is independent of kiln too).

  gpt2_check.py ppl FOLDER TEXT_FILE WINDOW STRIDE KILN_JSON
      kiln eval --perplexity --json output: tokens, scored, nll against the
      sliding-window recipe recomputed here (rel. tol 1e-4 on the NLL)
  gpt2_check.py greedy FOLDER KILN_JSONL
      kiln generate --greedy --json lines: each prompt re-encoded, continued
      greedily by full recomputation at every step: same ids, log-probs
      within 1e-4
  gpt2_check.py scores FOLDER SCORES_JSONL KILN_JSON
      kiln eval --fewshot --scores lines: each sequence's continuation
      log-probability by a full forward pass (abs. tol 1e-3 + 1e-5 * |lp|),
      then each k's accuracy recomputed from the dumped scores and compared
      with kiln's --json (exactly)

Exit 0 when everything agrees, 1 otherwise. Run with /usr/bin/python3."""
import json
import math
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gpt2_bpe  # noqa: E402
import torch_models  # noqa: E402
from torch_parity import read_safetensors  # noqa: E402

torch.set_grad_enabled(False)


def load(folder):
    cfg = json.load(open(os.path.join(folder, "config.json")))
    assert cfg["model_type"] == "gpt2" and cfg["architectures"] == ["GPT2LMHeadModel"], cfg
    H = cfg["n_embd"]
    c = {"model_type": "gpt2", "hidden_size": H, "num_attention_heads": cfg["n_head"],
         "num_hidden_layers": cfg["n_layer"], "intermediate_size": cfg["n_inner"] or 4 * H,
         "hidden_act": cfg["activation_function"], "layer_norm_eps": cfg["layer_norm_epsilon"],
         "vocab_size": cfg["vocab_size"], "max_position_embeddings": cfg["n_positions"]}
    model = torch_models.GPT2LMHeadModel(c)
    T, meta = read_safetensors(os.path.join(folder, "model.safetensors"))
    assert meta.get("format") == "pt", meta
    assert "lm_head.weight" not in T
    sd = {k: torch.from_numpy(v) for k, v in T.items()}
    sd["lm_head.weight"] = sd["transformer.wte.weight"]
    model.load_state_dict(sd, strict=True)
    model.eval()
    enc = gpt2_bpe.Encoder(os.path.join(folder, "vocab.json"), os.path.join(folder, "merges.txt"))
    return model, enc, cfg


def logprobs(model, ids):
    """(n, V) float64 log-softmax of the logits of a full forward pass"""
    x = torch.tensor([ids], dtype=torch.long)
    logits = model(x, torch.ones_like(x))[0].double()
    return F.log_softmax(logits, dim=-1)


def check_ppl(folder, text_file, window, stride, kiln_json):
    model, enc, cfg = load(folder)
    raw = open(text_file, "rb").read()
    ids = enc.encode(raw.decode("utf-8", errors="replace"))
    k = json.load(open(kiln_json))
    n = len(ids)
    nll, count, prev_end, b, hits, windows = 0.0, 0, 0, 0, 0, 0
    while True:
        end = min(b + window, n)
        lp = logprobs(model, ids[b:end])
        windows += 1
        for t in range(max(prev_end, b + 1), end):
            nll -= float(lp[t - b - 1, ids[t]])
            hits += int(lp[t - b - 1].argmax()) == ids[t]
            count += 1
        prev_end = end
        if end == n:
            break
        b += stride
    mean = nll / count
    bpb = nll / math.log(2) / len(raw)
    # accuracy: the argmax may flip on a near tie between fp32 and torch's order of sums
    ok = (k["tokens"] == n and k["scored"] == count and abs(k["nll"] - mean) <= 1e-4 * abs(mean)
          and k["windows"] == windows and abs(k["bits_per_byte"] - bpb) <= 1e-4 * bpb
          and abs(k["accuracy"] * count - hits) <= 2)
    print(f"ppl: tokens {n} (kiln {k['tokens']}), scored {count} (kiln {k['scored']}), windows {windows} "
          f"(kiln {k['windows']}), NLL torch {mean:.7f} kiln {k['nll']:.7f}, perplexity torch {math.exp(mean):.4f} "
          f"kiln {k['perplexity']:.4f}, bits per byte torch {bpb:.5f} kiln {k['bits_per_byte']:.5f}, "
          f"accuracy torch {hits}/{count} kiln {k['accuracy'] * count:.0f}: {'ok' if ok else 'FAIL'}")
    return ok


def check_greedy(folder, kiln_jsonl):
    model, enc, cfg = load(folder)
    eot = enc.encoder.get(gpt2_bpe.EOT)
    ok, worst = True, 0.0
    for line in open(kiln_jsonl):
        g = json.loads(line)
        ids = enc.encode(g["prompt"]) or [eot]
        new, lps = [], []
        for _ in range(len(g["ids"])):
            lp = logprobs(model, ids + new)[-1]
            nxt = int(torch.argmax(lp))  # lowest id on ties, as kiln
            new.append(nxt)
            lps.append(float(lp[nxt]))
            if nxt == eot:
                break
        d = max([abs(a - b) for a, b in zip(lps, g["logprobs"])] or [0.0])
        worst = max(worst, d)
        same = new == g["ids"]
        if not same or d > 1e-4:
            ok = False
            print(f"greedy: prompt {g['prompt']!r}: torch {new} kiln {g['ids']} (logprob diff {d:.2e}): FAIL")
    print(f"greedy: {'ok' if ok else 'FAIL'} (worst logprob difference {worst:.2e})")
    return ok


def check_scores(folder, scores, kiln_json):
    model, enc, cfg = load(folder)
    rows = [json.loads(l) for l in open(scores)]
    ok, worst = True, 0.0
    for r in rows:
        ids, m = r["ids"], r["continuation_tokens"]
        lp = logprobs(model, ids[:-1])  # the last token is only predicted (n_positions + 1 at most)
        ref = sum(float(lp[t - 1, ids[t]]) for t in range(len(ids) - m, len(ids)))
        d = abs(ref - r["logprob"])
        worst = max(worst, d / (1 + abs(ref)))
        if d > 1e-3 + 1e-5 * abs(ref):
            ok = False
            print(f"scores: k {r['k']} example {r['index']} choice {r['choice']}: torch {ref} kiln {r['logprob']}: FAIL")
    # accuracies from the dumped scores (argmax of the sum)
    k = json.load(open(kiln_json))
    by = {}
    for r in rows:
        by.setdefault((r["k"], r["index"]), []).append(r)
    for res in k["results"]:
        ex = [sorted(v, key=lambda r: r["choice"]) for (kk, _), v in by.items() if kk == res["k"]]
        if len(ex) != k["examples"]:
            ok = False
        acc = sum(max(v, key=lambda r: (r["logprob"], -r["choice"]))["gold"] == v[0]["gold"] and
                  max(v, key=lambda r: (r["logprob"], -r["choice"]))["choice"] == v[0]["gold"] for v in ex) / len(ex)
        accn = sum(max(v, key=lambda r: (r["logprob"] / r["answer_bytes"], -r["choice"]))["choice"] == v[0]["gold"]
                   for v in ex) / len(ex)
        same = abs(acc - res["accuracy"]) < 1e-12 and abs(accn - res["accuracy_norm"]) < 1e-12
        ok = ok and same
        print(f"scores: k {res['k']}: {len(ex)} examples; accuracy from the scores {acc:.4f} (kiln {res['accuracy']:.4f}), "
              f"normalised {accn:.4f} (kiln {res['accuracy_norm']:.4f}): {'ok' if same else 'FAIL'}")
    print(f"scores: {len(rows)} sequences, worst relative difference {worst:.2e}: {'ok' if ok else 'FAIL'}")
    return ok


def main():
    cmd = sys.argv[1]
    if cmd == "ppl":
        ok = check_ppl(sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]), sys.argv[6])
    elif cmd == "greedy":
        ok = check_greedy(sys.argv[2], sys.argv[3])
    elif cmd == "scores":
        ok = check_scores(sys.argv[2], sys.argv[3], sys.argv[4])
    else:
        raise SystemExit(__doc__)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
