/* cmd_train.c: kiln train (a pretraining run from a JSON config, resumable),
 * kiln export (a checkpoint as a Hugging Face folder) and kiln predict
 * (fill [MASK] tokens with a checkpoint's model). */
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli/cli.h"
#include "cli/dist.h"
#include "cli/train_run.h"
#include "sampler/batch.h"
#include "text/bpe.h"
#include "text/wordpiece.h"
#include "trainer/kernels.h"
#include "trainer/checkpoint.h"
#include "trainer/export.h"
#include "trainer/hfimport.h"
#include "trainer/model.h"

void openblas_set_num_threads(int);

/* "  mlm 12.3%  sop 50.0%": the accuracy terms of r ("X_acc" as "X"), or "" */
static void fmt_accs(char *b, size_t n, const kstep_result *r)
{
    size_t o = 0;
    b[0] = '\0';
    for (int i = 0; i < r->n && o + 1 < n; i++) {
        const char *nm = r->t[i].name;
        size_t l = strlen(nm);
        if (l < 5 || strcmp(nm + l - 4, "_acc")) continue;
        double v = kstep_value(r, nm);
        int w = isnan(v) ? snprintf(b + o, n - o, "  %.*s -", (int)(l - 4), nm)
                         : snprintf(b + o, n - o, "  %.*s %.1f%%", (int)(l - 4), nm, 100 * v);
        if (w < 0) break;
        o += (size_t)w;
    }
}

static void train_progress(const ktrain_progress *p, void *ctx)
{
    cli_progress *pr = ctx;
    char line[512], acc[160], vacc[160], vl[200] = "", eta[32] = "", steps[64], tok[32];
    fmt_accs(acc, sizeof acc, &p->train);
    if (!isnan(p->val_loss)) {
        fmt_accs(vacc, sizeof vacc, &p->val);
        double vlm = kstep_value(&p->val, "lm_loss");
        if (!isnan(vlm)) snprintf(vl, sizeof vl, "  val %.3f (ppl %.1f)%s", p->val_loss, exp(vlm), vacc);
        else snprintf(vl, sizeof vl, "  val %.3f%s", p->val_loss, vacc);
    }
    if (!isnan(p->eta_s)) snprintf(eta, sizeof eta, "  ETA %d:%02d:%02d", (int)(p->eta_s / 3600),
                                   (int)fmod(p->eta_s / 60, 60), (int)fmod(p->eta_s, 60));
    if (p->total_steps > 0) snprintf(steps, sizeof steps, "%lld/%lld", (long long)p->step, (long long)p->total_steps);
    else snprintf(steps, sizeof steps, "%lld", (long long)p->step);
    snprintf(line, sizeof line, "step %s  loss %.3f%s  lr %.2e  |g| %.2f  %s tok/s%s%s", steps, p->loss, acc, p->lr,
             p->grad_norm, cli_num((uint64_t)p->tokens_per_s, tok, sizeof tok), vl, eta);
    cli_progress_line(pr, line);
}

#define num_or_null cli_json_num
#define jstr cli_json_str

/* every term of r as prefix + name */
static void json_terms(json_t *o, const char *prefix, const kstep_result *r)
{
    char k[KTERM_NAME_MAX + 8];
    for (int i = 0; i < r->n; i++) {
        snprintf(k, sizeof k, "%s%s", prefix, r->t[i].name);
        json_object_set_new(o, k, num_or_null(kstep_value(r, r->t[i].name)));
    }
}

static void json_print(json_t *o) { cli_json_print(o, 0); }

int cmd_train(int argc, char **argv, const char *db)
{
    static const char usage[] =
        "usage: kiln train --config RUN.json [--set section.key=value]... [--resume] [--name N]\n"
        "                  [--pause-at STEP] [--db PATH] [--json]\n\n"
        "Pretrains an ALBERT or BERT model (masked LM with SOP or NSP), ELECTRA (rtd) or\n"
        "GPT-2 (clm: next-token prediction, byte-level BPE vocabulary) on the store's\n"
        "tokenized corpus, as the run config says (docs/train.md; examples/configs/).\n"
        "Shows step, loss, accuracies, learning rate, gradient norm, tokens/s,\n"
        "validation and ETA on a terminal; records metrics per step in the store (a job\n"
        "row); checkpoints to checkpoint.dir every checkpoint.every steps, at the end\n"
        "and on SIGINT/SIGTERM (the step finishes, the checkpoint is written, exit 0).\n"
        "--resume continues from the latest checkpoint, bit-identical to a run that\n"
        "never stopped (same thread count); only budget, checkpoint, threads, precision and the\n"
        "validation cadence may change. --pause-at STEP stops as a signal would once\n"
        "STEP is done (the schedule stays the budget's). A gradient norm that is not\n"
        "finite skips the update; 8 in a row end the run (exit 65, no checkpoint).\n"
        "--json ends with one object: {\"steps\", \"tokens\", \"total_steps\", \"seconds\",\n"
        "\"tokens_per_s\", \"loss\", the model's terms of the last step (\"mlm_loss\",\n"
        "\"mlm_acc\", \"sop_loss\", \"sop_acc\" or \"nsp_loss\", \"nsp_acc\"; GPT-2: \"lm_loss\",\n"
        "\"lm_acc\"), \"val_loss\", the last validation's terms (\"val_mlm_loss\",\n"
        "\"val_mlm_acc\", ...), \"unigram_loss\" (the snapshot's unigram model on the same\n"
        "tokens), for GPT-2 \"perplexity\", \"val_perplexity\", \"unigram_perplexity\",\n"
        "\"checkpoint\", \"stopped\", \"precision\", \"blas_core\" (OpenBLAS's kernels: kiln pins\n"
        "Haswell's on every AVX2 CPU, so fp32 bytes are the same on every CPU)}; a value\n"
        "that is not finite is null.\n"
        "precision (the run config's, default auto) runs the matrix products on bfloat16\n"
        "operands with fp32 accumulation where the CPU has bf16 dot products (AVX512_BF16,\n"
        "AMX-BF16), else in fp32; the run says which at start (docs/train.md, \"Precision\").\n"
        "Under mpirun -np N: one model on N processes, data parallel (data.batch_size\n"
        "is the global batch; rank 0 keeps the store and the checkpoints; the others\n"
        "read rank 0's snapshot file); --json adds \"data_parallel\": {\"ranks\",\n"
        "\"allreduce_s\", \"allreduce_exposed_s\", \"hash_checks\"} (docs/distributed.md).\n"
        "For kiln daemon's MPI jobs: --job ID reports into that job row, --leave-state\n"
        "leaves its final state to the caller, --stop-file F stops the run as a signal\n"
        "would once F exists.\n";
    enum { O_CONFIG = 1, O_SET, O_RESUME, O_NAME, O_PAUSE, O_JOB, O_LEAVE, O_STOPFILE };
    static const struct option lo[] = {CLI_COMMON_LONGOPTS, {"config", required_argument, 0, O_CONFIG},
                                       {"pause-at", required_argument, 0, O_PAUSE},
                                       {"set", required_argument, 0, O_SET}, {"resume", no_argument, 0, O_RESUME},
                                       {"name", required_argument, 0, O_NAME},
                                       {"job", required_argument, 0, O_JOB},
                                       {"leave-state", no_argument, 0, O_LEAVE},
                                       {"stop-file", required_argument, 0, O_STOPFILE}, {0, 0, 0, 0}};
    cli_common c;
    cli_common_init(&c, db);
    const char *config = NULL, *name = NULL, *stop_file = NULL;
    long long job_id = 0;
    int leave_state = 0;
    const char **sets = xcalloc((size_t)argc + 1, sizeof *sets);
    int n_sets = 0, resume = 0, opt;
    long long pause_at = 0;
    optind = 1;
    while ((opt = getopt_long(argc, argv, CLI_COMMON_SHORT, lo, NULL)) != -1) {
        if (cli_common_opt(&c, opt, optarg)) continue;
        if (opt == O_CONFIG) config = optarg;
        else if (opt == O_SET) sets[n_sets++] = optarg;
        else if (opt == O_RESUME) resume = 1;
        else if (opt == O_NAME) name = optarg;
        else if (opt == O_LEAVE) leave_state = 1;
        else if (opt == O_STOPFILE) stop_file = optarg;
        else if (opt == O_JOB) {
            char *end;
            job_id = strtoll(optarg, &end, 10);
            if (*end || job_id < 1) { free(sets); return cli_usage_error("train", "--job: a job id >= 1"); }
        }
        else if (opt == O_PAUSE) {
            char *end;
            pause_at = strtoll(optarg, &end, 10);
            if (*end || pause_at < 1) { free(sets); return cli_usage_error("train", "--pause-at: a step >= 1"); }
        } else { free(sets); return cli_usage_error("train", "bad option"); }
    }
    if (c.help) { fputs(usage, stdout); free(sets); return 0; }
    if (!config) { free(sets); return cli_usage_error("train", "--config is required"); }
    if (optind < argc) { free(sets); return cli_usage_error("train", "unexpected argument '%s'", argv[optind]); }
    kbuf text = {0};
    int e = kbuf_read_file(&text, config);
    if (e) {
        kerr("%s: %s", config, strerror(e));
        free(sets);
        return EX_NOINPUT;
    }
    ktrain_run r;
    memset(&r, 0, sizeof r);
    char err[1024];
    int rc = ktrain_config_parse(&r.cfg, text.data, text.len, sets, n_sets, err, sizeof err);
    kbuf_free(&text);
    free(sets);
    if (rc) {
        kerr("%s: %s", config, err);
        return rc;
    }
    /* under mpirun: one rank of a data-parallel run (docs/distributed.md) */
    kdist *D = NULL;
    if ((rc = kdist_open(&D, err, sizeof err))) {
        kerr("%s", err);
        return rc;
    }
    r.dist = D;
    const int rank = kdist_rank(D);
    if (rank > 0) {
        if (klog_threshold > KLOG_WARN) klog_threshold = KLOG_WARN; /* rank 0 speaks for the run */
        c.json = 1;                                                 /* no progress line */
    }
    r.common = &c;
    r.resume = resume;
    r.job_id = job_id;
    r.leave_state = leave_state;
    r.stop_file = stop_file;
    r.pause_at = pause_at;
    r.name = name;
    r.stop = &cli_stop;
    cli_progress pr;
    cli_progress_init(&pr, c.json);
    r.progress = train_progress;
    r.progress_ctx = &pr;
    cli_catch_stop_signals();
    rc = ktrain_run_exec(&r);
    cli_progress_done(&pr);
    kdist_close(D, rc); /* a failed rank ends the whole job: no rank waits for it */
    if (rc) return rc;
    if (rank > 0) return 0;
    if (c.json) {
        json_t *o = json_object();
        json_object_set_new(o, "steps", json_integer(r.steps));
        json_object_set_new(o, "tokens", json_integer(r.tokens));
        json_object_set_new(o, "total_steps", r.total_steps ? json_integer(r.total_steps) : json_null());
        json_object_set_new(o, "seconds", num_or_null(r.seconds));
        json_object_set_new(o, "tokens_per_s", num_or_null(r.tokens_per_s));
        json_object_set_new(o, "loss", num_or_null(r.loss));
        json_terms(o, "", &r.last);
        json_object_set_new(o, "val_loss", num_or_null(r.val_loss));
        json_terms(o, "val_", &r.val);
        json_terms(o, "", &r.base);
        /* causal models: perplexities, exp of the next-token losses */
        if (!isnan(kstep_value(&r.last, "lm_loss"))) {
            json_object_set_new(o, "perplexity", num_or_null(exp(kstep_value(&r.last, "lm_loss"))));
            json_object_set_new(o, "val_perplexity", num_or_null(exp(kstep_value(&r.val, "lm_loss"))));
            json_object_set_new(o, "unigram_perplexity", num_or_null(exp(kstep_value(&r.base, "unigram_loss"))));
        }
        json_object_set_new(o, "checkpoint", jstr(r.checkpoint));
        json_object_set_new(o, "stopped", json_boolean(r.stopped));
        json_object_set_new(o, "precision", jstr(r.precision));
        char blas[96];
        kblas_core(blas, sizeof blas);
        json_object_set_new(o, "blas_core", jstr(blas));
        if (r.ranks > 1) {
            /* data parallel: ranks, the all-reduce per step and its part backward did not hide */
            json_t *d = json_object();
            json_object_set_new(d, "ranks", json_integer(r.ranks));
            json_object_set_new(d, "allreduce_s", num_or_null(r.comm_s));
            json_object_set_new(d, "allreduce_exposed_s", num_or_null(r.comm_wait_s));
            json_object_set_new(d, "hash_checks", json_integer(r.hash_checks));
            json_object_set_new(o, "data_parallel", d);
        }
        if (r.entity_rows) { /* ERNIE: the pinned embedding and the entity coverage */
            json_t *k = json_object();
            json_object_set_new(k, "embedding", json_integer(r.entity_embedding));
            json_object_set_new(k, "entities", json_integer(r.entity_rows - 1));
            json_object_set_new(k, "mentions", json_integer(r.mentions));
            json_object_set_new(k, "mentions_with_vector", json_integer(r.mentions_with_vector));
            json_object_set_new(k, "entity_coverage",
                                num_or_null(r.mentions ? (double)r.mentions_with_vector / (double)r.mentions : NAN));
            json_object_set_new(o, "knowledge", k);
        }
        if (r.teacher_hash[0]) {
            json_t *t = json_object();
            json_object_set_new(t, "path", jstr(r.cfg.distill.teacher));
            json_object_set_new(t, "hash", jstr(r.teacher_hash));
            json_object_set_new(t, "params", json_integer(r.teacher_params));
            json_object_set_new(t, "bytes", json_integer(r.teacher_bytes));
            json_object_set_new(o, "teacher", t);
        }
        json_print(o);
    } else {
        char t[32];
        char vacc[160] = "", vl[256] = "";
        if (r.val.n) {
            fmt_accs(vacc, sizeof vacc, &r.val);
            double vm = kstep_value(&r.val, "mlm_loss"), u = kstep_value(&r.base, "unigram_loss");
            double vlm = kstep_value(&r.val, "lm_loss");
            if (!isnan(vlm) && !isnan(u)) snprintf(vl, sizeof vl, "; validation loss %.4f, perplexity %.2f (unigram "
                                                   "baseline %.2f), accuracy:%s", r.val_loss, exp(vlm), exp(u), vacc);
            else if (!isnan(vm) && !isnan(u)) snprintf(vl, sizeof vl, "; validation loss %.4f, MLM loss %.4f (unigram "
                                                  "baseline %.4f), accuracy:%s", r.val_loss, vm, u, vacc);
            else snprintf(vl, sizeof vl, "; validation loss %.4f, accuracy:%s", r.val_loss, vacc);
        }
        kinfo("%s after %lld steps, %s tokens, %.1f s (%.0f tokens/s): loss %.4f%s; checkpoint %s",
              r.stopped ? "stopped" : "done", (long long)r.steps, cli_num((uint64_t)r.tokens, t, sizeof t),
              r.seconds, r.tokens_per_s, r.loss, vl, r.checkpoint);
    }
    return 0;
}

/* ---- checkpoints for export and predict ---------------------------------------- */

int cli_open_checkpoint(const char *arg, kckpt **ck, ktrain_config *cfg, int *mode)
{
    char err[1024], path[4096];
    int64_t step;
    snprintf(path, sizeof path, "%s", arg);
    char probe[4200];
    snprintf(probe, sizeof probe, "%s/state.json", arg);
    if (access(probe, R_OK) && kckpt_latest(arg, path, sizeof path, &step) != 0) {
        kerr("%s: not a checkpoint (no state.json) nor a folder of checkpoints", arg);
        return access(arg, R_OK) ? EX_NOINPUT : EX_DATAERR;
    }
    *ck = kckpt_open_model(path, err, sizeof err); /* its readers need the weights only */
    if (!*ck) {
        kerr("%s", err);
        return access(path, R_OK) ? EX_NOINPUT : EX_DATAERR;
    }
    const kckpt_state *st = kckpt_state_of(*ck);
    if (ktrain_config_parse(cfg, st->config_json, strlen(st->config_json), NULL, 0, err, sizeof err)) {
        kerr("%s: its config: %s", path, err);
        kckpt_close(*ck);
        *ck = NULL;
        return EX_DATAERR;
    }
    json_t *ex = st->extra_json ? json_loads(st->extra_json, 0, NULL) : NULL;
    json_t *sa = json_object_get(ex, "strip_accents");
    *mode = (json_is_true(json_object_get(ex, "cased")) ? KWP_CASED : 0) |
            (json_is_true(sa) ? KWP_STRIP_ACCENTS : json_is_false(sa) ? KWP_KEEP_ACCENTS : 0) |
            (json_is_true(json_object_get(ex, "icu_words")) ? KWP_ICU_WORDS : 0);
    json_decref(ex);
    return 0;
}

/* ELECTRA's pair (a pretraining checkpoint: the generator's tensors named
 * "generator.*"): OUT/discriminator as ElectraForPreTraining and
 * OUT/generator as ElectraForMaskedLM, the shared embeddings written into
 * both. OUT is made (or replaced with force) as a folder of the two. */
static int export_electra_pair(const char *out, const kmodel_config *mc, const kst_tensor *t, int n,
                               const char *vocab, size_t vlen, int tok, int force, char *err, size_t errlen)
{
    const char *const gp = "generator.";
    const size_t gl = strlen(gp);
    kst_tensor *d = xcalloc((size_t)n, sizeof *d), *g = xcalloc((size_t)n, sizeof *g);
    int nd = 0, ng = 0;
    for (int i = 0; i < n; i++) {
        if (!strncmp(t[i].name, gp, gl)) {
            g[ng] = t[i];
            g[ng++].name += gl;
        } else {
            d[nd++] = t[i];
            if (!strncmp(t[i].name, "electra.embeddings.", 19)) g[ng++] = t[i]; /* shared */
        }
    }
    char *dd = kpath_join(out, "discriminator"), *gd = kpath_join(out, "generator");
    int rc = 0;
    struct stat st;
    if (!stat(out, &st) && !S_ISDIR(st.st_mode)) {
        snprintf(err, errlen, "%s exists and is not a folder", out);
        rc = EX_CANTCREAT;
    } else if (mkdir(out, 0755) && errno != EEXIST) {
        snprintf(err, errlen, "%s: cannot create: %s", out, strerror(errno));
        rc = EX_CANTCREAT;
    }
    const kexport_head hd = {KEXPORT_HEAD_PRETRAINING, 0, NULL, NULL}, hg = {KEXPORT_HEAD_MASKED_LM, 0, NULL, NULL};
    kmodel_config gc = kmodel_generator_config(mc);
    char e2[900];
    if (!rc && (rc = kexport_hf2(dd, mc, &hd, d, nd, vocab, vlen, tok, force, e2, sizeof e2)))
        snprintf(err, errlen, "discriminator: %s", e2);
    if (!rc && (rc = kexport_hf2(gd, &gc, &hg, g, ng, vocab, vlen, tok, force, e2, sizeof e2)))
        snprintf(err, errlen, "generator: %s", e2);
    free(dd);
    free(gd);
    free(d);
    free(g);
    return rc;
}

/* GPT-2: GPT2LMHeadModel's files and GPT2Tokenizer's (vocab.json and
 * merges.txt as kbpe writes them: ids in order, "#version" first), from a
 * checkpoint that carries its BPE vocabulary. */
static int export_gpt2(const char *out, const kckpt *ck, const kmodel_config *mc, const kst_tensor *t, int n,
                       int force, char *err, size_t errlen)
{
    kbpe_vocab *bv = NULL;
    int rc = cli_checkpoint_bpe(ck, mc, &bv, err, errlen);
    if (rc) return rc;
    kbuf vj = {0}, mg = {0};
    kbpe_vocab_json(bv, &vj);
    kbpe_merges_text(bv, &mg);
    rc = kexport_gpt2(out, mc, t, n, kbpe_vocab_eot(bv), vj.data, vj.len, mg.data, mg.len, force, err, errlen);
    kbuf_free(&vj);
    kbuf_free(&mg);
    kbpe_vocab_free(bv);
    return rc;
}

int cli_checkpoint_bpe(const kckpt *ck, const kmodel_config *mc, kbpe_vocab **out, char *err, size_t errlen)
{
    *out = NULL;
    size_t vlen, mlen;
    const char *vj = kckpt_vocab(ck, &vlen), *mg = kckpt_merges(ck, &mlen);
    if (kckpt_vocab_kind(ck) != KCKPT_VOCAB_BPE || !mg) {
        snprintf(err, errlen, "%s: a GPT-2 checkpoint without its byte-level BPE vocabulary (vocab.json, merges.txt)",
                 kckpt_path(ck));
        return EX_DATAERR;
    }
    char e[512];
    if (kbpe_vocab_load(vj, vlen, mg, mlen, out, e, sizeof e)) {
        snprintf(err, errlen, "%s: its vocabulary: %s", kckpt_path(ck), e);
        return EX_DATAERR;
    }
    if ((int64_t)kbpe_vocab_size(*out) != mc->vocab_size) {
        snprintf(err, errlen, "%s: the vocabulary has %zu tokens, the model's vocab_size is %d", kckpt_path(ck),
                 kbpe_vocab_size(*out), mc->vocab_size);
        kbpe_vocab_free(*out);
        *out = NULL;
        return EX_DATAERR;
    }
    return 0;
}

int cmd_export(int argc, char **argv, const char *db)
{
    static const char usage[] =
        "usage: kiln export --checkpoint C [--format hf] --out DIR [--force]\n\n"
        "Writes a checkpoint (a step folder, or the latest one of a checkpoint.dir) as a\n"
        "Hugging Face folder: model.safetensors, config.json, vocab.txt,\n"
        "tokenizer_config.json, special_tokens_map.json, loadable as they are by\n"
        "transformers (docs/train.md): a pretraining checkpoint as AlbertForPreTraining /\n"
        "BertForPreTraining, a fine-tuned one (kiln finetune) as *ForSequenceClassification\n"
        "(num_labels, id2label, label2id, problem_type), an imported one as its class.\n"
        "An ELECTRA pretraining checkpoint gives two folders, DIR/discriminator\n"
        "(ElectraForPreTraining) and DIR/generator (ElectraForMaskedLM), the shared\n"
        "embeddings written into both. A GPT-2 checkpoint gives GPT2LMHeadModel with\n"
        "GPT2Tokenizer's vocab.json and merges.txt. A DistilBERT checkpoint gives\n"
        "DistilBertForMaskedLM, a fine-tuned one DistilBertForSequenceClassification\n"
        "(tokenizer_class DistilBertTokenizer). An ERNIE checkpoint (knowledge section)\n"
        "gives DIR/text, the text encoder as BertModel / AlbertModel (usable without the\n"
        "KG), and DIR/kiln, kiln's own format with the fusion layers and the entity\n"
        "vocabulary (entities.tsv, from the run's store: --db; docs/ernie.md).\n"
        "Each folder is written under a temporary name and renamed; --force replaces an\n"
        "existing DIR.\n";
    enum { O_CKPT = 1, O_FORMAT, O_OUT, O_FORCE };
    static const struct option lo[] = {CLI_COMMON_LONGOPTS, {"checkpoint", required_argument, 0, O_CKPT},
                                       {"format", required_argument, 0, O_FORMAT}, {"out", required_argument, 0, O_OUT},
                                       {"force", no_argument, 0, O_FORCE}, {0, 0, 0, 0}};
    cli_common c;
    cli_common_init(&c, db);
    const char *ckpt = NULL, *out = NULL;
    int force = 0, opt;
    optind = 1;
    while ((opt = getopt_long(argc, argv, CLI_COMMON_SHORT, lo, NULL)) != -1) {
        if (cli_common_opt(&c, opt, optarg)) continue;
        if (opt == O_CKPT) ckpt = optarg;
        else if (opt == O_OUT) out = optarg;
        else if (opt == O_FORCE) force = 1;
        else if (opt == O_FORMAT) {
            if (strcmp(optarg, "hf")) return cli_usage_error("export", "--format: only hf");
        } else return cli_usage_error("export", "bad option");
    }
    if (c.help) { fputs(usage, stdout); return 0; }
    if (!ckpt || !out) return cli_usage_error("export", "--checkpoint and --out are required");
    kckpt *ck;
    ktrain_config cfg;
    int mode, rc = cli_open_checkpoint(ckpt, &ck, &cfg, &mode);
    if (rc) return rc;
    const kst_file *mf = kckpt_file(ck, "model.safetensors");
    if (!mf) {
        kerr("%s: no model.safetensors", kckpt_path(ck));
        kckpt_close(ck);
        return EX_DATAERR;
    }
    int n = kst_count(mf);
    kst_tensor *t = xcalloc((size_t)n, sizeof *t);
    for (int i = 0; i < n; i++) t[i] = *kst_get(mf, i);
    size_t vlen;
    const char *vocab = kckpt_vocab(ck, &vlen);
    char err[1024];
    if (access(out, F_OK) == 0 && !force) {
        kerr("%s exists: add --force to replace it", out);
        rc = EX_CANTCREAT;
    } else if (cfg.model.type == KMODEL_GPT2) {
        rc = export_gpt2(out, ck, &cfg.model, t, n, force, err, sizeof err);
        if (rc) kerr("%s", err);
    } else if (cfg.model.fusion_layers > 0) { /* ERNIE: OUT/text and OUT/kiln */
        rc = cli_export_ernie(&c, out, ck, &cfg, t, n, vocab, vlen, cli_export_tok(mode), force, err, sizeof err);
        if (rc) kerr("%s", err);
    } else if (cfg.model.type == KMODEL_ELECTRA && kst_find(mf, "generator.generator_lm_head.bias")) {
        int tok = cli_export_tok(mode);
        rc = export_electra_pair(out, &cfg.model, t, n, vocab, vlen, tok, force, err, sizeof err);
        if (rc) kerr("%s", err);
    } else {
        /* the class from the tensors and the checkpoint's extra state: pretraining,
         * masked LM, base model or sequence classification (fine-tuned) */
        khf_export_head eh;
        khf_export_head_of(cfg.model.type, kckpt_state_of(ck)->extra_json, t, n, &eh);
        rc = kexport_hf2(out, &cfg.model, &eh.head, t, n, vocab, vlen, cli_export_tok(mode), force, err,
                         sizeof err);
        khf_export_head_free(&eh);
        if (rc) kerr("%s", err);
    }
    if (!rc) {
        if (c.json) json_print(json_pack("{s:o, s:o, s:i}", "out", jstr(out), "checkpoint", jstr(kckpt_path(ck)),
                                         "tensors", n));
        else kinfo("exported %s to %s (%d tensors)", kckpt_path(ck), out, n);
    }
    free(t);
    kckpt_close(ck);
    return rc;
}

/* ---- kiln predict ---------------------------------------------------------------- */

int cli_load_weights(kmodel *m, kckpt *ck)
{
    int nt;
    const ktensor *tl = kmodel_params(m, &nt);
    float *w = kmodel_param_data(m);
    for (int i = 0; i < nt; i++) {
        const kst_tensor *t = kckpt_tensor(ck, "model.safetensors", tl[i].name);
        if (!t || strcmp(t->dtype, "F32") || t->nbytes != tl[i].numel * sizeof(float)) {
            kerr("%s: tensor %s missing or of another shape", kckpt_path(ck), tl[i].name);
            return EX_DATAERR;
        }
        memcpy(w + tl[i].offset, t->data, t->nbytes);
    }
    return 0;
}

/* kiln predict --rtd: the ELECTRA discriminator's probability that each
 * token of each text was replaced. texts[n]; the tokens are all_ids[a]. */
static int predict_rtd(kckpt *ck, const ktrain_config *cfg, const kwp_vocab *v, const kwp_ids *all, char **texts,
                       int n, int Lm, int json)
{
    char err[1024];
    kmodel_spec spec = {.heads = KHEAD_TOKEN, .max_B = 1, .L = Lm, .classifier_dropout = -1, .inference = 1};
    kmodel *m = kmodel_create(&cfg->model, &spec, err, sizeof err);
    if (!m) {
        kerr("model: %s", err);
        return EX_DATAERR;
    }
    int rc = cli_load_weights(m, ck);
    int32_t cls = (int32_t)kwp_vocab_special(v, KWP_CLS), sep = (int32_t)kwp_vocab_special(v, KWP_SEP),
            pad = (int32_t)kwp_vocab_special(v, KWP_PAD);
    int32_t *in = xcalloc((size_t)Lm, sizeof *in);
    uint8_t *types = xcalloc((size_t)Lm, 1);
    for (int a = 0; a < n && !rc; a++) {
        int len = (int)all[a].n + 2, label = -1;
        int64_t index = 0;
        for (int i = 0; i < Lm; i++) in[i] = pad;
        in[0] = cls;
        for (size_t i = 0; i < all[a].n; i++) in[i + 1] = (int32_t)all[a].ids[i];
        in[len - 1] = sep;
        ksample_batch b = {.version = KSAMPLE_BATCH_VERSION, .objectives = KOBJ_RTD, .B = 1, .L = Lm, .P = 0,
                           .capacity = 1, .pad_id = pad, .cls_id = cls, .sep_id = sep,
                           .mask_id = (int32_t)kwp_vocab_special(v, KWP_MASK), .index = &index, .input_ids = in,
                           .token_type_ids = types, .lengths = &len, .labels = &label};
        kstep_result res;
        if (kmodel_evaluate(m, &b, &res)) {
            kerr("model: %s", kmodel_error(m));
            rc = EX_SOFTWARE;
            break;
        }
        kbuf o = {0};
        if (json) {
            kbuf_puts(&o, "{\"text\":");
            kbuf_json_str(&o, texts[a], strlen(texts[a]));
            kbuf_puts(&o, ",\"tokens\":[");
        } else {
            kbuf_printf(&o, "%s\n", texts[a]);
        }
        for (int t = 0; t < len; t++) {
            float z = kmodel_token_logit(m, 0, t);
            double p = 1.0 / (1.0 + exp(-(double)z));
            size_t pl;
            const char *piece = kwp_vocab_piece(v, (uint32_t)in[t], &pl);
            if (json) {
                kbuf_printf(&o, "%s{\"position\":%d,\"id\":%d,\"token\":", t ? "," : "", t, in[t]);
                kbuf_json_str(&o, piece, pl);
                kbuf_printf(&o, ",\"replaced_prob\":%.6f}", p);
            } else {
                kbuf_printf(&o, "  %3d  %-16.*s %.3f%s\n", t, (int)pl, piece, p, p > 0.5 ? "  replaced?" : "");
            }
        }
        kbuf_puts(&o, json ? "]}\n" : "");
        fputs(o.data, stdout);
        kbuf_free(&o);
    }
    free(in);
    free(types);
    kmodel_free(m);
    return rc;
}

int cmd_predict(int argc, char **argv, const char *db)
{
    static const char usage[] =
        "usage: kiln predict --checkpoint C [--top-k K] [--rtd] [--no-kg] [--threads N] [--json] TEXT...\n\n"
        "Fills each [MASK] of each TEXT with the model's top K pieces (default 5) and\n"
        "their probabilities (an ELECTRA checkpoint: its generator's). TEXT is tokenized\n"
        "with the checkpoint's vocabulary as BertTokenizer does; special tokens written\n"
        "in it ([MASK], [SEP]) stay whole.\n"
        "--rtd (ELECTRA): the discriminator's probability that each token of TEXT was\n"
        "replaced (\"The chef ate the meal\" against \"The chef drank the meal\").\n"
        "--json prints a line per TEXT: {\"text\", \"masks\": [{\"position\", \"top\":\n"
        "[{\"id\", \"token\", \"prob\"}]}]}; with --rtd {\"text\", \"tokens\": [{\"position\",\n"
        "\"id\", \"token\", \"replaced_prob\"}]} (positions in the [CLS] ... [SEP] sequence).\n"
        "An ERNIE checkpoint (docs/ernie.md) links the entities of each TEXT with the KG\n"
        "of the store (--db) as kiln finetune does, and --json adds \"entities\":\n"
        "[{\"position\", \"entity\" (the KG id), \"row\" (of the entity table)}]; --no-kg\n"
        "reads the text alone (what the exported DIR/text computes).\n";
    enum { O_CKPT = 1, O_TOPK, O_THREADS, O_RTD, O_NOKG };
    static const struct option lo[] = {CLI_COMMON_LONGOPTS, {"checkpoint", required_argument, 0, O_CKPT},
                                       {"top-k", required_argument, 0, O_TOPK}, {"rtd", no_argument, 0, O_RTD},
                                       {"threads", required_argument, 0, O_THREADS}, {"no-kg", no_argument, 0, O_NOKG},
                                       {0, 0, 0, 0}};
    cli_common c;
    cli_common_init(&c, db);
    const char *ckpt = NULL;
    int topk = 5, threads = kcpu_count(), rtd = 0, nokg = 0, opt;
    optind = 1;
    while ((opt = getopt_long(argc, argv, CLI_COMMON_SHORT, lo, NULL)) != -1) {
        if (cli_common_opt(&c, opt, optarg)) continue;
        char *end;
        if (opt == O_CKPT) ckpt = optarg;
        else if (opt == O_RTD) rtd = 1;
        else if (opt == O_NOKG) nokg = 1;
        else if (opt == O_TOPK) {
            topk = (int)strtol(optarg, &end, 10);
            if (*end || topk < 1 || topk > 1000) return cli_usage_error("predict", "--top-k: 1 to 1000");
        } else if (opt == O_THREADS) {
            threads = (int)strtol(optarg, &end, 10);
            if (*end || threads < 1 || threads > 256) return cli_usage_error("predict", "--threads: 1 to 256");
        } else return cli_usage_error("predict", "bad option");
    }
    if (c.help) { fputs(usage, stdout); return 0; }
    if (!ckpt) return cli_usage_error("predict", "--checkpoint is required");
    if (optind >= argc) return cli_usage_error("predict", "give at least one TEXT");
    kckpt *ck;
    ktrain_config cfg;
    int mode, rc = cli_open_checkpoint(ckpt, &ck, &cfg, &mode);
    if (rc) return rc;
    omp_set_num_threads(threads);
    openblas_set_num_threads(threads);
    char err[1024];
    size_t vlen;
    const char *vtext = kckpt_vocab(ck, &vlen);
    kwp_vocab *v = NULL;
    if (kwp_vocab_load(vtext, vlen, mode, &v, err, sizeof err)) {
        kerr("%s: vocabulary: %s", kckpt_path(ck), err);
        kckpt_close(ck);
        return EX_DATAERR;
    }
    int32_t cls = (int32_t)kwp_vocab_special(v, KWP_CLS), sep = (int32_t)kwp_vocab_special(v, KWP_SEP),
            mask = (int32_t)kwp_vocab_special(v, KWP_MASK), pad = (int32_t)kwp_vocab_special(v, KWP_PAD);
    kwp_tok *tok = kwp_tok_new(v, KWP_DEFAULT_MAX_WORD_CHARS);
    int Lmax = cfg.model.max_position_embeddings, n_texts = argc - optind;
    int sentence = !!(cfg.data.objectives & (KOBJ_SOP | KOBJ_NSP));
    /* every text tokenized first: one model sized for the longest, weights copied once */
    kwp_ids *all = xcalloc((size_t)n_texts, sizeof *all);
    int Lm = 2, Pm = 1;
    for (int a = 0; a < n_texts && !rc; a++) {
        kwp_encode(tok, argv[optind + a], strlen(argv[optind + a]), &all[a]);
        int L = (int)all[a].n + 2, P = 0;
        for (size_t i = 0; i < all[a].n; i++) P += (int32_t)all[a].ids[i] == mask;
        if (L > Lmax) {
            kerr("text %d: %d tokens with [CLS] and [SEP], the model takes at most %d", a + 1, L, Lmax);
            rc = EX_DATAERR;
        }
        if (P == 0 && !rtd) kwarn("text %d has no [MASK]", a + 1);
        Lm = L > Lm ? L : Lm;
        Pm = P > Pm ? P : Pm;
    }
    if (!rc && rtd && cfg.model.type != KMODEL_ELECTRA) {
        kerr("%s: --rtd needs an ELECTRA checkpoint (this one is %s)", kckpt_path(ck),
             cfg.model.type == KMODEL_BERT ? "BERT" : cfg.model.type == KMODEL_DISTILBERT ? "DistilBERT" : "ALBERT");
        rc = EX_USAGE;
    }
    /* an ELECTRA generator alone (an imported ElectraForMaskedLM): its own tower, the masked-LM head only */
    const int lone_gen = cfg.model.type == KMODEL_ELECTRA && kckpt_tensor(ck, "model.safetensors", "generator_lm_head.bias");
    if (!rc && rtd && lone_gen) {
        kerr("%s: an ELECTRA generator alone (ElectraForMaskedLM) has no discriminator: --rtd needs one", kckpt_path(ck));
        rc = EX_USAGE;
    }
    if (!rc && !rtd && cfg.model.type == KMODEL_ELECTRA && !lone_gen &&
        !kckpt_tensor(ck, "model.safetensors", "generator.generator_lm_head.bias")) {
        kerr("%s: an ELECTRA discriminator without its generator has no masked-LM head: use --rtd", kckpt_path(ck));
        rc = EX_USAGE;
    }
    if (!rc && rtd) {
        rc = predict_rtd(ck, &cfg, v, all, argv + optind, n_texts, Lm, c.json);
        for (int a = 0; a < n_texts; a++) kwp_ids_free(&all[a]);
        free(all);
        kwp_tok_free(tok);
        kwp_vocab_free(v);
        kckpt_close(ck);
        return rc;
    }
    kmodel_spec spec = kmodel_spec_pretrain_of(&cfg.model, 1, Lm, Pm, sentence);
    if (lone_gen) spec.heads = KHEAD_MLM;
    kmodel *m = rc ? NULL : kmodel_create(&cfg.model, &spec, err, sizeof err);
    if (!rc && !m) {
        kerr("model: %s", err);
        rc = EX_DATAERR;
    }
    if (m) rc = cli_load_weights(m, ck); /* weights from the checkpoint, by name and shape */
    cli_kg kg; /* ERNIE: the entities of the texts, with the store's KG */
    memset(&kg, 0, sizeof kg);
    if (!rc && cfg.model.fusion_layers > 0 && !nokg) {
        const kst_file *mf = kckpt_file(ck, "model.safetensors");
        const kst_tensor *et = mf ? kst_find(mf, "ernie.entity_embeddings.weight") : NULL;
        rc = cli_kg_open(&c, cfg.knowledge_embedding, cfg.model.entity_vocab_size, et ? et->data : NULL, vtext, vlen,
                         &kg);
        if (rc) kerr("(--no-kg predicts from the text alone)");
    }
    /* one row per text: [CLS] ids [SEP] padded to Lm, the [MASK] positions as predictions */
    int32_t *in = xcalloc((size_t)Lm, sizeof *in), *pos = xcalloc((size_t)Pm, sizeof *pos),
            *lab = xcalloc((size_t)Pm, sizeof *lab);
    uint8_t *types = xcalloc((size_t)Lm, 1);
    float *wts = xcalloc((size_t)Pm, sizeof *wts);
    for (int a = 0; a < n_texts && !rc; a++) {
        const char *text = argv[optind + a];
        const kwp_ids *ids = &all[a];
        int len = (int)ids->n + 2, n_masked = 0, label = -1;
        int64_t index = 0;
        for (int i = 0; i < Lm; i++) in[i] = pad;
        in[0] = cls;
        for (size_t i = 0; i < ids->n; i++) in[i + 1] = (int32_t)ids->ids[i];
        in[len - 1] = sep;
        for (int j = 0; j < Pm; j++) pos[j] = 0, lab[j] = pad, wts[j] = 0;
        for (int i = 0; i < len; i++)
            if (in[i] == mask) {
                pos[n_masked] = i;
                lab[n_masked] = mask;
                wts[n_masked] = 1.0f;
                n_masked++;
            }
        ksample_batch b = {.version = KSAMPLE_BATCH_VERSION, .objectives = KOBJ_MLM | (sentence ? KOBJ_SOP : 0),
                           .B = 1, .L = Lm, .P = Pm, .capacity = 1, .pad_id = pad, .cls_id = cls, .sep_id = sep,
                           .mask_id = mask, .index = &index, .input_ids = in, .token_type_ids = types,
                           .lengths = &len, .n_masked = &n_masked, .masked_positions = pos, .masked_ids = lab,
                           .masked_weights = wts, .labels = &label};
        if (!rc && kg.linker) cli_kg_link(&kg, &b); /* b.entity_ids: allocated here, freed below */
        kstep_result res;
        if (!rc && kmodel_evaluate(m, &b, &res)) {
            kerr("model: %s", kmodel_error(m));
            rc = EX_SOFTWARE;
        }
        kbuf o = {0};
        if (!rc) {
            if (c.json) {
                kbuf_puts(&o, "{\"text\":");
                kbuf_json_str(&o, text, strlen(text));
                kbuf_puts(&o, ",\"masks\":[");
            } else {
                kbuf_printf(&o, "%s\n", text);
            }
            int V = cfg.model.vocab_size;
            for (int j = 0; j < n_masked; j++) {
                const float *lg = kmodel_mlm_logits(m, 0, j);
                double mx = -INFINITY, z = 0;
                for (int k = 0; k < V; k++) mx = lg[k] > mx ? lg[k] : mx;
                for (int k = 0; k < V; k++) z += exp(lg[k] - mx);
                int best[1000];
                int nb = 0;
                for (int k = 0; k < V; k++) {   /* insertion into the top list */
                    if (nb < topk) best[nb++] = k;
                    else if (lg[k] <= lg[best[nb - 1]]) continue;
                    else best[nb - 1] = k;
                    for (int q = nb - 1; q > 0 && lg[best[q]] > lg[best[q - 1]]; q--) {
                        int t = best[q];
                        best[q] = best[q - 1];
                        best[q - 1] = t;
                    }
                }
                if (c.json) kbuf_printf(&o, "%s{\"position\":%d,\"top\":[", j ? "," : "", pos[j]);
                else kbuf_printf(&o, "  [MASK] at %d:", pos[j]);
                for (int q = 0; q < nb; q++) {
                    size_t pl;
                    const char *piece = kwp_vocab_piece(v, (uint32_t)best[q], &pl);
                    double prob = exp(lg[best[q]] - mx) / z;
                    if (c.json) {
                        kbuf_printf(&o, "%s{\"id\":%d,\"token\":", q ? "," : "", best[q]);
                        kbuf_json_str(&o, piece, pl);
                        kbuf_printf(&o, ",\"prob\":%.6f}", prob);
                    } else {
                        kbuf_printf(&o, "  %.*s %.3f", (int)pl, piece, prob);
                    }
                }
                kbuf_puts(&o, c.json ? "]}" : "\n");
            }
            if (c.json && b.entity_ids) { /* ERNIE: the linked entities (the row's: k.found holds its KG ids) */
                kbuf_puts(&o, "],\"entities\":[");
                int first = 1;
                for (int i = 0; i < len; i++)
                    if (kg.found[i]) {
                        kbuf_printf(&o, "%s{\"position\":%d,\"entity\":%lld,\"row\":%d}", first ? "" : ",", i,
                                    (long long)kg.found[i], b.entity_ids[i]);
                        first = 0;
                    }
            }
            kbuf_puts(&o, c.json ? "]}\n" : "");
            fputs(o.data, stdout);
        }
        kbuf_free(&o);
        free(b.entity_ids);
    }
    cli_kg_close(&kg);
    for (int a = 0; a < n_texts; a++) kwp_ids_free(&all[a]);
    free(all), free(in), free(pos), free(lab), free(types), free(wts);
    kmodel_free(m);
    kwp_tok_free(tok);
    kwp_vocab_free(v);
    kckpt_close(ck);
    return rc;
}
