#!/usr/bin/python3
"""ref_bert_masking.py: the reference the sampler benchmark compares against:
Google BERT's create_masked_lm_predictions (create_pretraining_data.py, with
whole-word masking off or on) in Python, applied to the same packed token
windows kiln samples from. Reads `kiln sample --objective clm --format jsonl`
lines (each window becomes [CLS] window [SEP]), masks every window `repeat`
times, prints sequences per second. A reimplementation for timing, not a copy."""
import json, random, sys, time

def main():
    path, vocab_path, repeat, wwm = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4] == "1"
    vocab = [l.rstrip("\n") for l in open(vocab_path, encoding="utf-8")]
    CLS, SEP, MASK = vocab.index("[CLS]"), vocab.index("[SEP]"), vocab.index("[MASK]")
    windows = [json.loads(l)["input_ids"] for l in open(path)]
    tokens_of = [[vocab[i] for i in w] for w in windows]          # BERT works on strings
    rng = random.Random(12345)
    max_pred, prob = 20 if len(windows[0]) <= 130 else 77, 0.15
    n = 0
    t0 = time.time()
    for _ in range(repeat):
        for w in tokens_of:
            tokens = ["[CLS]"] + w + ["[SEP]"]
            cand = []
            for i, tok in enumerate(tokens):
                if tok in ("[CLS]", "[SEP]"):
                    continue
                if wwm and cand and tok.startswith("##"):
                    cand[-1].append(i)
                else:
                    cand.append([i])
            rng.shuffle(cand)
            out = list(tokens)
            num = min(max_pred, max(1, int(round(len(tokens) * prob))))
            masked = []
            covered = set()
            for idx in cand:
                if len(masked) >= num:
                    break
                if len(masked) + len(idx) > num:
                    continue
                for i in idx:
                    covered.add(i)
                    if rng.random() < 0.8:
                        rep = "[MASK]"
                    elif rng.random() < 0.5:
                        rep = tokens[i]
                    else:
                        rep = vocab[rng.randint(0, len(vocab) - 1)]
                    out[i] = rep
                    masked.append((i, tokens[i]))
            masked.sort()
            n += 1
    dt = time.time() - t0
    print("%.1f" % (n / dt))

main()
