/* trainer/heads.c: the task heads of heads.h (sequence classification /
 * regression, ELECTRA's per-token discriminator, the chunked LM head).
 *
 * What it is: compositions of the kernels of kernels.c (kdense_*, kgelu_*,
 * kdropout, kgemm) plus the losses, written as plain loops.
 * What it is not: a place that allocates or owns anything; the model does.
 *
 * Determinism. Matrix products go through kgemm (tiles fixed by the shapes).
 * The losses of kcls_head and kbin_head are summed in row order on the calling
 * thread (B and N rows: cheap). klm_head's row loops run in parallel over rows,
 * each row written by one thread, each row's sum of exps taken in 8 double
 * lanes (element j into lane j % 8) combined in a fixed order; the chunk loop
 * is sequential, so dx sums its chunks in chunk order. Same bits for any
 * thread count.
 */
#include "trainer/heads.h"

#include <math.h>
#include <omp.h>
#include <string.h>

#include "trainer/kernels.h"
#include "util/kmath.h" /* kexpf: exp with the same bits on every ISA */

/* Row loops over fewer elements than this stay on the calling thread. */
#define PAR_MIN 32768

static khead_loss loss_done(khead_loss r)
{
    r.mean = r.count ? (float)(r.sum / r.count) : 0.0f;
    return r;
}

/* ---- sequence classification / regression ---------------------------------- */

void kcls_head_forward(kcls_head *k, const float *pooled)
{
    const size_t BH = (size_t)k->B * k->H;
    kdropout(k->z, pooled, BH, k->p, k->key, 0);
    kdense_forward(k->logits, k->z, k->w, k->b, NULL, k->B, k->H, k->NL);
}

/* Cross-entropy of one row of NL logits in double: returns the loss; *am the
 * first argmax; with d, d = (softmax - onehot) * g. */
static double xent_small(const float *l, int NL, int label, int *am, float *d, double g)
{
    int a = 0;
    for (int j = 1; j < NL; j++)
        if (l[j] > l[a]) a = j;
    double m = l[a], s = 0;
    for (int j = 0; j < NL; j++) s += exp((double)l[j] - m);
    double lse = m + log(s);
    if (d) {
        for (int j = 0; j < NL; j++) d[j] = (float)((exp((double)l[j] - lse) - (j == label)) * g);
    }
    *am = a;
    return lse - l[label];
}

khead_loss kcls_head_loss(kcls_head *k, const int32_t *labels, const float *targets, uint8_t *correct,
                          float loss_scale, int grad)
{
    const int B = k->B, NL = k->NL;
    khead_loss r = {0};
    for (int b = 0; b < B; b++) r.count += NL == 1 ? !isnan(targets[b]) : labels[b] >= 0;
    double g = r.count ? (double)loss_scale / r.count : 0.0;
    if (grad) memset(k->dlogits, 0, (size_t)B * NL * sizeof *k->dlogits);
    for (int b = 0; b < B; b++) {
        const float *l = k->logits + (size_t)b * NL;
        float *d = grad ? k->dlogits + (size_t)b * NL : NULL;
        if (correct) correct[b] = 0;
        if (NL == 1) {
            if (isnan(targets[b])) continue;
            double e = (double)l[0] - targets[b];
            r.sum += e * e;
            if (d) d[0] = (float)(2.0 * e * g);
        } else {
            if (labels[b] < 0) continue;
            int am;
            r.sum += xent_small(l, NL, labels[b], &am, d, g);
            r.correct += am == labels[b];
            if (correct) correct[b] = am == labels[b];
        }
    }
    return loss_done(r);
}

void kcls_head_backward(kcls_head *k, float *dpooled)
{
    kdense_backward(dpooled, 0, k->dw, k->db, k->dlogits, k->z, k->w, k->B, k->H, k->NL);
    if (dpooled) kdropout(dpooled, dpooled, (size_t)k->B * k->H, k->p, k->key, 0);
}

/* ---- per-token binary head --------------------------------------------------- */

void kbin_head_forward(kbin_head *k, const float *x)
{
    kepi_act act = {.x = k->pre, .y = k->h, .C = k->H, .kind = k->act};
    kdense_forward_ex(k->pre, x, k->w, k->b, NULL, k->N, k->H, k->H, kepi_gelu, &act);
    kdense_forward(k->logit, k->h, k->wp, k->bp, NULL, k->N, k->H, 1);
}

khead_loss kbin_head_loss(kbin_head *k, const int32_t *labels, float loss_scale, int grad)
{
    const int N = k->N;
    khead_loss r = {0};
    for (int n = 0; n < N; n++) r.count += labels[n] >= 0;
    double g = r.count ? (double)loss_scale / r.count : 0.0;
    for (int n = 0; n < N; n++) {
        if (labels[n] < 0) {
            if (grad) k->dlogit[n] = 0.0f;
            continue;
        }
        double z = k->logit[n], y = labels[n] ? 1.0 : 0.0;
        r.sum += (z > 0 ? z : 0) - z * y + log1p(exp(-fabs(z)));
        int pred = z > 0, lab = labels[n] != 0;
        r.correct += pred == lab;
        r.tp += pred && lab;
        r.pred_pos += pred;
        r.act_pos += lab;
        if (grad) {
            double sig = z >= 0 ? 1.0 / (1.0 + exp(-z)) : exp(z) / (1.0 + exp(z));
            k->dlogit[n] = (float)((sig - y) * g);
        }
    }
    return loss_done(r);
}

void kbin_head_backward(kbin_head *k, float *dx, int acc, const float *x)
{
    const int N = k->N, H = k->H;
    kdense_backward(k->dh, 0, k->dwp, k->dbp, k->dlogit, k->h, k->wp, N, H, 1);
    kgelu_backward(k->dh, k->dh, k->pre, (size_t)N * H, k->act);
    kdense_backward(dx, acc, k->dw, k->db, k->dh, x, k->w, N, H, H);
}

/* ---- LM head, vocabulary in chunks ---------------------------------------------- */

/* k->chunk (N, c) = x w[j0 .. j0 + c)^T + bias[j0 .. j0 + c) */
static void lm_chunk_logits(const klm_head *k, const float *x, int j0, int c)
{
    kdense_forward(k->chunk, x, k->w + (size_t)j0 * k->H, k->bias ? k->bias + j0 : NULL, NULL, k->N, k->H, c);
}

/* sum_j exp(l[j] - m) over c values, in 8 double lanes; l is overwritten by
 * the exps (a vectorizable pass). */
static double expsum(float *l, int c, float m)
{
    for (int j = 0; j < c; j++) l[j] = kexpf(l[j] - m);
    double acc[8] = {0};
    int j = 0;
    for (; j + 8 <= c; j += 8)
        for (int t = 0; t < 8; t++) acc[t] += l[j + t];
    for (int t = 0; j + t < c; t++) acc[t] += l[j + t];
    return ((acc[0] + acc[4]) + (acc[2] + acc[6])) + ((acc[1] + acc[5]) + (acc[3] + acc[7]));
}

/* Folds the chunk [j0, j0 + c) of row n (logits l) into the row's state. */
static void lm_row_fold(klm_head *k, float *l, int n, int j0, int c, int32_t label)
{
    int a = 0;
    for (int j = 1; j < c; j++)
        if (l[j] > l[a]) a = j;
    float cm = l[a];
    if (label >= j0 && label < j0 + c) k->label_logit[n] = l[label - j0];
    float m = k->run_max[n];
    double s = k->run_sum[n];
    if (j0 == 0 || cm > m) { /* a new maximum: rescale the sum so far */
        s = j0 == 0 ? 0.0 : s * exp((double)m - cm);
        m = cm;
        k->argmax[n] = j0 + a;
    }
    k->run_max[n] = m;
    k->run_sum[n] = s + expsum(l, c, m);
}

khead_loss klm_head_loss(klm_head *k, const float *x, const int32_t *labels)
{
    const int N = k->N, V = k->V, C = k->C < V ? k->C : V;
    khead_loss r = {0};
    if (N == 0) return r;
    for (int j0 = 0; j0 < V; j0 += C) {
        const int c = V - j0 < C ? V - j0 : C;
        lm_chunk_logits(k, x, j0, c);
        if (k->keep) memcpy(k->keep + (size_t)j0 * N, k->chunk, (size_t)N * c * sizeof(float));
#pragma omp parallel for schedule(static) if ((size_t)N * c >= PAR_MIN)
        for (int n = 0; n < N; n++)
            if (labels[n] >= 0) lm_row_fold(k, k->chunk + (size_t)n * c, n, j0, c, labels[n]);
    }
    for (int n = 0; n < N; n++) {
        if (labels[n] < 0) {
            k->lse[n] = 0.0f, k->label_logit[n] = 0.0f, k->argmax[n] = -1;
            continue;
        }
        double lse = (double)k->run_max[n] + log(k->run_sum[n]);
        k->lse[n] = (float)lse;
        r.sum += lse - k->label_logit[n];
        r.count++;
        r.correct += k->argmax[n] == labels[n];
    }
    return loss_done(r);
}

/* Row n of a chunk's logits l (c) becomes dlogits: (softmax - onehot) g. */
static void lm_row_grad(float *l, int c, int j0, float lse, int32_t label, float g)
{
    if (label < 0) {
        memset(l, 0, (size_t)c * sizeof *l);
        return;
    }
    for (int j = 0; j < c; j++) l[j] = kexpf(l[j] - lse) * g;
    if (label >= j0 && label < j0 + c) l[label - j0] -= g;
}

void klm_head_backward(klm_head *k, float *dx, int acc, const float *x, const int32_t *labels, const float *gscale)
{
    const int N = k->N, H = k->H, V = k->V, C = k->C < V ? k->C : V;
    if (N == 0) return;
    for (int j0 = 0; j0 < V; j0 += C) {
        const int c = V - j0 < C ? V - j0 : C;
        float *l = k->chunk;
        if (k->keep) l = k->keep + (size_t)j0 * N; /* the loss pass's logits, the same bytes */
        else lm_chunk_logits(k, x, j0, c);
#pragma omp parallel for schedule(static) if ((size_t)N * c >= PAR_MIN)
        for (int n = 0; n < N; n++)
            lm_row_grad(l + (size_t)n * c, c, j0, k->lse[n], labels[n], labels[n] >= 0 ? gscale[n] : 0.0f);
        const float *wc = k->w + (size_t)j0 * H;
        if (dx) kgemm(0, 0, N, H, c, 1.0f, l, c, wc, H, (acc || j0 > 0) ? 1.0f : 0.0f, dx, H);
        if (k->dw) kgemm(1, 0, c, H, N, 1.0f, l, c, x, H, 1.0f, k->dw + (size_t)j0 * H, H);
        if (k->dbias) kcolsum_acc(k->dbias + j0, l, N, c);
    }
}

void klm_head_logits(const klm_head *k, float *out, const float *x, const int32_t *rows, int R)
{
    for (int r = 0; r < R; r++)
        kdense_forward(out + (size_t)r * k->V, x + (size_t)rows[r] * k->H, k->w, k->bias, NULL, 1, k->H, k->V);
}
