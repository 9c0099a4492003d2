/* trainer/distill.c: DistilBERT's triple loss and TinyBERT's layer-wise
 * losses over a teacher and a student model (trainer/distill.h). The soft
 * cross-entropy lives in the student's MLM loss (kmodel_set_soft_targets,
 * kernel kxent_soft); the hidden-state, cosine and attention-score losses
 * are computed here from the two models' activations and enter the
 * student's backward pass as injected gradients (kmodel_inject_grad,
 * kmodel_inject_qkv_grad). */
#include "trainer/distill.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>

#include "trainer/kernels.h"
#include "util/util.h"

struct kdistiller {
    kmodel *s, *t;
    kdistill_config c;
    int tiny, all;
    int NLs, NLt, k;              /* layers; TinyBERT: k = NLt / NLs */
    int Hs, Ht, NH, Ds, Dt, L, maxB;
    size_t fe_w, fe_b, fh_w, fh_b; /* the student's projections (TinyBERT), SIZE_MAX without */
    float *buf, *dbuf;            /* (max_B L, max(Ht, 3 Hs)) each */
    /* positions "all": the batch with every real token as a slot */
    ksample_batch aug;
    int32_t *n_masked, *mpos, *mids; /* (max_B), (max_B L), (max_B L) */
    float *mw;                    /* (max_B L) */
    char err[512];
};

static int fail(kdistiller *d, int rc, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(kdistiller *d, int rc, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(d->err, sizeof d->err, fmt, ap);
    va_end(ap);
    return rc;
}

const char *kdistill_error(const kdistiller *d) { return d->err; }

void kdistill_init_layers(int teacher_layers, int student_layers, int *out)
{
    for (int m = 0; m < student_layers; m++) out[m] = (int)((int64_t)m * teacher_layers / student_layers);
}

void kdistill_free(kdistiller *d)
{
    if (!d) return;
    free(d->buf);
    free(d->dbuf);
    free(d->n_masked);
    free(d->mpos);
    free(d->mids);
    free(d->mw);
    free(d);
}

kdistiller *kdistill_new(kmodel *student, kmodel *teacher, const kdistill_config *c, char *err, size_t errlen)
{
    const kmodel_config *sc = kmodel_get_config(student), *tc = kmodel_get_config(teacher);
    const kmodel_spec *ss = kmodel_get_spec(student), *ts = kmodel_get_spec(teacher);
#define NO(...)                                \
    do {                                       \
        kseterr(err, errlen, __VA_ARGS__);     \
        return NULL;                           \
    } while (0)
    if (!(ss->heads & KHEAD_MLM) || !(ts->heads & KHEAD_MLM) || ss->P < 1 || ts->P < 1)
        NO("distillation needs the masked-LM head on the student and the teacher");
    if (sc->vocab_size != tc->vocab_size)
        NO("the student's vocabulary has %d pieces, the teacher's %d: distil with the teacher's vocabulary",
           sc->vocab_size, tc->vocab_size);
    if (ss->L != ts->L || ts->max_B < ss->max_B || ts->P < ss->P)
        NO("the teacher was made for batches of %d x %d (%d slots), the student's are %d x %d (%d)", ts->max_B,
           ts->L, ts->P, ss->max_B, ss->L, ss->P);
    if (tc->type == KMODEL_GPT2 || tc->type == KMODEL_ELECTRA || sc->type == KMODEL_GPT2 ||
        sc->type == KMODEL_ELECTRA)
        NO("distillation takes BERT, ALBERT or DistilBERT models (teacher and student)");
    const int tiny = c->method == KDISTILL_TINYBERT, all = c->positions == KDISTILL_ALL;
    if (all && (ss->P < ss->L || ts->P < ts->L))
        NO("distill.positions \"all\": the models need one slot per position (P = L = %d)", ss->L);
    if (!(c->temperature > 0)) NO("distill.temperature must be > 0");
    const int NLs = sc->num_hidden_layers, NLt = tc->num_hidden_layers;
    const int Hs = sc->hidden_size, Ht = tc->hidden_size;
    if (!tiny && c->alpha_cos > 0 && Hs != Ht)
        NO("the cosine loss compares hidden states of one width: the student's is %d, the teacher's %d (a DistilBERT "
           "student has the teacher's width; for another width use distill.method \"tinybert\" or alpha_cos 0)",
           Hs, Ht);
    size_t fe_w = SIZE_MAX, fe_b = SIZE_MAX, fh_w = SIZE_MAX, fh_b = SIZE_MAX;
    int k = 0;
    if (tiny) {
        if (NLt % NLs) NO("TinyBERT maps student layer m to teacher layer m k: the teacher's %d layers are not a "
                          "multiple of the student's %d", NLt, NLs);
        k = NLt / NLs;
        if (c->alpha_att > 0 && sc->num_attention_heads != tc->num_attention_heads)
            NO("the attention-score loss compares head by head: the student has %d heads, the teacher %d (set "
               "model heads to match, or distill.alpha_att 0)",
               sc->num_attention_heads, tc->num_attention_heads);
        if (c->alpha_hid > 0 || c->alpha_emb > 0) {
            if (ss->fit_width != Ht) NO("the student was made without projections to the teacher's width %d", Ht);
            fe_w = kmodel_param_offset(student, "distill.fit_emb.weight");
            fe_b = kmodel_param_offset(student, "distill.fit_emb.bias");
            fh_w = kmodel_param_offset(student, "distill.fit_dense.weight");
            fh_b = kmodel_param_offset(student, "distill.fit_dense.bias");
            if (fe_w == SIZE_MAX || fe_b == SIZE_MAX || fh_w == SIZE_MAX || fh_b == SIZE_MAX)
                NO("the student has no distill.fit_* projections");
        }
    }
#undef NO
    kdistiller *d = calloc(1, sizeof *d);
    if (!d) {
        kseterr(err, errlen, "out of memory");
        return NULL;
    }
    d->s = student;
    d->t = teacher;
    d->c = *c;
    d->tiny = tiny;
    d->all = all;
    d->NLs = NLs;
    d->NLt = NLt;
    d->k = k;
    d->Hs = Hs;
    d->Ht = Ht;
    d->NH = sc->num_attention_heads;
    d->Ds = Hs / sc->num_attention_heads;
    d->Dt = Ht / tc->num_attention_heads;
    d->L = ss->L;
    d->maxB = ss->max_B;
    d->fe_w = fe_w;
    d->fe_b = fe_b;
    d->fh_w = fh_w;
    d->fh_b = fh_b;
    size_t w = (size_t)(Ht > 3 * Hs ? Ht : 3 * Hs), rows = (size_t)ss->max_B * ss->L;
    d->buf = malloc(rows * w * sizeof(float));
    d->dbuf = malloc(rows * w * sizeof(float));
    if (all) {
        d->n_masked = malloc((size_t)ss->max_B * sizeof(int32_t));
        d->mpos = malloc(rows * sizeof(int32_t));
        d->mids = malloc(rows * sizeof(int32_t));
        d->mw = malloc(rows * sizeof(float));
    }
    if (!d->buf || !d->dbuf || (all && (!d->n_masked || !d->mpos || !d->mids || !d->mw))) {
        kdistill_free(d);
        kseterr(err, errlen, "out of memory for the distillation buffers");
        return NULL;
    }
    return d;
}

int kdistill_stage(const kdistiller *d, int64_t step, int64_t total)
{
    if (!d->tiny) return 0;
    if (d->c.stage != KDISTILL_BOTH) return d->c.stage;
    int64_t switch_at = (int64_t)llround(d->c.intermediate_fraction * (double)total);
    return step < switch_at ? KDISTILL_INTERMEDIATE : KDISTILL_PREDICTION;
}

/* b with every real token as a masked-LM slot: the batch's own masked
 * positions keep their label and weight, the others get weight 0 (the
 * soft loss reads them, the MLM loss does not). */
static const ksample_batch *augment(kdistiller *d, const ksample_batch *b)
{
    d->aug = *b;
    const int L = b->L;
    d->aug.P = L;
    d->aug.n_masked = d->n_masked;
    d->aug.masked_positions = d->mpos;
    d->aug.masked_ids = d->mids;
    d->aug.masked_weights = d->mw;
    for (int r = 0; r < b->B; r++) {
        int len = b->lengths[r], nm = b->n_masked ? b->n_masked[r] : 0, q = 0;
        d->n_masked[r] = len;
        for (int p = 0; p < L; p++) {
            size_t o = (size_t)r * L + p;
            d->mpos[o] = p < len ? p : 0;
            d->mids[o] = p < len ? b->input_ids[(size_t)r * L + p] : b->pad_id;
            d->mw[o] = 0.0f;
            /* the row's masked slots are sorted ascending */
            while (p < len && q < nm && b->masked_positions[(size_t)r * b->P + q] < p) q++;
            if (p < len && q < nm && b->masked_positions[(size_t)r * b->P + q] == p) {
                d->mids[o] = b->masked_ids[(size_t)r * b->P + q];
                d->mw[o] = b->masked_weights[(size_t)r * b->P + q];
            }
        }
    }
    return &d->aug;
}

/* mean((h W^T + bias - target)^2) over (N, Ht); with train, the gradient
 * (times gscale) into the projection's gradients and injected at student
 * layer l */
static int fit_mse(kdistiller *d, int l, size_t w, size_t bias, const float *target, int N, int train, float gscale,
                   double *mse)
{
    const float *h = kmodel_hidden(d->s, l);
    float *P = kmodel_param_data(d->s), *G = kmodel_grad_data(d->s);
    const int Hs = d->Hs, Ht = d->Ht;
    kdense_forward(d->buf, h, P + w, P + bias, NULL, N, Hs, Ht);
    double acc = 0;
    const size_t n = (size_t)N * Ht;
    const float g = n ? 2.0f * gscale / (float)n : 0.0f;
    for (size_t i = 0; i < n; i++) {
        float e = d->buf[i] - target[i];
        acc += (double)e * e;
        d->buf[i] = g * e;
    }
    *mse = n ? acc / (double)n : 0;
    if (!train) return 0;
    kdense_backward(d->dbuf, 0, G + w, G + bias, d->buf, h, P + w, N, Hs, Ht);
    if (kmodel_inject_grad(d->s, l, d->dbuf, 1.0f)) return fail(d, EX_SOFTWARE, "%s", kmodel_error(d->s));
    return 0;
}

int kdistill_step(kdistiller *d, const ksample_batch *b, int train, uint64_t key, float loss_scale, int64_t step,
                  int64_t total, kstep_result *r)
{
    const kdistill_config *c = &d->c;
    d->err[0] = '\0';
    const ksample_batch *bb = d->all ? augment(d, b) : b;
    int rc;
    kstep_result tr;
    if ((rc = kmodel_forward(d->t, bb, KMODE_EVAL, 0)) || (rc = kmodel_loss(d->t, 0.0f, &tr)))
        return fail(d, rc, "teacher: %s", kmodel_error(d->t));
    if ((rc = kmodel_forward(d->s, bb, train ? KMODE_TRAIN : KMODE_EVAL, key)))
        return fail(d, rc, "student: %s", kmodel_error(d->s));
    const int stage = kdistill_stage(d, step, total);
    const double T = c->temperature;
    double ce_w = d->tiny ? (stage == KDISTILL_PREDICTION ? c->alpha_pred / (T * T) : 0.0) : c->alpha_ce;
    int Mt;
    const float *tl = kmodel_mlm_logits_all(d->t, &Mt);
    if (tl && (rc = kmodel_set_soft_targets(d->s, tl, (float)T, ce_w, c->alpha_mlm, d->all)))
        return fail(d, rc, "student: %s", kmodel_error(d->s));
    if ((rc = kmodel_loss(d->s, train ? loss_scale : 0.0f, r)))
        return fail(d, rc, "student: %s", kmodel_error(d->s));
    int B, N;
    kmodel_offsets(d->s, &B, &N);
    if (!d->tiny) {
        const float *hs = kmodel_hidden(d->s, d->NLs), *ht = kmodel_hidden(d->t, d->NLt);
        double sum = kcosine_loss(hs, ht, train ? d->dbuf : NULL, 1.0f, N, d->Hs);
        if (train && c->alpha_cos > 0 && N > 0 &&
            kmodel_inject_grad(d->s, d->NLs, d->dbuf, (float)(loss_scale * c->alpha_cos / N)))
            return fail(d, EX_SOFTWARE, "%s", kmodel_error(d->s));
        kstep_term(r, "cos_loss", sum, N, c->alpha_cos);
    } else if (stage == KDISTILL_INTERMEDIATE) {
        const int32_t *offs = kmodel_offsets(d->s, &B, &N);
        double att = 0;
        if (c->alpha_att > 0 || !train) {
            const size_t q = (size_t)N * 3 * d->Hs;
            for (int m = 1; m <= d->NLs; m++) {
                double cnt = 0;
                if (train) memset(d->dbuf, 0, q * sizeof(float));
                double sum = kattn_score_mse(kmodel_qkv(d->s, m), kmodel_qkv(d->t, m * d->k), offs, B, d->NH, d->Ds,
                                             d->Dt, d->L, train ? d->dbuf : NULL, 1.0f, &cnt);
                att += cnt > 0 ? sum / cnt : 0;
                if (train && cnt > 0 && kmodel_inject_qkv_grad(d->s, m, d->dbuf, (float)(loss_scale * c->alpha_att / cnt)))
                    return fail(d, EX_SOFTWARE, "%s", kmodel_error(d->s));
            }
            kstep_term(r, "att_loss", att, 1, c->alpha_att);
        }
        if (d->fh_w != SIZE_MAX) {
            double hid = 0, emb = 0, mse;
            if ((rc = fit_mse(d, 0, d->fe_w, d->fe_b, kmodel_hidden(d->t, 0), N, train && c->alpha_emb > 0,
                              (float)(loss_scale * c->alpha_emb), &emb)))
                return rc;
            for (int m = 1; m <= d->NLs; m++) {
                if ((rc = fit_mse(d, m, d->fh_w, d->fh_b, kmodel_hidden(d->t, m * d->k), N, train && c->alpha_hid > 0,
                                  (float)(loss_scale * c->alpha_hid), &mse)))
                    return rc;
                hid += mse;
            }
            kstep_term(r, "hid_loss", hid, 1, c->alpha_hid);
            kstep_term(r, "emb_loss", emb, 1, c->alpha_emb);
        }
    }
    if (train && (rc = kmodel_backward(d->s))) return fail(d, rc, "student: %s", kmodel_error(d->s));
    return 0;
}
