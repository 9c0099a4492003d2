/* cli/cmd_finetune.c: kiln finetune, kiln eval and kiln classify
 * (docs/finetune.md): a pretrained model (a kiln checkpoint or a Hugging
 * Face folder) fine-tuned on a labelled dataset (sampler/dataset.h) with the
 * shared run loop (cli/runloop.h), measured on a dev file, and used to
 * classify texts. No store: everything is in files.
 *
 * A fine-tuned checkpoint is an ordinary kiln checkpoint whose state.json
 * config is a run config with the model section of the classifier, and
 * whose extra object says what kiln export, eval and classify need:
 *   {"kind": "finetune", "architecture": "BertForSequenceClassification" |
 *    "AlbertForSequenceClassification" | "ElectraForSequenceClassification" |
 *    "DistilBertForSequenceClassification", "model_type", "heads": ["classify"],
 *    "pooler": true (false: ELECTRA, DistilBERT), "num_labels": K, "id2label": [names],
 *    "problem_type": "single_label_classification" | "regression",
 *    "cased": bool, "strip_accents", "icu_words" (cli_tokenizer_json), "finetune": the fine-tuning config (kft_config_to_json),
 *    "dev": {"step", "accuracy", "f1", "loss", ...} the last evaluation}.
 * The best checkpoint by the dev metric (accuracy; Pearson for regression)
 * is DIR/best/ (hard links to the step folder's files, published with one
 * rename), so keep-K pruning never removes it. */
#define _GNU_SOURCE /* link, strdup, getline */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <jansson.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sysexits.h>
#include <time.h>
#include <unistd.h>

#include "cli/cli.h"
#include "cli/modelsrc.h"
#include "cli/runloop.h"
#include "sampler/dataset.h"
#include "text/wordpiece.h"
#include "trainer/checkpoint.h"
#include "trainer/ftconfig.h"
#include "trainer/hfimport.h"
#include "trainer/kernels.h"
#include "trainer/metrics.h"
#include "trainer/model.h"
#include "util/util.h"

void openblas_set_num_threads(int);

#define num_or_null cli_json_num
#define jstr cli_json_str
static void json_print(json_t *o) { cli_json_print(o, 1); }

void cli_set_threads(int n)
{
    if (n <= 0) n = kcpu_count();
    /* OpenBLAS's OpenMP build sets OpenMP's thread count in
     * openblas_set_num_threads too: it comes first, or it would undo the
     * count (it did: until 2026-12-05 finetune, eval, classify, generate and
     * cloze ran on one thread whatever --threads said). kiln calls OpenBLAS
     * on one thread per product anyway (kernels.c, sgemm1). */
    openblas_set_num_threads(n);
    omp_set_num_threads(n);
}

/* ---- the model a fine-tuning starts from, or that eval / classify use -------- */

/* ---- evaluation ---------------------------------------------------------------------- */

typedef struct ft_eval {
    int64_t examples;
    double loss, accuracy, f1, pearson, spearman, mse;
} ft_eval;

/* Forward passes over all of d in order, batch by batch in b (capacity
 * rows); predictions into pred (classes) / val (regression) when given. */
static int evaluate(kmodel *m, const kdataset *d, ksample_batch *b, int regression, int num_labels, cli_kg *kg,
                    ft_eval *out)
{
    const int64_t n = kdataset_count(d);
    int32_t *pred = xcalloc((size_t)n + 1, sizeof *pred), *gold = xcalloc((size_t)n + 1, sizeof *gold);
    float *pv = xcalloc((size_t)n + 1, sizeof *pv), *gv = xcalloc((size_t)n + 1, sizeof *gv);
    int64_t *rows = xcalloc((size_t)b->capacity, sizeof *rows);
    kstep_result sum = {0};
    int rc = 0;
    /* in fp32 whatever the training's precision: the figures kiln eval, classify and
     * transformers reproduce, and the best model chosen by them */
    const int prec = kget_precision();
    kset_precision(KPREC_FP32);
    for (int64_t s = 0; s < n && !rc; s += b->capacity) {
        int k = (int)(n - s < b->capacity ? n - s : b->capacity);
        for (int i = 0; i < k; i++) rows[i] = s + i;
        rc = kdataset_fill(d, rows, k, b);
        if (!rc && kg) cli_kg_link(kg, b); /* ERNIE: the text's entities */
        kstep_result r;
        if (!rc) rc = kmodel_evaluate(m, b, &r);
        if (rc) {
            kerr("evaluation: %s", kmodel_error(m));
            break;
        }
        kstep_add(&sum, &r);
        for (int i = 0; i < k; i++) {
            const float *z = kmodel_class_logits(m, i);
            if (regression) {
                pv[s + i] = z[0];
                gv[s + i] = kdataset_target(d, s + i);
            } else {
                int best = 0;
                for (int c = 1; c < num_labels; c++)
                    if (z[c] > z[best]) best = c;
                pred[s + i] = best;
                gold[s + i] = kdataset_label(d, s + i);
            }
        }
    }
    memset(out, 0, sizeof *out);
    out->examples = n;
    out->loss = regression ? kstep_value(&sum, "mse") : kstep_value(&sum, "cls_loss");
    out->accuracy = out->f1 = out->pearson = out->spearman = out->mse = NAN;
    if (regression) {
        out->pearson = kmetric_pearson(pv, gv, (size_t)n);
        out->spearman = kmetric_spearman(pv, gv, (size_t)n);
        out->mse = kmetric_mse(pv, gv, (size_t)n);
    } else {
        out->accuracy = kmetric_accuracy(pred, gold, (size_t)n);
        out->f1 = kmetric_f1(pred, gold, (size_t)n, num_labels);
    }
    free(pred), free(gold), free(pv), free(gv), free(rows);
    kset_precision(prec);
    return rc;
}

static json_t *eval_json(const ft_eval *e, int regression)
{
    json_t *o = json_object();
    if (regression) {
        json_object_set_new(o, "pearson", num_or_null(e->pearson));
        json_object_set_new(o, "spearman", num_or_null(e->spearman));
        json_object_set_new(o, "mse", num_or_null(e->mse));
    } else {
        json_object_set_new(o, "accuracy", num_or_null(e->accuracy));
        json_object_set_new(o, "f1", num_or_null(e->f1));
    }
    json_object_set_new(o, "loss", num_or_null(e->loss));
    json_object_set_new(o, "examples", json_integer(e->examples));
    return o;
}

/* the dev metric that picks the best checkpoint (higher is better) */
static double eval_score(const ft_eval *e, int regression) { return regression ? e->pearson : e->accuracy; }

/* ---- the labelled data source for the run loop ---------------------------------------- */

typedef struct ft_source {
    const kdataset *d;
    ksample_batch *b;
    int B;
    uint64_t seed;
    int64_t pos, n, order_epoch;
    int64_t *order, *rows;
    cli_kg *kg;                   /* ERNIE: links the entities of each batch, or NULL */
} ft_source;

static int src_seek(void *ctx, int64_t pos, char *err, size_t errlen)
{
    (void)err, (void)errlen;
    ft_source *s = ctx;
    s->pos = pos < 0 ? 0 : pos;
    return 0;
}

/* Rows pos .. pos + B - 1 of the endless stream epoch 0, 1, ...: each epoch
 * a permutation (kdataset_order) of the examples; a batch may run across an
 * epoch's end. */
static int src_next(void *ctx, const ksample_batch **b, char *err, size_t errlen)
{
    ft_source *s = ctx;
    for (int i = 0; i < s->B; i++) {
        int64_t p = s->pos + i, e = p / s->n;
        if (e != s->order_epoch) {
            kdataset_order(s->n, s->seed, (uint64_t)e, s->order);
            s->order_epoch = e;
        }
        s->rows[i] = s->order[p % s->n];
    }
    if (kdataset_fill(s->d, s->rows, s->B, s->b)) {
        snprintf(err, errlen, "cannot fill a batch of %d rows", s->B);
        return EX_SOFTWARE;
    }
    if (s->kg) cli_kg_link(s->kg, s->b);
    s->pos += s->B;
    *b = s->b;
    return 0;
}

static void src_tell(void *ctx, int64_t *pos, int64_t *epoch)
{
    ft_source *s = ctx;
    *pos = s->pos;
    *epoch = s->pos / s->n;
}

static double src_batch_tokens(void *ctx)
{
    ft_source *s = ctx;
    double t = 0;
    for (int64_t i = 0; i < s->n; i++) {
        const int32_t *a, *b;
        int na, nb;
        kdataset_tokens(s->d, i, &a, &na, &b, &nb);
        t += na + nb + (nb ? 3 : 2);
    }
    return t / (double)s->n * s->B;
}

static void src_free(void *ctx)
{
    ft_source *s = ctx;
    kdataset_batch_free(s->b);
    free(s->order);
    free(s->rows);
    free(s);
}

/* ---- the best checkpoint ------------------------------------------------------------------ */

/* DIR/best <- the files of the step folder `from` (hard links, copies where
 * links fail), built as DIR/.tmp-best and published with one rename. */
static int publish_best(const char *dir, const char *from, char *err, size_t errlen)
{
    char tmp[4200], best[4200];
    snprintf(tmp, sizeof tmp, "%s/.tmp-best", dir);
    snprintf(best, sizeof best, "%s/best", dir);
    kckpt_remove_tree(tmp);
    if (mkdir(tmp, 0755)) {
        kseterr(err, errlen, "%s: %s", tmp, strerror(errno));
        return EX_CANTCREAT;
    }
    static const char *const files[] = {"model.safetensors", "optimizer.safetensors", "state.json", "vocab.txt",
                                        NULL};
    for (int i = 0; files[i]; i++) {
        char a[4400], b[4400];
        snprintf(a, sizeof a, "%s/%s", from, files[i]);
        snprintf(b, sizeof b, "%s/%s", tmp, files[i]);
        if (access(a, F_OK)) continue;
        if (link(a, b) == 0) continue;
        kbuf buf = {0};
        int ok = kbuf_read_file(&buf, a) == 0;
        FILE *f = ok ? fopen(b, "wb") : NULL;
        ok = f && fwrite(buf.data, 1, buf.len, f) == buf.len && fflush(f) == 0 && fsync(fileno(f)) == 0;
        if (f) fclose(f);
        kbuf_free(&buf);
        if (!ok) {
            kseterr(err, errlen, "%s: cannot copy to %s", a, b);
            return EX_IOERR;
        }
    }
    return kckpt_publish_dir(tmp, best, 1, err, errlen);
}

/* ---- kiln finetune ---------------------------------------------------------------------- */

typedef struct ft_run {
    const kft_config *fc;
    kmodel *m;
    const kdataset *dev;
    ksample_batch *devb;
    int regression, num_labels, eval_every, json;
    ft_eval last;                 /* the last dev evaluation */
    int64_t last_step;            /* its step (0: none) */
    double best_score;
    int64_t best_step;
    ft_eval best;
    char best_path[4200];
    int evaluated_now;
    int rc;
    cli_progress pr;
    double t0;
    cli_kg *kg;                   /* ERNIE: the entities of the dev set, or NULL */
} ft_run;

static void hook_step(void *ctx, const krun_status *s)
{
    ft_run *r = ctx;
    r->evaluated_now = 0;
    if (!r->dev || r->rc) return;
    /* dev evaluations at eval_every steps and at the budget's end; not at a
     * step where a signal stopped the run, so that the best checkpoint of an
     * interrupted and resumed run is the uninterrupted run's */
    if (!(s->last && !s->stopped) && (r->eval_every <= 0 || s->step % r->eval_every)) return;
    ft_eval e;
    if (evaluate(r->m, r->dev, r->devb, r->regression, r->num_labels, r->kg, &e)) {
        r->rc = EX_SOFTWARE;
        return;
    }
    r->last = e;
    r->last_step = s->step;
    r->evaluated_now = 1;
    if (!r->json) {
        cli_progress_done(&r->pr); /* the log line replaces the progress line; the next progress redraws it */
        if (r->regression)
            kinfo("step %lld: dev pearson %.4f, spearman %.4f, mse %.4f", (long long)s->step, e.pearson, e.spearman,
                  e.mse);
        else
            kinfo("step %lld: dev accuracy %.2f%%, F1 %.4f, loss %.4f", (long long)s->step, 100 * e.accuracy, e.f1,
                  e.loss);
    }
}

static void hook_checkpoint(void *ctx, const krun_status *s)
{
    ft_run *r = ctx;
    if (!r->evaluated_now || !s->checkpoint || !s->checkpoint[0]) return;
    double sc = eval_score(&r->last, r->regression);
    if (r->best_step && !(sc > r->best_score)) return;
    char err[1024];
    if (publish_best(r->fc->ckpt_dir, s->checkpoint, err, sizeof err)) {
        kwarn("best checkpoint: %s", err);
        return;
    }
    r->best_score = sc;
    r->best_step = s->step;
    r->best = r->last;
    snprintf(r->best_path, sizeof r->best_path, "%s/best", r->fc->ckpt_dir);
    /* DIR/best.json: the step and figures of DIR/best (read on --resume) */
    char p[4200], t[4220];
    snprintf(p, sizeof p, "%s/best.json", r->fc->ckpt_dir);
    snprintf(t, sizeof t, "%s.tmp", p);
    json_t *o = json_pack("{s:I, s:o, s:o}", "step", (json_int_t)s->step, "score", json_real(sc), "dev",
                          eval_json(&r->last, r->regression));
    if (json_dump_file(o, t, JSON_COMPACT) || rename(t, p)) kwarn("%s: %s", p, strerror(errno));
    json_decref(o);
}

static void hook_progress(void *ctx, const krun_status *s)
{
    ft_run *r = ctx;
    char line[512], eta[32] = "";
    if (isfinite(s->eta_s)) snprintf(eta, sizeof eta, " | ETA %.0fs", s->eta_s);
    double acc = kstep_value(s->train, r->regression ? "mse" : "cls_acc");
    char dev[64] = "";
    if (r->last_step)
        snprintf(dev, sizeof dev, " | dev %s %.4f", r->regression ? "pearson" : "acc",
                 eval_score(&r->last, r->regression));
    snprintf(line, sizeof line, "step %lld/%lld | loss %.4f | %s %.3f%s | lr %.2e | %.0f tok/s%s",
             (long long)s->step, (long long)s->total_steps, s->train->loss, r->regression ? "mse" : "acc", acc, dev,
             s->lr, s->tokens_per_s, eta);
    cli_progress_line(&r->pr, line);
}

/* The ktrain_config a fine-tuned checkpoint carries (read back by export,
 * eval and classify through ktrain_config_parse). */
static char *run_config_json(const kmodel_config *mc, const kft_config *fc, const kopt_config *opt, int64_t steps,
                             int64_t embedding)
{
    ktrain_config c;
    ktrain_config_defaults(&c);
    c.model = *mc;
    c.knowledge_embedding = embedding; /* ERNIE: the pinned embedding (the knowledge section) */
    c.data.seq_len = fc->seq_len;
    c.data.batch_size = fc->batch_size;
    c.data.seed = fc->seed;
    c.data.objectives = mc->type == KMODEL_ELECTRA ? KOBJ_RTD : KOBJ_MLM; /* what the reader wants of the type */
    if (mc->fusion_layers > 0) c.data.objectives |= KOBJ_ENTITIES;
    c.optimizer = *opt;
    c.budget.steps = steps > 0 ? steps : 1;
    c.budget.tokens = 0;
    c.budget.seconds = 0;
    snprintf(c.checkpoint.dir, sizeof c.checkpoint.dir, "%s", fc->ckpt_dir);
    c.checkpoint.keep = fc->ckpt_keep;
    return ktrain_config_to_json(&c);
}

static const char *model_type_name(int type)
{
    return type == KMODEL_BERT         ? "bert"
           : type == KMODEL_ELECTRA    ? "electra"
           : type == KMODEL_DISTILBERT ? "distilbert"
                                       : "albert";
}

/* ---- task-specific distillation: a fine-tuned teacher ---------------------------------- */

typedef struct ft_teacher {
    cli_msrc src;
    kmodel *m;
    const kft_config *fc;
    char hash[40];
    int64_t params;
} ft_teacher;

/* Opens fc->teacher, a classifier over the same labels and vocabulary as the
 * student's init, as an inference model for batches of (B, L). Logs;
 * returns 0 or EX_*. */
static int ft_teacher_open(const kft_config *fc, const cli_msrc *in, const kdataset *train, int K, ft_teacher *t)
{
    memset(t, 0, sizeof *t);
    t->fc = fc;
    int rc = cli_msrc_open(fc->teacher, &t->src);
    if (rc) {
        kerr("distill.teacher: cannot open %s", fc->teacher);
        return rc;
    }
    if (t->src.num_labels != K || t->src.regression) {
        kerr("distill.teacher: %s is not a classifier of the task's %d labels (%d outputs%s): fine-tune the teacher "
             "on the task first",
             t->src.path, K, t->src.num_labels, t->src.regression ? ", regression" : "");
        return EX_CONFIG;
    }
    for (int i = 0; t->src.labels && i < K; i++)
        if (strcmp(t->src.labels[i], kdataset_label_name(train, i))) {
            kerr("distill.teacher: %s's label %d is \"%s\", the task's \"%s\" (the same labels in the same order "
                 "are needed)",
                 t->src.path, i, t->src.labels[i], kdataset_label_name(train, i));
            return EX_CONFIG;
        }
    if (t->src.vocab_len != in->vocab_len || memcmp(t->src.vocab, in->vocab, in->vocab_len) ||
        t->src.mode != in->mode) {
        kerr("distill.teacher: %s tokenizes with another vocabulary or casing than %s: the teacher must read the "
             "student's ids",
             t->src.path, in->path);
        return EX_CONFIG;
    }
    if (fc->seq_len > t->src.mc.max_position_embeddings) {
        kerr("distill.teacher: %s takes at most %d tokens, data.seq_len is %d", t->src.path,
             t->src.mc.max_position_embeddings, fc->seq_len);
        return EX_CONFIG;
    }
    kmodel_spec sp = {.heads = KHEAD_CLASSIFY, .max_B = fc->batch_size, .L = fc->seq_len, .num_labels = K,
                      .classifier_dropout = 0, .inference = 1};
    char err[2048];
    t->m = kmodel_create(&t->src.mc, &sp, err, sizeof err);
    if (!t->m) {
        kerr("distill.teacher: %s", err);
        return strstr(err, "out of memory") ? EX_OSERR : EX_CONFIG;
    }
    if (cli_msrc_load_all(&t->src, t->m, t->hash, err, sizeof err)) {
        kerr("distill.teacher: %s (a fine-tuned classifier is needed)", err);
        return EX_CONFIG;
    }
    t->params = (int64_t)kmodel_param_count(t->m);
    kinfo("teacher %s: %d layers, hidden %d, %.1fM parameters; inference only, %.0f MB; content hash %s",
          t->src.path, t->src.mc.num_hidden_layers, t->src.mc.hidden_size, (double)t->params / 1e6,
          (double)(kmodel_numel(t->m) * sizeof(float) + kmodel_activation_bytes(t->m)) / 1048576.0, t->hash);
    return 0;
}

static void ft_teacher_close(ft_teacher *t)
{
    kmodel_free(t->m);
    cli_msrc_free(&t->src);
}

/* the run loop's step: the teacher's class logits of the batch, then the
 * student's step with them as soft targets (kmodel_set_soft_targets) */
static int ft_distill_step(void *ctx, kmodel *m, const ksample_batch *b, uint64_t key, float loss_scale, int64_t step,
                           int64_t total, kstep_result *r, char *err, size_t errlen)
{
    (void)step, (void)total;
    ft_teacher *t = ctx;
    kstep_result tr;
    int rc = kmodel_evaluate(t->m, b, &tr);
    if (rc) {
        kseterr(err, errlen, "teacher: %s", kmodel_error(t->m));
        return rc;
    }
    if ((rc = kmodel_forward(m, b, KMODE_TRAIN, key)) ||
        (rc = kmodel_set_soft_targets(m, kmodel_class_logits(t->m, 0), (float)t->fc->kd_temperature,
                                      t->fc->kd_alpha_ce, t->fc->kd_alpha_gold, 1)) ||
        (rc = kmodel_loss(m, loss_scale, r)) || (rc = kmodel_backward(m))) {
        kseterr(err, errlen, "%s", kmodel_error(m));
        return rc;
    }
    return 0;
}

static char *extra_json(const kmodel_config *mc, const kdataset *train, int regression, int mode,
                        const kft_config *fc, const ft_teacher *t)
{
    json_t *o = json_object();
    const kexport_head ch = {KEXPORT_HEAD_CLASSIFICATION, 2, NULL, NULL};
    json_object_set_new(o, "kind", json_string("finetune"));
    json_object_set_new(o, "precision", json_string(kget_precision() == KPREC_BF16 ? "bf16" : "fp32"));
    json_object_set_new(o, "architecture", json_string(kexport_architecture(mc->type, &ch)));
    json_object_set_new(o, "model_type", json_string(model_type_name(mc->type)));
    json_object_set_new(o, "heads", json_pack("[s]", "classify"));
    /* ELECTRA: classifier.dense; DistilBERT: pre_classifier (ReLU) */
    json_object_set_new(o, "pooler", json_boolean(mc->type != KMODEL_ELECTRA && mc->type != KMODEL_DISTILBERT));
    int K = kdataset_num_labels(train);
    json_object_set_new(o, "num_labels", json_integer(K));
    json_t *names = json_array();
    for (int i = 0; i < K && !regression; i++) json_array_append_new(names, jstr(kdataset_label_name(train, i)));
    json_object_set_new(o, "id2label", names);
    json_object_set_new(o, "problem_type", json_string(regression ? "regression" : "single_label_classification"));
    cli_tokenizer_json(o, mode);
    char *fj = kft_config_to_json(fc);
    json_t *f = fj ? json_loads(fj, 0, NULL) : NULL;
    free(fj);
    json_object_set_new(o, "finetune", f ? f : json_null());
    if (t && t->m)
        json_object_set_new(o, "teacher", json_pack("{s:s, s:s, s:I}", "path", fc->teacher, "hash", t->hash,
                                                    "params", (json_int_t)t->params));
    char *s = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    return s;
}

int cmd_finetune(int argc, char **argv, const char *db)
{
    static const char usage[] =
        "usage: kiln finetune --config F [--set section.key=value]... [--resume]\n"
        "                     [--pause-at STEP] [--json]\n\n"
        "Fine-tunes a pretrained model (\"init\": a kiln checkpoint or a Hugging Face\n"
        "folder) on a labelled dataset (GLUE TSV with a header, or JSONL with the same\n"
        "field names): classification (N labels) or regression. The pretraining heads\n"
        "are dropped, a classifier on the pooled [CLS] is added. The dev file is\n"
        "evaluated every data.eval_every steps (0: once per epoch) and at the end; the\n"
        "best checkpoint by dev accuracy (Pearson for regression) is kept as\n"
        "checkpoint.dir/best. Config keys: docs/finetune.md.\n"
        "--json prints {\"steps\", \"seconds\", \"dev\": {\"accuracy\", \"f1\", \"loss\", ...},\n"
        "\"best_checkpoint\", \"best\": {...}, \"checkpoint\"} at the end.\n"
        "--pause-at STEP stops as a signal would once STEP is done (a checkpoint;\n"
        "--resume continues). A stopped run does not evaluate its last step, so\n"
        "an interrupted and resumed run keeps the same best checkpoint.\n";
    enum { O_CONFIG = 1, O_SET, O_RESUME, O_PAUSE };
    static const struct option lo[] = {CLI_COMMON_LONGOPTS, {"config", required_argument, 0, O_CONFIG},
                                       {"set", required_argument, 0, O_SET},
                                       {"resume", no_argument, 0, O_RESUME},
                                       {"pause-at", required_argument, 0, O_PAUSE}, {0, 0, 0, 0}};
    cli_common c;
    cli_common_init(&c, db);
    const char *cfg_path = NULL;
    long long pause_at = 0;
    const char **sets = xcalloc((size_t)argc + 1, sizeof *sets);
    int n_sets = 0, resume = 0, opt;
    optind = 1;
    while ((opt = getopt_long(argc, argv, CLI_COMMON_SHORT, lo, NULL)) != -1) {
        if (cli_common_opt(&c, opt, optarg)) continue;
        if (opt == O_CONFIG) cfg_path = optarg;
        else if (opt == O_SET) sets[n_sets++] = optarg;
        else if (opt == O_RESUME) resume = 1;
        else if (opt == O_PAUSE) {
            char *end;
            pause_at = strtoll(optarg, &end, 10);
            if (*end || pause_at < 1) {
                free(sets);
                return cli_usage_error("finetune", "--pause-at: a step >= 1");
            }
        } else {
            free(sets);
            return cli_usage_error("finetune", "bad option");
        }
    }
    if (c.help) {
        fputs(usage, stdout);
        free(sets);
        return 0;
    }
    if (!cfg_path) {
        free(sets);
        return cli_usage_error("finetune", "--config is required");
    }
    char err[4096];
    kbuf text = {0};
    if (kbuf_read_file(&text, cfg_path)) {
        kerr("%s: %s", cfg_path, strerror(errno));
        free(sets);
        return EX_NOINPUT;
    }
    kft_config fc;
    int rc = kft_config_parse(&fc, text.data, text.len, sets, n_sets, err, sizeof err);
    kbuf_free(&text);
    free(sets);
    if (rc) {
        kerr("%s: %s", cfg_path, err);
        return rc;
    }
    rc = krun_check_blas(err, sizeof err);
    if (rc) {
        kerr("%s", err);
        return rc;
    }
    cli_set_threads(fc.threads);
    /* precision of the training products (docs/train.md, "Precision"); evaluation is fp32 */
    char prec[8], msg[1024];
    if ((rc = cli_precision(fc.precision, prec, msg, sizeof msg))) {
        kerr("precision bf16 cannot run here: %s; use \"precision\": \"fp32\" or \"auto\"", msg);
        return rc;
    }
    kinfo("%s; evaluation in fp32", msg);

    /* a fresh run may not write over checkpoints; a resumed one needs them */
    char latest[4096] = "";
    int64_t latest_step = 0;
    int have = kckpt_latest(fc.ckpt_dir, latest, sizeof latest, &latest_step) == 0;
    if (have && !resume) {
        kerr("%s already holds checkpoints (step %lld): use --resume to continue, or another checkpoint.dir",
             fc.ckpt_dir, (long long)latest_step);
        return EX_CANTCREAT;
    }
    if (resume && !have) kwarn("--resume: no checkpoint in %s yet; starting from the beginning", fc.ckpt_dir);

    cli_msrc in;
    rc = cli_msrc_open(fc.init, &in);
    if (rc) {
        cli_msrc_free(&in);
        return rc;
    }
    kwp_vocab *v = NULL;
    if (kwp_vocab_load(in.vocab, in.vocab_len, in.mode, &v, err, sizeof err)) {
        kerr("%s: vocabulary: %s", in.path, err);
        cli_msrc_free(&in);
        return EX_DATAERR;
    }
    const int regression = fc.task == KFT_REGRESSION;
    if (in.num_labels && regression != in.regression)
        kinfo("%s is a %s model; its classifier is replaced", in.path, in.regression ? "regression" : "classification");

    /* data */
    kdataset_opts dop;
    kdataset_opts_defaults(&dop);
    dop.format = fc.format;
    dop.text_column = fc.text_column;
    dop.text_pair_column = fc.text_pair_column[0] ? fc.text_pair_column : NULL;
    dop.label_column = fc.label_column;
    dop.num_labels = regression ? 1 : fc.num_labels;
    dop.seq_len = fc.seq_len;
    kdataset *train = NULL, *dev = NULL;
    rc = kdataset_load(&dop, fc.train, v, &train, err, sizeof err);
    if (rc) kerr("%s", err);
    if (!rc && fc.dev[0]) {
        dop.label_names = regression ? NULL : kdataset_label_names(train);
        dop.n_label_names = regression ? 0 : kdataset_num_labels(train);
        dop.num_labels = kdataset_num_labels(train);
        rc = kdataset_load(&dop, fc.dev, v, &dev, err, sizeof err);
        if (rc) kerr("%s", err);
    }
    const int K = train ? kdataset_num_labels(train) : 0;
    if (!rc && fc.seq_len > in.mc.max_position_embeddings) {
        kerr("data.seq_len %d exceeds the model's max_position_embeddings %d", fc.seq_len,
             in.mc.max_position_embeddings);
        rc = EX_CONFIG;
    }
    /* the model: the init's encoder, a new classifier (or the init's, when it has the same labels) */
    kmodel_config mc = in.mc;
    if (fc.hidden_dropout >= 0) mc.hidden_dropout_prob = fc.hidden_dropout;
    if (fc.attention_dropout >= 0) mc.attention_probs_dropout_prob = fc.attention_dropout;
    /* DistilBERT's classifier dropout is a config field (seq_classif_dropout): set, it is exported */
    if (fc.classifier_dropout >= 0 && mc.type == KMODEL_DISTILBERT) mc.seq_classif_dropout = fc.classifier_dropout;
    kmodel_spec spec = {.heads = KHEAD_CLASSIFY, .max_B = fc.batch_size, .L = fc.seq_len, .num_labels = K,
                        .classifier_dropout = fc.classifier_dropout};
    kmodel *m = NULL;
    if (!rc) {
        m = kmodel_create(&mc, &spec, err, sizeof err);
        if (!m) {
            kerr("model: %s", err);
            rc = strstr(err, "out of memory") ? EX_OSERR : EX_CONFIG; /* the trainer says which */
        }
    }
    int same_labels = in.num_labels == K && in.regression == regression;
    for (int i = 0; same_labels && in.labels && i < K && !regression; i++)
        same_labels = !strcmp(in.labels[i], kdataset_label_name(train, i));
    if (!rc) {
        kmodel_init(m, fc.seed);
        const int nt = omp_get_max_threads();
        if (!c.json)
            kinfo("init %s (%s): %s, %d layers, hidden %d; %s with %d %s; %lld training examples%s%s; %d thread%s",
                  in.path, in.is_hf ? "Hugging Face folder" : "kiln checkpoint",
                  mc.type == KMODEL_BERT         ? "BERT"
                  : mc.type == KMODEL_ELECTRA    ? "ELECTRA discriminator"
                  : mc.type == KMODEL_DISTILBERT ? "DistilBERT"
                                                 : "ALBERT",
                  mc.num_hidden_layers, mc.hidden_size,
                  same_labels ? "its classifier kept" : "a new classifier", regression ? 1 : K,
                  regression ? "output (regression)" : "labels", (long long)kdataset_count(train),
                  dev ? ", dev " : "", dev ? fc.dev : "", nt, nt == 1 ? "" : "s");
        rc = cli_msrc_copy(&in, m, same_labels, !c.json);
    }
    ft_teacher teach;
    memset(&teach, 0, sizeof teach);
    if (!rc && fc.teacher[0]) rc = ft_teacher_open(&fc, &in, train, K, &teach);
    /* ERNIE: the entities of the fine-tuning text, linked with the store's KG into the model's table */
    cli_kg kg;
    memset(&kg, 0, sizeof kg);
    const int64_t emb = in.ck ? cli_kg_embedding_of(kckpt_state_of(in.ck)->config_json) : 0;
    if (!rc && mc.fusion_layers > 0) rc = cli_kg_open(&c, emb, mc.entity_vocab_size, cli_kg_table_of(in.t, in.n), in.vocab, in.vocab_len, &kg);
    if (!rc && kdataset_truncated(train))
        kinfo("%lld training examples truncated to %d tokens", (long long)kdataset_truncated(train), fc.seq_len);

    /* the optimizer and the budget in steps */
    ktrain_config tc;
    int64_t n = train ? kdataset_count(train) : 0, total = 0;
    if (!rc) {
        json_t *o = json_loads(fc.optimizer_json, 0, NULL);
        int accum = (int)json_integer_value(json_object_get(o, "accumulation"));
        if (accum < 1) accum = 1;
        int64_t per_epoch = (n + (int64_t)fc.batch_size * accum - 1) / ((int64_t)fc.batch_size * accum);
        if (fc.epochs > 0) total = (int64_t)ceil(fc.epochs * (double)per_epoch);
        if (fc.steps > 0 && (total == 0 || fc.steps < total)) total = fc.steps;
        json_int_t warm = json_integer_value(json_object_get(o, "warmup_steps"));
        if (json_is_integer(json_object_get(o, "warmup_steps")) && warm == -1)
            json_object_set_new(o, "warmup_steps", json_integer(total > 0 ? total / 10 : 0));
        json_t *w = json_pack("{s:o, s:{s:I}}", "optimizer", o, "budget", "steps", (json_int_t)(total > 0 ? total : 1));
        char *wt = json_dumps(w, JSON_COMPACT);
        json_decref(w);
        if (ktrain_config_parse(&tc, wt, strlen(wt), NULL, 0, err, sizeof err)) {
            kerr("%s: %s", cfg_path, err);
            rc = EX_CONFIG;
        }
        free(wt);
        if (!rc && fc.eval_every == 0) fc.eval_every = (int)(per_epoch > 0 ? per_epoch : 1);
    }
    ft_run fr = {.fc = &fc, .m = m, .dev = dev, .regression = regression, .num_labels = K,
                 .eval_every = fc.eval_every, .json = c.json, .kg = kg.linker ? &kg : NULL};
    krun *run = NULL;
    if (!rc) {
        ft_source *s = xcalloc(1, sizeof *s);
        s->d = train;
        s->B = fc.batch_size;
        s->seed = fc.seed;
        s->n = n;
        s->order_epoch = -1;
        s->order = xcalloc((size_t)n, sizeof *s->order);
        s->rows = xcalloc((size_t)fc.batch_size, sizeof *s->rows);
        s->b = kdataset_batch_new(v, fc.batch_size, fc.seq_len);
        s->kg = kg.linker ? &kg : NULL;
        krun_source src = {.ctx = s, .seek = src_seek, .next = src_next, .tell = src_tell,
                           .batch_tokens = src_batch_tokens, .free = src_free};
        krun_opts ro;
        krun_opts_defaults(&ro);
        ro.optimizer = tc.optimizer;
        ro.max_nonfinite = tc.optimizer.max_nonfinite_steps;
        ro.seed = fc.seed;
        ro.budget.steps = total;
        ro.budget.seconds = fc.seconds;
        ro.stop = &cli_stop;
        ro.pause_at = pause_at;
        ro.ckpt_dir = fc.ckpt_dir;
        ro.ckpt_every = fc.eval_every;
        ro.ckpt_keep = fc.ckpt_keep;
        if (teach.m) {
            ro.step = ft_distill_step;
            ro.step_ctx = &teach;
        }
        run = krun_new(m, &ro, &src, err, sizeof err);
        if (!run) {
            kerr("%s", err);
            rc = strstr(err, "out of memory") ? EX_OSERR : EX_CONFIG;
        }
    }
    if (!rc && dev) fr.devb = kdataset_batch_new(v, fc.batch_size, fc.seq_len);
    if (!rc && resume && have) {
        char e2[1024];
        kckpt *ck = kckpt_open(latest, e2, sizeof e2);
        if (!ck) {
            kerr("%s", e2);
            rc = EX_DATAERR;
        } else {
            rc = krun_restore(run, ck);
            if (rc) kerr("%s: %s", latest, krun_error(run));
            /* a distillation resumes with the teacher it started with */
            const kckpt_state *cs = kckpt_state_of(ck);
            json_t *ex = cs && cs->extra_json ? json_loads(cs->extra_json, 0, NULL) : NULL;
            const char *th = json_string_value(json_object_get(json_object_get(ex, "teacher"), "hash"));
            if (!rc && !th != !teach.m) {
                kerr("cannot resume %s: it was %s distillation, this config is%s", latest, th ? "a" : "not a",
                     teach.m ? "" : " not");
                rc = EX_CONFIG;
            } else if (!rc && th && strcmp(th, teach.hash)) {
                kerr("cannot resume %s: the teacher %s is not the one the run started with (content hash %s, the "
                     "checkpoint's %s)",
                     latest, fc.teacher, teach.hash, th);
                rc = EX_CONFIG;
            }
            json_decref(ex);
            kckpt_close(ck);
        }
        /* the best so far: DIR/best.json */
        char bp[4200];
        snprintf(bp, sizeof bp, "%s/best.json", fc.ckpt_dir);
        json_t *bj = rc ? NULL : json_load_file(bp, 0, NULL);
        if (json_is_number(json_object_get(bj, "score")) && json_is_integer(json_object_get(bj, "step"))) {
            fr.best_score = json_number_value(json_object_get(bj, "score"));
            fr.best_step = json_integer_value(json_object_get(bj, "step"));
            snprintf(fr.best_path, sizeof fr.best_path, "%s/best", fc.ckpt_dir);
            json_t *d = json_object_get(bj, "dev");
            fr.best.accuracy = json_number_value(json_object_get(d, "accuracy"));
            fr.best.f1 = json_number_value(json_object_get(d, "f1"));
            fr.best.loss = json_number_value(json_object_get(d, "loss"));
            fr.best.pearson = json_number_value(json_object_get(d, "pearson"));
            fr.best.spearman = json_number_value(json_object_get(d, "spearman"));
            fr.best.mse = json_number_value(json_object_get(d, "mse"));
            fr.best.examples = json_integer_value(json_object_get(d, "examples"));
        }
        json_decref(bj);
    }
    if (!rc) {
        char *cj = run_config_json(&mc, &fc, &tc.optimizer, total, emb);
        char *ej = extra_json(&mc, train, regression, in.mode, &fc, &teach);
        kbuf vt = {0};
        kwp_vocab_text(v, &vt);
        krun_meta meta = {.config_json = cj, .vocab_name = "", .vocab_txt = in.vocab, .vocab_len = in.vocab_len,
                          .extra_json = ej};
        krun_hooks hk = {.ctx = &fr, .step = hook_step, .checkpoint = hook_checkpoint, .progress = hook_progress};
        cli_progress_init(&fr.pr, c.json);
        cli_catch_stop_signals();
        rc = krun_exec(run, &meta, &hk);
        cli_progress_done(&fr.pr);
        if (rc) kerr("%s", krun_error(run));
        if (!rc && fr.rc) rc = fr.rc;
        kbuf_free(&vt);
        free(cj);
        free(ej);
    }
    if (!rc) {
        const krun_result *res = krun_get_result(run);
        if (c.json) {
            json_t *o = json_object();
            json_object_set_new(o, "steps", json_integer(res->steps));
            json_object_set_new(o, "seconds", num_or_null(res->seconds));
            json_object_set_new(o, "examples", json_integer(n));
            json_object_set_new(o, "train_loss", num_or_null(res->train.loss));
            json_object_set_new(o, "dev", fr.last_step ? eval_json(&fr.last, regression) : json_null());
            json_object_set_new(o, "best_checkpoint", fr.best_step ? jstr(fr.best_path) : json_null());
            json_object_set_new(o, "best", fr.best_step ? eval_json(&fr.best, regression) : json_null());
            if (fr.best_step) json_object_set_new(json_object_get(o, "best"), "step", json_integer(fr.best_step));
            json_object_set_new(o, "checkpoint", jstr(res->checkpoint));
            json_object_set_new(o, "stopped", json_boolean(res->stopped));
            json_object_set_new(o, "precision", json_string(prec));
            if (kg.linker) /* ERNIE: what the linker found in the text it read */
                json_object_set_new(o, "knowledge",
                                    json_pack("{s:I, s:I, s:I, s:I}", "embedding", (json_int_t)emb, "tokens",
                                              (json_int_t)kg.tokens, "mentions", (json_int_t)kg.mentions,
                                              "mentions_with_vector", (json_int_t)kg.with_vector));
            json_print(o);
        } else {
            kinfo("%s after %lld steps, %.1f s; checkpoint %s%s%s", res->stopped ? "stopped" : "done",
                  (long long)res->steps, res->seconds, res->checkpoint, fr.best_step ? "; best: " : "",
                  fr.best_step ? fr.best_path : "");
        }
    }
    if (!rc && kg.linker && !c.json)
        kinfo("knowledge: %llu entity mentions linked in %llu tokens read (%llu with a vector in embedding %lld)",
              (unsigned long long)kg.mentions, (unsigned long long)kg.tokens, (unsigned long long)kg.with_vector,
              (long long)emb);
    krun_free(run);
    cli_kg_close(&kg);
    ft_teacher_close(&teach);
    kmodel_free(m);
    kdataset_batch_free(fr.devb);
    kdataset_free(train);
    kdataset_free(dev);
    kwp_vocab_free(v);
    cli_msrc_free(&in);
    return rc;
}

/* ---- kiln eval / kiln classify: a classifier in inference mode ---------------------------- */

typedef struct clf {
    cli_msrc in;
    kwp_vocab *v;
    kmodel *m;
    int seq_len, K, regression, B;
    char text_col[128], pair_col[128], label_col[128];
    cli_kg kg;                    /* ERNIE: the entities of the text (kg.linker NULL: none) */
} clf;

static void clf_free(clf *x)
{
    cli_kg_close(&x->kg);
    kmodel_free(x->m);
    kwp_vocab_free(x->v);
    cli_msrc_free(&x->in);
}

/* Opens a classifier (a fine-tuned kiln checkpoint or an HF
 * *ForSequenceClassification folder) for inference on batches of B rows. */
static int clf_open(const char *path, int B, int seq_len, clf *x)
{
    memset(x, 0, sizeof *x);
    int rc = cli_msrc_open(path, &x->in);
    if (rc) return rc;
    if (!x->in.num_labels) {
        kerr("%s: not a classifier (no classifier.* tensors): fine-tune it first (kiln finetune)", x->in.path);
        return EX_DATAERR;
    }
    char err[1024];
    if (kwp_vocab_load(x->in.vocab, x->in.vocab_len, x->in.mode, &x->v, err, sizeof err)) {
        kerr("%s: vocabulary: %s", x->in.path, err);
        return EX_DATAERR;
    }
    x->K = x->in.num_labels;
    x->regression = x->in.regression;
    snprintf(x->text_col, sizeof x->text_col, "sentence");
    snprintf(x->label_col, sizeof x->label_col, "label");
    x->seq_len = x->in.mc.max_position_embeddings < 128 ? x->in.mc.max_position_embeddings : 128;
    json_t *task = json_object_get(x->in.ft, "task"), *data = json_object_get(x->in.ft, "data");
    if (json_is_string(json_object_get(task, "text_column")))
        snprintf(x->text_col, sizeof x->text_col, "%s", json_string_value(json_object_get(task, "text_column")));
    if (json_is_string(json_object_get(task, "text_pair_column")))
        snprintf(x->pair_col, sizeof x->pair_col, "%s", json_string_value(json_object_get(task, "text_pair_column")));
    if (json_is_string(json_object_get(task, "label_column")))
        snprintf(x->label_col, sizeof x->label_col, "%s", json_string_value(json_object_get(task, "label_column")));
    if (json_is_integer(json_object_get(data, "seq_len"))) x->seq_len = (int)json_integer_value(json_object_get(data, "seq_len"));
    if (seq_len > 0) x->seq_len = seq_len;
    if (x->seq_len > x->in.mc.max_position_embeddings) {
        kerr("--seq-len %d exceeds the model's max_position_embeddings %d", x->seq_len,
             x->in.mc.max_position_embeddings);
        return EX_USAGE;
    }
    x->B = B;
    kmodel_spec spec = {.heads = KHEAD_CLASSIFY, .max_B = B, .L = x->seq_len, .num_labels = x->K,
                        .classifier_dropout = 0, .inference = 1};
    x->m = kmodel_create(&x->in.mc, &spec, err, sizeof err);
    if (!x->m) {
        kerr("model: %s", err);
        return strstr(err, "out of memory") ? EX_OSERR : EX_DATAERR;
    }
    int n;
    const ktensor *tl = kmodel_params(x->m, &n);
    for (int i = 0; i < n; i++)
        if (!cli_msrc_find(&x->in, tl[i].name)) {
            kerr("%s: tensor %s missing", x->in.path, tl[i].name);
            return EX_DATAERR;
        }
    return cli_msrc_copy(&x->in, x->m, 1, 0);
}

static const char *clf_label(const clf *x, int i, char *buf, size_t n)
{
    if (x->in.labels) return x->in.labels[i];
    snprintf(buf, n, "LABEL_%d", i);
    return buf;
}

int cmd_eval(int argc, char **argv, const char *db)
{
    /* a causal model's measures have their own options (cmd_lm.c), the cloze probe too (cmd_cloze.c) */
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--perplexity") || !strncmp(argv[i], "--perplexity=", 13) || !strcmp(argv[i], "--fewshot") ||
            !strncmp(argv[i], "--fewshot=", 10))
            return cmd_eval_lm(argc, argv, db);
        else if (!strcmp(argv[i], "--cloze"))
            return cmd_eval_cloze(argc, argv, db);
    static const char usage[] =
        "usage: kiln eval --checkpoint C --data FILE [--text-column C] [--text-pair-column C]\n"
        "                 [--label-column C] [--seq-len L] [--batch-size B] [--threads N] [--json]\n\n"
        "Measures a fine-tuned classifier (a kiln checkpoint or a Hugging Face\n"
        "*ForSequenceClassification folder) on a labelled file (GLUE TSV or JSONL):\n"
        "accuracy and F1 (binary for 2 labels, macro otherwise) and the mean loss; for\n"
        "regression Pearson, Spearman and MSE. Columns and sequence length default to\n"
        "the fine-tuning's. --json: {\"accuracy\", \"f1\", \"loss\", \"examples\"}.\n"
        "\nA GPT-2 checkpoint is measured with --perplexity or --fewshot instead:\n\n";
    enum { O_CKPT = 1, O_DATA, O_TEXT, O_PAIR, O_LABEL, O_SEQ, O_BATCH, O_THREADS };
    static const struct option lo[] = {CLI_COMMON_LONGOPTS,
                                       {"checkpoint", required_argument, 0, O_CKPT},
                                       {"data", required_argument, 0, O_DATA},
                                       {"text-column", required_argument, 0, O_TEXT},
                                       {"text-pair-column", required_argument, 0, O_PAIR},
                                       {"label-column", required_argument, 0, O_LABEL},
                                       {"seq-len", required_argument, 0, O_SEQ},
                                       {"batch-size", required_argument, 0, O_BATCH},
                                       {"threads", required_argument, 0, O_THREADS},
                                       {0, 0, 0, 0}};
    cli_common c;
    cli_common_init(&c, db);
    const char *ckpt = NULL, *data = NULL, *tcol = NULL, *pcol = NULL, *lcol = NULL;
    int seq = 0, B = 32, threads = 0, opt;
    optind = 1;
    while ((opt = getopt_long(argc, argv, CLI_COMMON_SHORT, lo, NULL)) != -1) {
        if (cli_common_opt(&c, opt, optarg)) continue;
        char *end = NULL;
        if (opt == O_CKPT) ckpt = optarg;
        else if (opt == O_DATA) data = optarg;
        else if (opt == O_TEXT) tcol = optarg;
        else if (opt == O_PAIR) pcol = optarg;
        else if (opt == O_LABEL) lcol = optarg;
        else if (opt == O_SEQ || opt == O_BATCH || opt == O_THREADS) {
            long x = strtol(optarg, &end, 10);
            if (*end || x < 1 || x > 65536) return cli_usage_error("eval", "a number from 1 to 65536");
            if (opt == O_SEQ) seq = (int)x;
            else if (opt == O_BATCH) B = (int)x;
            else threads = (int)x;
        } else return cli_usage_error("eval", "bad option");
    }
    if (c.help) {
        fputs(usage, stdout);
        char *lm_help[] = {argv[0], "--help", NULL};
        int hrc = cmd_eval_lm(2, lm_help, db);
        fputs("\nA BERT or ALBERT pretraining checkpoint (ERNIE's included) is probed with --cloze:\n\n", stdout);
        char *cloze_help[] = {argv[0], "--help", NULL};
        return hrc ? hrc : cmd_eval_cloze(2, cloze_help, db);
    }
    if (!ckpt || !data) return cli_usage_error("eval", "--checkpoint and --data are required");
    cli_set_threads(threads);
    clf x;
    int rc = clf_open(ckpt, B, seq, &x);
    if (!rc && x.in.mc.fusion_layers > 0) /* ERNIE: the text's entities, with the store's KG */
        rc = cli_kg_open(&c, x.in.ck ? cli_kg_embedding_of(kckpt_state_of(x.in.ck)->config_json) : 0,
                         x.in.mc.entity_vocab_size, cli_kg_table_of(x.in.t, x.in.n), x.in.vocab, x.in.vocab_len, &x.kg);
    kdataset *d = NULL;
    if (!rc) {
        kdataset_opts o;
        kdataset_opts_defaults(&o);
        o.text_column = tcol ? tcol : x.text_col;
        o.text_pair_column = pcol ? pcol : (x.pair_col[0] ? x.pair_col : NULL);
        o.label_column = lcol ? lcol : x.label_col;
        o.num_labels = x.regression ? 1 : x.K;
        o.label_names = x.regression ? NULL : (const char *const *)x.in.labels;
        o.n_label_names = x.in.labels ? x.K : 0;
        o.seq_len = x.seq_len;
        char err[2048];
        rc = kdataset_load(&o, data, x.v, &d, err, sizeof err);
        if (rc) kerr("%s", err);
    }
    ksample_batch *b = rc ? NULL : kdataset_batch_new(x.v, B, x.seq_len);
    ft_eval e;
    if (!rc) rc = evaluate(x.m, d, b, x.regression, x.K, x.kg.linker ? &x.kg : NULL, &e);
    if (!rc) {
        if (c.json) json_print(eval_json(&e, x.regression));
        else if (x.regression)
            printf("%lld examples: pearson %.4f, spearman %.4f, mse %.4f\n", (long long)e.examples, e.pearson,
                   e.spearman, e.mse);
        else
            printf("%lld examples: accuracy %.2f%%, F1 %.4f, loss %.4f\n", (long long)e.examples, 100 * e.accuracy,
                   e.f1, e.loss);
    }
    kdataset_batch_free(b);
    kdataset_free(d);
    clf_free(&x);
    return rc;
}

/* one text (a TAB splits a pair, for models fine-tuned on pairs) through the classifier */
static int classify_one(clf *x, kwp_tok *tok, ksample_batch *b, const char *text, int json)
{
    size_t len = strlen(text);
    const char *tab = x->pair_col[0] ? memchr(text, '\t', len) : NULL;
    {
        const unsigned char *p = (const unsigned char *)text, *e = p + len;
        while (p < e) {
            uint32_t cp;
            int badb = 0;
            p += kutf8_decode(p, e, &cp, &badb);
            if (badb) {
                kerr("text is not valid UTF-8: %.40s", text);
                return EX_DATAERR;
            }
        }
    }
    b->B = 0;
    int rc = kdataset_encode_row(tok, text, tab ? (size_t)(tab - text) : len, tab ? tab + 1 : NULL,
                                 tab ? len - (size_t)(tab - text) - 1 : 0, b, 0, NULL);
    if (!rc && x->kg.linker) cli_kg_link(&x->kg, b); /* ERNIE */
    kstep_result r;
    if (!rc) rc = kmodel_evaluate(x->m, b, &r);
    if (rc) {
        kerr("classify: %s", kmodel_error(x->m));
        return EX_SOFTWARE;
    }
    const float *z = kmodel_class_logits(x->m, 0);
    char lb[32];
    if (x->regression) {
        if (json) json_print(json_pack("{s:o, s:o}", "text", jstr(text), "value", num_or_null(z[0])));
        else printf("%.4f\t%s\n", z[0], text);
        return 0;
    }
    double mx = z[0], s = 0;
    int best = 0;
    for (int k = 1; k < x->K; k++)
        if (z[k] > z[best]) best = k;
    mx = z[best];
    for (int k = 0; k < x->K; k++) s += exp((double)z[k] - mx);
    if (json) {
        json_t *p = json_array();
        for (int k = 0; k < x->K; k++) json_array_append_new(p, json_real(exp((double)z[k] - mx) / s));
        json_print(json_pack("{s:o, s:o, s:o}", "text", jstr(text), "label", jstr(clf_label(x, best, lb, sizeof lb)),
                             "probs", p));
    } else {
        printf("%s\t%.3f\t%s\n", clf_label(x, best, lb, sizeof lb), 1.0 / s, text);
    }
    return 0;
}

int cmd_classify(int argc, char **argv, const char *db)
{
    static const char usage[] =
        "usage: kiln classify --checkpoint C [--seq-len L] [--threads N] [--json] [TEXT...]\n\n"
        "Labels each TEXT (without TEXT: each line of standard input) with a\n"
        "fine-tuned classifier; for a model fine-tuned on sentence pairs a TAB\n"
        "separates the two texts. Prints LABEL, its probability and the text, or with\n"
        "--json one {\"text\", \"label\", \"probs\"} per text ({\"text\", \"value\"} for\n"
        "regression); probs in label order (the labels of the fine-tuning data).\n";
    enum { O_CKPT = 1, O_SEQ, O_THREADS };
    static const struct option lo[] = {CLI_COMMON_LONGOPTS, {"checkpoint", required_argument, 0, O_CKPT},
                                       {"seq-len", required_argument, 0, O_SEQ},
                                       {"threads", required_argument, 0, O_THREADS}, {0, 0, 0, 0}};
    cli_common c;
    cli_common_init(&c, db);
    const char *ckpt = NULL;
    int seq = 0, threads = 0, opt;
    optind = 1;
    while ((opt = getopt_long(argc, argv, CLI_COMMON_SHORT, lo, NULL)) != -1) {
        if (cli_common_opt(&c, opt, optarg)) continue;
        char *end = NULL;
        if (opt == O_CKPT) ckpt = optarg;
        else if (opt == O_SEQ || opt == O_THREADS) {
            long x = strtol(optarg, &end, 10);
            if (*end || x < 1 || x > 65536) return cli_usage_error("classify", "a number from 1 to 65536");
            if (opt == O_SEQ) seq = (int)x;
            else threads = (int)x;
        } else return cli_usage_error("classify", "bad option");
    }
    if (c.help) {
        fputs(usage, stdout);
        return 0;
    }
    if (!ckpt) return cli_usage_error("classify", "--checkpoint is required");
    cli_set_threads(threads);
    clf x;
    int rc = clf_open(ckpt, 1, seq, &x);
    if (!rc && x.in.mc.fusion_layers > 0) /* ERNIE: the text's entities, with the store's KG */
        rc = cli_kg_open(&c, x.in.ck ? cli_kg_embedding_of(kckpt_state_of(x.in.ck)->config_json) : 0,
                         x.in.mc.entity_vocab_size, cli_kg_table_of(x.in.t, x.in.n), x.in.vocab, x.in.vocab_len, &x.kg);
    kwp_tok *tok = rc ? NULL : kwp_tok_new(x.v, KWP_DEFAULT_MAX_WORD_CHARS);
    ksample_batch *b = rc ? NULL : kdataset_batch_new(x.v, 1, x.seq_len);
    if (!rc && optind < argc) {
        for (int a = optind; a < argc && !rc; a++) rc = classify_one(&x, tok, b, argv[a], c.json);
    } else if (!rc) {
        char *line = NULL;
        size_t cap = 0;
        ssize_t n;
        while (!rc && (n = getline(&line, &cap, stdin)) >= 0) {
            if (n > 0 && line[n - 1] == '\n') line[--n] = 0;
            if (n > 0 && line[n - 1] == '\r') line[--n] = 0;
            rc = classify_one(&x, tok, b, line, c.json);
        }
        free(line);
    }
    kdataset_batch_free(b);
    kwp_tok_free(tok);
    clf_free(&x);
    return rc;
}
