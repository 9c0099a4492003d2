/* train_run.c: one pretraining run wired end to end (train_run.h): the
 * checkpoint to resume and its config, the vocabulary and snapshot, the
 * sampler stream as the run loop's data source (with the unigram baseline
 * on validation batches), the model, the job row and metrics in the store.
 * The loop itself, and what makes a resumed run bit-identical, is
 * cli/runloop.c. */
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>
#include <unistd.h>

#include "cli/dist.h"
#include "cli/modelsrc.h"
#include "cli/runloop.h"
#include "cli/train_run.h"
#include "kg/kg.h"
#include "sampler/sampler.h"
#include "text/tokenizer.h"
#include "text/wordpiece.h"
#include "trainer/checkpoint.h"
#include "trainer/distill.h"
#include "trainer/model.h"

void openblas_set_num_threads(int);

/* Compares the sections that decide the run's math; names the first
 * differing key. Returns 0 when equal. */
static int config_same(const ktrain_config *a, const ktrain_config *b, char *what, size_t n)
{
    char *ja = ktrain_config_to_json(a), *jb = ktrain_config_to_json(b);
    json_t *x = json_loads(ja, 0, NULL), *y = json_loads(jb, 0, NULL);
    free(ja);
    free(jb);
    int diff = 0;
    const char *sections[] = {"model", "data", "optimizer", "distill", "knowledge"};
    for (int s = 0; s < 5 && !diff && x && y; s++) {
        json_t *sx = json_object_get(x, sections[s]), *sy = json_object_get(y, sections[s]);
        const char *k;
        json_t *v;
        json_object_foreach(sx, k, v) {
            if (!json_equal(v, json_object_get(sy, k))) {
                /* valid_every / valid_batches do not change the weights; vocab_size 0
                 * and pad_token_id are taken from the vocabulary; warmup_steps derived
                 * from a changed budget keeps the checkpoint's value */
                if (s == 1 && (!strcmp(k, "valid_every") || !strcmp(k, "valid_batches"))) continue;
                if (s == 0 && !strcmp(k, "pad_token_id")) continue;
                if (s == 0 && !strcmp(k, "vocab_size") && json_integer_value(json_object_get(sy, k)) == 0) continue;
                if (s == 2 && (!strcmp(k, "warmup_steps") || !strcmp(k, "max_nonfinite_steps"))) continue;
                if (s == 3 && !strcmp(k, "teacher")) continue; /* the teacher is pinned by its hash */
                /* knowledge: "latest" and the table's shape (0) resolve to the checkpoint's pinned embedding */
                if (s == 4 && !strcmp(k, "embedding") && json_is_string(json_object_get(sy, k))) continue;
                if (s == 4 && (!strcmp(k, "entity_vocab_size") || !strcmp(k, "entity_dim")) &&
                    json_integer_value(json_object_get(sy, k)) == 0)
                    continue;
                char *vx = json_dumps(v, JSON_ENCODE_ANY), *vy = json_dumps(json_object_get(sy, k), JSON_ENCODE_ANY);
                snprintf(what, n, "%s.%s is %s in the checkpoint, %s now", sections[s], k, vx ? vx : "?",
                         vy ? vy : "?");
                free(vx);
                free(vy);
                diff = 1;
                break;
            }
        }
    }
    if (!diff && x && y && !json_object_get(x, "distill") != !json_object_get(y, "distill")) {
        snprintf(what, n, "the checkpoint's run %s a distillation, this config %s", json_object_get(x, "distill") ? "is" : "is not",
                 json_object_get(y, "distill") ? "is" : "is not");
        diff = 1;
    }
    if (!diff && x && y && !json_object_get(x, "knowledge") != !json_object_get(y, "knowledge")) {
        snprintf(what, n, "the checkpoint's run %s an ERNIE run (knowledge section), this config %s",
                 json_object_get(x, "knowledge") ? "is" : "is not", json_object_get(y, "knowledge") ? "is" : "is not");
        diff = 1;
    }
    json_decref(x);
    json_decref(y);
    return diff;
}

/* ---- the data source: the pretraining sample stream ------------------------- */

/* Training batches are stream positions pos, pos + 1, ... of the training
 * split (epochs continue one into the next); validation batch k is
 * positions k B ... (k + 1) B - 1 of the validation split's epoch 0. */
typedef struct stream_src {
    const ksampler *ts, *vs;
    ksampler_stream *st;
    ksample_batch *vb;     /* validation batch (B rows: this rank's share) */
    int B;                 /* rows per micro-batch on this rank: data.batch_size / ranks */
    int Bg;                /* rows per micro-batch over all ranks: data.batch_size */
    int rank, ranks;       /* data parallel: this rank's share of each batch, 0 and 1 without */
    int64_t pos;           /* stream position of the next training row (global) */
    const double *logp;    /* (V) unigram log-probabilities of the training snapshot */
    const kkg_table *kt;   /* ERNIE: the entity table whose rows replace the batches' entity ids, or NULL */
} stream_src;

/* ERNIE: the sampler's entity ids (kg_entities ids) become rows of the
 * entity table, 0 for an entity without a vector (in place: the batch is
 * the caller's until the next one). */
static void remap_entities(const stream_src *s, const ksample_batch *cb)
{
    if (!s->kt || !cb || !cb->entity_ids) return;
    ksample_batch *b = (ksample_batch *)cb;
    for (int i = 0; i < b->B; i++)
        for (int t = 0; t < b->lengths[i]; t++) {
            size_t q = (size_t)i * b->L + t;
            if (b->entity_ids[q] > 0) b->entity_ids[q] = kkg_table_row(s->kt, b->entity_ids[q]);
            if (b->entity_labels[q] > 0) b->entity_labels[q] = kkg_table_row(s->kt, b->entity_labels[q]);
        }
}

static int src_seek(void *ctx, int64_t pos, char *err, size_t errlen)
{
    stream_src *s = ctx;
    ksampler_stream_free(s->st);
    /* rank r of n reads positions (pos / n + k b + j) n + r, j < b = B / n: together
     * the global batch pos + k B ... pos + k B + B - 1, as one process reads it */
    if (pos % s->ranks) {
        kseterr(err, errlen, "stream position %lld is not a multiple of the %d ranks", (long long)pos, s->ranks);
        return EX_DATAERR;
    }
    s->st = ksampler_stream_new(s->ts, 0, (uint64_t)(pos / s->ranks), s->B, s->rank, s->ranks, 1, 4, err, errlen);
    if (!s->st) return EX_SOFTWARE;
    s->pos = pos;
    return 0;
}

static int src_next(void *ctx, const ksample_batch **b, char *err, size_t errlen)
{
    stream_src *s = ctx;
    if (!s->st) {
        kseterr(err, errlen, "no stream (seek first)");
        return EX_SOFTWARE;
    }
    *b = ksampler_stream_next(s->st, NULL);
    remap_entities(s, *b);
    s->pos += s->Bg;
    return 0;
}

static void src_tell(void *ctx, int64_t *pos, int64_t *epoch)
{
    stream_src *s = ctx;
    *pos = s->pos;
    *epoch = (int64_t)((uint64_t)s->pos / ksampler_epoch_size(s->ts));
}

static int src_valid(void *ctx, int k, const ksample_batch **b, char *err, size_t errlen)
{
    stream_src *s = ctx;
    /* this rank's share of validation batch k: positions k Bg + r + j n */
    int rc = ksampler_fill(s->vs, 0, (uint64_t)k * (uint64_t)s->Bg + (uint64_t)s->rank, (uint64_t)s->ranks,
                           s->vb->capacity, s->vb, NULL);
    if (rc) {
        kseterr(err, errlen, "the validation sampler refused batch %d", k);
        return rc;
    }
    *b = s->vb;
    remap_entities(s, s->vb);
    return 0;
}

/* The unigram baseline: the cross-entropy of the training snapshot's add-one
 * unigram distribution on the same predicted tokens (the masked ones, or for
 * causal windows every token after the first of its row). */
static void src_valid_base(void *ctx, const ksample_batch *b, kstep_result *base)
{
    stream_src *s = ctx;
    kstep_result u = {.n = 1};
    snprintf(u.t[0].name, sizeof u.t[0].name, "unigram_loss");
    if (b->objectives & KOBJ_CLM) {
        for (int i = 0; i < b->B; i++)
            for (int t = 1; t < b->lengths[i]; t++) {
                u.t[0].sum -= s->logp[b->input_ids[(size_t)i * b->L + t]];
                u.t[0].count += 1;
            }
        kstep_add(base, &u);
        return;
    }
    for (int i = 0; i < b->B; i++)
        for (int j = 0; j < b->n_masked[i]; j++) {
            size_t q = (size_t)i * b->P + j;
            if (!(b->masked_weights[q] > 0)) continue;
            u.t[0].sum -= s->logp[b->masked_ids[q]];
            u.t[0].count += 1;
        }
    kstep_add(base, &u);
}

/* Mean real tokens per batch of B rows, over the first rows of the training
 * stream (epoch 0): a pure function of the snapshot, the options and the
 * seed, so the same on every leg of a resumed run. */
static double src_batch_tokens(void *ctx)
{
    stream_src *s = ctx;
    uint64_t rows = ksampler_epoch_size(s->ts);
    if (rows > 4096) rows = 4096;
    if (rows < (uint64_t)s->Bg) rows = (uint64_t)s->Bg;
    ksample_batch *b = ksampler_batch_new(s->ts, s->Bg);
    double tok = 0;
    uint64_t n = 0;
    for (uint64_t p = 0; b && p < rows; p += (uint64_t)s->Bg) {
        if (ksampler_fill(s->ts, 0, p, 1, s->Bg, b, NULL)) break;
        for (int i = 0; i < b->B; i++) tok += b->lengths[i];
        n += (uint64_t)b->B;
    }
    ksampler_batch_free(b);
    /* the global batch's (the same number on every rank) */
    return n ? tok / (double)n * s->Bg : (double)s->Bg * ksampler_options(s->ts)->seq_len;
}

static void src_free(void *ctx)
{
    stream_src *s = ctx;
    ksampler_stream_free(s->st);
    ksampler_batch_free(s->vb);
    free(s);
}

/* ---- the store and the caller's progress, as run-loop hooks ---------------------- */

typedef struct wiring {
    ktrain_run *r;
    kstore *s;
    int64_t job;
    int store_rc;            /* a metric or checkpoint row not recorded: EX_* (the run stops) */
    int coverage_put;        /* ERNIE: entity_coverage recorded (at the leg's first step) */
} wiring;

/* metrics of a step, one transaction: loss, every term of the model, lr,
 * grad_norm, tokens_per_s, tokens, seconds (training time over every leg);
 * at validations val_loss, val_<term> and
 * the baselines */
static void on_step(void *ctx, const krun_status *st)
{
    wiring *w = ctx;
    kstore *s = w->s;
    char name[KTERM_NAME_MAX + 8];
    int rc = kstore_begin(s);
#define PUT(n, v) if (!rc) rc = kstore_metric_put(s, w->job, st->step, (n), (v))
    PUT("loss", st->train->loss);
    for (int i = 0; i < st->train->n; i++)
        PUT(st->train->t[i].name, kstep_value(st->train, st->train->t[i].name));
    PUT("lr", st->lr);
    PUT("grad_norm", st->grad_norm);
    PUT("tokens_per_s", st->tokens_per_s);
    PUT("tokens", (double)st->tokens);
    PUT("seconds", st->seconds); /* kiln plot --x time */
    if (w->r->mentions > 0 && !w->coverage_put) { /* ERNIE: mentions with a vector / all, once a leg */
        PUT("entity_coverage", (double)w->r->mentions_with_vector / (double)w->r->mentions);
        w->coverage_put = !rc;
    }
    if (st->validated) {
        PUT("val_loss", st->val->loss);
        for (int i = 0; i < st->val->n; i++) {
            snprintf(name, sizeof name, "val_%s", st->val->t[i].name);
            PUT(name, kstep_value(st->val, st->val->t[i].name));
        }
        for (int i = 0; i < st->base->n; i++)
            PUT(st->base->t[i].name, kstep_value(st->base, st->base->t[i].name));
    }
#undef PUT
    if (!rc) rc = kstore_job_set_step(s, w->job, st->step);
    if (!rc) rc = kstore_commit(s);
    if (w->r->stop_file && w->r->stop && access(w->r->stop_file, F_OK) == 0) *w->r->stop = 1;
    if (rc) {
        /* the run stops before this step's checkpoint: resumed, it does the step again */
        kerr("step %lld: metrics not recorded: %s", (long long)st->step, kstore_errmsg(s));
        kstore_rollback(s);
        w->store_rc = rc;
    }
}

static void on_checkpoint(void *ctx, const krun_status *st)
{
    wiring *w = ctx;
    snprintf(w->r->checkpoint, sizeof w->r->checkpoint, "%s", st->checkpoint);
    int rc = kstore_checkpoint_add(w->s, w->job, st->step, st->checkpoint, st->validated ? st->val->loss : NAN);
    if (rc) {
        /* resumed from this checkpoint, the run records it (checkpoint_recorded) */
        kerr("checkpoint %s not recorded in the store: %s", st->checkpoint, kstore_errmsg(w->s));
        w->store_rc = rc;
    }
}

static int on_failed(void *ctx) { return ((wiring *)ctx)->store_rc; }

typedef struct val_at { int64_t step; double v; } val_at;
static int val_at_cb(int64_t step, const char *name, double v, void *ctx)
{
    (void)name;
    val_at *a = ctx;
    if (step == a->step) a->v = v;
    return 0;
}

/* The checkpoint a run resumes from has its checkpoints row: the run that
 * wrote it may have failed to record it (the store failed). Its val_loss is
 * the step's validation, as the metrics recorded it. */
static int checkpoint_recorded(kstore *s, int64_t job, const char *path, int64_t step)
{
    kbuf have = {0};
    int64_t have_step = -1;
    int rc = kstore_checkpoint_latest(s, job, &have, &have_step);
    int found = !rc && have.len && have_step >= step;
    kbuf_free(&have);
    if (rc || found) return rc;
    val_at a = {step, NAN};
    if ((rc = kstore_metrics_foreach(s, job, "val_loss", val_at_cb, &a))) return rc;
    kinfo("recording checkpoint %s (step %lld) in the store", path, (long long)step);
    return kstore_checkpoint_add(s, job, step, path, a.v);
}

static void on_progress(void *ctx, const krun_status *st)
{
    wiring *w = ctx;
    ktrain_progress p = {.step = st->step, .total_steps = st->total_steps, .tokens = st->tokens,
                         .loss = st->train->loss, .lr = st->lr, .grad_norm = st->grad_norm,
                         .tokens_per_s = st->tokens_per_s, .eta_s = st->eta_s,
                         .val_loss = st->val->n ? st->val->loss : NAN, .train = *st->train, .val = *st->val};
    w->r->progress(&p, w->r->progress_ctx);
}

/* ---- the run ---------------------------------------------------------------------- */

/* Logs a failure and keeps its message for the caller (the daemon stores it). */
#define RUN_ERR(...)                                                                               \
    do {                                                                                           \
        kerr(__VA_ARGS__);                                                                         \
        snprintf(r->error, sizeof r->error, __VA_ARGS__);                                          \
    } while (0)

/* The run's start from checkpoint `path` (config "init"): its tensors
 * copied into m by name, shapes checked; the checkpoint's vocabulary must be
 * the run's (same kind and bytes). Tensors it lacks keep their random
 * initialization (said); one of another shape, or none in common, is a
 * config error. Returns 0 or EX_* (logged into r->error). */
static int init_from(ktrain_run *r, kmodel *m, const char *path, const cli_sampling *x)
{
    kckpt *ck;
    ktrain_config ic;
    int mode, rc = cli_open_checkpoint(path, &ck, &ic, &mode);
    if (rc) {
        RUN_ERR("init: cannot open %s", path);
        return rc;
    }
    size_t vl, ml;
    const char *v = kckpt_vocab(ck, &vl), *mg = kckpt_merges(ck, &ml);
    int bpe = kckpt_vocab_kind(ck) == KCKPT_VOCAB_BPE;
    if (bpe != (x->kind == KVOCAB_BPE) || vl != x->vocab_text.len || memcmp(v, x->vocab_text.data, vl) ||
        (bpe && (ml != x->merges_text.len || memcmp(mg, x->merges_text.data, ml)))) {
        RUN_ERR("init: %s was made with another vocabulary than %s (import the same files with kiln vocab import%s and "
                "name it in data.vocab)",
                kckpt_path(ck), x->vocab_name, bpe ? " --bpe" : "");
        kckpt_close(ck);
        return EX_CONFIG;
    }
    int nt, copied = 0, missing = 0;
    const ktensor *tl = kmodel_params(m, &nt);
    float *w = kmodel_param_data(m);
    kbuf miss = {0};
    for (int i = 0; i < nt; i++) {
        const kst_tensor *t = kckpt_tensor(ck, "model.safetensors", tl[i].name);
        if (!t) {
            if (missing++ < 4) kbuf_printf(&miss, "%s%s", missing > 1 ? ", " : "", tl[i].name);
            continue;
        }
        if (strcmp(t->dtype, "F32") || t->nbytes != tl[i].numel * sizeof(float)) {
            RUN_ERR("init: %s: tensor %s is %s of %zu bytes, the model's is F32 of %zu (model sections differ)",
                    kckpt_path(ck), tl[i].name, t->dtype, t->nbytes, tl[i].numel * sizeof(float));
            kbuf_free(&miss);
            kckpt_close(ck);
            return EX_CONFIG;
        }
        memcpy(w + tl[i].offset, t->data, t->nbytes);
        copied++;
    }
    if (!copied) {
        RUN_ERR("init: %s has none of the model's tensors (another model type?)", kckpt_path(ck));
        kbuf_free(&miss);
        kckpt_close(ck);
        return EX_CONFIG;
    }
    if (missing)
        kwarn("init: %s lacks %d of the model's %d tensors (%s%s): they keep their random initialization",
              kckpt_path(ck), missing, nt, miss.data, missing > 4 ? ", ..." : "");
    kinfo("init: %d tensors from %s", copied, kckpt_path(ck));
    kbuf_free(&miss);
    kckpt_close(ck);
    return 0;
}

/* ---- distillation: the teacher --------------------------------------------------- */

typedef struct teacher {
    cli_msrc src;
    kmodel *m;
    kdistiller *d;
} teacher;

static int distill_step(void *ctx, kmodel *m, const ksample_batch *b, uint64_t key, float loss_scale, int64_t step,
                        int64_t total, kstep_result *r, char *err, size_t errlen)
{
    (void)m;
    kdistiller *d = ctx;
    int rc = kdistill_step(d, b, 1, key, loss_scale, step, total, r);
    if (rc) kseterr(err, errlen, "%s", kdistill_error(d));
    return rc;
}

/* the vocabulary texts as token lists are equal (vocab.txt: one token a line) */
static int same_tokens(const char *a, size_t na, const char *b, size_t nb)
{
    while (na && (a[na - 1] == '\n' || a[na - 1] == '\r')) na--;
    while (nb && (b[nb - 1] == '\n' || b[nb - 1] == '\r')) nb--;
    size_t i = 0, j = 0;
    while (i < na && j < nb) {
        if (a[i] == '\r' && i + 1 < na && a[i + 1] == '\n') i++;
        if (b[j] == '\r' && j + 1 < nb && b[j + 1] == '\n') j++;
        if (a[i] != b[j]) return 0;
        i++;
        j++;
    }
    return i == na && j == nb;
}

/* Loads distill.teacher as an inference model for batches (B, L, P): its
 * vocabulary must be the run's. Fills r->teacher_*. Returns 0 or EX_*. */
static int teacher_open(ktrain_run *r, teacher *t, const cli_sampling *x, int B, int L, int P)
{
    const char *path = r->cfg.distill.teacher;
    int rc = cli_msrc_open(path, &t->src);
    if (rc) {
        RUN_ERR("distill.teacher: cannot open %s", path);
        return rc == EX_NOINPUT ? EX_CONFIG : rc;
    }
    kmodel_config tc = t->src.mc;
    if (tc.type != KMODEL_BERT && tc.type != KMODEL_ALBERT && tc.type != KMODEL_DISTILBERT) {
        RUN_ERR("distill.teacher: %s is not a BERT, ALBERT or DistilBERT model", t->src.path);
        return EX_CONFIG;
    }
    if (x->kind == KVOCAB_BPE || !t->src.vocab ||
        !same_tokens(t->src.vocab, t->src.vocab_len, x->vocab_text.data, x->vocab_text.len)) {
        RUN_ERR("distill.teacher: %s was made with another vocabulary than %s: the student learns the teacher's "
                "predictions id by id, so import the teacher's vocab.txt (kiln vocab import) and name it in data.vocab",
                t->src.path, x->vocab_name);
        return EX_CONFIG;
    }
    if (L > tc.max_position_embeddings) {
        RUN_ERR("distill.teacher: %s takes sequences of at most %d tokens, data.seq_len is %d", t->src.path,
                tc.max_position_embeddings, L);
        return EX_CONFIG;
    }
    tc.hidden_dropout_prob = tc.attention_probs_dropout_prob = 0;
    kmodel_spec sp = {.heads = KHEAD_MLM, .max_B = B, .L = L, .P = P, .classifier_dropout = -1, .inference = 1};
    char err[1024];
    t->m = kmodel_create(&tc, &sp, err, sizeof err);
    if (!t->m) {
        RUN_ERR("distill.teacher: %s", err);
        return strstr(err, "out of memory") ? EX_OSERR : EX_CONFIG;
    }
    if (cli_msrc_load_all(&t->src, t->m, r->teacher_hash, err, sizeof err)) {
        RUN_ERR("distill.teacher: %s (a masked-LM model is needed: BertForMaskedLM / BertForPreTraining, "
                "AlbertForMaskedLM / AlbertForPreTraining, DistilBertForMaskedLM or a kiln pretraining checkpoint)",
                err);
        return EX_CONFIG;
    }
    r->teacher_params = (int64_t)kmodel_param_count(t->m);
    r->teacher_bytes = (int64_t)(kmodel_numel(t->m) * sizeof(float) + kmodel_activation_bytes(t->m));
    const char *names[] = {"", "bert", "albert", "electra", "gpt2", "distilbert"};
    kinfo("teacher %s: %s, %d layers, hidden %d, %.1fM parameters; inference only, %.0f MB (weights and "
          "activations); content hash %s",
          t->src.path, names[tc.type], tc.num_hidden_layers, tc.hidden_size, (double)r->teacher_params / 1e6,
          (double)r->teacher_bytes / 1048576.0, r->teacher_hash);
    return 0;
}

static void teacher_close(teacher *t)
{
    kdistill_free(t->d);
    kmodel_free(t->m);
    cli_msrc_free(&t->src);
    memset(t, 0, sizeof *t);
}

/* ---- data parallel: the plan rank 0 gives the other ranks ----------------------- */

/* What the other ranks need to run rank 0's run without the store: the
 * resolved config, the snapshot file (path and content hash), the
 * vocabulary's special ids and random pool. A JSON text. */
static char *plan_make(const ktrain_config *cfg, const cli_sampling *x, const char *snap_hash, const kkg_table *kt)
{
    char *cj = ktrain_config_to_json(cfg);
    kbuf b = {0};
    kbuf_puts(&b, "{\"config\":");
    kbuf_puts(&b, cj);
    free(cj);
    kbuf_puts(&b, ",\"snapshot\":");
    kbuf_json_str(&b, x->snapshot_path, strlen(x->snapshot_path));
    kbuf_printf(&b, ",\"snapshot_hash\":\"%s\",\"kind\":%d,\"pad\":%d,\"cls\":%d,\"sep\":%d,\"mask\":%d,\"random_ids\":[",
                snap_hash, x->kind, x->pad, x->cls, x->sep, x->mask);
    for (size_t i = 0; i < x->n_random; i++) kbuf_printf(&b, "%s%d", i ? "," : "", x->random_ids[i]);
    kbuf_puts(&b, "]");
    if (kt) { /* ERNIE: the KG ids of the entity table's rows 1.., the map every rank applies to its batches */
        kbuf_puts(&b, ",\"entity_ids\":[");
        for (int32_t i = 1; i < kt->rows; i++) kbuf_printf(&b, "%s%lld", i > 1 ? "," : "", (long long)kt->ids[i]);
        kbuf_puts(&b, "]");
    }
    kbuf_puts(&b, "}");
    return b.data;
}

/* The file's content hash as hex; 0 or EX_NOINPUT. */
static int file_hash_hex(const char *path, char hex[2 * KHASH_LEN + 1])
{
    uint8_t h[KHASH_LEN];
    int64_t size;
    if (khash_file(path, h, &size)) return EX_NOINPUT;
    khash_hex(h, hex);
    return 0;
}

/* A rank other than 0: the plan into cfg and x (snapshot opened and its
 * content checked against rank 0's hash). Returns 0 or EX_* (r->error). */
static int plan_take(ktrain_run *r, const char *plan, cli_sampling *x, kkg_table *kt)
{
    json_error_t je;
    json_t *j = json_loads(plan, 0, &je);
    char err[1024];
    json_t *c = json_object_get(j, "config");
    char *cj = c ? json_dumps(c, JSON_COMPACT) : NULL;
    int rc = 0;
    if (!cj || ktrain_config_parse(&r->cfg, cj, strlen(cj), NULL, 0, err, sizeof err)) {
        RUN_ERR("rank %d: rank 0's plan is unreadable%s%s", kdist_rank(r->dist), cj ? ": " : "", cj ? err : "");
        rc = EX_SOFTWARE;
        goto done;
    }
    const char *path = json_string_value(json_object_get(j, "snapshot"));
    const char *want = json_string_value(json_object_get(j, "snapshot_hash"));
    snprintf(x->snapshot_path, sizeof x->snapshot_path, "%s", path ? path : "");
    char have[2 * KHASH_LEN + 1] = "";
    if (file_hash_hex(x->snapshot_path, have)) {
        RUN_ERR("rank %d (%s): cannot read the run's snapshot %s: every rank reads rank 0's snapshot file at the "
                "same path (a shared file system, or copy it there)",
                kdist_rank(r->dist), kdist_host(r->dist), x->snapshot_path);
        rc = EX_NOINPUT;
        goto done;
    }
    if (!want || strcmp(have, want)) {
        RUN_ERR("rank %d (%s): snapshot %s differs from rank 0's (content hash %s, rank 0's %s): copy rank 0's file",
                kdist_rank(r->dist), kdist_host(r->dist), x->snapshot_path, have, want ? want : "?");
        rc = EX_DATAERR;
        goto done;
    }
    if (!(x->snap = ksnapshot_open(x->snapshot_path, err, sizeof err))) {
        RUN_ERR("rank %d: %s", kdist_rank(r->dist), err);
        rc = EX_DATAERR;
        goto done;
    }
    x->kind = (int)json_integer_value(json_object_get(j, "kind"));
    x->pad = (int32_t)json_integer_value(json_object_get(j, "pad"));
    x->cls = (int32_t)json_integer_value(json_object_get(j, "cls"));
    x->sep = (int32_t)json_integer_value(json_object_get(j, "sep"));
    x->mask = (int32_t)json_integer_value(json_object_get(j, "mask"));
    json_t *ri = json_object_get(j, "random_ids");
    x->n_random = json_array_size(ri);
    x->random_ids = xcalloc(x->n_random ? x->n_random : 1, sizeof *x->random_ids);
    for (size_t i = 0; i < x->n_random; i++) x->random_ids[i] = (int32_t)json_integer_value(json_array_get(ri, i));
    json_t *ei = json_object_get(j, "entity_ids");
    if (json_is_array(ei)) { /* ERNIE: the table's ids (its vectors come with rank 0's parameters) */
        size_t n = json_array_size(ei);
        kt->embedding_id = r->cfg.knowledge_embedding;
        kt->dim = r->cfg.model.entity_dim;
        kt->rows = (int32_t)(n + 1);
        kt->ids = xcalloc(n + 1, sizeof *kt->ids);
        kt->order = xmalloc((n ? n : 1) * sizeof *kt->order);
        for (size_t i = 0; i < n; i++) {
            kt->ids[i + 1] = (int64_t)json_integer_value(json_array_get(ei, i));
            kt->order[i] = (int32_t)(i + 1);
            if (i && kt->ids[i + 1] <= kt->ids[i]) {
                RUN_ERR("rank %d: rank 0's entity ids are not ascending", kdist_rank(r->dist));
                rc = EX_SOFTWARE;
                goto done;
            }
        }
    }
done:
    free(cj);
    json_decref(j);
    return rc;
}

static void take_result(ktrain_run *r, const krun *run)
{
    const krun_result *res = krun_get_result(run);
    r->steps = res->steps;
    r->tokens = res->tokens;
    r->total_steps = res->total_steps;
    r->seconds = res->seconds;
    r->tokens_per_s = res->tokens_per_s;
    r->last = res->train;
    r->val = res->val;
    r->base = res->base;
    r->loss = res->steps > 0 && res->train.n ? res->train.loss : NAN;
    r->val_loss = res->val.n ? res->val.loss : NAN;
    r->stopped = res->stopped;
    r->comm_s = res->comm_s;
    r->comm_wait_s = res->comm_wait_s;
    r->hash_checks = res->hash_checks;
    if (res->checkpoint[0]) snprintf(r->checkpoint, sizeof r->checkpoint, "%s", res->checkpoint);
}

/* The precision of the run's matrix products (cli_precision), into
 * r->precision, said by rank 0. A rank other than 0 gets rank 0's resolved
 * choice in the plan, so all ranks agree or one of them stops the run.
 * Returns 0, or EX_UNAVAILABLE (r->error says why). */
static int precision_setup(ktrain_run *r, int rank)
{
    char msg[1024];
    int rc = cli_precision(r->cfg.precision, r->precision, msg, sizeof msg);
    if (rc && rank > 0)
        RUN_ERR("rank %d (%s): precision bf16 (rank 0's choice) cannot run here: %s; set \"precision\": \"fp32\" "
                "for ranks on different CPUs",
                rank, kdist_host(r->dist), msg);
    else if (rc)
        RUN_ERR("precision bf16 cannot run here: %s; use \"precision\": \"fp32\" or \"auto\"", msg);
    else if (rank == 0)
        kinfo("%s", msg);
    return rc;
}

/* ERNIE: the entity table of the run's embedding (knowledge.embedding; "latest"
 * is resolved and written into the config, which pins it in the job row and
 * the checkpoints), the table's shape into the model config (a resumed run's
 * must match), and the coverage of the snapshot's mentions. */
static int knowledge_setup(ktrain_run *r, const cli_sampling *x, const ksnapshot_info *si, kkg_table *kt)
{
    ktrain_config *cfg = &r->cfg;
    kmodel_config *mc = &cfg->model;
    kstore *s;
    int rc = cli_open_store(r->common, 0, &s);
    if (rc) return rc;
    char err[512];
    if ((rc = kkg_table_load(s, cfg->knowledge_embedding, kt, err, sizeof err))) {
        RUN_ERR("knowledge.embedding: %s", err);
        kstore_close(s);
        return rc;
    }
    if ((mc->entity_vocab_size && mc->entity_vocab_size != kt->rows) || (mc->entity_dim && mc->entity_dim != kt->dim)) {
        RUN_ERR("knowledge: the run's entity table is %d x %d, embedding %lld gives %d x %d (a resumed run keeps "
                "the embedding it started with)",
                mc->entity_vocab_size, mc->entity_dim, (long long)kt->embedding_id, kt->rows, kt->dim);
        kstore_close(s);
        return EX_CONFIG;
    }
    cfg->knowledge_embedding = kt->embedding_id;
    mc->entity_vocab_size = kt->rows;
    mc->entity_dim = kt->dim;
    int64_t with = 0, all = 0;
    if ((rc = kkg_table_coverage(s, kt, x->vocab_id, si->max_doc_id, &with, &all))) {
        RUN_ERR("knowledge: the mentions: %s", kstore_errmsg(s));
        kstore_close(s);
        return rc;
    }
    kstore_close(s);
    r->entity_embedding = kt->embedding_id;
    r->entity_rows = kt->rows;
    r->mentions = all;
    r->mentions_with_vector = with;
    if (all == 0) {
        RUN_ERR("knowledge: the snapshot's documents have no linked mentions under vocabulary %s (kiln kg link "
                "links them)",
                x->vocab_name);
        return EX_DATAERR;
    }
    kinfo("knowledge: embedding %lld (%lld entities x %d), the last %d of %d layers fuse them; entity coverage "
          "%.1f%% (%lld of %lld mentions have a vector, the rest count as no entity)",
          (long long)kt->embedding_id, (long long)kt->rows - 1, kt->dim, mc->fusion_layers, mc->num_hidden_layers,
          100.0 * (double)with / (double)all, (long long)with, (long long)all);
    /* the loss reads the last layer only at masked tokens (and [CLS]), which then carry no entity: the
     * last fusion layer's entity side reaches no loss but dEA's (docs/ernie.md, "Without dEA") */
    if (!mc->dea && cfg->knowledge_hide_masked)
        kwarn("knowledge: with dea false, nothing trains the entity side of the last fusion layer (layer %d): the "
              "masked-LM loss reads only masked tokens, which carry no entity (hide_masked_entities); %s",
              mc->num_hidden_layers - 1,
              mc->fusion_layers > 1 ? "only the fusion layers before it inform the text"
                                    : "with one fusion layer the entities inform no loss at all");
    return 0;
}

int ktrain_run_exec(ktrain_run *r)
{
    r->error[0] = '\0';
    ktrain_config *cfg = &r->cfg;
    char err[2048];
    int rc = 0;
    kckpt *ck = NULL;
    char ck_path[4096] = "";
    int64_t ck_step = 0;
    r->checkpoint[0] = '\0';
    r->loss = r->val_loss = NAN;
    memset(&r->last, 0, sizeof r->last);
    memset(&r->val, 0, sizeof r->val);
    memset(&r->base, 0, sizeof r->base);
    r->steps = r->tokens = r->total_steps = 0;
    r->stopped = 0;
    kdist *D = r->dist;
    const int rank = kdist_rank(D), ranks = kdist_size(D);
    r->ranks = ranks;
    r->comm_s = r->comm_wait_s = 0;
    r->hash_checks = 0;
    r->precision[0] = '\0';

    /* an OpenBLAS that breaks determinism is refused before anything */
    if ((rc = krun_check_blas(err, sizeof err))) {
        RUN_ERR("%s", err);
        return rc;
    }
    /* the store opened read-write once first: it migrates an older schema */
    if (rank == 0) {
        kstore *s0;
        if ((rc = cli_open_store(r->common, 0, &s0))) return rc;
        kstore_close(s0);
    }

    /* ---- the checkpoint to resume, or a clean folder ---- */
    int have = rank == 0 && kckpt_latest(cfg->checkpoint.dir, ck_path, sizeof ck_path, &ck_step) == 0;
    if (have && !r->resume) {
        RUN_ERR("%s already holds checkpoints (latest %s): add --resume to continue the run, or choose "
                "another checkpoint.dir",
                cfg->checkpoint.dir, ck_path);
        return EX_CANTCREAT;
    }
    const char *snapshot = NULL;
    char snap_saved[4096] = "", snap_key[40] = "", teacher_saved[40] = "", prec_saved[8] = "";
    teacher te;
    memset(&te, 0, sizeof te);
    r->teacher_hash[0] = '\0';
    r->teacher_params = r->teacher_bytes = 0;
    int64_t job_saved = 0;
    if (have) {
        ck = kckpt_open(ck_path, err, sizeof err);
        if (!ck) {
            RUN_ERR("cannot resume: %s", err);
            return EX_DATAERR;
        }
        const kckpt_state *cs = kckpt_state_of(ck);
        ktrain_config old;
        if (ktrain_config_parse(&old, cs->config_json, strlen(cs->config_json), NULL, 0, err, sizeof err)) {
            RUN_ERR("%s: its config: %s", ck_path, err);
            kckpt_close(ck);
            return EX_DATAERR;
        }
        if (config_same(&old, cfg, err, sizeof err)) {
            RUN_ERR("cannot resume from %s: %s (only budget, checkpoint and threads may change)", ck_path, err);
            kckpt_close(ck);
            return EX_CONFIG;
        }
        ktrain_config cur = *cfg;   /* what may change on resume: budget, checkpoint, threads, validation */
        *cfg = old;
        cfg->budget = cur.budget;
        cfg->checkpoint = cur.checkpoint;
        cfg->threads = cur.threads;
        cfg->precision = cur.precision;
        cfg->data.valid_every = cur.data.valid_every;
        cfg->data.valid_batches = cur.data.valid_batches;
        if (cur.distill.teacher[0]) memcpy(cfg->distill.teacher, cur.distill.teacher, sizeof cfg->distill.teacher);
        json_t *ex = cs->extra_json ? json_loads(cs->extra_json, 0, NULL) : NULL;
        const char *th = json_string_value(json_object_get(json_object_get(ex, "teacher"), "hash"));
        if (th) snprintf(teacher_saved, sizeof teacher_saved, "%s", th);
        const char *sp = json_string_value(json_object_get(ex, "snapshot"));
        const char *sk = json_string_value(json_object_get(ex, "snapshot_key"));
        if (sp) snprintf(snap_saved, sizeof snap_saved, "%s", sp);
        if (sk) snprintf(snap_key, sizeof snap_key, "%s", sk);
        job_saved = json_integer_value(json_object_get(ex, "job_id"));
        const char *ps = json_string_value(json_object_get(ex, "precision"));
        snprintf(prec_saved, sizeof prec_saved, "%s", ps ? ps : "fp32");
        json_int_t rs = json_integer_value(json_object_get(ex, "ranks"));
        if (rs < 1) rs = 1;
        if (rs != ranks)
            kinfo("%s was written by a run on %lld rank%s, resumed on %d: the global batch (data.batch_size %d) and "
                  "the stream position are the same, so the run continues the same model (the additions of its "
                  "gradients happen in another order: not bit-identical to a run that kept %lld)",
                  ck_path, (long long)rs, rs == 1 ? "" : "s", ranks, old.data.batch_size, (long long)rs);
        json_decref(ex);
        if (snap_saved[0] && access(snap_saved, R_OK) == 0) snapshot = snap_saved;
        else if (snap_saved[0])
            kwarn("%s is gone: making the snapshot again (it must match the run's)", snap_saved);
    } else if (r->resume && rank == 0) {
        kinfo("no checkpoint in %s: starting at step 0", cfg->checkpoint.dir);
    }

    /* ---- precision (rank 0; the other ranks take rank 0's from the plan) ---- */
    if (rank == 0 && (rc = precision_setup(r, 0))) {
        kckpt_close(ck);
        return rc;
    }
    if (rank == 0 && prec_saved[0] && strcmp(prec_saved, r->precision))
        kinfo("%s was written by a run in %s, resumed in %s: the run continues the same model (its products "
              "round differently from here on: not bit-identical to a run that stayed in %s)",
              ck_path, prec_saved, r->precision, prec_saved);

    /* ---- vocabulary, snapshot, samplers ---- */
    cli_sampling x;
    memset(&x, 0, sizeof x);
    kkg_table kt; /* ERNIE: the entity table (rank 0: the pinned embedding's; the others: its ids) */
    memset(&kt, 0, sizeof kt);
    char *plan = NULL;
    if (rank == 0) {
        rc = cli_sampling_open(r->common, cfg->data.vocab[0] ? cfg->data.vocab : NULL, snapshot, &x);
    } else {
        /* the plan from rank 0, which may first have to build the snapshot: a long wait */
        double t = kdist_set_timeout(D, 86400);
        rc = kdist_bcast_str(D, &plan, "the run's plan from rank 0");
        kdist_set_timeout(D, t);
        if (rc) RUN_ERR("%s", kdist_error(D));
        else rc = plan_take(r, plan, &x, &kt);
        if (!rc) rc = precision_setup(r, rank);
        free(plan);
        plan = NULL;
    }
    if (rc) {
        kkg_table_free(&kt);
        cli_sampling_close(&x);
        kckpt_close(ck);
        return rc;
    }
    ksnapshot_info si;
    ksnapshot_get_info(x.snap, &si);
    ksampler *ts = NULL, *vs = NULL;
    kmodel *m = NULL;
    krun *run = NULL;
    kstore *s = NULL;
    char *cfg_json = NULL;
    double *logp = NULL;
    int V = rank == 0 ? (int)ktkz_size(x.tk) : cfg->model.vocab_size;
    if (rank > 0) goto planned;
    if (snap_key[0] && strcmp(snap_key, si.key_hex)) {
        RUN_ERR("cannot resume: the run's snapshot (%s) is gone and the corpus changed since", snap_key);
        rc = EX_DATAERR;
        goto out;
    }
    if ((cfg->model.type == KMODEL_GPT2) != (x.kind == KVOCAB_BPE)) {
        RUN_ERR(cfg->model.type == KMODEL_GPT2
                    ? "model.type gpt2 needs a byte-level BPE vocabulary (kiln vocab import --bpe or kiln vocab train "
                      "--bpe); %s is a WordPiece vocabulary"
                    : "vocabulary %s is a byte-level BPE vocabulary: it trains model.type gpt2 (clm), not this model",
                x.vocab_name);
        rc = EX_CONFIG;
        goto out;
    }
    if (cfg->model.vocab_size == 0) cfg->model.vocab_size = V;
    if (cfg->model.vocab_size != V) {
        RUN_ERR("model.vocab_size is %d but vocabulary %s has %d pieces (0 = take the vocabulary's)",
                cfg->model.vocab_size, x.vocab_name, V);
        rc = EX_CONFIG;
        goto out;
    }
    cfg->model.pad_token_id = x.pad;
    if (cfg->data.objectives & KOBJ_CLASSIFY) {
        RUN_ERR("data.objectives: labelled examples train with kiln finetune");
        rc = EX_CONFIG;
        goto out;
    }
    if (cfg->model.fusion_layers > 0 && (rc = knowledge_setup(r, &x, &si, &kt))) goto out;
    if (ranks > 1) {
        if (cfg->data.batch_size % ranks) {
            RUN_ERR("data.batch_size %d is not divisible by the %d ranks: it is the global batch, each rank takes "
                    "batch_size / ranks rows (choose a multiple of %d, or another number of ranks)",
                    cfg->data.batch_size, ranks, ranks);
            rc = EX_CONFIG;
            goto out;
        }
        if (cfg->distill.teacher[0]) {
            RUN_ERR("distillation runs in one process for now (its step is not split over ranks): run it "
                    "without mpirun");
            rc = EX_CONFIG;
            goto out;
        }
        char hx[2 * KHASH_LEN + 1];
        if (file_hash_hex(x.snapshot_path, hx)) {
            RUN_ERR("cannot read the snapshot %s", x.snapshot_path);
            rc = EX_NOINPUT;
            goto out;
        }
        ktrain_config pc = *cfg; /* rank 0's resolved precision: every rank runs the same */
        pc.precision = !strcmp(r->precision, "bf16") ? KPRECISION_BF16 : KPRECISION_FP32;
        plan = plan_make(&pc, &x, hx, kt.rows ? &kt : NULL);
        rc = kdist_bcast_str(D, &plan, "the run's plan");
        free(plan);
        if (rc) {
            RUN_ERR("%s", kdist_error(D));
            goto out;
        }
        kinfo("data parallel: %d ranks, %d rows of each batch of %d per rank; snapshot %s (content %s)", ranks,
              cfg->data.batch_size / ranks, cfg->data.batch_size, x.snapshot_path, hx);
    }
planned:;
    int ob = cfg->data.objectives;
    ksampler_opts so;
    ksampler_opts_defaults(&so);
    so.objectives = ob;
    so.seq_len = cfg->data.seq_len;
    so.max_predictions = cfg->data.max_predictions;
    so.mask_prob = cfg->data.mask_prob;
    so.short_seq_prob = cfg->data.short_seq_prob;
    so.max_ngram = cfg->data.max_ngram;
    so.valid_fraction = cfg->data.valid_fraction;
    so.seed = cfg->data.seed;
    so.dea = cfg->model.fusion_layers > 0 && cfg->model.dea; /* ERNIE's dEA noise on the entity inputs */
    so.hide_masked_entities = cfg->model.fusion_layers > 0 && cfg->knowledge_hide_masked;
    cli_sampling_apply(&x, &so);
    if (rank > 0) so.vocab_size = (uint32_t)V;
    ts = ksampler_open(x.snap, &so, err, sizeof err);
    if (!ts) {
        RUN_ERR("training samples: %s", err);
        rc = EX_DATAERR;
        goto out;
    }
    if (cfg->data.valid_every > 0 && cfg->data.valid_batches > 0) {
        so.split = 1;
        vs = ksampler_open(x.snap, &so, err, sizeof err);
        if (!vs) kwarn("no validation: %s", err);
    }
    /* B: this rank's rows of each batch of data.batch_size */
    int B = cfg->data.batch_size / ranks, L = cfg->data.seq_len, P = ksampler_options(ts)->max_predictions;

    /* ---- threads, model ---- */
    int threads = cfg->threads > 0 ? cfg->threads : kcpu_count();
    omp_set_num_threads(threads);
    openblas_set_num_threads(threads);
    int sentence = !!(ob & (KOBJ_SOP | KOBJ_NSP));
    const int distill = cfg->distill.teacher[0] != 0;
    const int Pm = distill && cfg->distill.positions == KDISTILL_ALL ? L : P; /* "all": a slot per position */
    if (distill) {
        if (cfg->init[0]) {
            RUN_ERR("init and distill.teacher both start the student: give one (distill.init_from_teacher copies "
                    "the teacher's layers)");
            rc = EX_CONFIG;
            goto out;
        }
        if ((rc = teacher_open(r, &te, &x, B, L, Pm))) goto out;
        if (teacher_saved[0] && strcmp(teacher_saved, r->teacher_hash)) {
            RUN_ERR("cannot resume: the teacher %s is not the one the run started with (content hash %s, the "
                    "checkpoint's %s)",
                    cfg->distill.teacher, r->teacher_hash, teacher_saved);
            rc = EX_CONFIG;
            goto out;
        }
    }
    {
        kmodel_spec sp = kmodel_spec_pretrain_of(&cfg->model, B, L, Pm, sentence);
        if (distill && cfg->distill.method == KDISTILL_TINYBERT &&
            (cfg->distill.alpha_hid > 0 || cfg->distill.alpha_emb > 0))
            sp.fit_width = kmodel_get_config(te.m)->hidden_size;
        m = kmodel_create(&cfg->model, &sp, err, sizeof err);
    }
    if (m && distill && !(te.d = kdistill_new(m, te.m, &cfg->distill, err, sizeof err))) {
        RUN_ERR("distill: %s", err);
        rc = EX_CONFIG;
        goto out;
    }
    if (!m) {
        RUN_ERR("model: %s", err);
        rc = strstr(err, "out of memory") ? EX_OSERR : EX_CONFIG; /* the trainer says which */
        goto out;
    }

    /* unigram log-probabilities of the training snapshot, add-one smoothed */
    logp = xmalloc((size_t)V * sizeof *logp);
    {
        uint64_t *cnt = xcalloc((size_t)V, sizeof *cnt), tot = 0;
        ksnapshot_token_counts(x.snap, cnt);
        for (int i = 0; i < V; i++) tot += cnt[i];
        for (int i = 0; i < V; i++) logp[i] = log(((double)cnt[i] + 1.0) / ((double)tot + V));
        free(cnt);
    }

    /* ---- the run loop over the sample stream ---- */
    stream_src *sc = xcalloc(1, sizeof *sc);
    sc->ts = ts;
    sc->vs = vs;
    sc->B = B;
    sc->Bg = cfg->data.batch_size;
    sc->rank = rank;
    sc->ranks = ranks;
    sc->logp = logp;
    sc->kt = kt.rows ? &kt : NULL;
    sc->vb = vs ? ksampler_batch_new(vs, B) : NULL;
    krun_source src = {.ctx = sc, .seek = src_seek, .next = src_next, .tell = src_tell,
                       .valid = vs ? src_valid : NULL, .valid_base = src_valid_base,
                       .batch_tokens = src_batch_tokens, .free = src_free};
    krun_opts ro;
    krun_opts_defaults(&ro);
    ro.optimizer = cfg->optimizer;
    ro.seed = cfg->data.seed;
    ro.budget = cfg->budget;
    ro.valid_every = cfg->data.valid_every;
    ro.valid_batches = cfg->data.valid_batches;
    ro.max_nonfinite = cfg->optimizer.max_nonfinite_steps;
    if (r->max_nonfinite > 0) ro.max_nonfinite = r->max_nonfinite;
    ro.stop = r->stop;
    ro.pause_at = r->pause_at;
    ro.ckpt_dir = cfg->checkpoint.dir;
    ro.ckpt_every = cfg->checkpoint.every;
    ro.ckpt_keep = cfg->checkpoint.keep;
    ro.dist = D;
    if (te.d) {
        ro.step = distill_step;
        ro.step_ctx = te.d;
    }
    run = krun_new(m, &ro, &src, err, sizeof err);   /* frees src on failure */
    if (!run) {
        RUN_ERR("optimizer: %s", err);
        rc = strstr(err, "out of memory") ? EX_OSERR : EX_CONFIG;
        goto out;
    }
    if (ck) {
        if ((rc = krun_restore(run, ck))) {
            RUN_ERR("%s", krun_error(run));
            goto out;
        }
        const kckpt_state *cs = kckpt_state_of(ck);
        snprintf(r->checkpoint, sizeof r->checkpoint, "%s", ck_path);
        kinfo("resuming %s at step %lld (stream position %lld)", ck_path, (long long)cs->step,
              (long long)cs->next_index);
    } else {
        kmodel_init(m, cfg->data.seed);
        if (kt.vectors) { /* ERNIE: the pinned embedding's vectors are the (frozen) entity table (rank 0's) */
            size_t off = kmodel_param_offset(m, "ernie.entity_embeddings.weight");
            memcpy(kmodel_param_data(m) + off, kt.vectors, (size_t)kt.rows * kt.dim * sizeof(float));
        }
        if (rank == 0 && cfg->init[0] && (rc = init_from(r, m, cfg->init, &x))) goto out;
        if (distill && cfg->distill.init_from_teacher) {
            const kdistill_config *k = &cfg->distill;
            int n = cfg->model.type == KMODEL_ALBERT ? cfg->model.num_hidden_groups : cfg->model.num_hidden_layers;
            int layers[KDISTILL_MAX_LAYERS];
            if (n > KDISTILL_MAX_LAYERS) n = KDISTILL_MAX_LAYERS;
            if (k->student_layers.n) memcpy(layers, k->student_layers.v, (size_t)n * sizeof *layers);
            else kdistill_init_layers(kmodel_get_config(te.m)->num_hidden_layers, n, layers);
            if ((rc = kmodel_init_from(m, te.m, layers, n, err, sizeof err))) {
                RUN_ERR("distill.init_from_teacher: %s", err);
                goto out;
            }
            kbuf ls = {0};
            for (int i = 0; i < n; i++) kbuf_printf(&ls, "%s%d", i ? ", " : "", layers[i]);
            kinfo("student initialised from the teacher: embeddings, heads, layers [%s]", ls.data);
            kbuf_free(&ls);
        }
    }
    kckpt_close(ck);
    ck = NULL;
    /* data parallel: every rank starts from rank 0's state */
    if ((rc = krun_sync(run))) {
        RUN_ERR("%s", krun_error(run));
        goto out;
    }
    if (rank > 0) {
        /* no store, no checkpoints, no hooks: rank 0 records the run */
        krun_meta none = {.config_json = "", .vocab_txt = ""};
        rc = krun_exec(run, &none, NULL);
        take_result(r, run);
        if (rc) RUN_ERR("rank %d: %s", rank, krun_error(run));
        goto out;
    }

    /* ---- the store: job row and metrics ---- */
    if ((rc = cli_open_store(r->common, 0, &s))) goto out;
    int64_t job = r->job_id > 0 ? r->job_id : job_saved;
    cfg_json = ktrain_config_to_json(cfg);
    if (job > 0) {
        kbuf tmp = {0};
        kjob j;
        int g = kstore_job_get(s, job, &j, &tmp);
        kbuf_free(&tmp);
        if (g == EX_NOINPUT) {
            job = 0; /* the row is gone: a new one */
        } else if (g) {
            /* the store failed: a new row would split the run's metrics */
            RUN_ERR("%s", kstore_errmsg(s));
            rc = g;
            goto out;
        }
    }
    if (job <= 0) {
        rc = kstore_job_add(s, r->name ? r->name : cfg->checkpoint.dir, "train", cfg_json, 0, "running", &job);
        if (rc) {
            RUN_ERR("%s", kstore_errmsg(s));
            goto out;
        }
    } else if ((rc = kstore_job_set_state(s, job, "running", NULL))) {
        RUN_ERR("%s", kstore_errmsg(s));
        goto out;
    }
    kbuf extra = {0};
    kbuf_printf(&extra, "{\"ranks\":%d,\"precision\":\"%s\",\"snapshot\":", ranks, r->precision);
    kbuf_json_str(&extra, x.snapshot_path, strlen(x.snapshot_path));
    if (x.kind == KVOCAB_BPE)
        kbuf_printf(&extra, ",\"snapshot_key\":\"%s\",\"job_id\":%lld,\"tokenizer\":\"bpe\",\"eot_id\":%lld,"
                            "\"vocab_id\":%lld}",
                    si.key_hex, (long long)job, (long long)x.eot, (long long)x.vocab_id);
    else
        kbuf_printf(&extra, ",\"snapshot_key\":\"%s\",\"job_id\":%lld,\"cased\":%s,\"strip_accents\":%s,\"icu_words\":%s,"
                            "\"vocab_id\":%lld}",
                    si.key_hex, (long long)job, x.cased ? "true" : "false",
                    x.mode & KWP_STRIP_ACCENTS ? "true" : x.mode & KWP_KEEP_ACCENTS ? "false" : "null",
                    x.mode & KWP_ICU_WORDS ? "true" : "false", (long long)x.vocab_id);
    if (kt.rows) {
        /* ERNIE, pinned: {..., "knowledge": {"embedding", "rows", "dim", "mentions", "with_vector"}}; the
         * linking is the snapshot's (snapshot_key) */
        extra.len--;
        kbuf_printf(&extra, ",\"knowledge\":{\"embedding\":%lld,\"rows\":%lld,\"dim\":%d,\"mentions\":%lld,"
                            "\"with_vector\":%lld}}",
                    (long long)kt.embedding_id, (long long)kt.rows, kt.dim, (long long)r->mentions,
                    (long long)r->mentions_with_vector);
    }
    if (distill) {
        /* the teacher, pinned: {..., "teacher": {"path", "hash", "params", "bytes"}} */
        extra.len--; /* reopen the object */
        kbuf_puts(&extra, ",\"teacher\":{\"path\":");
        kbuf_json_str(&extra, cfg->distill.teacher, strlen(cfg->distill.teacher));
        kbuf_printf(&extra, ",\"hash\":\"%s\",\"params\":%lld,\"bytes\":%lld}}", r->teacher_hash,
                    (long long)r->teacher_params, (long long)r->teacher_bytes);
    }
    krun_meta meta = {.config_json = cfg_json, .vocab_name = x.vocab_name, .vocab_txt = x.vocab_text.data,
                      .vocab_len = x.vocab_text.len, .extra_json = extra.data,
                      .vocab_kind = x.kind == KVOCAB_BPE ? KCKPT_VOCAB_BPE : KCKPT_VOCAB_WORDPIECE,
                      .merges = x.kind == KVOCAB_BPE ? x.merges_text.data : NULL,
                      .merges_len = x.kind == KVOCAB_BPE ? x.merges_text.len : 0};
    wiring w = {.r = r, .s = s, .job = job};
    if (have && (rc = checkpoint_recorded(s, job, ck_path, ck_step))) {
        RUN_ERR("%s", kstore_errmsg(s));
        kbuf_free(&extra);
        goto out;
    }
    krun_hooks hk = {.ctx = &w, .step = on_step, .checkpoint = on_checkpoint,
                     .progress = r->progress ? on_progress : NULL, .failed = on_failed};
    rc = krun_exec(run, &meta, &hk);
    kbuf_free(&extra);
    take_result(r, run);
    if (rc) RUN_ERR("%s", krun_error(run));
    if (r->leave_state) {
        /* the caller decides (the daemon: queued again, cancelled, done) */
    } else if (!rc) {
        /* not recorded: the rerun (--resume, nothing left to train) records it */
        if ((rc = kstore_job_set_state(s, job, r->stopped ? "paused" : "done", NULL)))
            RUN_ERR("%s", kstore_errmsg(s));
    } else if (kstore_job_set_state(s, job, "failed", r->error)) {
        kwarn("job %lld not marked failed: %s", (long long)job, kstore_errmsg(s));
    }
out:
    krun_free(run);
    kkg_table_free(&kt);
    teacher_close(&te);
    kmodel_free(m);
    free(logp);
    free(cfg_json);
    kstore_close(s);
    ksampler_close(vs);
    ksampler_close(ts);
    cli_sampling_close(&x);
    kckpt_close(ck);
    return rc;
}
