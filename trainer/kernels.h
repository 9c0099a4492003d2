/* trainer/kernels.h: the layers a BERT-family model is made of, as forward /
 * backward pairs on float buffers (trainer/kernels.c). Pure computation, no
 * I/O; every buffer is the caller's (the one allocation is kgemm's per-thread
 * scratch for split products, grown on demand, reused, never returned).
 *
 * Dimension letters, used in every shape comment:
 *   N  rows (tokens; the model packs the real tokens of a batch, no padding)
 *   C  channels of a row (E, H or I below)
 *   E  embedding width, H hidden width, I FFN width, V vocabulary
 *   B  sequences, L longest sequence, NH heads, D = H / NH head width
 *   M  rows of a head (masked positions, or sequences for the pooler)
 * All matrices are row-major; linear weights are [out, in] (torch.nn.Linear).
 *
 * Conventions.
 *  - Backward functions ACCUMULATE into parameter gradients (dW += ...), so
 *    micro-batches add up; input gradients are overwritten, or accumulated
 *    when the function has an `acc` argument set to 1.
 *  - Determinism: every loop partitions its writes (rows, or channels for the
 *    reductions into parameter gradients); every sum runs in an order fixed
 *    by the data's shape, not by the thread count. Matrix products are
 *    single-threaded OpenBLAS sgemm calls on a grid of tiles fixed by the
 *    shapes (kgemm). So results are bit-identical for any thread count.
 *    In bf16 (kset_precision) the tiles are single-threaded oneDNN bf16
 *    products: the same holds within that precision.
 *  - Randomness (dropout) is counter-based: a mask element is a pure function
 *    of (key, element index); no state.
 *  - Calls may run inside or outside an OpenMP parallel region; kernels open
 *    their own parallel loops (nested regions run with one thread).
 */
#ifndef KILN_TRAINER_KERNELS_H
#define KILN_TRAINER_KERNELS_H

#include <stddef.h>
#include <stdint.h>

/* ---- counter-based random numbers -------------------------------------- */

/* SplitMix64's finalizer: a bijective 64-bit mix. */
static inline uint64_t kmix64(uint64_t z)
{
    z += 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}
/* Key of a random stream named by (seed, purpose, a, b). */
static inline uint64_t krng_key(uint64_t seed, uint64_t purpose, uint64_t a, uint64_t b)
{
    return kmix64(kmix64(kmix64(seed ^ (purpose << 56)) ^ a) + b);
}
/* The i-th 64-bit draw of stream key. */
static inline uint64_t krng_at(uint64_t key, uint64_t i) { return kmix64(key + i * 0xD1B54A32D192ED03ull); }

/* Standard normal number i of stream key (Box-Muller on draw i, in double). */
double krng_normal(uint64_t key, uint64_t i);

/* ---- dropout -------------------------------------------------------------- */

/* Whether element idx of the stream key is kept at drop probability p:
 * keep iff the top 24 bits of draw idx are >= p * 2^24. */
static inline int kdropout_keep(uint64_t key, uint64_t idx, float p)
{
    uint32_t thr = (uint32_t)((double)p * 16777216.0);
    return (uint32_t)(krng_at(key, idx) >> 40) >= thr;
}
/* y[i] = keep(key, first + i) ? x[i] / (1 - p) : 0 for i < n; p == 0 is the
 * identity (a copy, nothing when y == x). y may equal x. The backward pass is
 * the same call on the gradients (same key and indices). p must be < 1. */
void kdropout(float *y, const float *x, size_t n, float p, uint64_t key, uint64_t first);
/* x[i] = res[i] + dropout(x[i]) (in place), the residual of a post-LN block. */
void kresidual_dropout(float *x, const float *res, size_t n, float p, uint64_t key, uint64_t first);
/* Dropout over the rows of (N, C) activations of packed tokens: y[r, c] =
 * (res ? res[r, c] : 0) + dropout(x[r, c]), element index tok[r] C + c
 * (tok (N): each row's token position in the stream, so that a token gets
 * the same mask wherever its row sits in a batch: data-parallel ranks) or
 * r C + c when tok is NULL. y may equal x; p == 0: copy / add. */
void kdropout_rows(float *y, const float *x, const float *res, int N, int C, float p, uint64_t key,
                   const uint64_t *tok);
/* y[i] += x[i] */
void kadd(float *y, const float *x, size_t n);

/* ---- embeddings ------------------------------------------------------------ */

/* out[n] = t0[i0[n]] + t1[i1[n]] + t2[i2[n]]   (t1/i1 and t2/i2 may be NULL)
 * out (N, C); t* (rows, C); i* (N) valid row indices. */
void kembed_forward(float *out, int N, int C, const float *t0, const int32_t *i0, const float *t1,
                    const int32_t *i1, const float *t2, const int32_t *i2);
/* Scatter-add: d0[i0[n]] += dout[n] (skipping rows with i0[n] == skip0, the
 * padding index, as torch.nn.Embedding(padding_idx) does; -1 = none), same for
 * d1/i1 and d2/i2 (NULL = skip). Threads split the C channels: each row of a
 * table is summed in token order, race-free and thread-count independent. */
void kembed_backward(float *d0, const int32_t *i0, int32_t skip0, float *d1, const int32_t *i1, float *d2,
                     const int32_t *i2, const float *dout, int N, int C);

/* ---- matrix products ------------------------------------------------------- */

/* OpenBLAS's kernels in use, e.g. "Haswell (pinned)": kiln pins OpenBLAS's
 * Haswell kernels (AVX2 + FMA) before main on every CPU that has them, so
 * fp32 products give the same bits on every such CPU (OpenBLAS would pick
 * its SkylakeX kernels on AVX-512 Intel CPUs: other sums, other bits).
 * KILN_BLAS_CORE=native keeps OpenBLAS's own choice (OPENBLAS_CORETYPE or
 * its CPU detection): faster fp32 on some CPUs, bits of that CPU. Writes at
 * most n bytes. */
void kblas_core(char *out, size_t n);

/* C (M, N) = alpha op(A) op(B) + beta C, row-major, op = transpose when ta / tb
 * (cblas_sgemm's arguments). The product is cut into a grid of tiles that
 * depends only on (M, N, K) (kgemm_grid), and every tile is one
 * single-threaded sgemm; the tiles run in parallel. So the bits do not depend
 * on the thread count (OpenBLAS's own threading splits by thread count, and
 * its edge kernels round differently). When C is small and K long, K is cut
 * too and the partial products are added in a fixed order (kept in a
 * per-thread workspace of (kt - 1) M N floats, grown on demand and reused). */
void kgemm(int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda, const float *B, int ldb,
           float beta, float *C, int ldc);
/* A row epilogue: rows r0 .. r1 - 1 of a product are final (see kgemm_ex). */
typedef void (*krows_fn)(void *ctx, int r0, int r1);
/* kgemm with a prologue and an epilogue fused into its tiles: when bias (N)
 * or res (M x N, row stride ldc; may equal C) is given, C = res + bias first
 * and beta is 1 (each tile fills its own block just before its product);
 * then after(ctx, r0, r1) runs once on every row range, while a tile's rows
 * are still in cache when rows are what the grid cuts. Ranges are disjoint
 * and may run in parallel; after must only touch those rows. */
void kgemm_ex(int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda, const float *B, int ldb,
              float beta, float *C, int ldc, const float *bias, const float *res, krows_fn after, void *ctx);
/* The grid: mt x nt tiles of C, kt pieces of K; one of the three is above 1,
 * at 2, 4, 8 or 16 pieces for products of < 2^23, 2^30, 2^32 and more
 * multiply-adds (below 2^20: one piece). A product therefore uses at most
 * that many threads. */
void kgemm_grid(int M, int N, int K, int *mt, int *nt, int *kt);

/* Precision of the calling thread's matrix products (kgemm, kdense_*, the
 * attention kernels): KPREC_FP32 (the default: OpenBLAS sgemm) or
 * KPREC_BF16 (operands rounded to bfloat16, fp32 accumulation: bf16.h; the
 * caller checks kbf16_available first). Everything that is not a product
 * stays fp32. Per thread: a thread that trains sets it once. */
enum { KPREC_FP32 = 0, KPREC_BF16 = 1 };
void kset_precision(int p);
int kget_precision(void);

/* ---- dense layers ----------------------------------------------------------- */

/* y = x W^T + b (+ res)   x (N, in), W (out, in), b (out) or NULL, res (N, out)
 * or NULL, y (N, out). y must not alias x; it may equal res. */
void kdense_forward(float *y, const float *x, const float *W, const float *b, const float *res, int N, int in,
                    int out);
/* The same, then after(ctx, r0, r1) on the finished rows (kgemm_ex). */
void kdense_forward_ex(float *y, const float *x, const float *W, const float *b, const float *res, int N, int in,
                       int out, krows_fn after, void *ctx);
/* dx = dy W (or += with acc), dW += dy^T x, db += sum over rows of dy.
 * dy (N, out), x (N, in), dx (N, in) or NULL, dW (out, in) or NULL, db (out) or NULL. */
void kdense_backward(float *dx, int acc, float *dW, float *db, const float *dy, const float *x, const float *W, int N,
                     int in, int out);
/* The same, with after(ctx, r0, r1) run on the finished rows of dx. */
void kdense_backward_ex(float *dx, int acc, float *dW, float *db, const float *dy, const float *x, const float *W,
                        int N, int in, int out, krows_fn after, void *ctx);
/* db[c] += sum_n dy[n][c]   dy (N, C); rows summed in order, threads split C. */
void kcolsum_acc(float *db, const float *dy, int N, int C);

/* ---- layer normalization ----------------------------------------------------- */

/* y = (x - mean) * rstd * g + b per row; x, y (N, C), g, b (C); mean, rstd (N)
 * are kept for the backward pass. y may equal x only if x is not needed later. */
void klayernorm_forward(float *y, float *mean, float *rstd, const float *x, const float *g, const float *b, int N,
                        int C, float eps);
/* dx = (or += with acc) the input gradient; dg, db (C) accumulate.
 * dy, x, dx (N, C); dx may equal dy when acc == 0. */
void klayernorm_backward(float *dx, int acc, float *dg, float *db, const float *dy, const float *x,
                         const float *mean, const float *rstd, const float *g, int N, int C);

/* ---- activations --------------------------------------------------------------- */

enum { KGELU_ERF = 1, KGELU_TANH = 2 }; /* = KACT_GELU, KACT_GELU_NEW of config.h */

/* y = gelu(x): erf form 0.5 x (1 + erf(x / sqrt 2)), or tanh form ("gelu_new")
 * 0.5 x (1 + tanh(sqrt(2 / pi) (x + 0.044715 x^3))). y may equal x. */
void kgelu_forward(float *y, const float *x, size_t n, int kind);
/* dx = dy * gelu'(x); dx may equal dy. */
void kgelu_backward(float *dx, const float *dy, const float *x, size_t n, int kind);

/* ---- fused row epilogues (krows_fn for kdense_forward_ex / kdense_backward_ex) ---- */

/* Rows r of x (N, C), the output of a product: when res is given,
 * x = res + dropout(x) (p, key; element index tok[r] C + c, r C + c without
 * tok: kdropout_rows), then
 * y = LayerNorm(x) with mean, rstd kept (klayernorm_forward per row). */
typedef struct kepi_ln {
    float *x;              /* (N, C) */
    const float *res;      /* (N, C) or NULL (then x is used as it is) */
    float p;               /* dropout probability (with res) */
    uint64_t key;
    const uint64_t *tok;   /* (N) or NULL: the rows' element index bases (kdropout_rows) */
    float *y, *mean, *rstd; /* (N, C), (N), (N) */
    const float *g, *b;    /* (C) */
    int C;
    float eps;
} kepi_ln;
void kepi_layernorm(void *ctx, int r0, int r1);
/* Activation rows of width C:
 *   kepi_gelu:       y = gelu(x)
 *   kepi_gelu_deriv: y = gelu(x), and x is overwritten by gelu'(x) (both from
 *                    one exp; the backward pass then needs one multiply)
 *   kepi_gelu_back:  y = y * gelu'(x) (y holds the incoming gradient)
 *   kepi_mul:        y = y * x (x holds gelu'(pre) from kepi_gelu_deriv) */
typedef struct kepi_act {
    float *x;              /* (N, C) pre-activation (only kepi_gelu_deriv writes it) */
    float *y;              /* (N, C) */
    int C, kind;           /* KGELU_* */
} kepi_act;
void kepi_gelu(void *ctx, int r0, int r1);
void kepi_gelu_deriv(void *ctx, int r0, int r1);
void kepi_gelu_back(void *ctx, int r0, int r1);
void kepi_mul(void *ctx, int r0, int r1);

/* y = softmax(x) over each row; x, y (rows, cols), may be equal. */
void ksoftmax_forward(float *y, const float *x, int rows, int cols);
/* dx = y * (dy - sum(dy * y)) per row; dx may equal dy. */
void ksoftmax_backward(float *dx, const float *dy, const float *y, int rows, int cols);

/* Polynomial exp, erf and tanh as the kernels use them (the same on every
 * ISA), exposed for tests. */
float kexp(float x);
float kerf(float x);

/* ---- multi-head self-attention ------------------------------------------------ */

/* The sequences are packed: sequence b is rows offs[b] .. offs[b+1] - 1 of
 * qkv (N, 3H): [q (H) | k (H) | v (H)] per row, head h at columns h D .. h D + D - 1
 * of each part. A sequence attends only to its own rows (the key padding mask
 * of a padded batch); with causal, row i attends to rows <= i. */
typedef struct kattn_dims {
    int B, NH, D, L;   /* sequences, heads, head width, longest sequence (<= L) */
    int causal;        /* 1: row i attends to keys j <= i */
    float pdrop;       /* dropout on the attention probabilities */
    uint64_t key;      /* dropout stream; element (b, h, i, j) has index ((s NH + h) L + i) L + j, */
    const uint64_t *seq; /* s = seq[b] (B: each sequence's stream position) or b when NULL */
} kattn_dims;

/* Floats of scratch per thread the attention kernels need. */
size_t kattention_scratch(const kattn_dims *d);
/* ctx (N, H) = softmax(q k^T / sqrt(D)) v per sequence and head;
 * probs (B, NH, L, L): the probabilities (before dropout) of sequence b, head
 * h as an n x n block (n = its length, row stride n) at (b NH + h) L L;
 * scratch: omp_get_max_threads() * kattention_scratch(d) floats. */
void kattention_forward(float *ctx, float *probs, float *scratch, const float *qkv, const int32_t *offs,
                        const kattn_dims *d);
/* dqkv (N, 3H) = the gradient of q, k, v (overwritten) from dctx (N, H). */
void kattention_backward(float *dqkv, float *scratch, const float *dctx, const float *qkv, const float *probs,
                         const int32_t *offs, const kattn_dims *d);

/* ---- losses -------------------------------------------------------------------- */

/* Softmax cross-entropy per row over the logits x (M, V), in place:
 * first x_i += bias (when bias (V) is not NULL: the output layer's bias, added
 * here in the pass that reads the row anyway), then
 * loss[i] = logsumexp(x_i) - x_i[label_i], correct[i] = (first argmax == label_i);
 * rows with label < 0 get loss 0, correct 0. If gscale is NULL, x keeps the
 * (biased) logits; else x is overwritten by dloss:
 * x_i = (softmax(x_i) - onehot(label_i)) * gscale[i] (zero rows for label < 0).
 * loss (M), correct (M) or NULL, labels (M), gscale (M) or NULL. */
void kxent(float *x, const float *bias, float *loss, uint8_t *correct, const int32_t *labels, const float *gscale,
           int M, int V);

/* kxent with a teacher's soft targets (knowledge distillation), per row of
 * x (M, V), in place: x_i += bias (bias (V) or NULL); then
 *   loss[i], correct[i] as kxent for rows with label >= 0 (else 0);
 *   kl[i] = T^2 KL(softmax(t_i / T) || softmax(x_i / T)) for every row;
 *   agree[i] = (first argmax of x_i == first argmax of t_i).
 * t (M, V): the teacher's logits (bias included). T > 0.
 * With gscale and kscale (M) each (NULL: measure only, x keeps the biased
 * logits): x_i = gscale[i] (softmax(x_i) - onehot(label_i)) (0 for label < 0)
 *              + kscale[i] T (softmax(x_i / T) - softmax(t_i / T)),
 * the gradient of gscale * CE + kscale * kl. loss, kl (M); correct, agree (M)
 * or NULL; labels (M). Uses 2 V floats of each thread's kernel workspace
 * (aborts when that cannot grow). Bit-identical for any thread count. */
void kxent_soft(float *x, const float *bias, const float *t, float T, float *loss, float *kl, uint8_t *correct,
                uint8_t *agree, const int32_t *labels, const float *gscale, const float *kscale, int M, int V);

/* TinyBERT's attention-score loss for one student layer against one teacher
 * layer: per sequence b (rows offs[b] .. offs[b + 1] - 1) and head h, the
 * pre-softmax scores S = q k^T / sqrt(D) of the student (qkv (N, 3 NH D))
 * and of the teacher (tqkv (N, 3 NH Dt), the same heads); returns the sum of
 * (S - St)^2 over the real entries (padding has none here) and their count
 * NH sum_b n_b^2 in *count. With dqkv (N, 3 NH D) not NULL, its query and key
 * columns get += gscale times the gradient of that sum (value columns
 * untouched). Per-thread workspace 2 L^2 floats (aborts when it cannot
 * grow). Bit-identical for any thread count. */
double kattn_score_mse(const float *qkv, const float *tqkv, const int32_t *offs, int B, int NH, int D, int Dt, int L,
                       float *dqkv, float gscale, double *count);
/* Cosine-embedding loss with target 1 (torch.nn.CosineEmbeddingLoss) of rows
 * s against t (N, H each): returns sum_i (1 - cos(s_i, t_i)), cos = s.t /
 * sqrt((|s|^2 + 1e-12) (|t|^2 + 1e-12)); with ds (N, H) not NULL,
 * ds = gscale times the gradient of that sum with respect to s (overwritten). */
double kcosine_loss(const float *s, const float *t, float *ds, float gscale, int N, int H);

/* ---- heads ----------------------------------------------------------------------- */

/* Pooler: pooled = tanh(cls W^T + b); cls, pooled (M, H), W (H, H), b (H). */
void kpooler_forward(float *pooled, const float *cls, const float *W, const float *b, int M, int H);
/* dcls = (or += with acc) the input gradient, dW, db accumulate; dpooled (M, H)
 * is clobbered (becomes the gradient before tanh). */
void kpooler_backward(float *dcls, int acc, float *dW, float *db, float *dpooled, const float *cls,
                      const float *pooled, const float *W, int M, int H);

/* Masked-LM head at the M gathered rows x (M, H):
 *   pre = x W^T + b (M, E); a = gelu(pre); h = LayerNorm(a);
 *   logits = h emb^T + bias (M, V), emb the (tied) word embeddings (V, E);
 *   kmlm_head_forward stops at h emb^T: the loss, kxent(logits, bias, ...),
 *   adds the bias in the pass it makes over the logits anyway.
 * (BERT: E = H.) Parameters, their gradients (accumulated) and the buffers.
 * The backward pass gives bias its gradient (the column sums of dlogits). */
typedef struct kmlm_head {
    int M, H, E, V, act;   /* act: KGELU_* */
    float eps;             /* LayerNorm epsilon */
    const float *w, *b;    /* (E, H), (E) */
    const float *ln_g, *ln_b; /* (E), (E) */
    const float *emb, *bias;  /* (V, E), (V) */
    float *dw, *db, *dln_g, *dln_b, *demb, *dbias; /* gradients, same shapes; accumulated */
    float *pre, *a, *h;    /* (M, E) each */
    float *mean, *rstd;    /* (M) each */
    float *logits;         /* (M, V): h emb^T after forward; kxent adds the bias and turns them into dlogits */
    float *dh, *da;        /* (M, E) each: backward scratch */
} kmlm_head;
void kmlm_head_forward(kmlm_head *k, const float *x);
/* From dlogits (in k->logits): parameter gradients accumulate; dx (M, H) =
 * (or += with acc) the gradient of x. */
void kmlm_head_backward(kmlm_head *k, float *dx, int acc, const float *x);

#endif
