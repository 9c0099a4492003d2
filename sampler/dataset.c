/* sampler/dataset.c: labelled datasets (GLUE TSV / JSONL) for fine-tuning:
 * parsing, label sets, tokenization with longest_first truncation, epoch
 * orders and batch rows. The format rules are in dataset.h.
 *
 * Loading is one pass over the file held in memory:
 *   1. the whole file is checked as UTF-8 (first bad byte named by line);
 *   2. each line gives (text A, text B, raw label string); A and B are
 *      tokenized and truncated at once and their ids appended to `tokens`;
 *      the raw label goes to a string pool;
 *   3. the label set is built (or taken from the caller) and every raw label
 *      mapped to its class, or parsed as a float for regression.
 * Invariants of a loaded kdataset:
 *   I1. off[0] = 0, off[i] <= off[i+1], off[n] = total ids;
 *   I2. n_a[i] <= off[i+1] - off[i]; example i's B part is the rest;
 *   I3. n_a + n_b + 2 (+1 with a pair) <= seq_len;
 *   I4. labels[i] in [0, num_labels) for classification, -1 otherwise;
 *       targets[i] finite for labelled regression, NaN otherwise. */
#include "sampler/dataset.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "util/util.h"

struct kdataset {
    int64_t n;                 /* examples */
    int seq_len, has_pair;
    int num_labels;            /* K >= 2, 1 = regression, 0 = unknown (unlabelled) */
    int labelled;
    int32_t pad_id, cls_id, sep_id;
    char **label_names;        /* (num_labels) class names, or NULL */
    int64_t *off;              /* (n + 1) start of example i's ids in tokens */
    int32_t *n_a;              /* (n) ids of the A part */
    int32_t *labels;           /* (n) class or -1 */
    float *targets;            /* (n) regression target or NaN */
    int64_t *lines;            /* (n) 1-based line in the file */
    int32_t *tokens;           /* (off[n]) A ids then B ids of each example */
    int64_t truncated;
};

void kdataset_opts_defaults(kdataset_opts *o)
{
    memset(o, 0, sizeof *o);
    o->format = KDS_FORMAT_AUTO;
    o->text_column = "sentence";
    o->label_column = "label";
    o->seq_len = 128;
}

/* ---- small growable arrays -------------------------------------------------- */

typedef struct i32vec { int32_t *p; size_t n, cap; } i32vec;
typedef struct i64vec { int64_t *p; size_t n, cap; } i64vec;

static void i32_push(i32vec *v, int32_t x)
{
    if (v->n == v->cap) {
        v->cap = v->cap ? 2 * v->cap : 1024;
        v->p = xrealloc(v->p, v->cap * sizeof *v->p);
    }
    v->p[v->n++] = x;
}

static void i64_push(i64vec *v, int64_t x)
{
    if (v->n == v->cap) {
        v->cap = v->cap ? 2 * v->cap : 1024;
        v->p = xrealloc(v->p, v->cap * sizeof *v->p);
    }
    v->p[v->n++] = x;
}

/* ---- truncation and rows ------------------------------------------------------ */

/* longest_first (dataset.h): cuts *na + *nb down to budget. nb NULL = no
 * pair. Returns 1 when something was cut. */
static int truncate_longest_first(int64_t *na, int64_t *nb, int64_t budget)
{
    if (!nb) {
        if (*na <= budget) return 0;
        *na = budget;
        return 1;
    }
    int64_t excess = *na + *nb - budget;
    if (excess <= 0) return 0;
    int64_t d = *na > *nb ? *na - *nb : *nb - *na;
    int64_t first = d < excess ? d : excess, rest = excess - first;
    if (*na > *nb) *na -= first;
    else *nb -= first;
    *nb -= (rest + 1) / 2;   /* on a tie the loop takes from B first */
    *na -= rest / 2;
    return 1;
}

/* Writes [CLS] a [SEP] (b [SEP]) into row r of bt, padded to bt->L. nb < 0
 * = no pair. The caller has checked that the row fits. */
static void write_row(ksample_batch *bt, int r, const int32_t *a, int na, const int32_t *b, int nb)
{
    int L = bt->L, t = 0;
    int32_t *ids = bt->input_ids + (size_t)r * (size_t)L;
    uint8_t *ty = bt->token_type_ids + (size_t)r * (size_t)L;
    ids[t] = bt->cls_id, ty[t++] = 0;
    for (int i = 0; i < na; i++) ids[t] = a[i], ty[t++] = 0;
    ids[t] = bt->sep_id, ty[t++] = 0;
    if (nb >= 0) {
        for (int i = 0; i < nb; i++) ids[t] = b[i], ty[t++] = 1;
        ids[t] = bt->sep_id, ty[t++] = 1;
    }
    bt->lengths[r] = t;
    for (; t < L; t++) ids[t] = bt->pad_id, ty[t] = 0;
    if (bt->n_masked) bt->n_masked[r] = 0;
}

/* ---- the loader ------------------------------------------------------------------ */

typedef struct loader {
    const kdataset_opts *o;
    int64_t last_line;              /* lines seen (for "no examples") */
    const char *path;
    kwp_tok *tok;
    kwp_ids ia, ib;
    i32vec tokens, n_a;
    i64vec off, lines, label_off;   /* label_off: offset of each raw label in pool */
    kbuf pool;                      /* raw labels, NUL-separated */
    int64_t truncated;
    char *err;
    size_t errlen;
} loader;

/* Tokenizes one example and records it. label may be NULL (unlabelled). */
static void add_example(loader *ld, int64_t line, const char *a, size_t alen, const char *b, size_t blen,
                        const char *label, size_t label_len)
{
    int pair = ld->o->text_pair_column != NULL;
    kwp_ids_clear(&ld->ia);
    kwp_encode(ld->tok, a, alen, &ld->ia);
    int64_t na = (int64_t)ld->ia.n, nb = 0;
    if (pair) {
        kwp_ids_clear(&ld->ib);
        kwp_encode(ld->tok, b, blen, &ld->ib);
        nb = (int64_t)ld->ib.n;
    }
    int64_t budget = ld->o->seq_len - (pair ? 3 : 2);
    ld->truncated += truncate_longest_first(&na, pair ? &nb : NULL, budget);
    if (ld->off.n == 0) i64_push(&ld->off, 0);
    for (int64_t i = 0; i < na; i++) i32_push(&ld->tokens, (int32_t)ld->ia.ids[i]);
    for (int64_t i = 0; i < nb; i++) i32_push(&ld->tokens, (int32_t)ld->ib.ids[i]);
    i64_push(&ld->off, (int64_t)ld->tokens.n);
    i32_push(&ld->n_a, (int32_t)na);
    i64_push(&ld->lines, line);
    i64_push(&ld->label_off, (int64_t)ld->pool.len);
    if (label) kbuf_append(&ld->pool, label, label_len);
    kbuf_putc(&ld->pool, '\0');
}

/* The next line of buf[*pos..len): sets *s and *n (without its newline and a CR
 * before it) and advances. Returns 0 at the end. */
static int next_line(const char *buf, size_t len, size_t *pos, const char **s, size_t *n)
{
    if (*pos >= len) return 0;
    const char *p = buf + *pos, *nl = memchr(p, '\n', len - *pos);
    size_t m = nl ? (size_t)(nl - p) : len - *pos;
    *pos += m + (nl != NULL);
    if (m > 0 && p[m - 1] == '\r') m--;
    *s = p, *n = m;
    return 1;
}

/* Splits a TSV line into at most cap fields (starts and lengths); returns
 * the real number of fields (may exceed cap). */
static size_t split_tabs(const char *s, size_t n, const char **fs, size_t *fl, size_t cap)
{
    size_t k = 0, start = 0;
    for (size_t i = 0; i <= n; i++) {
        if (i == n || s[i] == '\t') {
            if (k < cap) fs[k] = s + start, fl[k] = i - start;
            k++;
            start = i + 1;
        }
    }
    return k;
}

static int load_tsv(loader *ld, const char *buf, size_t len)
{
    const kdataset_opts *o = ld->o;
    size_t pos = 0;
    const char *s;
    size_t n;
    int64_t line = 0;
    /* header: the first non-blank line */
    do {
        if (!next_line(buf, len, &pos, &s, &n)) {
            kseterr(ld->err, ld->errlen, "%s:%lld: empty file (no header line, no examples)", ld->path,
                    (long long)(line ? line : 1));
            return EX_DATAERR;
        }
        line++;
    } while (n == 0);
    size_t nf = split_tabs(s, n, NULL, NULL, 0);
    const char **fs = xcalloc(nf, sizeof *fs);
    size_t *fl = xcalloc(nf, sizeof *fl);
    split_tabs(s, n, fs, fl, nf);
    const char *want[3] = {o->text_column, o->text_pair_column, o->label_column};
    const char *what[3] = {"text", "text pair", "label"};
    long col[3] = {-1, -1, -1};
    int rc = 0;
    for (int w = 0; w < 3 && !rc; w++) {
        if (!want[w]) continue;
        for (size_t f = 0; f < nf && col[w] < 0; f++)
            if (fl[f] == strlen(want[w]) && memcmp(fs[f], want[w], fl[f]) == 0) col[w] = (long)f;
        if (col[w] < 0) {
            kbuf cols = {0};
            for (size_t f = 0; f < nf; f++) {
                if (f) kbuf_puts(&cols, ", ");
                kbuf_append(&cols, fs[f], fl[f]);
            }
            kseterr(ld->err, ld->errlen, "%s:%lld: no %s column \"%s\" in the header (columns: %s)", ld->path,
                    (long long)line, what[w], want[w], cols.data ? cols.data : "");
            kbuf_free(&cols);
            rc = EX_DATAERR;
        }
    }
    int64_t header_line = line;
    while (!rc && next_line(buf, len, &pos, &s, &n)) {
        line++;
        if (n == 0) continue;
        size_t k = split_tabs(s, n, fs, fl, nf);
        if (k != nf) {
            kseterr(ld->err, ld->errlen, "%s:%lld: %zu tab-separated fields, the header (line %lld) has %zu",
                    ld->path, (long long)line, k, (long long)header_line, nf);
            rc = EX_DATAERR;
            break;
        }
        long a = col[0], b = col[1], l = col[2];
        add_example(ld, line, fs[a], fl[a], b >= 0 ? fs[b] : NULL, b >= 0 ? fl[b] : 0, l >= 0 ? fs[l] : NULL,
                    l >= 0 ? fl[l] : 0);
    }
    free(fs);
    free(fl);
    ld->last_line = line;
    return rc;
}

/* A JSON object's text field: a string. */
static int json_text(loader *ld, json_t *obj, const char *key, int64_t line, const char **s, size_t *n)
{
    json_t *v = json_object_get(obj, key);
    if (!v) {
        kseterr(ld->err, ld->errlen, "%s:%lld: no field \"%s\" in the object", ld->path, (long long)line, key);
        return EX_DATAERR;
    }
    if (!json_is_string(v)) {
        kseterr(ld->err, ld->errlen, "%s:%lld: field \"%s\" is not a string", ld->path, (long long)line, key);
        return EX_DATAERR;
    }
    *s = json_string_value(v);
    *n = json_string_length(v);
    return 0;
}

static int load_jsonl(loader *ld, const char *buf, size_t len)
{
    const kdataset_opts *o = ld->o;
    size_t pos = 0;
    const char *s;
    size_t n;
    int64_t line = 0;
    int rc = 0;
    char num[64];
    while (!rc && next_line(buf, len, &pos, &s, &n)) {
        line++;
        size_t i = 0;
        while (i < n && (s[i] == ' ' || s[i] == '\t' || s[i] == '\r')) i++;
        if (i == n) continue;
        json_error_t je;
        json_t *obj = json_loadb(s, n, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &je);
        if (!obj) {
            kseterr(ld->err, ld->errlen, "%s:%lld: malformed JSON: %s (column %d)", ld->path, (long long)line,
                    je.text, je.column);
            return EX_DATAERR;
        }
        const char *a = NULL, *b = NULL, *lab = NULL;
        size_t alen = 0, blen = 0, llen = 0;
        if (!json_is_object(obj)) {
            kseterr(ld->err, ld->errlen, "%s:%lld: not a JSON object", ld->path, (long long)line);
            rc = EX_DATAERR;
        }
        if (!rc) rc = json_text(ld, obj, o->text_column, line, &a, &alen);
        if (!rc && o->text_pair_column) rc = json_text(ld, obj, o->text_pair_column, line, &b, &blen);
        if (!rc && o->label_column) {
            json_t *v = json_object_get(obj, o->label_column);
            if (!v) {
                kseterr(ld->err, ld->errlen, "%s:%lld: no field \"%s\" in the object", ld->path, (long long)line,
                        o->label_column);
                rc = EX_DATAERR;
            } else if (json_is_string(v)) {
                lab = json_string_value(v), llen = json_string_length(v);
            } else if (json_is_integer(v)) {
                llen = (size_t)snprintf(num, sizeof num, "%lld", (long long)json_integer_value(v));
                lab = num;
            } else if (json_is_real(v) && o->num_labels == 1) {
                llen = (size_t)snprintf(num, sizeof num, "%.17g", json_real_value(v));
                lab = num;
            } else {
                kseterr(ld->err, ld->errlen, "%s:%lld: field \"%s\" is not a %s", ld->path, (long long)line,
                        o->label_column, o->num_labels == 1 ? "number" : "string or an integer");
                rc = EX_DATAERR;
            }
        }
        if (!rc) add_example(ld, line, a, alen, b, blen, lab, llen);
        json_decref(obj);
    }
    ld->last_line = line;
    return rc;
}

/* ---- labels ------------------------------------------------------------------------ */

/* 1 when s is an integer ([+-]digits) that fits in long long. */
static int parse_int(const char *s, long long *v)
{
    const char *p = s;
    if (*p == '+' || *p == '-') p++;
    if (!*p) return 0;
    for (const char *q = p; *q; q++)
        if (*q < '0' || *q > '9') return 0;
    errno = 0;
    *v = strtoll(s, NULL, 10);
    return errno == 0;
}

typedef struct label_key { const char *s; long long v; int id; } label_key;

static int cmp_str(const void *x, const void *y)
{
    return strcmp(((const label_key *)x)->s, ((const label_key *)y)->s);
}

static int cmp_num(const void *x, const void *y)
{
    const label_key *a = x, *b = y;
    if (a->v != b->v) return a->v < b->v ? -1 : 1;
    return strcmp(a->s, b->s);
}

/* Maps raw labels to classes (building the set when the caller gave none)
 * or parses them as regression targets. Fills d->label_names, d->labels,
 * d->targets, d->num_labels. */
static int resolve_labels(loader *ld, kdataset *d)
{
    const kdataset_opts *o = ld->o;
    int64_t n = d->n;
    d->labels = xmalloc((size_t)n * sizeof *d->labels);
    d->targets = xmalloc((size_t)n * sizeof *d->targets);
    for (int64_t i = 0; i < n; i++) d->labels[i] = -1, d->targets[i] = NAN;
    d->num_labels = o->label_names ? o->n_label_names : o->num_labels;
    if (o->label_names) {
        d->label_names = xcalloc((size_t)o->n_label_names, sizeof *d->label_names);
        for (int k = 0; k < o->n_label_names; k++) d->label_names[k] = xstrdup(o->label_names[k]);
    }
    if (!o->label_column) return 0;
    if (o->num_labels == 1) {
        for (int64_t i = 0; i < n; i++) {
            const char *s = ld->pool.data + ld->label_off.p[i];
            char *end;
            errno = 0;
            double x = strtod(s, &end);
            if (!*s || *end || errno == ERANGE || !isfinite(x) || !isfinite((float)x)) {
                kseterr(ld->err, ld->errlen, "%s:%lld: regression label \"%.60s\" is not a finite number", ld->path,
                        (long long)d->lines[i], s);
                return EX_DATAERR;
            }
            d->targets[i] = (float)x;
        }
        return 0;
    }
    /* the set: given, or the distinct labels of the file */
    label_key *set;
    int K;
    if (o->label_names) {
        K = o->n_label_names;
        set = xcalloc((size_t)K, sizeof *set);
        for (int k = 0; k < K; k++) set[k] = (label_key){d->label_names[k], 0, k};
    } else {
        label_key *all = xcalloc((size_t)n, sizeof *all);
        for (int64_t i = 0; i < n; i++) all[i].s = ld->pool.data + ld->label_off.p[i];
        qsort(all, (size_t)n, sizeof *all, cmp_str);
        int64_t u = 0;
        for (int64_t i = 0; i < n; i++)
            if (u == 0 || strcmp(all[u - 1].s, all[i].s) != 0) all[u++] = all[i];
        int numeric = 1;
        for (int64_t i = 0; i < u && numeric; i++) numeric = parse_int(all[i].s, &all[i].v);
        if (numeric) qsort(all, (size_t)u, sizeof *all, cmp_num);
        if (o->num_labels == 0 && u < 2) {
            /* one class is no classification (and a label set of size 1 would read as regression) */
            kseterr(ld->err, ld->errlen,
                    "%s: every example has the label \"%.40s\": classification needs at least 2 distinct labels "
                    "(for regression, set num_labels 1)",
                    ld->path, u ? all[0].s : "");
            free(all);
            return EX_DATAERR;
        }
        if (o->num_labels >= 2 && u != o->num_labels) {
            kbuf names = {0};
            for (int64_t i = 0; i < u && i < 20; i++) {
                if (i) kbuf_puts(&names, ", ");
                kbuf_printf(&names, "\"%.40s\"", all[i].s);
            }
            if (u > 20) kbuf_puts(&names, ", ...");
            kseterr(ld->err, ld->errlen, "%s: %lld distinct labels (%s), expected %d", ld->path, (long long)u,
                    names.data ? names.data : "", o->num_labels);
            kbuf_free(&names);
            free(all);
            return EX_DATAERR;
        }
        if (u > INT32_MAX / 2) {
            kseterr(ld->err, ld->errlen, "%s: %lld distinct labels: too many", ld->path, (long long)u);
            free(all);
            return EX_DATAERR;
        }
        K = (int)u;
        d->num_labels = K;
        d->label_names = xcalloc((size_t)K, sizeof *d->label_names);
        set = xcalloc((size_t)K, sizeof *set);
        for (int k = 0; k < K; k++) {
            d->label_names[k] = xstrdup(all[k].s);
            set[k] = (label_key){d->label_names[k], 0, k};
        }
        free(all);
    }
    qsort(set, (size_t)K, sizeof *set, cmp_str);
    int rc = 0;
    for (int64_t i = 0; i < n && !rc; i++) {
        label_key key = {ld->pool.data + ld->label_off.p[i], 0, 0};
        const label_key *hit = bsearch(&key, set, (size_t)K, sizeof *set, cmp_str);
        if (!hit) {
            kbuf names = {0};
            for (int k = 0; k < K && k < 20; k++) {
                if (k) kbuf_puts(&names, ", ");
                kbuf_printf(&names, "\"%.40s\"", d->label_names[k]);
            }
            kseterr(ld->err, ld->errlen, "%s:%lld: label \"%.60s\" is not in the label set (%s)", ld->path,
                    (long long)d->lines[i], key.s, names.data ? names.data : "");
            kbuf_free(&names);
            rc = EX_DATAERR;
        } else {
            d->labels[i] = hit->id;
        }
    }
    free(set);
    return rc;
}

/* ---- load ---------------------------------------------------------------------------- */

static int check_opts(const kdataset_opts *o, const char *path, int *format, char *err, size_t errlen)
{
    if (o->seq_len < 3 || o->seq_len > (1 << 24)) {
        kseterr(err, errlen, "sequence length %d: must be 3 to %d", o->seq_len, 1 << 24);
        return EX_USAGE;
    }
    if (!o->text_column) {
        kseterr(err, errlen, "no text column given");
        return EX_USAGE;
    }
    if (o->num_labels < 0) {
        kseterr(err, errlen, "num_labels %d: must be 0 (from the data), 1 (regression) or >= 2", o->num_labels);
        return EX_USAGE;
    }
    if (o->label_names) {
        if (o->n_label_names < 2 || (o->num_labels != 0 && o->num_labels != o->n_label_names)) {
            kseterr(err, errlen, "%d label names given for %d labels (need >= 2, and num_labels 0 or equal)",
                    o->n_label_names, o->num_labels);
            return EX_USAGE;
        }
        for (int i = 0; i < o->n_label_names; i++) {
            if (!o->label_names[i]) {
                kseterr(err, errlen, "label name %d is NULL", i);
                return EX_USAGE;
            }
            for (int j = 0; j < i; j++)
                if (strcmp(o->label_names[i], o->label_names[j]) == 0) {
                    kseterr(err, errlen, "label name \"%s\" given twice", o->label_names[i]);
                    return EX_USAGE;
                }
        }
    }
    *format = o->format;
    if (*format == KDS_FORMAT_AUTO) {
        const char *slash = strrchr(path, '/'), *dot = strrchr(path, '.');
        if (dot && (!slash || dot > slash)) {
            if (strcasecmp(dot, ".tsv") == 0) *format = KDS_FORMAT_TSV;
            else if (strcasecmp(dot, ".jsonl") == 0 || strcasecmp(dot, ".json") == 0 ||
                     strcasecmp(dot, ".ndjson") == 0)
                *format = KDS_FORMAT_JSONL;
        }
        if (*format == KDS_FORMAT_AUTO) {
            kseterr(err, errlen, "%s: cannot tell the format from the extension (.tsv, .jsonl, .json); name it",
                    path);
            return EX_USAGE;
        }
    } else if (*format != KDS_FORMAT_TSV && *format != KDS_FORMAT_JSONL) {
        kseterr(err, errlen, "unknown dataset format %d", *format);
        return EX_USAGE;
    }
    return 0;
}

/* The first ill-formed UTF-8 sequence of buf, as PATH:LINE: message. */
static int check_utf8(const char *path, const char *buf, size_t len, char *err, size_t errlen)
{
    const unsigned char *p = (const unsigned char *)buf, *e = p + len;
    int64_t line = 1;
    const unsigned char *line_start = p;
    while (p < e) {
        if (*p < 0x80) {
            if (*p == '\n') line++, line_start = p + 1;
            p++;
            continue;
        }
        uint32_t cp;
        int bad = 0;
        size_t k = kutf8_decode(p, e, &cp, &bad);
        if (bad) {
            kseterr(err, errlen, "%s:%lld: invalid UTF-8 (byte 0x%02X at byte %lld of the line)", path,
                    (long long)line, *p, (long long)(p - line_start) + 1);
            return EX_DATAERR;
        }
        p += k;
    }
    return 0;
}

int kdataset_load(const kdataset_opts *o, const char *path, const kwp_vocab *v, kdataset **out, char *err,
                  size_t errlen)
{
    *out = NULL;
    int format;
    int rc = check_opts(o, path, &format, err, errlen);
    if (rc) return rc;
    int64_t cls = kwp_vocab_special(v, KWP_CLS), sep = kwp_vocab_special(v, KWP_SEP),
            pad = kwp_vocab_special(v, KWP_PAD);
    if (cls < 0 || sep < 0 || pad < 0) {
        kseterr(err, errlen, "%s: the vocabulary has no %s", path, cls < 0 ? "[CLS]" : sep < 0 ? "[SEP]" : "[PAD]");
        return EX_DATAERR;
    }
    kbuf file = {0};
    int e = kbuf_read_file(&file, path);
    if (e) {
        kseterr(err, errlen, "%s: %s", path, strerror(e));
        kbuf_free(&file);
        return EX_NOINPUT;
    }
    const char *buf = file.data ? file.data : "";
    size_t len = file.len;
    if (len >= 3 && memcmp(buf, "\xEF\xBB\xBF", 3) == 0) buf += 3, len -= 3;
    rc = check_utf8(path, buf, len, err, errlen);

    loader ld = {.o = o, .path = path, .err = err, .errlen = errlen};
    if (!rc) {
        ld.tok = kwp_tok_new(v, o->max_word_chars);
        rc = format == KDS_FORMAT_TSV ? load_tsv(&ld, buf, len) : load_jsonl(&ld, buf, len);
    }
    if (!rc && ld.n_a.n == 0) {
        kseterr(err, errlen, "%s:%lld: no examples (the file ends at line %lld)", path,
                (long long)(ld.last_line ? ld.last_line : 1), (long long)ld.last_line);
        rc = EX_DATAERR;
    }
    kdataset *d = NULL;
    if (!rc) {
        d = xcalloc(1, sizeof *d);
        d->n = (int64_t)ld.n_a.n;
        d->seq_len = o->seq_len;
        d->has_pair = o->text_pair_column != NULL;
        d->labelled = o->label_column != NULL;
        d->cls_id = (int32_t)cls, d->sep_id = (int32_t)sep, d->pad_id = (int32_t)pad;
        d->off = ld.off.p, ld.off.p = NULL;
        d->n_a = ld.n_a.p, ld.n_a.p = NULL;
        d->lines = ld.lines.p, ld.lines.p = NULL;
        d->tokens = ld.tokens.p ? ld.tokens.p : xmalloc(sizeof *d->tokens);
        ld.tokens.p = NULL;
        d->truncated = ld.truncated;
        rc = resolve_labels(&ld, d);
        if (rc) {
            kdataset_free(d);
            d = NULL;
        }
    }
    kwp_tok_free(ld.tok);
    kwp_ids_free(&ld.ia);
    kwp_ids_free(&ld.ib);
    free(ld.tokens.p), free(ld.n_a.p), free(ld.off.p), free(ld.lines.p), free(ld.label_off.p);
    kbuf_free(&ld.pool);
    kbuf_free(&file);
    *out = d;
    return rc;
}

void kdataset_free(kdataset *d)
{
    if (!d) return;
    if (d->label_names)
        for (int k = 0; k < d->num_labels; k++) free(d->label_names[k]);
    free(d->label_names);
    free(d->off), free(d->n_a), free(d->labels), free(d->targets), free(d->lines), free(d->tokens);
    free(d);
}

/* ---- accessors ------------------------------------------------------------------------ */

int64_t kdataset_count(const kdataset *d) { return d->n; }
int kdataset_num_labels(const kdataset *d) { return d->num_labels; }
int kdataset_seq_len(const kdataset *d) { return d->seq_len; }
int kdataset_has_pair(const kdataset *d) { return d->has_pair; }
int64_t kdataset_truncated(const kdataset *d) { return d->truncated; }

const char *kdataset_label_name(const kdataset *d, int i)
{
    return d->label_names && i >= 0 && i < d->num_labels ? d->label_names[i] : NULL;
}

const char *const *kdataset_label_names(const kdataset *d) { return (const char *const *)d->label_names; }

int32_t kdataset_label(const kdataset *d, int64_t row) { return d->labels[row]; }
float kdataset_target(const kdataset *d, int64_t row) { return d->targets[row]; }
int64_t kdataset_line(const kdataset *d, int64_t row) { return d->lines[row]; }

void kdataset_tokens(const kdataset *d, int64_t row, const int32_t **a, int *n_a, const int32_t **b, int *n_b)
{
    *a = d->tokens + d->off[row];
    *n_a = d->n_a[row];
    *b = *a + *n_a;
    *n_b = (int)(d->off[row + 1] - d->off[row]) - *n_a;
}

/* ---- epoch order ------------------------------------------------------------------------ */

static uint64_t mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

void kdataset_order(int64_t n, uint64_t seed, uint64_t epoch, int64_t *out)
{
    for (int64_t i = 0; i < n; i++) out[i] = i;
    /* SplitMix64 stream keyed on (seed, epoch, a tag for "dataset order") */
    uint64_t s = mix64(mix64(seed ^ 0x4b44534f52444552ULL) ^ mix64(epoch + 0x9e3779b97f4a7c15ULL));
    for (int64_t i = n - 1; i > 0; i--) {
        uint64_t bound = (uint64_t)i + 1, threshold = -bound % bound, r;
        do r = mix64(s += 0x9e3779b97f4a7c15ULL);
        while (r < threshold);   /* drop the 2^64 mod bound lowest values: r % bound is uniform */
        int64_t j = (int64_t)(r % bound), t = out[i];
        out[i] = out[j], out[j] = t;
    }
}

/* ---- batches ------------------------------------------------------------------------------ */

ksample_batch *kdataset_batch_new(const kwp_vocab *v, int capacity, int L)
{
    if (capacity < 1 || L < 3) return NULL;
    ksample_batch *b = xcalloc(1, sizeof *b);
    size_t B = (size_t)capacity;
    b->version = KSAMPLE_BATCH_VERSION;
    b->objectives = KOBJ_CLASSIFY;
    b->capacity = capacity;
    b->L = L;
    b->P = 0;
    b->pad_id = (int32_t)kwp_vocab_special(v, KWP_PAD);
    b->cls_id = (int32_t)kwp_vocab_special(v, KWP_CLS);
    b->sep_id = (int32_t)kwp_vocab_special(v, KWP_SEP);
    b->mask_id = (int32_t)kwp_vocab_special(v, KWP_MASK);
    b->index = xcalloc(B, sizeof *b->index);
    b->input_ids = xcalloc(B * (size_t)L, sizeof *b->input_ids);
    b->token_type_ids = xcalloc(B * (size_t)L, 1);
    b->lengths = xcalloc(B, sizeof *b->lengths);
    b->n_masked = xcalloc(B, sizeof *b->n_masked);
    b->labels = xcalloc(B, sizeof *b->labels);
    b->targets = xcalloc(B, sizeof *b->targets);
    return b;
}

void kdataset_batch_free(ksample_batch *b)
{
    if (!b) return;
    free(b->index), free(b->input_ids), free(b->token_type_ids), free(b->lengths);
    free(b->n_masked), free(b->masked_positions), free(b->masked_ids), free(b->masked_weights);
    free(b->labels), free(b->entity_ids), free(b->entity_labels), free(b->targets);
    free(b);
}

int kdataset_fill(const kdataset *d, const int64_t *rows, int n, ksample_batch *b)
{
    if (n < 0 || n > b->capacity || b->L < d->seq_len || !b->labels) return EX_SOFTWARE;
    for (int r = 0; r < n; r++)
        if (rows[r] < 0 || rows[r] >= d->n) return EX_SOFTWARE;
    b->version = KSAMPLE_BATCH_VERSION;
    b->objectives = KOBJ_CLASSIFY;
    b->B = n;
    b->P = 0;
    b->pad_id = d->pad_id, b->cls_id = d->cls_id, b->sep_id = d->sep_id;
    for (int r = 0; r < n; r++) {
        const int32_t *a, *bb;
        int na, nb;
        kdataset_tokens(d, rows[r], &a, &na, &bb, &nb);
        write_row(b, r, a, na, bb, d->has_pair ? nb : -1);
        b->index[r] = rows[r];
        b->labels[r] = d->labels[rows[r]];
        if (b->targets) b->targets[r] = d->targets[rows[r]];
    }
    return 0;
}

int kdataset_encode_row(kwp_tok *t, const char *text_a, size_t len_a, const char *text_b, size_t len_b,
                        ksample_batch *b, int row, int *truncated)
{
    if (row < 0 || row >= b->capacity || b->L < 3 || b->cls_id < 0 || b->sep_id < 0) return EX_SOFTWARE;
    kwp_ids ia = {0}, ib = {0};
    kwp_encode(t, text_a, len_a, &ia);
    if (text_b) kwp_encode(t, text_b, len_b, &ib);
    int64_t na = (int64_t)ia.n, nb = (int64_t)ib.n;
    int cut = truncate_longest_first(&na, text_b ? &nb : NULL, b->L - (text_b ? 3 : 2));
    /* kwp ids are uint32 below 2^31: copy as int32 */
    int32_t *ids = xmalloc((size_t)(na + nb + 1) * sizeof *ids);
    for (int64_t i = 0; i < na; i++) ids[i] = (int32_t)ia.ids[i];
    for (int64_t i = 0; i < nb; i++) ids[na + i] = (int32_t)ib.ids[i];
    write_row(b, row, ids, (int)na, ids + na, text_b ? (int)nb : -1);
    free(ids);
    kwp_ids_free(&ia);
    kwp_ids_free(&ib);
    b->index[row] = row;
    if (b->labels) b->labels[row] = -1;
    if (b->targets) b->targets[row] = NAN;
    if (b->B < row + 1) b->B = row + 1;
    if (truncated) *truncated = cut;
    return 0;
}
