/* runloop.c: the training loop shared by every kind of run (runloop.h).
 *
 * Invariants that make a resumed run bit-identical to one that never
 * stopped (same thread count):
 *  1. The run's whole state is (parameters, optimizer moments, step, tokens,
 *     seconds, source position); a checkpoint holds all of it, and nothing
 *     else influences the next step: batches are a pure function of the
 *     source's position, dropout keys of (seed, step, micro-batch), the
 *     schedule of the step and of the horizon (a pure function of the
 *     budget and the data).
 *  2. Validation reads its own batches and touches no training state.
 *  3. A checkpoint is written only between optimizer steps. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>

#include <xxhash.h>

#include "cli/dist.h"
#include "cli/runloop.h"
#include "trainer/optim.h"
#include "util/util.h"

struct krun {
    kmodel *m;
    kopt *opt;
    krun_opts o;
    krun_source src;
    int accum;
    int64_t total;             /* the schedule's horizon and, when > 0, the last step */
    /* checkpoint tensor lists: parameters by name, moments as m.NAME / v.NAME */
    kst_tensor *t_model, *t_opt;
    char (*names)[KTENSOR_NAME_MAX + 4];
    int nt;
    /* state */
    int64_t step, tokens;
    double secs0;              /* training seconds of earlier legs */
    int positioned;            /* seek done */
    const krun_meta *meta;     /* during krun_exec */
    /* data parallel, the update split over ranks: rank r updates the
     * optimizer's pieces that start in the arena floats [part_dsp[r],
     * part_dsp[r] + part_cnt[r]) (this rank's: [part_lo, part_hi);
     * parted = 0: every rank updates everything) */
    int parted;
    size_t part_lo, part_hi;
    int *part_cnt, *part_dsp;
    /* data parallel: this step's word-embedding lookup rows, summed over
     * ranks after the all-reduce (sparse: fewer floats than the dense range) */
    const float *sp_rows;
    const int32_t *sp_ids;
    int sp_n, sp_width;
    int32_t sp_skip;
    size_t sp_base;
    /* KILN_PROFILE=1: seconds per phase of the steps of this leg, printed at its end */
    int prof_on;
    double prof[8];
    krun_result res;
    char err[2048];
};

static uint64_t mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

void krun_opts_defaults(krun_opts *o)
{
    memset(o, 0, sizeof *o);
    o->max_nonfinite = 8;
}

int64_t krun_token_steps(int64_t tokens, int accumulation, double batch_tokens)
{
    if (tokens <= 0) return 0;
    if (accumulation < 1) accumulation = 1;
    if (!(batch_tokens > 0)) batch_tokens = 1;
    double s = ceil((double)tokens / ((double)accumulation * batch_tokens));
    if (s < 1) s = 1;
    return s > 9e18 ? INT64_MAX : (int64_t)s;
}

int krun_check_blas(char *err, size_t errlen)
{
    char desc[256];
    int b = kblas_build(desc, sizeof desc);
    if (b == KBLAS_OPENMP) return 0;
    if (b == KBLAS_SEQUENTIAL) {
        kdebug("OpenBLAS is the sequential build (%s): fine, kiln calls sgemm on one thread per tile", desc);
        return 0;
    }
    kseterr(err, errlen,
            "OpenBLAS is the %s build (%s): its own thread pool makes training results depend on timing and "
            "thread counts. Install or select the OpenMP build (Debian/Ubuntu: apt-get install "
            "libopenblas0-openmp, or update-alternatives --config libopenblas.so.0-$(uname -m)-linux-gnu) "
            "or the sequential one",
            b == KBLAS_PTHREADS ? "pthreads" : "unknown", desc);
    return EX_CONFIG;
}

/* ---- construction ------------------------------------------------------------ */

krun *krun_new(kmodel *m, const krun_opts *o, const krun_source *src, char *err, size_t errlen)
{
    int n;
    const ktensor *t = kmodel_params(m, &n);
    kopt *opt = kopt_new(&o->optimizer, t, n, kmodel_param_data(m), kmodel_grad_data(m), kmodel_numel(m), err,
                         errlen);
    if (!opt) {
        if (src->free) src->free(src->ctx);
        return NULL;
    }
    krun *r = xcalloc(1, sizeof *r);
    r->m = m;
    r->opt = opt;
    r->o = *o;
    if (r->o.max_nonfinite <= 0) r->o.max_nonfinite = 8;
    r->src = *src;
    r->accum = o->optimizer.accumulation > 0 ? o->optimizer.accumulation : 1;
    r->nt = n;
    r->t_model = xcalloc((size_t)n, sizeof *r->t_model);
    r->t_opt = xcalloc(2 * (size_t)n, sizeof *r->t_opt);
    r->names = xcalloc(2 * (size_t)n, sizeof *r->names);
    float *w = kmodel_param_data(m), *mm = kopt_m(opt), *vv = kopt_v(opt);
    for (int i = 0; i < n; i++) {
        kst_tensor x = {.name = t[i].name, .dtype = "F32", .ndim = t[i].ndim, .data = w + t[i].offset,
                        .nbytes = t[i].numel * sizeof(float)};
        for (int d = 0; d < t[i].ndim; d++) x.shape[d] = t[i].shape[d];
        r->t_model[i] = x;
        snprintf(r->names[2 * i], sizeof r->names[0], "m.%s", t[i].name);
        snprintf(r->names[2 * i + 1], sizeof r->names[0], "v.%s", t[i].name);
        x.name = r->names[2 * i];
        x.data = mm + t[i].offset;
        r->t_opt[2 * i] = x;
        x.name = r->names[2 * i + 1];
        x.data = vv + t[i].offset;
        r->t_opt[2 * i + 1] = x;
    }
    r->res.val.n = r->res.base.n = 0;
    return r;
}

void krun_free(krun *r)
{
    if (!r) return;
    if (r->src.free) r->src.free(r->src.ctx);
    kopt_free(r->opt);
    free(r->part_cnt);
    free(r->part_dsp);
    free(r->t_model);
    free(r->t_opt);
    free(r->names);
    free(r);
}

const krun_result *krun_get_result(const krun *r) { return &r->res; }
const char *krun_error(const krun *r) { return r->err; }

static void parts_of(const krun *r, kckpt_part p[2])
{
    p[0] = (kckpt_part){"model.safetensors", r->t_model, r->nt};
    p[1] = (kckpt_part){"optimizer.safetensors", r->t_opt, 2 * r->nt};
}

int krun_restore(krun *r, const kckpt *ck)
{
    kckpt_part p[2];
    parts_of(r, p);
    char e[1536];
    if (kckpt_check(ck, p, 2, 0, e, sizeof e)) {
        kseterr(r->err, sizeof r->err, "cannot resume: %s", e);
        return EX_DATAERR;
    }
    for (int k = 0; k < 2; k++)
        for (int i = 0; i < p[k].n; i++) {
            const kst_tensor *t = kckpt_tensor(ck, p[k].file, p[k].tensors[i].name);
            memcpy((void *)p[k].tensors[i].data, t->data, t->nbytes);
        }
    const kckpt_state *cs = kckpt_state_of(ck);
    r->step = cs->step;
    r->tokens = cs->tokens;
    r->secs0 = cs->seconds;
    int rc = r->src.seek(r->src.ctx, cs->next_index, e, sizeof e);
    if (rc) {
        kseterr(r->err, sizeof r->err, "cannot resume at position %lld: %s", (long long)cs->next_index, e);
        return rc;
    }
    r->positioned = 1;
    snprintf(r->res.checkpoint, sizeof r->res.checkpoint, "%s", kckpt_path(ck));
    return 0;
}

int krun_sync(krun *r)
{
    kdist *d = r->o.dist;
    if (!d) return 0;
    int64_t pos = 0, epoch = 0;
    if (kdist_rank(d) == 0) r->src.tell(r->src.ctx, &pos, &epoch);
    double st[4] = {(double)r->step, (double)r->tokens, r->secs0, (double)pos};
    size_t n = kmodel_numel(r->m) * sizeof(float);
    int rc = kdist_bcast(d, st, sizeof st, "the run's state");
    if (!rc) rc = kdist_bcast(d, kmodel_param_data(r->m), n, "the parameters");
    if (!rc) rc = kdist_bcast(d, kopt_m(r->opt), n, "the optimizer's first moments");
    if (!rc) rc = kdist_bcast(d, kopt_v(r->opt), n, "the optimizer's second moments");
    if (rc) {
        kseterr(r->err, sizeof r->err, "%s", kdist_error(d));
        return rc;
    }
    r->step = (int64_t)st[0];
    r->tokens = (int64_t)st[1];
    r->secs0 = st[2];
    if (kdist_rank(d) != 0 || !r->positioned) {
        char e[1024];
        if ((rc = r->src.seek(r->src.ctx, (int64_t)st[3], e, sizeof e))) {
            kseterr(r->err, sizeof r->err, "training batches at position %lld: %s", (long long)st[3], e);
            return rc;
        }
        r->positioned = 1;
    }
    return 0;
}

/* ---- data parallel -------------------------------------------------------------- */

/* Sums the terms (sum, count) and tokens of res over ranks (every rank's
 * model reports the same terms in the same order); the loss recomputed. */
static int sum_terms(kdist *d, kstep_result *res, const char *what)
{
    double v[2 * KTERM_MAX + 2];
    int n = res->n;
    v[0] = (double)res->tokens;
    v[1] = n;
    for (int i = 0; i < n; i++) v[2 + 2 * i] = res->t[i].sum, v[3 + 2 * i] = res->t[i].count;
    int rc = kdist_sum_f64(d, v, 2 + 2 * (size_t)n, what);
    if (rc) return rc;
    if ((int)v[1] != n * kdist_size(d)) return EX_SOFTWARE; /* ranks disagree on the terms */
    res->tokens = (int64_t)v[0];
    for (int i = 0; i < n; i++) {
        res->t[i].sum = v[2 + 2 * i];
        res->t[i].count = v[3 + 2 * i];
    }
    kstep_total_loss(res);
    return 0;
}

static void grad_hook(void *ctx, size_t lo) { kdist_grad_ready(ctx, lo); }
static void word_hook(void *ctx, size_t lo, size_t hi) { kdist_grad_ready_range(ctx, lo, hi); }

/* phases of the profile (KILN_PROFILE=1) */
enum { PF_BATCH, PF_FORWARD, PF_COUNTS, PF_BACKWARD, PF_GRADWAIT, PF_OPT, PF_AGREE, PF_REST, PF_N };
static const char *const PF_NAMES[PF_N] = {"batch", "forward", "loss-counts", "loss+backward",
                                           "all-reduce wait", "optimizer", "terms+stop", "rest"};
static double pf_mark(krun *r, int phase, double t0)
{
    if (!r->prof_on) return 0;
    double t = know_seconds();
    r->prof[phase] += t - t0;
    return t;
}

/* One micro-batch of a data-parallel step: forward, the loss counts summed
 * over ranks (each term normalised by the whole batch's count), loss,
 * backward; on the last micro-batch the gradient buckets start reducing as
 * backward produces them. */
static int dist_micro(krun *r, const ksample_batch *b, uint64_t key, int last, kstep_result *res)
{
    kdist *d = r->o.dist;
    kmodel *m = r->m;
    double t = r->prof_on ? know_seconds() : 0;
    int rc = kmodel_forward(m, b, KMODE_TRAIN, key);
    t = pf_mark(r, PF_FORWARD, t);
    kstep_result c;
    if (!rc) rc = kmodel_loss_counts(m, &c);
    if (rc) {
        kseterr(r->err, sizeof r->err, "%s", kmodel_error(m));
        return rc;
    }
    if ((rc = sum_terms(d, &c, "the loss counts"))) {
        kseterr(r->err, sizeof r->err, "%s", rc == EX_SOFTWARE ? "ranks disagree on the loss terms" : kdist_error(d));
        return rc;
    }
    kmodel_set_loss_counts(m, &c);
    t = pf_mark(r, PF_COUNTS, t);
    int sparse = 0;
    r->sp_rows = NULL;
    if (last) {
        /* the word embeddings: their dense part (a tied decoder's) is final after the
         * heads' backward and starts reducing then; the lookup's rows follow as rows
         * when all ranks' tokens take fewer floats than the range (the same decision
         * everywhere: the whole batch's token count) */
        size_t wlo = 0, whi = 0;
        kmodel_word_range(m, &wlo, &whi);
        const kmodel_config *mc = kmodel_get_config(m);
        double width = whi > wlo && mc->vocab_size > 0 ? (double)(whi - wlo) / mc->vocab_size : 0;
        kdist_grad_begin(d, kmodel_grad_data(m), kmodel_numel(m), r->o.dist_bucket_bytes, whi);
        kmodel_set_grad_hook(m, grad_hook, d);
        if (width > 0 && 2.0 * (double)c.tokens * (width + 1) < (double)(whi - wlo))
            sparse = kmodel_set_sparse_word_grad(m, word_hook);
        r->sp_base = wlo;
    }
    rc = kmodel_loss(m, 1.0f / (float)r->accum, res);
    if (!rc) rc = kmodel_backward(m);
    pf_mark(r, PF_BACKWARD, t);
    if (!rc && sparse) {
        r->sp_rows = kmodel_word_grad_rows(m, &r->sp_ids, &r->sp_n, &r->sp_width, &r->sp_skip);
        if (!r->sp_rows) rc = EX_SOFTWARE;
    }
    kmodel_set_grad_hook(m, NULL, NULL);
    if (rc) kseterr(r->err, sizeof r->err, "%s", kmodel_error(m));
    return rc;
}

/* The update split over ranks: N contiguous arena ranges of about numel / N
 * floats each, cut where the optimizer allows (kopt_split_at: any piece of
 * 32768 floats for AdamW, so that the word embeddings, often most of the
 * floats, are shared out too; whole tensors for LAMB), whatever the order of
 * the tensors in the arena. Not when the arena exceeds an int. */
static void part_setup(krun *r)
{
    kdist *d = r->o.dist;
    const int N = kdist_size(d), me = kdist_rank(d);
    const size_t numel = kmodel_numel(r->m);
    r->parted = 0;
    if (numel > (size_t)INT32_MAX) return; /* MPI counts are ints */
    size_t *cut = xcalloc((size_t)N + 1, sizeof *cut);
    r->part_cnt = xcalloc((size_t)N, sizeof *r->part_cnt);
    r->part_dsp = xcalloc((size_t)N, sizeof *r->part_dsp);
    cut[0] = 0;
    cut[N] = numel;
    for (int k = 1; k < N; k++) {
        size_t c = kopt_split_at(r->opt, numel / (size_t)N * (size_t)k);
        cut[k] = c < cut[k - 1] ? cut[k - 1] : c; /* a rank may get nothing (a tiny model on many ranks) */
    }
    for (int k = 0; k < N; k++) {
        r->part_dsp[k] = (int)cut[k];
        r->part_cnt[k] = (int)(cut[k + 1] - cut[k]);
    }
    r->part_lo = cut[me];
    r->part_hi = cut[me + 1];
    r->parted = 1;
    free(cut);
}

/* The 128-bit hash of the parameter arena. */
static void param_hash(krun *r, uint64_t h[2])
{
    XXH128_hash_t x = XXH3_128bits(kmodel_param_data(r->m), kmodel_numel(r->m) * sizeof(float));
    h[0] = x.low64;
    h[1] = x.high64;
}

static int check_same(krun *r)
{
    kdist *d = r->o.dist;
    uint64_t h[2];
    param_hash(r, h);
    int same = 1, bad = -1, rc = kdist_same_hash(d, h, &same, &bad);
    if (rc) {
        kseterr(r->err, sizeof r->err, "%s", kdist_error(d));
        return rc;
    }
    if (!same) {
        kseterr(r->err, sizeof r->err,
                "step %lld: the parameters of rank %d differ from rank 0's (hash check): the ranks' arithmetic "
                "diverged (different thread counts, CPUs or kiln builds?); stopped",
                (long long)r->step, bad);
        return EX_SOFTWARE;
    }
    r->res.hash_checks++;
    return 0;
}

/* ---- the loop ------------------------------------------------------------------ */

/* Validation: forward only over the source's validation batches. */
static int validate(krun *r, kstep_result *val, kstep_result *base)
{
    memset(val, 0, sizeof *val);
    memset(base, 0, sizeof *base);
    char e[1024];
    for (int k = 0; r->o.valid_batches <= 0 || k < r->o.valid_batches; k++) {
        const ksample_batch *b = NULL;
        int rc = r->src.valid(r->src.ctx, k, &b, e, sizeof e);
        if (rc) {
            kseterr(r->err, sizeof r->err, "step %lld: validation batch %d: %s", (long long)r->step, k, e);
            return rc;
        }
        if (!b) break;
        kstep_result res;
        if ((rc = kmodel_evaluate(r->m, b, &res))) {
            kseterr(r->err, sizeof r->err, "step %lld: validation batch %d: %s", (long long)r->step, k,
                    kmodel_error(r->m));
            return rc;
        }
        kstep_add(val, &res);
        if (r->src.valid_base) r->src.valid_base(r->src.ctx, b, base);
    }
    if (r->o.dist) { /* each rank measured its share of the batches */
        int rc = sum_terms(r->o.dist, val, "the validation terms");
        if (!rc) rc = sum_terms(r->o.dist, base, "the validation baselines");
        if (rc) {
            kseterr(r->err, sizeof r->err, "step %lld: validation: %s", (long long)r->step,
                    rc == EX_SOFTWARE ? "ranks disagree on the terms" : kdist_error(r->o.dist));
            return rc;
        }
    }
    return 0;
}

/* The checkpoint of the current step; metrics: loss, the step's terms, lr,
 * the last validation's loss and terms (prefixed val_), the baselines. */
static int save(krun *r, const krun_status *st, char *path, size_t plen)
{
    kckpt_metric cm[4 + 3 * KTERM_MAX];
    char names[2 * KTERM_MAX][KTERM_NAME_MAX + 4];
    int n = 0;
    cm[n++] = (kckpt_metric){"loss", st->train->loss};
    for (int i = 0; i < st->train->n; i++)
        cm[n++] = (kckpt_metric){st->train->t[i].name, kstep_value(st->train, st->train->t[i].name)};
    cm[n++] = (kckpt_metric){"lr", st->lr};
    cm[n++] = (kckpt_metric){"val_loss", st->val->n ? st->val->loss : NAN};
    for (int i = 0; i < st->val->n; i++) {
        snprintf(names[i], sizeof names[i], "val_%s", st->val->t[i].name);
        cm[n++] = (kckpt_metric){names[i], kstep_value(st->val, st->val->t[i].name)};
    }
    for (int i = 0; i < st->base->n; i++)
        cm[n++] = (kckpt_metric){st->base->t[i].name, kstep_value(st->base, st->base->t[i].name)};
    int64_t pos = 0, epoch = 0;
    r->src.tell(r->src.ctx, &pos, &epoch);
    kckpt_state cs = {.step = r->step, .tokens = r->tokens, .seconds = st->seconds, .epoch = epoch,
                      .next_index = pos, .n_rng = 1, .rng = {r->o.seed}, .config_json = r->meta->config_json,
                      .vocab_name = r->meta->vocab_name ? r->meta->vocab_name : "", .metrics = cm,
                      .n_metrics = n, .extra_json = r->meta->extra_json, .vocab_kind = r->meta->vocab_kind,
                      .merges = r->meta->merges, .merges_len = r->meta->merges_len};
    kckpt_part p[2];
    parts_of(r, p);
    char e[1536];
    int rc = kckpt_save(r->o.ckpt_dir, &cs, p, 2, r->meta->vocab_txt, r->meta->vocab_len, r->o.ckpt_keep, path,
                        plen, e, sizeof e);
    if (rc) kseterr(r->err, sizeof r->err, "checkpoint: %s", e);
    return rc;
}

int krun_exec(krun *r, const krun_meta *meta, const krun_hooks *h)
{
    static const krun_hooks none = {0};
    if (!h) h = &none;
    r->meta = meta;
    r->err[0] = '\0';
    r->res.stopped = 0;
    const krun_opts *o = &r->o;
    char e[1024];
    int rc = 0;
    if (!r->positioned) {
        if ((rc = r->src.seek(r->src.ctx, 0, e, sizeof e))) {
            kseterr(r->err, sizeof r->err, "training batches: %s", e);
            return rc;
        }
        r->positioned = 1;
    }
    /* the horizon: budget.steps, or the steps the token budget stands for
     * (the smaller when both are set); it also ends the run */
    int64_t total = o->budget.steps;
    if (o->budget.tokens > 0) {
        if (!r->src.batch_tokens) {
            kseterr(r->err, sizeof r->err, "budget.tokens: this kind of run cannot count tokens ahead; use "
                                           "budget.steps");
            return EX_CONFIG;
        }
        double bt = r->src.batch_tokens(r->src.ctx);
        int64_t ts = krun_token_steps(o->budget.tokens, r->accum, bt);
        kinfo("budget.tokens %lld: %.1f real tokens per batch of the stream, %d per step: %lld steps",
              (long long)o->budget.tokens, bt, r->accum, (long long)ts);
        if (!total || ts < total) total = ts;
    }
    r->total = total;
    r->res.total_steps = total;

    int have_valid = r->src.valid && o->valid_every > 0;
    r->prof_on = getenv("KILN_PROFILE") && *getenv("KILN_PROFILE") == '1';
    memset(r->prof, 0, sizeof r->prof);
    double t0 = know_seconds(), last_progress = 0, tps = 0, secs = r->secs0;
    int64_t tokens0 = r->tokens, step0 = r->step;
    int nonfinite = 0;
    int64_t nonfinite_first = 0;
    kdist *dist = o->dist;
    double comm = 0, comm_wait = 0;
    int64_t dsteps = 0;
    const char *dv = getenv("KILN_TEST_DIVERGE");  /* "RANK:STEP": that rank's weights nudged after that step */
    int64_t diverge_at = 0;
    if (dist && dv && atoi(dv) == kdist_rank(dist) && strchr(dv, ':')) diverge_at = atoll(strchr(dv, ':') + 1);
    if (dist && o->step) {
        kseterr(r->err, sizeof r->err, "a data-parallel run takes the model's own step (no custom step function)");
        return EX_CONFIG;
    }
    if (dist && !r->part_cnt) part_setup(r);
    kstep_result *val = &r->res.val, *base = &r->res.base, *sum = &r->res.train;
    for (;;) {
        /* budgets already met when resuming: nothing to do (the decision for
         * a step this process made is taken below, with the checkpoint) */
        if ((total && r->step >= total) || (o->budget.seconds > 0 && secs >= o->budget.seconds)) break;
        /* a stop before this process trained a step: nothing to save. Later
         * ones are taken at the end of a step, with its checkpoint: a signal
         * that lands after that check (while the step's hooks or checkpoint
         * run) stops the run at the end of the next step, never between two
         * steps without a checkpoint */
        if (r->step == step0 && (((o->stop && *o->stop) && !dist) || (o->pause_at > 0 && r->step >= o->pause_at))) {
            r->res.stopped = 1;
            break;
        }
        double pt = r->prof_on ? know_seconds() : 0;
        kmodel_zero_grad(r->m);
        memset(sum, 0, sizeof *sum);
        pt = pf_mark(r, PF_OPT, pt);
        for (int a = 0; a < r->accum; a++) {
            const ksample_batch *b = NULL;
            if ((rc = r->src.next(r->src.ctx, &b, e, sizeof e))) {
                kseterr(r->err, sizeof r->err, "step %lld: training batch: %s", (long long)r->step + 1, e);
                goto out;
            }
            pt = pf_mark(r, PF_BATCH, pt);
            kstep_result res;
            uint64_t key = mix64(mix64(o->seed ^ 0xd50f0u) + (uint64_t)r->step) + (uint64_t)a;
            if (dist) {
                if ((rc = dist_micro(r, b, key, a == r->accum - 1, &res))) {
                    char m[2048];
                    snprintf(m, sizeof m, "%s", r->err);
                    kseterr(r->err, sizeof r->err, "step %lld, micro-batch %d: %s", (long long)r->step + 1, a, m);
                    goto out;
                }
            } else if (o->step) {
                if ((rc = o->step(o->step_ctx, r->m, b, key, 1.0f / (float)r->accum, r->step, total, &res, e,
                                  sizeof e))) {
                    kseterr(r->err, sizeof r->err, "step %lld, micro-batch %d: %s", (long long)r->step + 1, a, e);
                    goto out;
                }
            } else if ((rc = kmodel_forward_backward(r->m, b, key, 1.0f / (float)r->accum, &res))) {
                kseterr(r->err, sizeof r->err, "step %lld, micro-batch %d: %s", (long long)r->step + 1, a,
                        kmodel_error(r->m));
                goto out;
            }
            kstep_add(sum, &res);
            if (!dist) pt = pf_mark(r, PF_FORWARD, pt); /* one process: forward + backward */
            else if (r->prof_on) pt = know_seconds(); /* dist_micro marked its phases */
        }
        if (dist) {
            double cs = 0, ws = 0;
            if (!(rc = kdist_grad_finish(dist, &cs, &ws)) && r->sp_rows)
                rc = kdist_add_rows(dist, kmodel_grad_data(r->m) + r->sp_base, r->sp_ids, r->sp_rows, r->sp_n,
                                    r->sp_width, r->sp_skip, "the word embeddings' rows");
            r->sp_rows = NULL;
            if (!rc) pt = pf_mark(r, PF_GRADWAIT, pt);
            if (rc || (rc = sum_terms(dist, sum, "the step's terms"))) {
                kseterr(r->err, sizeof r->err, "step %lld: %s", (long long)r->step + 1,
                        rc == EX_SOFTWARE ? "ranks disagree on the loss terms" : kdist_error(dist));
                goto out;
            }
            comm += cs;
            comm_wait += ws;
            dsteps++;
        }
        double lr = 0, gn = 0;
        pt = pf_mark(r, PF_AGREE, pt);
        int bad_step;
        if (dist && r->parted) {
            /* this rank's tensors, the norm over all ranks' parts, then every rank gets every part */
            double ss = kopt_grad_sumsq_range(r->opt, r->part_lo, r->part_hi);
            if ((rc = kdist_sum_f64(dist, &ss, 1, "the gradient norm"))) {
                kseterr(r->err, sizeof r->err, "step %lld: %s", (long long)r->step + 1, kdist_error(dist));
                goto out;
            }
            gn = sqrt(ss);
            bad_step = kopt_step_range(r->opt, r->step + 1, total, gn, r->part_lo, r->part_hi, &lr);
            if (bad_step == EX_SOFTWARE) {
                kseterr(r->err, sizeof r->err, "step %lld: the optimizer's split over ranks cuts a tensor",
                        (long long)r->step + 1);
                rc = EX_SOFTWARE;
                goto out;
            }
            if (!bad_step &&
                (rc = kdist_allgather_f32(dist, kmodel_param_data(r->m), r->part_cnt, r->part_dsp, "the parameters"))) {
                kseterr(r->err, sizeof r->err, "step %lld: %s", (long long)r->step + 1, kdist_error(dist));
                goto out;
            }
        } else {
            bad_step = kopt_step(r->opt, r->step + 1, total, &lr, &gn);
        }
        pt = pf_mark(r, PF_OPT, pt);
        if (bad_step) {
            if (!nonfinite++) nonfinite_first = r->step + 1;
            kwarn("step %lld: gradient norm not finite, update skipped (%d in a row)", (long long)r->step + 1,
                  nonfinite);
            if (nonfinite >= o->max_nonfinite) {
                kseterr(r->err, sizeof r->err,
                        "steps %lld to %lld: the gradient norm was not finite %d times in a row: the run "
                        "diverged (lower optimizer.lr, lengthen the warmup or set optimizer.clip_norm) or its "
                        "weights are damaged; stopped without a checkpoint (the last one: %s)",
                        (long long)nonfinite_first, (long long)r->step + 1, nonfinite,
                        r->res.checkpoint[0] ? r->res.checkpoint : "none");
                rc = EX_DATAERR;
                goto out;
            }
        } else {
            nonfinite = 0;
        }
        r->step++;
        r->tokens += sum->tokens;
        if (dist && diverge_at == r->step) kmodel_param_data(r->m)[0] += 1e-3f; /* tests: KILN_TEST_DIVERGE */
        double now = know_seconds();
        int halt = (o->stop && *o->stop) || (o->pause_at > 0 && r->step >= o->pause_at);
        if (dist) {
            /* one decision for all: a signal on any rank, the slowest rank's clock */
            double ag[2] = {halt, now - t0};
            if ((rc = kdist_max_f64(dist, ag, 2, "the stop decision"))) {
                kseterr(r->err, sizeof r->err, "step %lld: %s", (long long)r->step, kdist_error(dist));
                goto out;
            }
            halt = ag[0] > 0;
            now = t0 + ag[1];
            pt = pf_mark(r, PF_AGREE, pt);
        }
        tps = now > t0 ? (double)(r->tokens - tokens0) / (now - t0) : 0;
        int validate_now = have_valid && r->step % o->valid_every == 0;
        int last = (total && r->step >= total) || (o->budget.seconds > 0 && r->secs0 + (now - t0) >= o->budget.seconds) ||
                   halt;
        secs = r->secs0 + (now - t0);
        if (dist && (last || r->step % (o->dist_check_every > 0 ? o->dist_check_every : 100) == 0) &&
            (rc = check_same(r)))
            goto out;
        if (halt && !(total && r->step >= total)) r->res.stopped = 1;
        if (r->src.valid && last && !validate_now) validate_now = 1;
        if (validate_now && (rc = validate(r, val, base))) goto out;
        krun_status st = {.step = r->step, .total_steps = total, .tokens = r->tokens, .lr = lr, .grad_norm = gn,
                          .tokens_per_s = tps, .seconds = secs, .train = sum, .val = val, .base = base,
                          .validated = validate_now, .last = last, .stopped = r->res.stopped,
                          .checkpoint = ""};
        st.eta_s = total > r->step && r->step > step0
                       ? (double)(total - r->step) * (now - t0) / (double)(r->step - step0) : NAN;
        if (h->step) h->step(h->ctx, &st);
        if (h->failed && (rc = h->failed(h->ctx))) {
            kseterr(r->err, sizeof r->err, "step %lld: its metrics could not be recorded: stopped before its checkpoint",
                    (long long)r->step);
            goto out;
        }
        const int ckpt_now = last || (o->ckpt_every > 0 && r->step % o->ckpt_every == 0);
        if (ckpt_now && dist && r->parted) {
            /* rank 0 saves every moment: the other ranks' parts to it */
            if ((rc = kdist_gather_f32(dist, kopt_m(r->opt), r->part_cnt, r->part_dsp, "the optimizer's moments")) ||
                (rc = kdist_gather_f32(dist, kopt_v(r->opt), r->part_cnt, r->part_dsp, "the optimizer's moments"))) {
                kseterr(r->err, sizeof r->err, "step %lld: %s", (long long)r->step, kdist_error(dist));
                goto out;
            }
        }
        if (kdist_rank(dist) == 0 && ckpt_now) {
            char path[4096];
            if ((rc = save(r, &st, path, sizeof path))) goto out;
            snprintf(r->res.checkpoint, sizeof r->res.checkpoint, "%s", path);
            st.checkpoint = r->res.checkpoint;
            if (h->checkpoint) h->checkpoint(h->ctx, &st);
            if (h->failed && (rc = h->failed(h->ctx))) {
                kseterr(r->err, sizeof r->err, "step %lld: checkpoint %s written but not recorded: stopped",
                        (long long)r->step, path);
                goto out;
            }
        }
        if (h->progress && (now - last_progress > 0.2 || last || validate_now)) {
            last_progress = now;
            h->progress(h->ctx, &st);
        }
        pf_mark(r, PF_REST, pt);
        if (last) break;
    }
out:
    if (r->prof_on && r->step > step0) {
        double tot = 0;
        for (int k = 0; k < PF_N; k++) tot += r->prof[k];
        kbuf pl = {0};
        for (int k = 0; k < PF_N; k++)
            kbuf_printf(&pl, "%s%s %.1f ms", k ? ", " : "", PF_NAMES[k], 1000 * r->prof[k] / (double)(r->step - step0));
        fprintf(stderr, "kiln: profile (rank %d), per step: %s; total %.1f ms\n", kdist_rank(dist), pl.data,
                1000 * tot / (double)(r->step - step0));
        kbuf_free(&pl);
    }
    r->res.steps = r->step;
    r->res.tokens = r->tokens;
    r->res.seconds = r->secs0 + (know_seconds() - t0);
    r->res.tokens_per_s = tps;
    r->res.comm_s = dsteps ? comm / (double)dsteps : 0;
    r->res.comm_wait_s = dsteps ? comm_wait / (double)dsteps : 0;
    return rc;
}
