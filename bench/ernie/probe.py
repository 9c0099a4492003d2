# bench/ernie/probe.py: the paired bootstrap over kiln eval --cloze items
# (--items JSON lines: kind, doc, start, ranks of the masked pieces, loss =
# the item's summed MLM loss) that bench/ernie/run and bench/ernie/seeds
# print: ERNIE - plain on the same items, top-1 and top-10 in points of the
# pieces, MLM loss per piece.

def per_item(pairs):
    """pairs: [(ernie_items, plain_items), ...], one pair per seed, the same
    items in the same order. Returns per[i] = ([top-1 count difference,
    top-10 count difference, loss difference] summed over the pairs, pieces
    summed over the pairs)."""
    key = lambda x: (x["kind"], x["doc"], x["start"])
    ref = [key(x) for x in pairs[0][1]]
    assert all([key(x) for x in e] == ref and [key(x) for x in p] == ref for e, p in pairs), "different items"
    per = []
    for i in range(len(ref)):
        v = [0.0, 0.0, 0.0]
        for e, p in pairs:
            v[0] += sum(r < 1 for r in e[i]["ranks"]) - sum(r < 1 for r in p[i]["ranks"])
            v[1] += sum(r < 10 for r in e[i]["ranks"]) - sum(r < 10 for r in p[i]["ranks"])
            v[2] += e[i]["loss"] - p[i]["loss"]
        per.append((v, len(pairs[0][1][i]["ranks"]) * len(pairs)))
    return per

def diffs(per, idx):
    """[top-1 points, top-10 points, MLM loss per piece] of ERNIE - plain over the items idx"""
    n = sum(per[i][1] for i in idx)
    return [100 * sum(per[i][0][0] for i in idx) / n, 100 * sum(per[i][0][1] for i in idx) / n,
            sum(per[i][0][2] for i in idx) / n]

def paired_bootstrap(per, idx, rng, reps=1000):
    """(the difference over idx, its 95% interval [(lo, hi)] x 3) from reps resamples of idx drawn with rng"""
    rs = [diffs(per, [idx[rng.randrange(len(idx))] for _ in idx]) for _ in range(reps)]
    cols = [sorted(r[j] for r in rs) for j in range(3)]
    lo, hi = int(0.025 * reps), int(0.975 * reps) - 1
    return diffs(per, idx), [(c[lo], c[hi]) for c in cols]
