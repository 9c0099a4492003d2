/* trainer/generate.h: incremental decoding of a causal model (GPT-2) with a
 * key/value cache, and the token samplers of `kiln generate` (greedy,
 * temperature, top-k, top-p) driven by a counter-based RNG.
 *
 * A kgen reads the parameters of a model built by kmodel_create with
 * model.type gpt2 (the registry's names, trainer/registry.c); it does not
 * own the model, which must outlive it and whose parameters must not change
 * while the kgen is in use. The cache holds, per layer, the keys and values
 * of every position fed so far: (NL, NH, max_len, D) floats each.
 *
 * Exactness: the logits of position t depend only on the ids 0..t, not on
 * how they were fed (all at once, one at a time, or in any split): feeding a
 * prefix in one call and token by token give the same bytes. They agree with
 * kmodel_forward's eval pass (and with torch's GPT2LMHeadModel) within fp32
 * rounding (tests/unit/test_generate.c states the tolerances).
 *
 * Thread safety: one kgen per thread; several kgen may share one model.
 * A feed runs its products on omp_get_max_threads() threads (split over
 * output columns in fixed chunks: the bytes do not depend on the count);
 * inside another parallel region it runs on the calling thread. A feed
 * allocates nothing: kgen_new sizes everything (the cache, the final hidden
 * state of every position, scratch for 64 positions at a time). */
#ifndef KILN_TRAINER_GENERATE_H
#define KILN_TRAINER_GENERATE_H

#include <stddef.h>
#include <stdint.h>

#include "trainer/model.h"

typedef struct kgen kgen;

/* A decoder over model m (model.type gpt2; eval or inference model) for
 * sequences of at most max_len positions (1 <= max_len <= n_positions).
 * Returns NULL with err filled: not a GPT-2 model, a bad max_len, or out of
 * memory ("out of memory" in the message). Owned: kgen_free. */
kgen *kgen_new(const kmodel *m, int max_len, char *err, size_t errlen);
void kgen_free(kgen *g);
/* bf16 from here on (kiln generate --precision bf16): the products' weights
 * (the layers' and the tied LM head) copied once into bfloat16 (owned by g,
 * V Hp + NL (4 H Hp + I Hp + H Ip) values, Hp / Ip = H / I rounded up to
 * 32), each product's input rows rounded to bfloat16, dot products by the
 * CPU's VDPBF16PS with fp32 accumulation (16 lanes, then a fixed tree); the
 * rest (embeddings, LayerNorm, attention over the cache, GELU, residuals)
 * stays fp32. About half the bytes read per token. Exactness as fp32's
 * (the same bytes however the ids are fed, whatever the thread count) on
 * one CPU; the logits are within bf16 rounding of fp32's (so greedy ids
 * may differ from fp32's and from transformers'). The cache is kept (its
 * keys and values were fp32's; a new feed continues in bf16). Returns 0,
 * EX_UNAVAILABLE (no AVX512_BF16; err says so) or EX_OSERR (out of memory). */
int kgen_use_bf16(kgen *g, char *err, size_t errlen);
int kgen_is_bf16(const kgen *g);
/* Empties the cache (length 0); the next feed starts at position 0. */
void kgen_reset(kgen *g);
/* Positions in the cache. */
int kgen_len(const kgen *g);
int kgen_max_len(const kgen *g);
int kgen_vocab_size(const kgen *g);
/* Drops the cache back to its first n positions (n <= kgen_len; more
 * changes nothing): a scorer reuses a shared prompt for several candidate
 * continuations. kgen_logits then gives position n - 1's logits again
 * (recomputed from its kept final hidden state: the same bytes as when it
 * was fed), NULL for n = 0. */
void kgen_truncate(kgen *g, int n);

/* Appends ids[0..n) (n >= 1) at positions kgen_len() ... kgen_len() + n - 1,
 * computing their keys and values. If logits is not NULL it receives the
 * (n, V) logits of the appended positions (row i predicts the token after
 * ids[i]); either way the last position's logits are readable with
 * kgen_logits until the next feed. Returns 0, or EX_DATAERR (cache
 * unchanged, kgen_error says why) when len + n > max_len or an id is not in
 * [0, V). */
int kgen_feed(kgen *g, const int32_t *ids, int n, float *logits);
/* (V) logits after the last fed id; NULL before the first feed. */
const float *kgen_logits(const kgen *g);
const char *kgen_error(const kgen *g);

/* Log-softmax of (V) logits at temperature 1 into out (V), in double for the
 * sums (scorers add many of them). */
void kgen_log_softmax(const float *logits, int V, double *out);
/* kgen_log_softmax's value at id alone (the same bits; no (V) output); the
 * argmax it finds on the way (kgen_argmax's id) into *top unless NULL. */
double kgen_logprob(const float *logits, int V, int32_t id, int32_t *top);
/* The first id of the largest finite or +inf logit (NaN compares false; all
 * -inf or NaN: the sampler's rank order): kgen_sample's greedy choice. */
int32_t kgen_argmax(const float *logits, int V);

/* ---- sampling -------------------------------------------------------------- */

typedef struct kgen_sampling {
    int greedy;          /* 1: argmax (lowest id on ties); the rest is ignored */
    double temperature;  /* > 0; 1 = the model's distribution */
    int top_k;           /* 0 = off; else keep the k most likely (ties by lower id) */
    double top_p;        /* 1 = off; else the smallest most-likely set with mass >= p */
} kgen_sampling;

void kgen_sampling_defaults(kgen_sampling *s); /* greedy 0, T 1, top_k 0, top_p 1 */

/* Draws the next id from (V) logits as s says, with the draw a pure
 * function of (seed, step) (SplitMix64-style counter RNG: the same seed and
 * step give the same id on any machine and thread count). *logprob (may be
 * NULL) gets the id's log-probability under the model's distribution at
 * temperature 1 (what `kiln generate --json` reports), not the truncated
 * one. scratch: 2 V floats + V ints of the caller's (one block,
 * V (2 sizeof(float) + sizeof(int32_t)) bytes, 8-byte aligned as malloc's),
 * or NULL (allocated and freed inside; greedy needs none). The exact
 * procedure (ranking, top-k, top-p, the draw) is at the top of generate.c.
 * Returns the id, or -1 for bad options (T <= 0, top_p outside (0, 1],
 * top_k < 0) or when scratch is NULL and malloc fails. */
int32_t kgen_sample(const float *logits, int V, const kgen_sampling *s, uint64_t seed, uint64_t step,
                    double *logprob, void *scratch);

#endif
