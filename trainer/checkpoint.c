/* checkpoint.c: saving, finding, validating and opening training
 * checkpoints (checkpoint.h; format: docs/train.md, "Checkpoints").
 *
 * Save, step by step (a crash at any point leaves DIR usable):
 *   1. mkdir -p DIR; lock DIR/.lock (fcntl, exclusive, non-blocking);
 *   2. remove DIR/.tmp-* (leftovers of a crash: only the lock holder writes);
 *   3. build DIR/.tmp-step-N/: each safetensors part, vocab.txt, state.json
 *      last, each fsync'd; fsync the folder;
 *   4. publish: an existing DIR/step-N is renamed to DIR/.tmp-old-step-N;
 *      DIR/.tmp-step-N is renamed to DIR/step-N; fsync DIR; the old one is
 *      removed;
 *   5. prune: step folders beyond the `keep` highest (never step N) are
 *      renamed to DIR/.tmp-del-step-M, DIR fsync'd, then removed; so a
 *      half-deleted folder never carries a step-* name.
 * Invariant: a folder named step-N is always complete (it appears only by
 * the rename of step 4), so kckpt_latest needs no other test than a
 * state.json being there (which also skips foreign folders). */
#define _POSIX_C_SOURCE 200809L
#include "trainer/checkpoint.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "util/util.h"


static char *join(const char *a, const char *b) { return kpath_join(a, b); }

/* ---- folder helpers ------------------------------------------------------ */

int kckpt_mkdirs(const char *path, char *err, size_t errlen)
{
    char *p = xstrdup(path);
    size_t n = strlen(p);
    while (n > 1 && p[n - 1] == '/') p[--n] = '\0';
    for (char *s = p + 1;; s++) {
        if (*s != '/' && *s != '\0') continue;
        char c = *s;
        *s = '\0';
        struct stat st;
        if (mkdir(p, 0755) && errno != EEXIST) {
            kseterr(err, errlen, "%s: cannot create the folder: %s", p, strerror(errno));
            free(p);
            return EX_CANTCREAT;
        }
        if (stat(p, &st) || !S_ISDIR(st.st_mode)) {
            kseterr(err, errlen, "%s: exists and is not a folder", p);
            free(p);
            return EX_CANTCREAT;
        }
        *s = c;
        if (!c) break;
    }
    free(p);
    return 0;
}

int kckpt_remove_tree(const char *path)
{
    struct stat st;
    if (lstat(path, &st)) return errno == ENOENT ? 0 : errno;
    if (!S_ISDIR(st.st_mode)) return unlink(path) ? errno : 0;
    DIR *d = opendir(path);
    if (!d) return errno;
    int rc = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        char *sub = join(path, e->d_name);
        int r = kckpt_remove_tree(sub);
        if (r && !rc) rc = r;
        free(sub);
    }
    closedir(d);
    if (rmdir(path) && !rc) rc = errno;
    return rc;
}

static char *parent_of(const char *path)
{
    const char *slash = strrchr(path, '/');
    if (!slash) return xstrdup(".");
    if (slash == path) return xstrdup("/");
    return xstrndup(path, (size_t)(slash - path));
}

static const char *base_of(const char *path)
{
    const char *slash = strrchr(path, '/');
    return slash ? slash + 1 : path;
}

int kckpt_publish_dir(const char *tmp, const char *final, int replace, char *err, size_t errlen)
{
    char *parent = parent_of(final);
    char *old = NULL;
    int rc = 0;
    struct stat st;
    if (!lstat(final, &st)) {
        if (!replace) {
            kseterr(err, errlen, "%s: already exists", final);
            rc = EX_CANTCREAT;
            goto done;
        }
        size_t n = strlen(parent) + strlen(base_of(final)) + 16;
        old = xmalloc(n);
        snprintf(old, n, "%s/.tmp-old-%s", parent, base_of(final));
        kckpt_remove_tree(old);
        if (rename(final, old)) {
            kseterr(err, errlen, "%s: cannot move it aside to replace it: %s", final, strerror(errno));
            rc = EX_IOERR;
            goto done;
        }
    }
    if (rename(tmp, final)) {
        kseterr(err, errlen, "%s: cannot rename %s to it: %s", final, tmp, strerror(errno));
        if (old) rename(old, final); /* put the old one back */
        rc = EX_IOERR;
        goto done;
    }
    rc = kst_fsync_dir(parent, err, errlen);
    if (old) kckpt_remove_tree(old);
done:
    free(old);
    free(parent);
    return rc;
}

/* ---- step folder names ----------------------------------------------------- */

/* The step of a "step-N" name (N all digits, fits int64), or -1. */
static int64_t step_of(const char *name)
{
    if (strncmp(name, "step-", 5) || !name[5]) return -1;
    int64_t v = 0;
    for (const char *p = name + 5; *p; p++) {
        if (*p < '0' || *p > '9') return -1;
        if (v > (INT64_MAX - 9) / 10) return -1;
        v = v * 10 + (*p - '0');
    }
    return v;
}

static int is_dir(const char *path)
{
    struct stat st;
    return !stat(path, &st) && S_ISDIR(st.st_mode);
}

static int is_file(const char *path)
{
    struct stat st;
    return !stat(path, &st) && S_ISREG(st.st_mode);
}

typedef struct stepdir { int64_t step; char *name; } stepdir;

static int cmp_step_desc(const void *a, const void *b)
{
    const stepdir *x = a, *y = b;
    return x->step < y->step ? 1 : x->step > y->step ? -1 : 0;
}

/* Step folders of dir (complete or not), highest first. Returns the count or
 * -errno; *out is malloc'd (caller frees names and array). */
static int list_steps(const char *dir, stepdir **out)
{
    *out = NULL;
    DIR *d = opendir(dir);
    if (!d) return -errno;
    int n = 0, cap = 0;
    stepdir *v = NULL;
    struct dirent *e;
    while ((e = readdir(d))) {
        int64_t s = step_of(e->d_name);
        if (s < 0) continue;
        char *p = join(dir, e->d_name);
        int ok = is_dir(p);
        free(p);
        if (!ok) continue;
        if (n == cap) {
            cap = cap ? 2 * cap : 16;
            v = xrealloc(v, sizeof *v * (size_t)cap);
        }
        v[n].step = s;
        v[n].name = xstrdup(e->d_name);
        n++;
    }
    closedir(d);
    if (n > 1) qsort(v, (size_t)n, sizeof *v, cmp_step_desc);
    *out = v;
    return n;
}

static void free_steps(stepdir *v, int n)
{
    for (int i = 0; i < n; i++) free(v[i].name);
    free(v);
}

int kckpt_latest(const char *dir, char *path, size_t len, int64_t *step)
{
    if (len) path[0] = '\0';
    stepdir *v;
    int n = list_steps(dir, &v);
    if (n < 0) return n == -ENOENT || n == -ENOTDIR ? EX_NOINPUT : EX_IOERR;
    int rc = EX_NOINPUT;
    for (int i = 0; i < n; i++) {
        char *p = join(dir, v[i].name);
        char *s = join(p, "state.json");
        int ok = is_file(s);
        free(s);
        if (ok) {
            if (len) snprintf(path, len, "%s", p);
            if (step) *step = v[i].step;
            rc = 0;
        }
        free(p);
        if (ok) break;
    }
    free_steps(v, n);
    return rc;
}

/* ---- save ------------------------------------------------------------------ */

static int valid_part_name(const char *f)
{
    size_t n = f ? strlen(f) : 0;
    return n > 12 && f[0] != '.' && !strchr(f, '/') && !strcmp(f + n - 12, ".safetensors");
}

/* Appends text (a JSON value) with two more spaces after every newline. */
static void put_indented(kbuf *b, const char *text)
{
    for (const char *p = text; *p; p++) {
        kbuf_putc(b, *p);
        if (*p == '\n') kbuf_puts(b, "  ");
    }
}

static void put_num(kbuf *b, double v)
{
    char s[32];
    /* shortest exact text; the same as ktrain_fmt_double, kept local so that
     * checkpoints do not depend on the config module */
    if (!isfinite(v)) {
        kbuf_puts(b, "null");
        return;
    }
    if (v == floor(v) && fabs(v) < 1e15) {
        kbuf_printf(b, "%.0f", v);
        return;
    }
    for (int p = 1; p <= 17; p++) {
        snprintf(s, sizeof s, "%.*g", p, v);
        if (strtod(s, NULL) == v) break;
    }
    kbuf_puts(b, s);
}

/* Checks the arguments of kckpt_save; 0 or EX_SOFTWARE. */
static int check_save_args(const char *dir, const kckpt_state *st, const kckpt_part *parts, int n_parts,
                           const char *vocab_txt, size_t vocab_len, char *err, size_t errlen)
{
    if (!dir || !*dir || !st || n_parts < 0 || (n_parts && !parts) || !vocab_txt || !vocab_len) {
        kseterr(err, errlen, "kckpt_save: bad arguments (folder, state, parts and vocabulary are required)");
        return EX_SOFTWARE;
    }
    if ((st->vocab_kind != KCKPT_VOCAB_WORDPIECE && st->vocab_kind != KCKPT_VOCAB_BPE) ||
        (st->vocab_kind == KCKPT_VOCAB_BPE) != (st->merges && st->merges_len)) {
        kseterr(err, errlen, "kckpt_save: a BPE vocabulary needs its merges, a WordPiece one has none");
        return EX_SOFTWARE;
    }
    if (st->step < 0 || st->tokens < 0 || st->epoch < 0 || st->next_index < 0 || !(st->seconds >= 0) ||
        st->n_rng < 0 || st->n_rng > KCKPT_MAX_RNG || st->n_metrics < 0 || (st->n_metrics && !st->metrics)) {
        kseterr(err, errlen, "kckpt_save: bad state (negative counters, or more than %d RNG keys)", KCKPT_MAX_RNG);
        return EX_SOFTWARE;
    }
    json_error_t je;
    json_t *j = st->config_json ? json_loads(st->config_json, 0, &je) : NULL;
    int ok = j && json_is_object(j);
    json_decref(j);
    if (!ok) {
        kseterr(err, errlen, "kckpt_save: the run config is not a JSON object");
        return EX_SOFTWARE;
    }
    if (st->extra_json) {
        j = json_loads(st->extra_json, 0, &je);
        ok = j && json_is_object(j);
        json_decref(j);
        if (!ok) {
            kseterr(err, errlen, "kckpt_save: extra_json is not a JSON object");
            return EX_SOFTWARE;
        }
    }
    for (int i = 0; i < st->n_metrics; i++) {
        if (!st->metrics[i].name || !*st->metrics[i].name) {
            kseterr(err, errlen, "kckpt_save: metric %d has no name", i);
            return EX_SOFTWARE;
        }
        for (int k = 0; k < i; k++)
            if (!strcmp(st->metrics[k].name, st->metrics[i].name)) {
                kseterr(err, errlen, "kckpt_save: metric '%s' given twice", st->metrics[i].name);
                return EX_SOFTWARE;
            }
    }
    for (int i = 0; i < n_parts; i++) {
        if (!valid_part_name(parts[i].file)) {
            kseterr(err, errlen, "kckpt_save: part file name '%s' is not a plain NAME.safetensors",
                   parts[i].file ? parts[i].file : "(null)");
            return EX_SOFTWARE;
        }
        for (int k = 0; k < i; k++)
            if (!strcmp(parts[k].file, parts[i].file)) {
                kseterr(err, errlen, "kckpt_save: part '%s' given twice", parts[i].file);
                return EX_SOFTWARE;
            }
    }
    return 0;
}

/* state.json (docs/train.md, "state.json"). */
static char *state_json(const kckpt_state *st, const kckpt_part *parts, int n_parts, const char *vocab_txt,
                        size_t vocab_len)
{
    kbuf b = {0};
    uint8_t h[KHASH_LEN];
    char hex[2 * KHASH_LEN + 1];
    khash128(vocab_txt, vocab_len, h);
    khash_hex(h, hex);
    kbuf_printf(&b, "{\n  \"format\": \"%s\",\n  \"version\": %d,\n", KCKPT_FORMAT, KCKPT_VERSION);
    kbuf_printf(&b, "  \"step\": %lld,\n  \"tokens\": %lld,\n  \"seconds\": ", (long long)st->step,
                (long long)st->tokens);
    put_num(&b, st->seconds);
    kbuf_printf(&b, ",\n  \"created_at\": %lld,\n", (long long)time(NULL));
    kbuf_printf(&b, "  \"sampler\": {\"epoch\": %lld, \"next_index\": %lld},\n", (long long)st->epoch,
                (long long)st->next_index);
    kbuf_puts(&b, "  \"rng\": [");
    for (int i = 0; i < st->n_rng; i++)
        kbuf_printf(&b, "%s\"%016llx\"", i ? ", " : "", (unsigned long long)st->rng[i]);
    kbuf_puts(&b, "],\n  \"vocab\": {\"name\": ");
    const char *vn = st->vocab_name ? st->vocab_name : "";
    kbuf_json_str(&b, vn, strlen(vn));
    if (st->vocab_kind == KCKPT_VOCAB_BPE) {
        kbuf_printf(&b, ", \"kind\": \"bpe\", \"file\": \"vocab.json\", \"bytes\": %zu, \"xxh3_128\": \"%s\"", vocab_len,
                    hex);
        khash128(st->merges, st->merges_len, h);
        khash_hex(h, hex);
        kbuf_printf(&b, ", \"merges\": {\"file\": \"merges.txt\", \"bytes\": %zu, \"xxh3_128\": \"%s\"}},\n",
                    st->merges_len, hex);
    } else {
        kbuf_printf(&b, ", \"file\": \"vocab.txt\", \"bytes\": %zu, \"xxh3_128\": \"%s\"},\n", vocab_len, hex);
    }
    kbuf_puts(&b, "  \"files\": {");
    for (int i = 0; i < n_parts; i++) {
        kbuf_printf(&b, "%s\n    ", i ? "," : "");
        kbuf_json_str(&b, parts[i].file, strlen(parts[i].file));
        kbuf_puts(&b, ": [");
        for (int k = 0; k < parts[i].n; k++) {
            const kst_tensor *t = &parts[i].tensors[k];
            kbuf_printf(&b, "%s\n      {\"name\": ", k ? "," : "");
            kbuf_json_str(&b, t->name, strlen(t->name));
            kbuf_printf(&b, ", \"dtype\": \"%s\", \"shape\": [", t->dtype);
            for (int d = 0; d < t->ndim; d++) kbuf_printf(&b, "%s%lld", d ? ", " : "", (long long)t->shape[d]);
            kbuf_puts(&b, "]}");
        }
        kbuf_puts(&b, parts[i].n ? "\n    ]" : "]");
    }
    kbuf_puts(&b, n_parts ? "\n  },\n" : "},\n");
    kbuf_puts(&b, "  \"metrics\": {");
    for (int i = 0; i < st->n_metrics; i++) {
        kbuf_puts(&b, i ? ", " : "");
        kbuf_json_str(&b, st->metrics[i].name, strlen(st->metrics[i].name));
        kbuf_puts(&b, ": ");
        put_num(&b, st->metrics[i].value);
    }
    kbuf_puts(&b, "},\n  \"config\": ");
    put_indented(&b, st->config_json);
    kbuf_puts(&b, ",\n  \"extra\": ");
    put_indented(&b, st->extra_json ? st->extra_json : "{}");
    kbuf_puts(&b, "\n}\n");
    return b.data;
}

/* Lock on DIR/.lock; returns the fd or -1 with rc/err set. */
static int lock_dir(const char *dir, int *rc, char *err, size_t errlen)
{
    char *p = join(dir, ".lock");
    int fd = open(p, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) {
        kseterr(err, errlen, "%s: cannot create the lock file: %s", p, strerror(errno));
        *rc = EX_CANTCREAT;
        free(p);
        return -1;
    }
    struct flock fl;
    memset(&fl, 0, sizeof fl);
    fl.l_type = F_WRLCK;
    fl.l_whence = SEEK_SET;
    if (fcntl(fd, F_SETLK, &fl)) {
        kseterr(err, errlen, "%s: another process is saving checkpoints into this folder", dir);
        *rc = EX_TEMPFAIL;
        close(fd);
        free(p);
        return -1;
    }
    free(p);
    return fd;
}

/* Removes DIR/.tmp-* (crash leftovers; the caller holds the lock). */
static void remove_leftovers(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    char **names = NULL;
    int n = 0;
    while ((e = readdir(d)))
        if (!strncmp(e->d_name, ".tmp-", 5)) {
            names = xrealloc(names, sizeof *names * (size_t)(n + 1));
            names[n++] = join(dir, e->d_name);
        }
    closedir(d);
    for (int i = 0; i < n; i++) {
        kckpt_remove_tree(names[i]);
        free(names[i]);
    }
    free(names);
}

/* Step 5 of the save: keep the `keep` highest steps and `just`. */
static int prune(const char *dir, int keep, int64_t just, char *err, size_t errlen)
{
    if (keep <= 0) return 0;
    stepdir *v;
    int n = list_steps(dir, &v);
    if (n < 0) {
        kseterr(err, errlen, "%s: cannot list: %s", dir, strerror(-n));
        return EX_IOERR;
    }
    char **doomed = xcalloc((size_t)(n ? n : 1), sizeof *doomed);
    int nd = 0, rc = 0;
    for (int i = keep; i < n; i++) {
        if (v[i].step == just) continue;
        char *from = join(dir, v[i].name);
        size_t len = strlen(dir) + strlen(v[i].name) + 16;
        char *to = xmalloc(len);
        snprintf(to, len, "%s/.tmp-del-%s", dir, v[i].name);
        kckpt_remove_tree(to);
        if (rename(from, to)) {
            kseterr(err, errlen, "%s: cannot remove an old checkpoint: %s", from, strerror(errno));
            rc = EX_IOERR;
            free(to);
        } else {
            doomed[nd++] = to;
        }
        free(from);
    }
    if (nd) {
        int r = kst_fsync_dir(dir, err, errlen);
        if (r && !rc) rc = r;
    }
    for (int i = 0; i < nd; i++) {
        int e = kckpt_remove_tree(doomed[i]);
        if (e && !rc) {
            kseterr(err, errlen, "%s: cannot remove: %s", doomed[i], strerror(e));
            rc = EX_IOERR;
        }
        free(doomed[i]);
    }
    free(doomed);
    free_steps(v, n);
    return rc;
}

int kckpt_save(const char *dir, const kckpt_state *st, const kckpt_part *parts, int n_parts,
               const char *vocab_txt, size_t vocab_len, int keep, char *path_out, size_t path_len,
               char *err, size_t errlen)
{
    if (errlen) err[0] = '\0';
    if (path_out && path_len) path_out[0] = '\0';
    int rc = check_save_args(dir, st, parts, n_parts, vocab_txt, vocab_len, err, errlen);
    if (rc) return rc;
    if ((rc = kckpt_mkdirs(dir, err, errlen))) return rc;
    int lock = lock_dir(dir, &rc, err, errlen);
    if (lock < 0) return rc;
    remove_leftovers(dir);

    char name[64], tname[80];
    snprintf(name, sizeof name, "step-%09lld", (long long)st->step);
    snprintf(tname, sizeof tname, ".tmp-%s", name);
    char *tmp = join(dir, tname), *final = join(dir, name), *p = NULL, *sj = NULL;
    if (mkdir(tmp, 0755)) {
        kseterr(err, errlen, "%s: cannot create: %s", tmp, strerror(errno));
        rc = EX_CANTCREAT;
        goto done;
    }
    for (int i = 0; i < n_parts && !rc; i++) {
        p = join(tmp, parts[i].file);
        rc = kst_write(p, parts[i].tensors, parts[i].n, NULL, 0, err, errlen);
        free(p);
        p = NULL;
    }
    if (rc) goto done;
    p = join(tmp, st->vocab_kind == KCKPT_VOCAB_BPE ? "vocab.json" : "vocab.txt");
    if ((rc = kst_write_bytes(p, vocab_txt, vocab_len, err, errlen))) goto done;
    free(p);
    p = NULL;
    if (st->vocab_kind == KCKPT_VOCAB_BPE) {
        p = join(tmp, "merges.txt");
        if ((rc = kst_write_bytes(p, st->merges, st->merges_len, err, errlen))) goto done;
        free(p);
        p = NULL;
    }
    p = join(tmp, "state.json");
    sj = state_json(st, parts, n_parts, vocab_txt, vocab_len);
    if ((rc = kst_write_bytes(p, sj, strlen(sj), err, errlen))) goto done;
    if ((rc = kst_fsync_dir(tmp, err, errlen))) goto done;
    if ((rc = kckpt_publish_dir(tmp, final, 1, err, errlen))) goto done;
    if (path_out && path_len) snprintf(path_out, path_len, "%s", final);
    rc = prune(dir, keep, st->step, err, errlen);

done:
    if (rc) kckpt_remove_tree(tmp);
    free(sj);
    free(p);
    free(tmp);
    free(final);
    close(lock); /* releases the lock */
    return rc;
}

/* ---- open ------------------------------------------------------------------ */

struct kckpt {
    char *path;
    kckpt_state st;
    char *config_json, *extra_json, *vocab_name;
    kckpt_metric *metrics;
    char **files;          /* (n_files) file names, in state.json order */
    kst_file **kst;        /* (n_files) */
    int n_files;
    int model_only;        /* kckpt_open_model: only model.safetensors opened */
    kbuf vocab, merges;
};

const char *kckpt_path(const kckpt *c) { return c ? c->path : NULL; }
const kckpt_state *kckpt_state_of(const kckpt *c) { return c ? &c->st : NULL; }

const kst_file *kckpt_file(const kckpt *c, const char *file)
{
    if (!c || !file) return NULL;
    for (int i = 0; i < c->n_files; i++)
        if (!strcmp(c->files[i], file)) return c->kst[i];
    return NULL;
}

const kst_tensor *kckpt_tensor(const kckpt *c, const char *file, const char *name)
{
    return kst_find(kckpt_file(c, file), name);
}

const char *kckpt_vocab(const kckpt *c, size_t *len)
{
    if (len) *len = c ? c->vocab.len : 0;
    return c ? c->vocab.data : NULL;
}

int kckpt_vocab_kind(const kckpt *c) { return c ? c->st.vocab_kind : KCKPT_VOCAB_WORDPIECE; }

const char *kckpt_merges(const kckpt *c, size_t *len)
{
    int bpe = c && c->st.vocab_kind == KCKPT_VOCAB_BPE;
    if (len) *len = bpe ? c->merges.len : 0;
    return bpe ? c->merges.data : NULL;
}

void kckpt_close(kckpt *c)
{
    if (!c) return;
    for (int i = 0; i < c->n_files; i++) {
        free(c->files[i]);
        kst_close(c->kst[i]);
    }
    free(c->files);
    free(c->kst);
    for (int i = 0; i < c->st.n_metrics; i++) free((char *)c->metrics[i].name);
    free(c->metrics);
    free(c->config_json);
    free(c->extra_json);
    free(c->vocab_name);
    kbuf_free(&c->vocab);
    kbuf_free(&c->merges);
    free(c->path);
    free(c);
}

/* One file of the checkpoint's vocabulary, described by o = {"file": NAME,
 * "bytes", "xxh3_128"} in state.json: read into *out and checked against
 * the size and hash. 0, or -1 with err naming the file. */
static int read_hashed(kckpt *c, const char *sp, json_t *o, const char *name, kbuf *out, char *err, size_t errlen)
{
    json_t *file = json_object_get(o, "file"), *bytes = json_object_get(o, "bytes"),
           *hash = json_object_get(o, "xxh3_128");
    if (!json_is_object(o) || !json_is_string(file) || strcmp(json_string_value(file), name) ||
        !json_is_integer(bytes) || !json_is_string(hash)) {
        kseterr(err, errlen, "%s: the vocabulary's %s must be described as {\"file\": \"%s\", \"bytes\", \"xxh3_128\"}",
                sp, name, name);
        return -1;
    }
    char *vp = join(c->path, name);
    int e = kbuf_read_file(out, vp);
    if (e) {
        kseterr(err, errlen, "%s: %s", vp, strerror(e));
        free(vp);
        return -1;
    }
    uint8_t h[KHASH_LEN];
    char hex[2 * KHASH_LEN + 1];
    khash128(out->data ? out->data : "", out->len, h);
    khash_hex(h, hex);
    if ((json_int_t)out->len != json_integer_value(bytes) || strcmp(hex, json_string_value(hash))) {
        kseterr(err, errlen, "%s: %zu bytes with hash %s, state.json says %lld bytes with hash %s (damaged or "
                "replaced)", vp, out->len, hex, (long long)json_integer_value(bytes), json_string_value(hash));
        free(vp);
        return -1;
    }
    free(vp);
    return 0;
}

/* An integer >= 0 member of o, or -1 with err set. */
static int get_count(const char *where, json_t *o, const char *key, int64_t *out, char *err, size_t errlen)
{
    json_t *v = json_object_get(o, key);
    if (!json_is_integer(v) || json_integer_value(v) < 0) {
        kseterr(err, errlen, "%s: \"%s\" is %s, expected an integer >= 0", where, key,
               v ? "not one" : "missing");
        return -1;
    }
    *out = (int64_t)json_integer_value(v);
    return 0;
}

static void shape_text(const kst_tensor *t, char *out, size_t n)
{
    size_t len = (size_t)snprintf(out, n, "%s [", t->dtype);
    for (int d = 0; d < t->ndim && len < n; d++)
        len += (size_t)snprintf(out + len, n - len, "%s%lld", d ? ", " : "", (long long)t->shape[d]);
    if (len < n) snprintf(out + len, n - len, "]");
}

static int same_shape(const kst_tensor *a, const kst_tensor *b)
{
    if (strcmp(a->dtype, b->dtype) || a->ndim != b->ndim) return 0;
    for (int d = 0; d < a->ndim; d++)
        if (a->shape[d] != b->shape[d]) return 0;
    return 1;
}

/* Compares a file's tensors with a list (want, n) by name, dtype and shape;
 * appends the first four differences to msg ("; "-separated). Returns the
 * number of differences. who_list names the list ("state.json", "this
 * model"). */
static int diff_tensors(const kst_file *f, const kst_tensor *want, int n, const char *who_list, kbuf *msg)
{
    int diffs = 0;
    char a[160], b[160];
    for (int i = 0; i < n; i++) {
        const kst_tensor *t = kst_find(f, want[i].name);
        if (!t) {
            if (diffs++ < 4) kbuf_printf(msg, "%s tensor '%s' (in %s) is missing", diffs > 1 ? ";" : "",
                                         want[i].name, who_list);
        } else if (!same_shape(t, &want[i])) {
            shape_text(t, a, sizeof a);
            shape_text(&want[i], b, sizeof b);
            if (diffs++ < 4) kbuf_printf(msg, "%s tensor '%s' is %s, %s has %s", diffs > 1 ? ";" : "",
                                         want[i].name, a, who_list, b);
        }
    }
    for (int i = 0; i < kst_count(f); i++) {
        const kst_tensor *t = kst_get(f, i);
        int found = 0;
        for (int k = 0; k < n && !found; k++) found = !strcmp(want[k].name, t->name);
        if (!found && diffs++ < 4)
            kbuf_printf(msg, "%s tensor '%s' is not in %s", diffs > 1 ? ";" : "", t->name, who_list);
    }
    if (diffs > 4) kbuf_printf(msg, "; and %d more difference%s", diffs - 4, diffs - 4 > 1 ? "s" : "");
    return diffs;
}

static const char *const STATE_KEYS[] = {"format", "version", "step", "tokens", "seconds", "created_at",
                                         "sampler", "rng", "vocab", "files", "metrics", "config", "extra",
                                         NULL};

/* Reads and checks state.json into c (files opened and compared). */
static int read_state(kckpt *c, json_t *root, const char *sp, char *err, size_t errlen)
{
    char where[1200];
    snprintf(where, sizeof where, "%s", sp);
    if (!json_is_object(root)) {
        kseterr(err, errlen, "%s: not a JSON object", sp);
        return -1;
    }
    json_t *fmt = json_object_get(root, "format");
    if (!json_is_string(fmt) || strcmp(json_string_value(fmt), KCKPT_FORMAT)) {
        kseterr(err, errlen, "%s: not a kiln checkpoint (\"format\" is not \"%s\")", sp, KCKPT_FORMAT);
        return -1;
    }
    json_t *ver = json_object_get(root, "version");
    if (!json_is_integer(ver) || json_integer_value(ver) < 1) {
        kseterr(err, errlen, "%s: \"version\" is missing or not an integer >= 1", sp);
        return -1;
    }
    if (json_integer_value(ver) > KCKPT_VERSION) {
        kseterr(err, errlen, "%s: checkpoint format version %lld is newer than this kiln reads (%d)", sp,
               (long long)json_integer_value(ver), KCKPT_VERSION);
        return -1;
    }
    const char *k;
    json_t *v;
    json_object_foreach(root, k, v) {
        int known = 0;
        for (int i = 0; STATE_KEYS[i] && !known; i++) known = !strcmp(STATE_KEYS[i], k);
        if (!known) {
            kseterr(err, errlen, "%s: unknown key \"%s\"", sp, k);
            return -1;
        }
    }
    kckpt_state *st = &c->st;
    int64_t ign;
    if (get_count(where, root, "step", &st->step, err, errlen) ||
        get_count(where, root, "tokens", &st->tokens, err, errlen) ||
        get_count(where, root, "created_at", &ign, err, errlen))
        return -1;
    json_t *sec = json_object_get(root, "seconds");
    if (!json_is_number(sec) || json_number_value(sec) < 0) {
        kseterr(err, errlen, "%s: \"seconds\" is missing or not a number >= 0", sp);
        return -1;
    }
    st->seconds = json_number_value(sec);
    /* a folder named step-N holds step N */
    const char *base = base_of(c->path);
    int64_t fs = step_of(base);
    if (fs >= 0 && fs != st->step) {
        kseterr(err, errlen, "%s: \"step\" is %lld but the folder is %s", sp, (long long)st->step, base);
        return -1;
    }
    json_t *sam = json_object_get(root, "sampler");
    snprintf(where, sizeof where, "%s: sampler", sp);
    if (!json_is_object(sam) || json_object_size(sam) != 2 ||
        get_count(where, sam, "epoch", &st->epoch, err, errlen) ||
        get_count(where, sam, "next_index", &st->next_index, err, errlen)) {
        if (!json_is_object(sam) || json_object_size(sam) != 2)
            kseterr(err, errlen, "%s: \"sampler\" must be {\"epoch\": E, \"next_index\": I}", sp);
        return -1;
    }
    json_t *rng = json_object_get(root, "rng");
    if (!json_is_array(rng) || json_array_size(rng) > KCKPT_MAX_RNG) {
        kseterr(err, errlen, "%s: \"rng\" must be an array of at most %d hex strings", sp, KCKPT_MAX_RNG);
        return -1;
    }
    st->n_rng = (int)json_array_size(rng);
    for (int i = 0; i < st->n_rng; i++) {
        json_t *e = json_array_get(rng, (size_t)i);
        const char *s = json_is_string(e) ? json_string_value(e) : "";
        char *end;
        if (strlen(s) != 16 || strspn(s, "0123456789abcdef") != 16) {
            kseterr(err, errlen, "%s: rng[%d] is not 16 lowercase hex digits", sp, i);
            return -1;
        }
        st->rng[i] = strtoull(s, &end, 16);
    }
    json_t *cfg = json_object_get(root, "config");
    if (!json_is_object(cfg)) {
        kseterr(err, errlen, "%s: \"config\" is missing or not an object", sp);
        return -1;
    }
    c->config_json = json_dumps(cfg, JSON_COMPACT | JSON_REAL_PRECISION(17));
    json_t *ex = json_object_get(root, "extra");
    if (ex && !json_is_object(ex)) {
        kseterr(err, errlen, "%s: \"extra\" is not an object", sp);
        return -1;
    }
    c->extra_json = ex ? json_dumps(ex, JSON_COMPACT | JSON_REAL_PRECISION(17)) : xstrdup("{}");
    if (!c->config_json || !c->extra_json) {
        kseterr(err, errlen, "%s: cannot re-encode the config", sp);
        return -1;
    }
    st->config_json = c->config_json;
    st->extra_json = c->extra_json;
    json_t *met = json_object_get(root, "metrics");
    if (!json_is_object(met)) {
        kseterr(err, errlen, "%s: \"metrics\" is missing or not an object", sp);
        return -1;
    }
    c->metrics = xcalloc(json_object_size(met) + 1, sizeof *c->metrics);
    json_object_foreach(met, k, v) {
        if (!json_is_number(v) && !json_is_null(v)) {
            kseterr(err, errlen, "%s: metric \"%s\" is not a number or null", sp, k);
            return -1;
        }
        c->metrics[st->n_metrics].name = xstrdup(k);
        c->metrics[st->n_metrics].value = json_is_null(v) ? NAN : json_number_value(v);
        st->n_metrics++;
    }
    st->metrics = c->metrics;

    /* vocabulary: vocab.txt, or (kind "bpe") vocab.json and merges.txt */
    json_t *voc = json_object_get(root, "vocab");
    json_t *vname = json_object_get(voc, "name"), *vkind = json_object_get(voc, "kind");
    if (!json_is_object(voc) || !json_is_string(vname) ||
        (vkind && !(json_is_string(vkind) && (!strcmp(json_string_value(vkind), "bpe") ||
                                              !strcmp(json_string_value(vkind), "wordpiece"))))) {
        kseterr(err, errlen, "%s: \"vocab\" must be {\"name\", [\"kind\": \"wordpiece\" | \"bpe\",] \"file\", \"bytes\", "
                "\"xxh3_128\"}", sp);
        return -1;
    }
    st->vocab_kind = vkind && !strcmp(json_string_value(vkind), "bpe") ? KCKPT_VOCAB_BPE : KCKPT_VOCAB_WORDPIECE;
    c->vocab_name = xstrdup(json_string_value(vname));
    st->vocab_name = c->vocab_name;
    if (read_hashed(c, sp, voc, st->vocab_kind == KCKPT_VOCAB_BPE ? "vocab.json" : "vocab.txt", &c->vocab, err,
                    errlen))
        return -1;
    if (st->vocab_kind == KCKPT_VOCAB_BPE) {
        if (read_hashed(c, sp, json_object_get(voc, "merges"), "merges.txt", &c->merges, err, errlen)) return -1;
        st->merges = c->merges.data;
        st->merges_len = c->merges.len;
    }

    /* files */
    json_t *files = json_object_get(root, "files");
    if (!json_is_object(files)) {
        kseterr(err, errlen, "%s: \"files\" is missing or not an object", sp);
        return -1;
    }
    size_t nf = json_object_size(files);
    c->files = xcalloc(nf + 1, sizeof *c->files);
    c->kst = xcalloc(nf + 1, sizeof *c->kst);
    json_object_foreach(files, k, v) {
        if (!valid_part_name(k)) {
            kseterr(err, errlen, "%s: file name \"%s\" is not a plain NAME.safetensors", sp, k);
            return -1;
        }
        if (!json_is_array(v)) {
            kseterr(err, errlen, "%s: files.\"%s\" is not an array of tensors", sp, k);
            return -1;
        }
        /* the list of state.json */
        size_t nt = json_array_size(v);
        kst_tensor *want = xcalloc(nt + 1, sizeof *want);
        int bad = 0;
        for (size_t i = 0; i < nt && !bad; i++) {
            json_t *t = json_array_get(v, i), *tn = json_object_get(t, "name"), *td = json_object_get(t, "dtype"),
                   *ts = json_object_get(t, "shape");
            bad = !json_is_object(t) || !json_is_string(tn) || !json_is_string(td) || !json_is_array(ts) ||
                  json_array_size(ts) > KST_MAX_DIMS;
            if (bad) break;
            want[i].name = json_string_value(tn);
            want[i].dtype = json_string_value(td);
            want[i].ndim = (int)json_array_size(ts);
            for (int d = 0; d < want[i].ndim && !bad; d++) {
                json_t *x = json_array_get(ts, (size_t)d);
                bad = !json_is_integer(x) || json_integer_value(x) < 0;
                if (!bad) want[i].shape[d] = (int64_t)json_integer_value(x);
            }
        }
        if (bad) {
            kseterr(err, errlen, "%s: files.\"%s\": every tensor must be {\"name\", \"dtype\", \"shape\": [dims]}",
                   sp, k);
            free(want);
            return -1;
        }
        if (c->model_only && strcmp(k, "model.safetensors")) { /* listed and well-formed, not read */
            free(want);
            continue;
        }
        char *fp = join(c->path, k);
        kst_file *f = kst_open(fp, err, errlen);
        if (!f) {
            free(fp);
            free(want);
            return -1;
        }
        c->files[c->n_files] = xstrdup(k);
        c->kst[c->n_files] = f;
        c->n_files++;
        kbuf msg = {0};
        int d = diff_tensors(f, want, (int)nt, "state.json", &msg);
        free(want);
        if (d) {
            kseterr(err, errlen, "%s: does not match state.json:%s", fp, msg.data);
            kbuf_free(&msg);
            free(fp);
            return -1;
        }
        kbuf_free(&msg);
        free(fp);
    }
    return 0;
}

static kckpt *open_ckpt(const char *path, int model_only, char *err, size_t errlen)
{
    if (errlen) err[0] = '\0';
    if (!path || !is_dir(path)) {
        kseterr(err, errlen, "%s: not a checkpoint folder (missing or not a folder)", path ? path : "(null)");
        return NULL;
    }
    kckpt *c = xcalloc(1, sizeof *c);
    c->model_only = model_only;
    c->path = xstrdup(path);
    size_t n = strlen(c->path);
    while (n > 1 && c->path[n - 1] == '/') c->path[--n] = '\0';
    char *sp = join(c->path, "state.json");
    kbuf b = {0};
    int e = kbuf_read_file(&b, sp);
    if (e) {
        kseterr(err, errlen, "%s: %s%s", sp, strerror(e), e == ENOENT ? " (not a complete kiln checkpoint)" : "");
        goto fail;
    }
    json_error_t je;
    json_t *root = json_loadb(b.data ? b.data : "", b.len, JSON_REJECT_DUPLICATES, &je);
    kbuf_free(&b);
    if (!root) {
        kseterr(err, errlen, "%s: line %d, column %d: %s", sp, je.line, je.column, je.text);
        goto fail;
    }
    int rc = read_state(c, root, sp, err, errlen);
    json_decref(root);
    if (rc) goto fail;
    free(sp);
    return c;
fail:
    free(sp);
    kckpt_close(c);
    return NULL;
}

kckpt *kckpt_open(const char *path, char *err, size_t errlen) { return open_ckpt(path, 0, err, errlen); }
kckpt *kckpt_open_model(const char *path, char *err, size_t errlen) { return open_ckpt(path, 1, err, errlen); }

int kckpt_check(const kckpt *c, const kckpt_part *expect, int n_expect, int flags, char *err, size_t errlen)
{
    if (errlen) err[0] = '\0';
    for (int i = 0; i < n_expect; i++) {
        const kst_file *f = kckpt_file(c, expect[i].file);
        if (!f) {
            kseterr(err, errlen, "%s: has no %s (not a checkpoint of this kind of run)", c->path, expect[i].file);
            return EX_DATAERR;
        }
        kbuf msg = {0};
        int d = diff_tensors(f, expect[i].tensors, expect[i].n, "this model", &msg);
        if (d) {
            kseterr(err, errlen, "%s: does not fit this model:%s", kst_path(f), msg.data);
            kbuf_free(&msg);
            return EX_DATAERR;
        }
        kbuf_free(&msg);
    }
    if (!(flags & KCKPT_ONLY_LISTED))
        for (int i = 0; i < c->n_files; i++) {
            int found = 0;
            for (int k = 0; k < n_expect && !found; k++) found = !strcmp(expect[k].file, c->files[i]);
            if (!found) {
                kseterr(err, errlen, "%s: has %s, which this run does not know how to restore", c->path,
                       c->files[i]);
                return EX_DATAERR;
            }
        }
    return 0;
}

kckpt *kckpt_load(const char *path, const kckpt_part *expect, int n_expect, char *err, size_t errlen)
{
    kckpt *c = kckpt_open(path, err, errlen);
    if (c && kckpt_check(c, expect, n_expect, 0, err, errlen)) {
        kckpt_close(c);
        return NULL;
    }
    return c;
}

char *kckpt_tmp_sibling(const char *path, const char *prefix, char **final_out, char **parent_out)
{
    char *final = xstrdup(path);
    size_t fl = strlen(final);
    while (fl > 1 && final[fl - 1] == '/') final[--fl] = '\0';
    const char *slash = strrchr(final, '/');
    char *parent = slash ? (slash == final ? xstrdup("/") : xstrndup(final, (size_t)(slash - final))) : xstrdup(".");
    const char *base = slash ? slash + 1 : final;
    size_t tl = strlen(parent) + strlen(prefix) + strlen(base) + 16;
    char *tmp = xmalloc(tl);
    snprintf(tmp, tl, "%s/.%s-%s.tmp", parent, prefix, base);
    *final_out = final;
    *parent_out = parent;
    return tmp;
}
