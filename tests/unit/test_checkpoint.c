/* test_checkpoint.c: unit tests of trainer/checkpoint.h and trainer/export.h.
 * Checkpoints: save/open round trip (tensors, state, metrics with NaN, RNG
 * keys, config, vocabulary), the expected-tensor check (missing, extra,
 * wrong shape or dtype, unknown file), keep-K pruning (never the one just
 * written), replacing a step, .tmp-* crash leftovers and foreign folders
 * ignored by kckpt_latest and swept by the next save, refusal of damaged or
 * foreign checkpoints (truncated tensors, edited state.json, newer version,
 * replaced vocab.txt, step mismatch), kckpt_open_model (the weights alone:
 * a damaged optimizer file not read, a damaged model or state.json still
 * refused), the lock against a second saver.
 * Export: the Hugging Face folder of a tiny ALBERT and BERT (files, config
 * fields, tensors written and tied ones left out), and its refusals (missing,
 * misshaped, unknown or untied tensors, vocabulary without special tokens,
 * pad id mismatch, existing folder). Each test works in a fresh /tmp folder. */
#define _POSIX_C_SOURCE 200809L
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "trainer/checkpoint.h"
#include "trainer/config.h"
#include "trainer/export.h"
#include "util/util.h"

static char dir[256];
static char err[2048];

static int setup(void **state)
{
    (void)state;
    snprintf(dir, sizeof dir, "/tmp/kiln-test-ckpt-XXXXXX");
    assert_non_null(mkdtemp(dir));
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    kckpt_remove_tree(dir);
    return 0;
}

static char *at(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *at(const char *fmt, ...)
{
    static char bufs[4][1024];
    static int k;
    char rel[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(rel, sizeof rel, fmt, ap);
    va_end(ap);
    char *p = bufs[k++ % 4];
    snprintf(p, 1024, "%s/%s", dir, rel);
    return p;
}

static int exists(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0;
}

static void write_text(const char *p, const char *s)
{
    FILE *f = fopen(p, "wb");
    assert_non_null(f);
    fputs(s, f);
    fclose(f);
}

/* ---- a small run's state ---------------------------------------------------- */

static const char VOCAB[] = "[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\nthe\n##s\ncat\n";
static float emb[8 * 4], w[4 * 4], m1[8 * 4], v1[8 * 4];
static int64_t opt_step = 7;

typedef struct run {
    kst_tensor model[2], opt[3];
    kckpt_part parts[2];
    kckpt_metric metrics[3];
    kckpt_state st;
    char *config;
} run;

static void make_run(run *r, int64_t step)
{
    memset(r, 0, sizeof *r);
    for (int i = 0; i < 32; i++) {
        emb[i] = (float)i * 0.5f + (float)step;
        m1[i] = -(float)i;
        v1[i] = (float)i * (float)i;
    }
    for (int i = 0; i < 16; i++) w[i] = 1.0f / (float)(i + 1);
    r->model[0] = (kst_tensor){"emb", "F32", 2, {8, 4}, emb, sizeof emb};
    r->model[1] = (kst_tensor){"layer.w", "F32", 2, {4, 4}, w, sizeof w};
    r->opt[0] = (kst_tensor){"m.emb", "F32", 2, {8, 4}, m1, sizeof m1};
    r->opt[1] = (kst_tensor){"v.emb", "F32", 2, {8, 4}, v1, sizeof v1};
    r->opt[2] = (kst_tensor){"step", "I64", 0, {0}, &opt_step, sizeof opt_step};
    r->parts[0] = (kckpt_part){"model.safetensors", r->model, 2};
    r->parts[1] = (kckpt_part){"optimizer.safetensors", r->opt, 3};
    r->metrics[0] = (kckpt_metric){"loss", 3.25};
    r->metrics[1] = (kckpt_metric){"val_loss", NAN};
    r->metrics[2] = (kckpt_metric){"lr", 1e-4 / 3};
    ktrain_config c;
    const char *sets[] = {"budget.steps=1000", "data.vocab=tiny"};
    assert_int_equal(ktrain_config_parse(&c, NULL, 0, sets, 2, err, sizeof err), 0);
    r->config = ktrain_config_to_json(&c);
    r->st = (kckpt_state){.step = step, .tokens = step * 2048, .seconds = 1.5 * (double)step, .epoch = 1,
                          .next_index = 12345, .n_rng = 3, .rng = {1, UINT64_MAX, 0x0123456789abcdefull},
                          .config_json = r->config, .vocab_name = "tiny", .metrics = r->metrics, .n_metrics = 3,
                          .extra_json = "{\"best_val_loss\": 2.5, \"note\": \"x\"}"};
}

static void free_run(run *r) { free(r->config); }

static char *save(run *r, int keep)
{
    static char path[1024];
    int rc = kckpt_save(at("ck"), &r->st, r->parts, 2, VOCAB, strlen(VOCAB), keep, path, sizeof path, err,
                        sizeof err);
    if (rc) fail_msg("save: %d %s", rc, err);
    return path;
}

/* ---- checkpoints -------------------------------------------------------------- */

static void test_round_trip(void **state)
{
    (void)state;
    run r;
    make_run(&r, 1234);
    char *path = save(&r, 3);
    assert_string_equal(path, at("ck/step-000001234"));
    assert_true(exists(at("ck/step-000001234/model.safetensors")));
    assert_true(exists(at("ck/step-000001234/optimizer.safetensors")));
    assert_true(exists(at("ck/step-000001234/state.json")));
    assert_true(exists(at("ck/step-000001234/vocab.txt")));
    assert_false(exists(at("ck/.tmp-step-000001234")));

    char latest[1024];
    int64_t step = -1;
    assert_int_equal(kckpt_latest(at("ck"), latest, sizeof latest, &step), 0);
    assert_int_equal(step, 1234);
    assert_string_equal(latest, path);

    kckpt *c = kckpt_load(path, r.parts, 2, err, sizeof err);
    if (!c) fail_msg("%s", err);
    const kckpt_state *s = kckpt_state_of(c);
    assert_int_equal(s->step, 1234);
    assert_int_equal(s->tokens, 1234 * 2048);
    assert_true(s->seconds == 1.5 * 1234);
    assert_int_equal(s->epoch, 1);
    assert_int_equal(s->next_index, 12345);
    assert_int_equal(s->n_rng, 3);
    assert_true(s->rng[0] == 1 && s->rng[1] == UINT64_MAX && s->rng[2] == 0x0123456789abcdefull);
    assert_string_equal(s->vocab_name, "tiny");
    assert_int_equal(s->n_metrics, 3);
    assert_string_equal(s->metrics[0].name, "loss");
    assert_true(s->metrics[0].value == 3.25);
    assert_true(isnan(s->metrics[1].value));
    assert_true(s->metrics[2].value == 1e-4 / 3); /* exact */
    json_t *ex = json_loads(s->extra_json, 0, NULL);
    assert_true(json_real_value(json_object_get(ex, "best_val_loss")) == 2.5);
    json_decref(ex);
    /* the config reads back to the same canonical text */
    ktrain_config c2;
    assert_int_equal(ktrain_config_parse(&c2, s->config_json, strlen(s->config_json), NULL, 0, err, sizeof err), 0);
    char *j = ktrain_config_to_json(&c2);
    assert_string_equal(j, r.config);
    free(j);
    size_t vl;
    const char *v = kckpt_vocab(c, &vl);
    assert_int_equal(vl, strlen(VOCAB));
    assert_memory_equal(v, VOCAB, vl);
    const kst_tensor *t = kckpt_tensor(c, "model.safetensors", "emb");
    assert_non_null(t);
    assert_memory_equal(t->data, emb, sizeof emb);
    t = kckpt_tensor(c, "optimizer.safetensors", "step");
    assert_int_equal(*(const int64_t *)t->data, 7);
    assert_null(kckpt_tensor(c, "model.safetensors", "m.emb"));
    assert_null(kckpt_file(c, "nope.safetensors"));
    kckpt_close(c);
    free_run(&r);
}

static void test_check_expected(void **state)
{
    (void)state;
    run r;
    make_run(&r, 5);
    char *path = save(&r, 3);
    kckpt *c = kckpt_open(path, err, sizeof err);
    assert_non_null(c);

    kst_tensor model[2];
    kckpt_part parts[2] = {{"model.safetensors", model, 2}, r.parts[1]};
    memcpy(model, r.model, sizeof model);
    model[1].shape[0] = 5;
    assert_int_equal(kckpt_check(c, parts, 2, 0, err, sizeof err), EX_DATAERR);
    assert_non_null(strstr(err, "model.safetensors: does not fit this model: tensor 'layer.w' is F32 [4, 4], "
                                "this model has F32 [5, 4]"));
    memcpy(model, r.model, sizeof model);
    model[1].dtype = "F16";
    assert_int_equal(kckpt_check(c, parts, 2, 0, err, sizeof err), EX_DATAERR);
    assert_non_null(strstr(err, "this model has F16"));
    memcpy(model, r.model, sizeof model);
    model[1].name = "layer.v";
    assert_int_equal(kckpt_check(c, parts, 2, 0, err, sizeof err), EX_DATAERR);
    assert_non_null(strstr(err, "tensor 'layer.v' (in this model) is missing"));
    assert_non_null(strstr(err, "tensor 'layer.w' is not in this model"));
    parts[0].n = 1;
    memcpy(model, r.model, sizeof model);
    assert_int_equal(kckpt_check(c, parts, 2, 0, err, sizeof err), EX_DATAERR);
    assert_non_null(strstr(err, "'layer.w' is not in this model"));
    /* files: one not in the checkpoint, one not expected */
    parts[0].n = 2;
    kckpt_part other[3] = {r.parts[0], r.parts[1], {"ema.safetensors", r.model, 2}};
    assert_int_equal(kckpt_check(c, other, 3, 0, err, sizeof err), EX_DATAERR);
    assert_non_null(strstr(err, "has no ema.safetensors"));
    assert_int_equal(kckpt_check(c, r.parts, 1, 0, err, sizeof err), EX_DATAERR);
    assert_non_null(strstr(err, "has optimizer.safetensors, which this run does not know how to restore"));
    assert_int_equal(kckpt_check(c, r.parts, 1, KCKPT_ONLY_LISTED, err, sizeof err), 0);
    assert_int_equal(kckpt_check(c, r.parts, 2, 0, err, sizeof err), 0);
    kckpt_close(c);
    free_run(&r);
}

static int count_steps(void)
{
    int n = 0;
    for (int s = 0; s <= 20; s++) n += exists(at("ck/step-%09d", s));
    return n;
}

static void test_keep_and_replace(void **state)
{
    (void)state;
    run r;
    for (int s = 1; s <= 5; s++) {
        make_run(&r, s);
        save(&r, 2);
        free_run(&r);
    }
    assert_int_equal(count_steps(), 2);
    assert_true(exists(at("ck/step-000000004")) && exists(at("ck/step-000000005")));
    /* an older step saved later is kept (it was just written) beside the two highest */
    make_run(&r, 3);
    save(&r, 2);
    free_run(&r);
    assert_int_equal(count_steps(), 3);
    assert_true(exists(at("ck/step-000000003")));
    /* the same step again replaces it */
    make_run(&r, 5);
    r.st.tokens = 99;
    save(&r, 0); /* keep <= 0: no pruning */
    free_run(&r);
    assert_int_equal(count_steps(), 3);
    kckpt *c = kckpt_open(at("ck/step-000000005"), err, sizeof err);
    assert_non_null(c);
    assert_int_equal(kckpt_state_of(c)->tokens, 99);
    kckpt_close(c);
    /* steps past 9 digits */
    make_run(&r, 12345678901LL);
    char *p = save(&r, 1);
    assert_string_equal(p, at("ck/step-12345678901"));
    free_run(&r);
    assert_int_equal(count_steps(), 0);
}

static void test_crash_leftovers(void **state)
{
    (void)state;
    run r;
    make_run(&r, 10);
    save(&r, 5);
    free_run(&r);
    /* a crash while writing step 20, a foreign step-30 without state.json,
     * a file named like a step, a crash while pruning */
    assert_int_equal(mkdir(at("ck/.tmp-step-000000020"), 0755), 0);
    write_text(at("ck/.tmp-step-000000020/state.json"), "{\"format\": \"kiln-checkpoint\"");
    assert_int_equal(mkdir(at("ck/step-000000030"), 0755), 0);
    write_text(at("ck/step-000000040"), "not a folder");
    assert_int_equal(mkdir(at("ck/.tmp-del-step-000000001"), 0755), 0);
    char latest[1024];
    int64_t step;
    assert_int_equal(kckpt_latest(at("ck"), latest, sizeof latest, &step), 0);
    assert_int_equal(step, 10);
    /* the next save sweeps .tmp-* and leaves foreign things alone */
    make_run(&r, 11);
    save(&r, 5);
    free_run(&r);
    assert_false(exists(at("ck/.tmp-step-000000020")));
    assert_false(exists(at("ck/.tmp-del-step-000000001")));
    assert_true(exists(at("ck/step-000000030")));
    assert_int_equal(kckpt_latest(at("ck"), latest, sizeof latest, &step), 0);
    assert_int_equal(step, 11);
    /* no checkpoint */
    assert_int_equal(kckpt_latest(at("nothing"), latest, sizeof latest, &step), EX_NOINPUT);
    assert_string_equal(latest, "");
    assert_int_equal(mkdir(at("empty"), 0755), 0);
    assert_int_equal(kckpt_latest(at("empty"), latest, sizeof latest, NULL), EX_NOINPUT);
}

/* Opens path expecting a refusal whose message holds frag. */
static void refused(const char *path, const char *frag)
{
    kckpt *c = kckpt_open(path, err, sizeof err);
    if (c) {
        kckpt_close(c);
        fail_msg("%s accepted (expected \"%s\")", path, frag);
    }
    if (!strstr(err, frag)) fail_msg("message \"%s\" lacks \"%s\"", err, frag);
}

/* Rewrites state.json of path with one substitution. */
static void edit_state(const char *path, const char *from, const char *to)
{
    char sp[1100];
    snprintf(sp, sizeof sp, "%s/state.json", path);
    kbuf b = {0};
    assert_int_equal(kbuf_read_file(&b, sp), 0);
    char *hit = strstr(b.data, from);
    if (!hit) fail_msg("'%s' not in state.json", from);
    kbuf o = {0};
    kbuf_append(&o, b.data, (size_t)(hit - b.data));
    kbuf_puts(&o, to);
    kbuf_puts(&o, hit + strlen(from));
    write_text(sp, o.data);
    kbuf_free(&b);
    kbuf_free(&o);
}

static void test_damaged(void **state)
{
    (void)state;
    run r;
    make_run(&r, 42);
    char path[1024];
    snprintf(path, sizeof path, "%s", save(&r, 3));
    char copy[1100];
    snprintf(copy, sizeof copy, "%s/copy", dir);
    char cmd[3000];

    /* a fresh copy of the good checkpoint for each damage */
#define FRESH()                                                                   \
    do {                                                                          \
        kckpt_remove_tree(copy);                                                  \
        snprintf(cmd, sizeof cmd, "cp -r '%s' '%s'", path, copy);                 \
        assert_int_equal(system(cmd), 0);                                         \
    } while (0)

    FRESH();
    kckpt *c = kckpt_open(copy, err, sizeof err); /* any folder name is fine */
    if (!c) fail_msg("%s", err);
    kckpt_close(c);

    FRESH();
    assert_int_equal(truncate(at("copy/model.safetensors"), 200), 0);
    refused(copy, "copy/model.safetensors: truncated");
    FRESH();
    unlink(at("copy/optimizer.safetensors"));
    refused(copy, "copy/optimizer.safetensors: No such file");
    /* kckpt_open_model: the weights alone; the optimizer file is not read
     * (missing or truncated is fine), model.safetensors and state.json are
     * checked as by kckpt_open */
    c = kckpt_open_model(copy, err, sizeof err);
    if (!c) fail_msg("%s", err);
    assert_non_null(kckpt_file(c, "model.safetensors"));
    assert_null(kckpt_file(c, "optimizer.safetensors"));
    assert_memory_equal(kckpt_tensor(c, "model.safetensors", "layer.w")->data, r.model[1].data, r.model[1].nbytes);
    assert_int_equal(kckpt_state_of(c)->step, 42);
    assert_int_equal(kckpt_check(c, r.parts, 1, 0, err, sizeof err), 0);
    kckpt_close(c);
    FRESH();
    assert_int_equal(truncate(at("copy/optimizer.safetensors"), 100), 0);
    refused(copy, "copy/optimizer.safetensors: truncated");
    c = kckpt_open_model(copy, err, sizeof err);
    if (!c) fail_msg("%s", err);
    kckpt_close(c);
    assert_int_equal(truncate(at("copy/model.safetensors"), 200), 0);
    assert_null(kckpt_open_model(copy, err, sizeof err));
    assert_non_null(strstr(err, "copy/model.safetensors: truncated"));
    FRESH();
    edit_state(copy, "\"version\": 1", "\"version\": 2");
    assert_null(kckpt_open_model(copy, err, sizeof err));
    assert_non_null(strstr(err, "version 2 is newer than this kiln reads (1)"));
    FRESH();
    unlink(at("copy/state.json"));
    refused(copy, "not a complete kiln checkpoint");
    FRESH();
    edit_state(copy, "\"kiln-checkpoint\"", "\"other\"");
    refused(copy, "not a kiln checkpoint");
    FRESH();
    edit_state(copy, "\"version\": 1", "\"version\": 2");
    refused(copy, "version 2 is newer than this kiln reads (1)");
    FRESH();
    edit_state(copy, "\"version\": 1", "\"version\": 1, \"surprise\": 0");
    refused(copy, "unknown key \"surprise\"");
    FRESH();
    edit_state(copy, "\"step\": 42", "\"step\": 43");
    snprintf(cmd, sizeof cmd, "%s/step-000000042", dir);
    kckpt_remove_tree(cmd);
    assert_int_equal(rename(copy, cmd), 0);
    refused(cmd, "\"step\" is 43 but the folder is step-000000042");
    kckpt_remove_tree(cmd);
    FRESH();
    edit_state(copy, "\"name\": \"layer.w\", \"dtype\": \"F32\", \"shape\": [4, 4]",
               "\"name\": \"layer.w\", \"dtype\": \"F32\", \"shape\": [2, 8]");
    refused(copy, "model.safetensors: does not match state.json: tensor 'layer.w' is F32 [4, 4], state.json has "
                  "F32 [2, 8]");
    FRESH();
    edit_state(copy, "\"sampler\": {\"epoch\": 1", "\"sampler\": {\"epoch\": -1");
    refused(copy, "sampler: \"epoch\" is not one");
    FRESH();
    edit_state(copy, "\"rng\": [\"", "\"rng\": [\"x");
    refused(copy, "rng[0] is not 16 lowercase hex digits");
    FRESH();
    edit_state(copy, "\"config\": {", "\"config\": [{");
    refused(copy, "line"); /* now invalid JSON */
    FRESH();
    write_text(at("copy/vocab.txt"), "[PAD]\n");
    refused(copy, "vocab.txt: 6 bytes with hash");
    /* a safetensors file from another checkpoint (same names, other shapes) */
    FRESH();
    kst_tensor other[2] = {r.model[0], r.model[1]};
    other[1].shape[0] = 2;
    other[1].shape[1] = 8;
    assert_int_equal(kst_write(at("copy/model.safetensors"), other, 2, NULL, 0, err, sizeof err), 0);
    refused(copy, "does not match state.json");
    refused(at("nope"), "not a checkpoint folder");
#undef FRESH
    free_run(&r);
}

static void test_save_refuses(void **state)
{
    (void)state;
    run r;
    make_run(&r, 1);
    kckpt_part bad[2] = {r.parts[0], {"../x.safetensors", r.opt, 3}};
    assert_int_equal(kckpt_save(at("ck"), &r.st, bad, 2, VOCAB, strlen(VOCAB), 3, NULL, 0, err, sizeof err),
                     EX_SOFTWARE);
    bad[1].file = "model.safetensors";
    assert_int_equal(kckpt_save(at("ck"), &r.st, bad, 2, VOCAB, strlen(VOCAB), 3, NULL, 0, err, sizeof err),
                     EX_SOFTWARE);
    assert_non_null(strstr(err, "given twice"));
    r.st.config_json = "[1]";
    assert_int_equal(kckpt_save(at("ck"), &r.st, r.parts, 2, VOCAB, strlen(VOCAB), 3, NULL, 0, err, sizeof err),
                     EX_SOFTWARE);
    r.st.config_json = r.config;
    r.st.n_rng = 9;
    assert_int_equal(kckpt_save(at("ck"), &r.st, r.parts, 2, VOCAB, strlen(VOCAB), 3, NULL, 0, err, sizeof err),
                     EX_SOFTWARE);
    r.st.n_rng = 0;
    /* a bad tensor: nothing published, no leftovers */
    kst_tensor t = r.model[0];
    t.nbytes = 3;
    kckpt_part one[1] = {{"model.safetensors", &t, 1}};
    assert_int_equal(kckpt_save(at("ck"), &r.st, one, 1, VOCAB, strlen(VOCAB), 3, NULL, 0, err, sizeof err),
                     EX_SOFTWARE);
    assert_false(exists(at("ck/step-000000001")));
    assert_false(exists(at("ck/.tmp-step-000000001")));
    /* a file where the folder should be */
    write_text(at("file"), "x");
    assert_int_equal(kckpt_save(at("file/ck"), &r.st, r.parts, 2, VOCAB, strlen(VOCAB), 3, NULL, 0, err,
                                sizeof err),
                     EX_CANTCREAT);
    free_run(&r);
}

static void test_lock(void **state)
{
    (void)state;
    run r;
    make_run(&r, 1);
    save(&r, 3);
    int to_child[2], to_parent[2];
    assert_int_equal(pipe(to_child), 0);
    assert_int_equal(pipe(to_parent), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        /* the child holds the lock as a saver would */
        int fd = open(at("ck/.lock"), O_RDWR);
        struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET};
        int ok = fd >= 0 && fcntl(fd, F_SETLK, &fl) == 0;
        char c = ok ? 'y' : 'n';
        if (write(to_parent[1], &c, 1) != 1) _exit(2);
        if (read(to_child[0], &c, 1) != 1) _exit(3);
        _exit(0);
    }
    char c;
    assert_int_equal(read(to_parent[0], &c, 1), 1);
    assert_int_equal(c, 'y');
    r.st.step = 2;
    int rc = kckpt_save(at("ck"), &r.st, r.parts, 2, VOCAB, strlen(VOCAB), 3, NULL, 0, err, sizeof err);
    assert_int_equal(write(to_child[1], "x", 1), 1);
    int status;
    waitpid(pid, &status, 0);
    assert_int_equal(rc, EX_TEMPFAIL);
    assert_non_null(strstr(err, "another process is saving"));
    assert_false(exists(at("ck/step-000000002")));
    save(&r, 3); /* lock released with the child */
    assert_true(exists(at("ck/step-000000002")));
    close(to_child[0]);
    close(to_child[1]);
    close(to_parent[0]);
    close(to_parent[1]);
    free_run(&r);
}

/* ---- export ------------------------------------------------------------------- */

typedef struct params {
    kst_tensor *t;
    int n;
    float *data;
} params;

/* Every tensor of the layout of head h (NULL: pretraining; tied ones
 * included when with_tied), filled with distinct values; the tied decoder
 * copies the word embeddings. */
static params make_params2(const kmodel_config *m, int V, const kexport_head *h, int with_tied)
{
    int nl;
    kexport_entry *lay = kexport_layout2(m, V, h, &nl);
    assert_non_null(lay);
    params p = {xcalloc((size_t)nl, sizeof(kst_tensor)), 0, NULL};
    size_t total = 0;
    for (int i = 0; i < nl; i++) total += (size_t)(lay[i].shape[0] * (lay[i].ndim == 2 ? lay[i].shape[1] : 1));
    p.data = xcalloc(total, sizeof(float));
    size_t off = 0;
    const float *word = NULL, *bias = NULL;
    for (int i = 0; i < nl; i++) {
        size_t n = (size_t)(lay[i].shape[0] * (lay[i].ndim == 2 ? lay[i].shape[1] : 1));
        float *d = p.data + off;
        off += n;
        if (lay[i].role == KEXPORT_TIED) {
            if (!with_tied) continue;
            memcpy(d, strstr(lay[i].name, "weight") ? word : bias, n * sizeof(float));
        } else {
            for (size_t k = 0; k < n; k++) d[k] = (float)i + (float)k * 1e-3f;
        }
        if (strstr(lay[i].name, "word_embeddings") || !strcmp(lay[i].name, "transformer.wte.weight")) word = d;
        if (!strcmp(lay[i].name, "predictions.bias") || !strcmp(lay[i].name, "cls.predictions.bias")) bias = d;
        kst_tensor *t = &p.t[p.n++];
        t->name = xstrdup(lay[i].name);
        t->dtype = "F32";
        t->ndim = lay[i].ndim;
        t->shape[0] = lay[i].shape[0];
        t->shape[1] = lay[i].shape[1];
        t->data = d;
        t->nbytes = n * sizeof(float);
    }
    free(lay);
    return p;
}

static params make_params(const kmodel_config *m, int V, int with_tied)
{
    return make_params2(m, V, NULL, with_tied);
}

static void free_params(params *p)
{
    for (int i = 0; i < p->n; i++) free((char *)p->t[i].name);
    free(p->t);
    free(p->data);
}

static json_t *load_json(const char *p)
{
    json_error_t je;
    json_t *j = json_load_file(p, JSON_REJECT_DUPLICATES, &je);
    if (!j) fail_msg("%s: %s", p, je.text);
    return j;
}

static kmodel_config tiny(int type)
{
    ktrain_config c;
    ktrain_config_defaults(&c);
    kmodel_config m = c.model;
    m.type = type;
    m.embedding_size = type == KMODEL_BERT ? 8 : 4;
    m.hidden_size = 8;
    m.num_hidden_layers = 2;
    m.num_attention_heads = 2;
    m.intermediate_size = 16;
    m.max_position_embeddings = 16;
    m.num_hidden_groups = type == KMODEL_BERT ? 2 : 1;
    return m;
}

static void test_export_albert(void **state)
{
    (void)state;
    kmodel_config m = tiny(KMODEL_ALBERT);
    params p = make_params(&m, 8, 1);
    assert_int_equal(p.n, 5 + 2 + 16 + 2 + 5 + 2 + 2); /* emb, mapping, layer, pooler, head, tied, sop */
    int rc = kexport_hf(at("out/albert"), &m, p.t, p.n, VOCAB, strlen(VOCAB), 1, 0, err, sizeof err);
    if (rc) fail_msg("%s", err);
    const char *files[] = {"model.safetensors", "config.json", "vocab.txt", "tokenizer_config.json",
                           "special_tokens_map.json"};
    for (int i = 0; i < 5; i++) assert_true(exists(at("out/albert/%s", files[i])));
    assert_false(exists(at("out/.export-albert.tmp")));

    kst_file *f = kst_open(at("out/albert/model.safetensors"), err, sizeof err);
    assert_non_null(f);
    assert_int_equal(kst_count(f), p.n - 2); /* tied decoder weight and bias left out */
    assert_null(kst_find(f, "predictions.decoder.weight"));
    assert_string_equal(kst_meta(f, "format"), "pt");
    const kst_tensor *t = kst_find(f, "albert.encoder.albert_layer_groups.0.albert_layers.0.ffn.weight");
    assert_non_null(t);
    assert_int_equal(t->shape[0], 16);
    assert_int_equal(t->shape[1], 8);
    assert_string_equal(kst_get(f, 0)->name, "albert.embeddings.word_embeddings.weight");
    kst_close(f);

    json_t *cfg = load_json(at("out/albert/config.json"));
    assert_string_equal(json_string_value(json_array_get(json_object_get(cfg, "architectures"), 0)),
                        "AlbertForPreTraining");
    assert_string_equal(json_string_value(json_object_get(cfg, "model_type")), "albert");
    struct { const char *k; long long v; } ints[] = {
        {"vocab_size", 8}, {"embedding_size", 4}, {"hidden_size", 8}, {"num_hidden_layers", 2},
        {"num_attention_heads", 2}, {"intermediate_size", 16}, {"num_hidden_groups", 1}, {"inner_group_num", 1},
        {"max_position_embeddings", 16}, {"type_vocab_size", 2}, {"pad_token_id", 0}, {"bos_token_id", 2},
        {"eos_token_id", 3}};
    for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++) {
        json_t *v = json_object_get(cfg, ints[i].k);
        if (!json_is_integer(v) || json_integer_value(v) != ints[i].v) fail_msg("config.json %s", ints[i].k);
    }
    assert_string_equal(json_string_value(json_object_get(cfg, "hidden_act")), "gelu_new");
    assert_true(json_number_value(json_object_get(cfg, "layer_norm_eps")) == 1e-12);
    assert_string_equal(json_string_value(json_object_get(cfg, "torch_dtype")), "float32");
    assert_non_null(json_object_get(cfg, "transformers_version"));
    json_decref(cfg);
    json_t *tok = load_json(at("out/albert/tokenizer_config.json"));
    assert_string_equal(json_string_value(json_object_get(tok, "tokenizer_class")), "BertTokenizer");
    assert_true(json_is_true(json_object_get(tok, "do_lower_case")));
    assert_int_equal(json_integer_value(json_object_get(tok, "model_max_length")), 16);
    assert_string_equal(json_string_value(json_object_get(tok, "mask_token")), "[MASK]");
    json_decref(tok);
    json_t *spm = load_json(at("out/albert/special_tokens_map.json"));
    assert_int_equal(json_object_size(spm), 5);
    assert_string_equal(json_string_value(json_object_get(spm, "cls_token")), "[CLS]");
    json_decref(spm);

    /* an existing folder: refused, or replaced whole */
    rc = kexport_hf(at("out/albert"), &m, p.t, p.n, VOCAB, strlen(VOCAB), 1, 0, err, sizeof err);
    assert_int_equal(rc, EX_CANTCREAT);
    assert_non_null(strstr(err, "already exists"));
    write_text(at("out/albert/stray.txt"), "x");
    rc = kexport_hf(at("out/albert"), &m, p.t, p.n - 2, VOCAB, strlen(VOCAB), 0, 1, err, sizeof err);
    if (rc) fail_msg("%s", err); /* without the sop head: optional */
    assert_false(exists(at("out/albert/stray.txt")));
    assert_false(exists(at("out/.tmp-old-albert")));
    free_params(&p);

    /* two layer groups, embeddings padded to 9 rows */
    m.num_hidden_groups = 2;
    m.vocab_size = 9;
    p = make_params(&m, 9, 0);
    rc = kexport_hf(at("out/albert2"), &m, p.t, p.n, VOCAB, strlen(VOCAB), 1, 0, err, sizeof err);
    if (rc) fail_msg("%s", err);
    f = kst_open(at("out/albert2/model.safetensors"), err, sizeof err);
    assert_non_null(kst_find(f, "albert.encoder.albert_layer_groups.1.albert_layers.0.attention.dense.bias"));
    assert_int_equal(kst_find(f, "predictions.bias")->shape[0], 9);
    kst_close(f);
    cfg = load_json(at("out/albert2/config.json"));
    assert_int_equal(json_integer_value(json_object_get(cfg, "vocab_size")), 9);
    assert_int_equal(json_integer_value(json_object_get(cfg, "num_hidden_groups")), 2);
    json_decref(cfg);
    free_params(&p);
}

static void test_export_bert(void **state)
{
    (void)state;
    kmodel_config m = tiny(KMODEL_BERT);
    m.hidden_act = KACT_GELU;
    params p = make_params(&m, 8, 0);
    int rc = kexport_hf(at("bert/"), &m, p.t, p.n, VOCAB, strlen(VOCAB), 0, 0, err, sizeof err);
    if (rc) fail_msg("%s", err);
    kst_file *f = kst_open(at("bert/model.safetensors"), err, sizeof err);
    assert_non_null(f);
    assert_int_equal(kst_count(f), p.n);
    assert_non_null(kst_find(f, "bert.encoder.layer.1.output.LayerNorm.bias"));
    assert_non_null(kst_find(f, "cls.seq_relationship.weight"));
    kst_close(f);
    json_t *cfg = load_json(at("bert/config.json"));
    assert_string_equal(json_string_value(json_array_get(json_object_get(cfg, "architectures"), 0)),
                        "BertForPreTraining");
    assert_string_equal(json_string_value(json_object_get(cfg, "hidden_act")), "gelu");
    assert_null(json_object_get(cfg, "embedding_size"));
    json_decref(cfg);
    free_params(&p);
}

/* DistilBertForSequenceClassification: the encoder under distilbert.*, then
 * pre_classifier [H, H] and classifier [K, H] in transformers' order, no
 * pooler, no MLM head; DistilBertConfig with the labels, problem_type and
 * seq_classif_dropout; a missing pre_classifier refused by name; written
 * twice, the same bytes. */
static void test_export_distilbert_cls(void **state)
{
    (void)state;
    kmodel_config m = tiny(KMODEL_DISTILBERT);
    m.embedding_size = m.hidden_size;
    m.num_hidden_groups = m.num_hidden_layers;
    m.seq_classif_dropout = 0.3;
    const char *const labels[] = {"neg", "neu", "pos"};
    const kexport_head ch = {KEXPORT_HEAD_CLASSIFICATION, 3, labels, NULL};
    assert_string_equal(kexport_architecture(KMODEL_DISTILBERT, &ch), "DistilBertForSequenceClassification");
    params p = make_params2(&m, 8, &ch, 1);
    assert_int_equal(p.n, 4 + 2 * 16 + 4); /* embeddings, 2 layers, pre_classifier, classifier; nothing tied */
    static const char *const tail[] = {"pre_classifier.weight", "pre_classifier.bias", "classifier.weight",
                                       "classifier.bias"};
    static const int64_t shapes[4][2] = {{8, 8}, {8, 0}, {3, 8}, {3, 0}};
    int rc = kexport_hf2(at("dcls"), &m, &ch, p.t, p.n, VOCAB, strlen(VOCAB), 1, 0, err, sizeof err);
    if (rc) fail_msg("%s", err);
    kst_file *f = kst_open(at("dcls/model.safetensors"), err, sizeof err);
    assert_non_null(f);
    assert_int_equal(kst_count(f), p.n);
    assert_string_equal(kst_get(f, 0)->name, "distilbert.embeddings.word_embeddings.weight");
    for (int i = 0; i < 4; i++) {
        const kst_tensor *t = kst_get(f, p.n - 4 + i);
        assert_string_equal(t->name, tail[i]);
        assert_int_equal(t->ndim, shapes[i][1] ? 2 : 1);
        assert_int_equal(t->shape[0], shapes[i][0]);
        if (shapes[i][1]) assert_int_equal(t->shape[1], shapes[i][1]);
    }
    for (int i = 0; i < kst_count(f); i++) {
        const char *n = kst_get(f, i)->name;
        assert_true(!strncmp(n, "distilbert.", 11) || !strncmp(n, "pre_classifier.", 15) ||
                    !strncmp(n, "classifier.", 11));
    }
    kst_close(f);
    json_t *cfg = load_json(at("dcls/config.json"));
    assert_string_equal(json_string_value(json_array_get(json_object_get(cfg, "architectures"), 0)),
                        "DistilBertForSequenceClassification");
    assert_string_equal(json_string_value(json_object_get(cfg, "model_type")), "distilbert");
    assert_string_equal(json_string_value(json_object_get(json_object_get(cfg, "id2label"), "1")), "neu");
    assert_int_equal(json_integer_value(json_object_get(json_object_get(cfg, "label2id"), "pos")), 2);
    assert_string_equal(json_string_value(json_object_get(cfg, "problem_type")), "single_label_classification");
    assert_int_equal(json_integer_value(json_object_get(cfg, "dim")), 8);
    assert_true(json_number_value(json_object_get(cfg, "seq_classif_dropout")) == 0.3);
    assert_null(json_object_get(cfg, "hidden_size"));
    json_decref(cfg);
    json_t *tok = load_json(at("dcls/tokenizer_config.json"));
    assert_string_equal(json_string_value(json_object_get(tok, "tokenizer_class")), "DistilBertTokenizer");
    json_decref(tok);
    /* again: the same bytes */
    rc = kexport_hf2(at("dcls2"), &m, &ch, p.t, p.n, VOCAB, strlen(VOCAB), 1, 0, err, sizeof err);
    if (rc) fail_msg("%s", err);
    static const char *const files[] = {"model.safetensors", "config.json", "vocab.txt", "tokenizer_config.json",
                                        "special_tokens_map.json"};
    for (int i = 0; i < 5; i++) {
        char a[1200], b[1200];
        snprintf(a, sizeof a, "%s", at("dcls/%s", files[i]));
        snprintf(b, sizeof b, "%s", at("dcls2/%s", files[i]));
        kbuf x = {0}, y = {0};
        assert_int_equal(kbuf_read_file(&x, a), 0);
        assert_int_equal(kbuf_read_file(&y, b), 0);
        assert_int_equal(x.len, y.len);
        assert_memory_equal(x.data, y.data, x.len);
        kbuf_free(&x);
        kbuf_free(&y);
    }
    /* pre_classifier is required: refused by name, nothing written */
    kst_tensor t2[64];
    int n2 = 0;
    for (int i = 0; i < p.n; i++)
        if (strcmp(p.t[i].name, "pre_classifier.weight")) t2[n2++] = p.t[i];
    rc = kexport_hf2(at("dcls3"), &m, &ch, t2, n2, VOCAB, strlen(VOCAB), 1, 0, err, sizeof err);
    assert_int_equal(rc, EX_DATAERR);
    assert_non_null(strstr(err, "'pre_classifier.weight' is missing"));
    assert_false(exists(at("dcls3")));
    /* regression: one output, problem_type regression */
    free_params(&p);
    const kexport_head reg = {KEXPORT_HEAD_CLASSIFICATION, 1, NULL, NULL};
    p = make_params2(&m, 8, &reg, 0);
    rc = kexport_hf2(at("dreg"), &m, &reg, p.t, p.n, VOCAB, strlen(VOCAB), 1, 0, err, sizeof err);
    if (rc) fail_msg("%s", err);
    cfg = load_json(at("dreg/config.json"));
    assert_string_equal(json_string_value(json_object_get(cfg, "problem_type")), "regression");
    assert_string_equal(json_string_value(json_object_get(json_object_get(cfg, "id2label"), "0")), "LABEL_0");
    json_decref(cfg);
    free_params(&p);
}

/* GPT-2 as GPT2LMHeadModel: the Conv1D weights written [in, out], the tied
 * head left out, GPT2Config's config.json, no tokenizer files */
static void test_export_gpt2(void **state)
{
    (void)state;
    kmodel_config m = tiny(KMODEL_GPT2);
    m.embedding_size = m.hidden_size;
    m.num_hidden_groups = m.num_hidden_layers;
    m.vocab_size = 11;
    m.intermediate_size = 4 * m.hidden_size;
    assert_string_equal(kexport_architecture(KMODEL_GPT2, NULL), "GPT2LMHeadModel");
    params p = make_params(&m, 11, 1);
    assert_int_equal(p.n, 2 + 2 * 12 + 2 + 1); /* wte, wpe, 2 blocks, ln_f, tied lm_head */
    assert_string_equal(p.t[p.n - 1].name, "lm_head.weight");
    const kst_tensor *ca = &p.t[4];
    assert_string_equal(ca->name, "transformer.h.0.attn.c_attn.weight");
    assert_true(ca->shape[0] == 24 && ca->shape[1] == 8); /* kiln's [out, in] */
    int rc = kexport_gpt2(at("gpt2"), &m, p.t, p.n, 10, NULL, 0, NULL, 0, 0, err, sizeof err);
    if (rc) fail_msg("%s", err);
    assert_true(exists(at("gpt2/model.safetensors")) && exists(at("gpt2/config.json")));
    assert_false(exists(at("gpt2/vocab.txt")));
    kst_file *f = kst_open(at("gpt2/model.safetensors"), err, sizeof err);
    assert_non_null(f);
    assert_int_equal(kst_count(f), p.n - 1);
    assert_null(kst_find(f, "lm_head.weight"));
    assert_string_equal(kst_get(f, 0)->name, "transformer.wte.weight");
    static const char *const conv[] = {"attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj"};
    for (int l = 0; l < 2; l++)
        for (int k = 0; k < 4; k++) {
            char name[96];
            snprintf(name, sizeof name, "transformer.h.%d.%s.weight", l, conv[k]);
            const kst_tensor *w = kst_find(f, name), *src = NULL;
            for (int i = 0; i < p.n; i++)
                if (!strcmp(p.t[i].name, name)) src = &p.t[i];
            assert_non_null(w);
            assert_non_null(src);
            assert_true(w->shape[0] == src->shape[1] && w->shape[1] == src->shape[0]); /* [in, out] */
            const float *a = w->data, *b = src->data;
            const int64_t r = src->shape[0], c = src->shape[1];
            for (int64_t i = 0; i < r; i++)
                for (int64_t j = 0; j < c; j++) assert_true(a[j * r + i] == b[i * c + j]);
        }
    const kst_tensor *wte = kst_find(f, "transformer.wte.weight");
    assert_true(wte->shape[0] == 11 && wte->shape[1] == 8);
    assert_int_equal(kst_find(f, "transformer.h.1.attn.c_attn.bias")->shape[0], 24);
    kst_close(f);
    json_t *cfg = load_json(at("gpt2/config.json"));
    assert_string_equal(json_string_value(json_array_get(json_object_get(cfg, "architectures"), 0)),
                        "GPT2LMHeadModel");
    assert_string_equal(json_string_value(json_object_get(cfg, "model_type")), "gpt2");
    struct { const char *k; long long v; } ints[] = {
        {"vocab_size", 11}, {"n_embd", 8}, {"n_layer", 2}, {"n_head", 2}, {"n_positions", 16}, {"n_ctx", 16},
        {"bos_token_id", 10}, {"eos_token_id", 10}};
    for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++) {
        json_t *v = json_object_get(cfg, ints[i].k);
        if (!json_is_integer(v) || json_integer_value(v) != ints[i].v) fail_msg("config.json %s", ints[i].k);
    }
    assert_true(json_is_null(json_object_get(cfg, "n_inner")));
    assert_string_equal(json_string_value(json_object_get(cfg, "activation_function")), "gelu_new");
    assert_true(json_number_value(json_object_get(cfg, "layer_norm_epsilon")) == m.layer_norm_eps);
    assert_true(json_number_value(json_object_get(cfg, "embd_pdrop")) == m.embd_dropout_prob);
    assert_null(json_object_get(cfg, "hidden_size"));
    json_decref(cfg);

    /* n_inner given, no <|endoftext|> */
    free_params(&p);
    m.intermediate_size = 12;
    p = make_params(&m, 11, 0);
    static const char vj[] = "{\"a\": 0}", mg[] = "#version: 0.2\na b\n";
    rc = kexport_gpt2(at("gpt2"), &m, p.t, p.n, -1, vj, strlen(vj), mg, strlen(mg), 1, err, sizeof err);
    if (rc) fail_msg("%s", err);
    cfg = load_json(at("gpt2/config.json"));
    assert_int_equal(json_integer_value(json_object_get(cfg, "n_inner")), 12);
    assert_true(json_is_null(json_object_get(cfg, "eos_token_id")));
    json_decref(cfg);
    /* the tokenizer files, the vocabulary's bytes as given */
    kbuf fb = {0};
    assert_int_equal(kbuf_read_file(&fb, at("gpt2/vocab.json")), 0);
    assert_true(fb.len == strlen(vj) && !memcmp(fb.data, vj, fb.len));
    kbuf_clear(&fb);
    assert_int_equal(kbuf_read_file(&fb, at("gpt2/merges.txt")), 0);
    assert_true(fb.len == strlen(mg) && !memcmp(fb.data, mg, fb.len));
    kbuf_free(&fb);
    cfg = load_json(at("gpt2/tokenizer_config.json"));
    assert_string_equal(json_string_value(json_object_get(cfg, "tokenizer_class")), "GPT2Tokenizer");
    assert_int_equal(json_integer_value(json_object_get(cfg, "model_max_length")), 16);
    json_decref(cfg);
    assert_true(exists(at("gpt2/special_tokens_map.json")));
    /* vocab.json without merges.txt: a bad call */
    assert_int_equal(kexport_gpt2(at("gbad"), &m, p.t, p.n, -1, vj, strlen(vj), NULL, 0, 1, err, sizeof err),
                     EX_SOFTWARE);

    /* refused, nothing written: a missing tensor, a wrong shape, a head that is not wte, a bad id */
    rc = kexport_gpt2(at("gbad"), &m, p.t + 1, p.n - 1, 10, NULL, 0, NULL, 0, 0, err, sizeof err);
    assert_int_equal(rc, EX_DATAERR);
    assert_non_null(strstr(err, "'transformer.wte.weight' is missing"));
    kst_tensor *t = xmalloc(sizeof *t * (size_t)(p.n + 1));
    memcpy(t, p.t, sizeof *t * (size_t)p.n);
    t[4].shape[0] = 8, t[4].shape[1] = 24; /* c_attn given as Conv1D holds it */
    rc = kexport_gpt2(at("gbad"), &m, t, p.n, 10, NULL, 0, NULL, 0, 0, err, sizeof err);
    assert_int_equal(rc, EX_DATAERR);
    assert_non_null(strstr(err, "c_attn.weight' must be F32 [24, 8]"));
    memcpy(t, p.t, sizeof *t * (size_t)p.n);
    float *other = xcalloc((size_t)(11 * 8), sizeof(float));
    t[p.n] = t[0];
    t[p.n].name = "lm_head.weight";
    t[p.n].data = other;
    rc = kexport_gpt2(at("gbad"), &m, t, p.n + 1, 10, NULL, 0, NULL, 0, 0, err, sizeof err);
    assert_int_equal(rc, EX_DATAERR);
    assert_non_null(strstr(err, "differs from 'transformer.wte.weight'"));
    rc = kexport_gpt2(at("gbad"), &m, p.t, p.n, 11, NULL, 0, NULL, 0, 0, err, sizeof err);
    assert_int_equal(rc, EX_DATAERR);
    assert_false(exists(at("gbad")));
    free(other);
    free(t);
    free_params(&p);
}

static void expect_export_fail(const kmodel_config *m, const kst_tensor *t, int n, const char *vocab, int code,
                               const char *frag)
{
    int rc = kexport_hf(at("bad"), m, t, n, vocab, strlen(vocab), 1, 1, err, sizeof err);
    if (rc != code || !strstr(err, frag)) fail_msg("rc %d \"%s\"; expected %d \"%s\"", rc, err, code, frag);
    assert_false(exists(at("bad")));
}

static void test_export_refuses(void **state)
{
    (void)state;
    kmodel_config m = tiny(KMODEL_ALBERT);
    params p = make_params(&m, 8, 1);
    kst_tensor *t = xmalloc(sizeof *t * (size_t)(p.n + 1));
    memcpy(t, p.t, sizeof *t * (size_t)p.n);
    /* missing */
    expect_export_fail(&m, t + 1, p.n - 1, VOCAB, EX_DATAERR, "'albert.embeddings.word_embeddings.weight' is missing");
    /* misshaped */
    t[2].shape[0] = 3;
    expect_export_fail(&m, t, p.n, VOCAB, EX_DATAERR, "'albert.embeddings.token_type_embeddings.weight' must be F32 [2, 4]");
    t[2] = p.t[2];
    t[2].dtype = "F16";
    expect_export_fail(&m, t, p.n, VOCAB, EX_DATAERR, "must be F32");
    t[2] = p.t[2];
    /* unknown, duplicate */
    t[p.n] = p.t[0];
    t[p.n].name = "albert.encoder.albert_layer_groups.1.albert_layers.0.ffn.weight";
    expect_export_fail(&m, t, p.n + 1, VOCAB, EX_DATAERR, "is not a tensor of this model");
    t[p.n].name = p.t[0].name;
    expect_export_fail(&m, t, p.n + 1, VOCAB, EX_DATAERR, "given twice");
    /* an untied decoder */
    int dec = -1;
    for (int i = 0; i < p.n; i++)
        if (!strcmp(t[i].name, "predictions.decoder.weight")) dec = i;
    assert_true(dec >= 0);
    t[dec] = p.t[dec];
    float *other = xmalloc(t[dec].nbytes);
    memcpy(other, t[dec].data, t[dec].nbytes);
    other[0] += 1;
    t[dec].data = other;
    expect_export_fail(&m, t, p.n, VOCAB, EX_DATAERR, "'predictions.decoder.weight' differs from");
    free(other);
    t[dec] = p.t[dec];
    /* vocabulary */
    expect_export_fail(&m, t, p.n, "[PAD]\n[UNK]\n[CLS]\n[SEP]\nmask\nthe\n##s\ncat\n", EX_DATAERR, "no [MASK] line");
    expect_export_fail(&m, t, p.n, "[UNK]\n[PAD]\n[CLS]\n[SEP]\n[MASK]\nthe\n##s\ncat\n", EX_DATAERR,
                       "[PAD] is line 1");
    expect_export_fail(&m, t, p.n, "[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\nthe\n##s\n", EX_DATAERR,
                       "'albert.embeddings.word_embeddings.weight' must be F32 [7, 4]");
    kmodel_config m2 = m;
    m2.vocab_size = 7;
    expect_export_fail(&m2, t, p.n, VOCAB, EX_DATAERR, "model.vocab_size is 7 but the vocabulary has 8 lines");
    m2.vocab_size = 9; /* padded embeddings: the tensors must have 9 rows */
    expect_export_fail(&m2, t, p.n, VOCAB, EX_DATAERR, "'albert.embeddings.word_embeddings.weight' must be F32 [9, 4]");
    /* no final newline: still 8 lines */
    char nonl[sizeof VOCAB];
    memcpy(nonl, VOCAB, sizeof VOCAB);
    nonl[strlen(nonl) - 1] = '\0';
    int rc = kexport_hf(at("ok"), &m, t, p.n, nonl, strlen(nonl), 1, 0, err, sizeof err);
    if (rc) fail_msg("%s", err);
    free(t);
    free_params(&p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_round_trip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_check_expected, setup, teardown),
        cmocka_unit_test_setup_teardown(test_keep_and_replace, setup, teardown),
        cmocka_unit_test_setup_teardown(test_crash_leftovers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_damaged, setup, teardown),
        cmocka_unit_test_setup_teardown(test_save_refuses, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lock, setup, teardown),
        cmocka_unit_test_setup_teardown(test_export_albert, setup, teardown),
        cmocka_unit_test_setup_teardown(test_export_bert, setup, teardown),
        cmocka_unit_test_setup_teardown(test_export_refuses, setup, teardown),
        cmocka_unit_test_setup_teardown(test_export_gpt2, setup, teardown),
        cmocka_unit_test_setup_teardown(test_export_distilbert_cls, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
