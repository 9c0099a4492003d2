/* train_run.c: one pretraining run wired end to end (train_run.h).
 *
 * Invariants that make a resumed run bit-identical to one that never
 * stopped (same thread count):
 *  1. The run's whole state is (parameters, optimizer moments, step, tokens,
 *     stream position); a checkpoint holds all of it, and nothing else
 *     influences the next step: samples are a pure function of (seed,
 *     position) over a fixed snapshot, dropout keys a function of (seed,
 *     step, micro-batch), the schedule a function of the step.
 *  2. Validation reads its own split and touches no training state.
 *  3. A checkpoint is written only between optimizer steps. */
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>
#include <unistd.h>

#include "cli/train_run.h"
#include "sampler/sampler.h"
#include "text/wordpiece.h"
#include "trainer/checkpoint.h"
#include "trainer/model.h"
#include "trainer/optim.h"

void openblas_set_num_threads(int);

static uint64_t mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* Tensor lists for the checkpoint files: the model's parameters by name, and
 * the optimizer's moments as "m.NAME" / "v.NAME". Names live in *names. */
typedef struct parts {
    kst_tensor *model, *opt;
    char (*names)[KTENSOR_NAME_MAX + 4];
    int n;
} parts;

static void parts_make(parts *p, kmodel *m, kopt *o)
{
    int n;
    const ktensor *t = kmodel_params(m, &n);
    p->n = n;
    p->model = xcalloc((size_t)n, sizeof *p->model);
    p->opt = xcalloc(2 * (size_t)n, sizeof *p->opt);
    p->names = xcalloc(2 * (size_t)n, sizeof *p->names);
    float *w = kmodel_param_data(m), *mm = kopt_m(o), *vv = kopt_v(o);
    for (int i = 0; i < n; i++) {
        kst_tensor x = {.name = t[i].name, .dtype = "F32", .ndim = t[i].ndim,
                        .data = w + t[i].offset, .nbytes = t[i].numel * sizeof(float)};
        for (int d = 0; d < t[i].ndim; d++) x.shape[d] = t[i].shape[d];
        p->model[i] = x;
        snprintf(p->names[2 * i], sizeof p->names[0], "m.%s", t[i].name);
        snprintf(p->names[2 * i + 1], sizeof p->names[0], "v.%s", t[i].name);
        x.name = p->names[2 * i];
        x.data = mm + t[i].offset;
        p->opt[2 * i] = x;
        x.name = p->names[2 * i + 1];
        x.data = vv + t[i].offset;
        p->opt[2 * i + 1] = x;
    }
}

static void parts_free(parts *p)
{
    free(p->model);
    free(p->opt);
    free(p->names);
}

/* Compares the sections that decide the run's math; names the first
 * differing key. Returns 0 when equal. */
static int config_same(const ktrain_config *a, const ktrain_config *b, char *what, size_t n)
{
    char *ja = ktrain_config_to_json(a), *jb = ktrain_config_to_json(b);
    json_t *x = json_loads(ja, 0, NULL), *y = json_loads(jb, 0, NULL);
    free(ja);
    free(jb);
    int diff = 0;
    const char *sections[] = {"model", "data", "optimizer"};
    for (int s = 0; s < 3 && !diff && x && y; s++) {
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
                if (s == 2 && !strcmp(k, "warmup_steps")) continue;
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
    json_decref(x);
    json_decref(y);
    return diff;
}

typedef struct eval_result { double loss, mlm_loss, mlm_acc, sop_acc, unigram; } eval_result;

/* Validation: the first nb batches of the validation split (epoch 0),
 * forward only. Also the unigram baseline on the same masked positions. */
static void evaluate(kmodel *m, const ksampler *vs, ksample_batch *b, int nb, const double *logp,
                     eval_result *out)
{
    double loss = 0, mlm = 0, w = 0, uni = 0;
    int64_t mc = 0, mn = 0, sc = 0, sn = 0;
    for (int k = 0; k < nb; k++) {
        ksampler_fill(vs, 0, (uint64_t)k * (uint64_t)b->capacity, 1, b->capacity, b, NULL);
        kstep_result r;
        kmodel_forward(m, b, &r);
        loss += r.loss;
        mlm += r.mlm_loss * r.mlm_weight;
        w += r.mlm_weight;
        mc += r.mlm_correct;
        mn += r.mlm_count;
        sc += r.sop_correct;
        sn += r.sop_count;
        for (int i = 0; i < b->B; i++)
            for (int j = 0; j < b->n_masked[i]; j++) uni -= logp[b->masked_ids[(size_t)i * b->P + j]];
    }
    out->loss = nb ? loss / nb : NAN;
    out->mlm_loss = w > 0 ? mlm / w : NAN;
    out->mlm_acc = mn ? (double)mc / (double)mn : NAN;
    out->sop_acc = sn ? (double)sc / (double)sn : NAN;
    out->unigram = mn ? uni / (double)mn : NAN;
}

/* Logs a failure and keeps its message for the caller (the daemon stores it). */
#define RUN_ERR(...)                                                                               \
    do {                                                                                           \
        kerr(__VA_ARGS__);                                                                         \
        snprintf(r->error, sizeof r->error, __VA_ARGS__);                                          \
    } while (0)

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
    r->val_loss = r->val_mlm_loss = r->val_mlm_acc = r->val_sop_acc = r->unigram_loss = NAN;
    r->loss = r->mlm_acc = r->sop_acc = NAN;
    r->stopped = 0;

    /* the store opened read-write once first: it migrates an older schema */
    {
        kstore *s0;
        if ((rc = cli_open_store(r->common, 0, &s0))) return rc;
        kstore_close(s0);
    }

    /* ---- the checkpoint to resume, or a clean folder ---- */
    int have = kckpt_latest(cfg->checkpoint.dir, ck_path, sizeof ck_path, &ck_step) == 0;
    if (have && !r->resume) {
        RUN_ERR("%s already holds checkpoints (latest %s): add --resume to continue the run, or choose "
             "another checkpoint.dir",
             cfg->checkpoint.dir, ck_path);
        return EX_CANTCREAT;
    }
    const char *snapshot = NULL;
    char snap_saved[4096] = "", snap_key[40] = "";
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
        cfg->data.valid_every = cur.data.valid_every;
        cfg->data.valid_batches = cur.data.valid_batches;
        json_t *ex = cs->extra_json ? json_loads(cs->extra_json, 0, NULL) : NULL;
        const char *sp = json_string_value(json_object_get(ex, "snapshot"));
        const char *sk = json_string_value(json_object_get(ex, "snapshot_key"));
        if (sp) snprintf(snap_saved, sizeof snap_saved, "%s", sp);
        if (sk) snprintf(snap_key, sizeof snap_key, "%s", sk);
        job_saved = json_integer_value(json_object_get(ex, "job_id"));
        json_decref(ex);
        if (snap_saved[0] && access(snap_saved, R_OK) == 0) snapshot = snap_saved;
        else if (snap_saved[0])
            kwarn("%s is gone: making the snapshot again (it must match the run's)", snap_saved);
    } else if (r->resume) {
        kinfo("no checkpoint in %s: starting at step 0", cfg->checkpoint.dir);
    }

    /* ---- vocabulary, snapshot, samplers ---- */
    cli_sampling x;
    rc = cli_sampling_open(r->common, cfg->data.vocab[0] ? cfg->data.vocab : NULL, snapshot, &x);
    if (rc) {
        kckpt_close(ck);
        return rc;
    }
    ksnapshot_info si;
    ksnapshot_get_info(x.snap, &si);
    if (snap_key[0] && strcmp(snap_key, si.key_hex)) {
        RUN_ERR("cannot resume: the run's snapshot (%s) is gone and the corpus changed since", snap_key);
        rc = EX_DATAERR;
        goto out_sampling;
    }
    int V = (int)kwp_vocab_size(x.vocab);
    if (cfg->model.vocab_size == 0) cfg->model.vocab_size = V;
    if (cfg->model.vocab_size != V) {
        RUN_ERR("model.vocab_size is %d but vocabulary %s has %d pieces (0 = take the vocabulary's)",
             cfg->model.vocab_size, x.vocab_name, V);
        rc = EX_CONFIG;
        goto out_sampling;
    }
    cfg->model.pad_token_id = x.pad;
    int ob = cfg->data.objectives;
    if (ob & (KOBJ_RTD | KOBJ_CLM | KOBJ_ENTITIES)) {
        RUN_ERR("data.objectives: rtd, clm and entities need the ELECTRA, causal and ERNIE models, which "
             "kiln train does not have yet (albert and bert train mlm, wwm or ngram with sop or nsp)");
        rc = EX_CONFIG;
        goto out_sampling;
    }
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
    cli_sampling_apply(&x, &so);
    ksampler *ts = ksampler_open(x.snap, &so, err, sizeof err), *vs = NULL;
    if (!ts) {
        RUN_ERR("training samples: %s", err);
        rc = EX_DATAERR;
        goto out_sampling;
    }
    if (cfg->data.valid_every > 0 && cfg->data.valid_batches > 0) {
        so.split = 1;
        vs = ksampler_open(x.snap, &so, err, sizeof err);
        if (!vs) kwarn("no validation: %s", err);
    }
    int B = cfg->data.batch_size, L = cfg->data.seq_len, P = ksampler_options(ts)->max_predictions;
    int accum = cfg->optimizer.accumulation > 0 ? cfg->optimizer.accumulation : 1;

    /* ---- threads, model, optimizer ---- */
    int threads = cfg->threads > 0 ? cfg->threads : kcpu_count();
    omp_set_num_threads(threads);
    openblas_set_num_threads(threads);
    int sentence = !!(ob & (KOBJ_SOP | KOBJ_NSP));
    kmodel *m = kmodel_new(&cfg->model, B, L, P, sentence, err, sizeof err);
    if (!m) {
        RUN_ERR("model: %s", err);
        rc = EX_CONFIG;
        goto out_samplers;
    }
    int nt;
    const ktensor *tl = kmodel_params(m, &nt);
    kopt *opt = kopt_new(&cfg->optimizer, tl, nt, kmodel_param_data(m), kmodel_grad_data(m), kmodel_numel(m),
                         err, sizeof err);
    if (!opt) {
        RUN_ERR("optimizer: %s", err);
        rc = EX_CONFIG;
        kmodel_free(m);
        goto out_samplers;
    }
    parts pt;
    parts_make(&pt, m, opt);
    kckpt_part cparts[2] = {{"model.safetensors", pt.model, pt.n}, {"optimizer.safetensors", pt.opt, 2 * pt.n}};
    int64_t step = 0, tokens = 0, pos = 0;
    double secs0 = 0;
    if (ck) {
        if (kckpt_check(ck, cparts, 2, 0, err, sizeof err)) {
            RUN_ERR("cannot resume: %s", err);
            rc = EX_DATAERR;
            goto out_model;
        }
        for (int k = 0; k < 2; k++)
            for (int i = 0; i < cparts[k].n; i++) {
                const kst_tensor *t = kckpt_tensor(ck, cparts[k].file, cparts[k].tensors[i].name);
                memcpy((void *)cparts[k].tensors[i].data, t->data, t->nbytes);
            }
        const kckpt_state *cs = kckpt_state_of(ck);
        step = cs->step;
        tokens = cs->tokens;
        secs0 = cs->seconds;
        pos = cs->next_index;
        snprintf(r->checkpoint, sizeof r->checkpoint, "%s", ck_path);
        kinfo("resuming %s at step %lld (stream position %lld)", ck_path, (long long)step, (long long)pos);
    } else {
        kmodel_init(m, cfg->data.seed);
    }
    kckpt_close(ck);
    ck = NULL;

    /* ---- the store: job row and metrics ---- */
    kstore *s = NULL;
    if ((rc = cli_open_store(r->common, 0, &s))) goto out_model;
    int64_t job = r->job_id > 0 ? r->job_id : job_saved;
    char *cfg_json = ktrain_config_to_json(cfg);
    if (job > 0) {
        kbuf tmp = {0};
        kjob j;
        if (kstore_job_get(s, job, &j, &tmp)) job = 0;
        kbuf_free(&tmp);
    }
    if (job <= 0) {
        rc = kstore_job_add(s, r->name ? r->name : cfg->checkpoint.dir, "train", cfg_json, 0, "running", &job);
        if (rc) {
            RUN_ERR("%s", kstore_errmsg(s));
            free(cfg_json);
            goto out_store;
        }
    } else {
        kstore_job_set_state(s, job, "running", NULL);
    }

    /* unigram log-probabilities of the training snapshot, add-one smoothed */
    double *logp = xmalloc((size_t)V * sizeof *logp);
    {
        uint64_t *cnt = xcalloc((size_t)V, sizeof *cnt), tot = 0;
        ksnapshot_token_counts(x.snap, cnt);
        for (int i = 0; i < V; i++) tot += cnt[i];
        for (int i = 0; i < V; i++) logp[i] = log(((double)cnt[i] + 1.0) / ((double)tot + V));
        free(cnt);
    }

    /* ---- the loop ---- */
    int64_t total = cfg->budget.steps;
    if (!total && cfg->budget.tokens) total = cfg->budget.tokens / ((int64_t)B * L * accum);
    ksampler_stream *st = ksampler_stream_new(ts, 0, (uint64_t)pos, B, 0, 1, 1, 4, err, sizeof err);
    ksample_batch *vb = vs ? ksampler_batch_new(vs, B) : NULL;
    char extra[8192];
    {
        kbuf e = {0};
        kbuf_puts(&e, "{\"snapshot\":");
        kbuf_json_str(&e, x.snapshot_path, strlen(x.snapshot_path));
        kbuf_printf(&e, ",\"snapshot_key\":\"%s\",\"job_id\":%lld,\"cased\":%s,\"vocab_id\":%lld}", si.key_hex,
                    (long long)job, x.cased ? "true" : "false", (long long)x.vocab_id);
        snprintf(extra, sizeof extra, "%s", e.data);
        kbuf_free(&e);
    }
    double t0 = know_seconds(), last_progress = 0;
    int64_t tokens_run0 = tokens, step0 = step;
    double tps = 0;
    eval_result ev = {NAN, NAN, NAN, NAN, NAN};
    int done = 0;
    double secs = secs0;   /* training time so far, as decided at the end of each step */
    while (!done) {
        /* budgets already met when resuming: nothing to do (the decision for a
         * step this process made is taken below, with the checkpoint) */
        if ((cfg->budget.steps && step >= cfg->budget.steps) || (cfg->budget.tokens && tokens >= cfg->budget.tokens) ||
            (cfg->budget.seconds > 0 && secs >= cfg->budget.seconds))
            break;
        if ((r->stop && *r->stop) || (r->pause_at > 0 && step >= r->pause_at)) {
            r->stopped = 1;
            break;
        }
        kmodel_zero_grad(m);
        kstep_result sum = {0};
        double loss = 0, mlm_w = 0, mlm = 0, sop = 0;
        for (int a = 0; a < accum; a++) {
            const ksample_batch *b = ksampler_stream_next(st, NULL);
            kstep_result res;
            uint64_t key = mix64(mix64(cfg->data.seed ^ 0xd50f0u) + (uint64_t)step) + (uint64_t)a;
            kmodel_forward_backward(m, b, key, 1.0f / (float)accum, &res);
            loss += res.loss / accum;
            mlm += res.mlm_loss * res.mlm_weight;
            mlm_w += res.mlm_weight;
            sop += res.sop_loss / accum;
            sum.mlm_correct += res.mlm_correct;
            sum.mlm_count += res.mlm_count;
            sum.sop_correct += res.sop_correct;
            sum.sop_count += res.sop_count;
            sum.tokens += res.tokens;
        }
        double lr = 0, gn = 0;
        int srs = kopt_step(opt, step + 1, total, &lr, &gn);
        if (srs) kwarn("step %lld: gradient norm not finite, update skipped", (long long)step + 1);
        step++;
        tokens += sum.tokens;
        pos += (int64_t)B * accum;
        double now = know_seconds();
        tps = now > t0 ? (double)(tokens - tokens_run0) / (now - t0) : 0;
        r->loss = loss;
        r->mlm_acc = sum.mlm_count ? (double)sum.mlm_correct / (double)sum.mlm_count : NAN;
        r->sop_acc = sum.sop_count ? (double)sum.sop_correct / (double)sum.sop_count : NAN;
        int validate = vs && cfg->data.valid_every > 0 && step % cfg->data.valid_every == 0;
        int halt = (r->stop && *r->stop) || (r->pause_at > 0 && step >= r->pause_at);
        int last = (cfg->budget.steps && step >= cfg->budget.steps) ||
                   (cfg->budget.tokens && tokens >= cfg->budget.tokens) ||
                   (cfg->budget.seconds > 0 && secs0 + (now - t0) >= cfg->budget.seconds) || halt;
        secs = secs0 + (now - t0);
        if (halt && !(cfg->budget.steps && step >= cfg->budget.steps)) r->stopped = 1;
        if (vs && last && !validate) validate = 1;
        if (validate) {
            evaluate(m, vs, vb, cfg->data.valid_batches, logp, &ev);
            r->val_loss = ev.loss;
            r->val_mlm_loss = ev.mlm_loss;
            r->val_mlm_acc = ev.mlm_acc;
            r->val_sop_acc = ev.sop_acc;
            r->unigram_loss = ev.unigram;
        }
        /* metrics, one transaction */
        kstore_begin(s);
        struct { const char *n; double v; } mt[] = {
            {"loss", loss}, {"mlm_loss", mlm_w > 0 ? mlm / mlm_w : NAN}, {"mlm_acc", r->mlm_acc},
            {"sop_loss", sentence ? sop : NAN}, {"sop_acc", r->sop_acc}, {"lr", lr}, {"grad_norm", gn},
            {"tokens_per_s", tps}, {"tokens", (double)tokens}};
        for (size_t i = 0; i < sizeof mt / sizeof mt[0]; i++) kstore_metric_put(s, job, step, mt[i].n, mt[i].v);
        if (validate) {
            kstore_metric_put(s, job, step, "val_loss", ev.loss);
            kstore_metric_put(s, job, step, "val_mlm_loss", ev.mlm_loss);
            kstore_metric_put(s, job, step, "val_mlm_acc", ev.mlm_acc);
            kstore_metric_put(s, job, step, "val_sop_acc", ev.sop_acc);
            kstore_metric_put(s, job, step, "unigram_loss", ev.unigram);
        }
        kstore_job_set_step(s, job, step);
        if (kstore_commit(s)) {
            kwarn("metrics not recorded: %s", kstore_errmsg(s));
            kstore_rollback(s);
        }
        /* checkpoint */
        int ckpt = last || (cfg->checkpoint.every > 0 && step % cfg->checkpoint.every == 0);
        if (ckpt) {
            kckpt_metric cm[] = {{"loss", loss}, {"mlm_acc", r->mlm_acc}, {"sop_acc", r->sop_acc}, {"lr", lr},
                                 {"val_loss", r->val_loss}, {"val_mlm_acc", r->val_mlm_acc}};
            kckpt_state cs = {.step = step, .tokens = tokens, .seconds = secs0 + (now - t0),
                              .epoch = (int64_t)((uint64_t)pos / ksampler_epoch_size(ts)), .next_index = pos,
                              .n_rng = 1, .rng = {cfg->data.seed}, .config_json = cfg_json,
                              .vocab_name = x.vocab_name, .metrics = cm, .n_metrics = 6, .extra_json = extra};
            char path[4096];
            rc = kckpt_save(cfg->checkpoint.dir, &cs, cparts, 2, x.vocab_text.data, x.vocab_text.len,
                            cfg->checkpoint.keep, path, sizeof path, err, sizeof err);
            if (rc) {
                RUN_ERR("checkpoint: %s", err);
                break;
            }
            snprintf(r->checkpoint, sizeof r->checkpoint, "%s", path);
            if (kstore_checkpoint_add(s, job, step, path, validate ? ev.loss : NAN))
                kwarn("checkpoint not recorded in the store: %s", kstore_errmsg(s));
        }
        if (r->progress && (now - last_progress > 0.2 || last || validate)) {
            last_progress = now;
            ktrain_progress p = {.step = step, .total_steps = total, .tokens = tokens, .loss = loss,
                                 .mlm_acc = r->mlm_acc, .sop_acc = r->sop_acc, .lr = lr, .grad_norm = gn,
                                 .tokens_per_s = tps, .val_loss = r->val_loss, .val_mlm_acc = r->val_mlm_acc};
            p.eta_s = total > step && step > step0 ? (double)(total - step) * (now - t0) / (double)(step - step0) : NAN;
            r->progress(&p, r->progress_ctx);
        }
        if (last) done = 1;
    }
    r->steps = step;
    r->tokens = tokens;
    r->seconds = secs0 + (know_seconds() - t0);
    r->tokens_per_s = tps;
    if (r->leave_state) {
        /* the caller decides (the daemon: queued again, cancelled, done) */
    } else if (!rc) {
        kstore_job_set_state(s, job, r->stopped ? "paused" : "done", NULL);
    } else {
        kstore_job_set_state(s, job, "failed", r->error[0] ? r->error : err);
    }
    ksampler_stream_free(st);
    ksampler_batch_free(vb);
    free(logp);
    free(cfg_json);
out_store:
    kstore_close(s);
out_model:
    parts_free(&pt);
    kopt_free(opt);
    kmodel_free(m);
out_samplers:
    ksampler_close(vs);
    ksampler_close(ts);
out_sampling:
    cli_sampling_close(&x);
    kckpt_close(ck);
    return rc;
}
