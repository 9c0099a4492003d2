/* safetensors.c: the safetensors writer and validating reader
 * (safetensors.h; format: docs/train.md, "safetensors").
 *
 * Layout of a file:
 *   offset  size  meaning
 *   0       8     N: header length, unsigned little-endian
 *   8       N     UTF-8 JSON object, padded with spaces (the writer pads so
 *                 that 8 + N is a multiple of 8)
 *   8 + N   D     data: the tensors' bytes, back to back, no gaps
 *
 * Invariants of a file kst_open accepts (every one checked, in this order):
 *   1. 8 <= file size; N <= 100,000,000 and 8 + N <= file size;
 *   2. the header starts with '{', is valid UTF-8 JSON, an object, with no
 *      duplicate key;
 *   3. "__metadata__", if present, maps strings to strings;
 *   4. every other key is a tensor: an object with exactly "dtype" (a known
 *      name), "shape" (at most KST_MAX_DIMS integers >= 0) and
 *      "data_offsets" ([BEGIN, END], integers, 0 <= BEGIN <= END);
 *   5. END - BEGIN == numel * dtype size, computed without overflow;
 *   6. sorted by (BEGIN, END), the tensors tile [0, D) exactly: no hole, no
 *      overlap;
 *   7. 8 + N + D == file size (nothing missing, nothing trailing).
 * Only then is the data read, into one malloc'd block (so its start is
 * aligned for any type; a tensor's own alignment depends on its offset). */
#define _POSIX_C_SOURCE 200809L
#include "trainer/safetensors.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util/util.h"

#define KST_MAX_HEADER 100000000ull

static const struct dtype { const char *name; size_t size; } DTYPES[] = {
    {"BOOL", 1}, {"U8", 1},  {"I8", 1},  {"F8_E5M2", 1}, {"F8_E4M3", 1}, {"F8_E8M0", 1},
    {"I16", 2},  {"U16", 2}, {"F16", 2}, {"BF16", 2},    {"I32", 4},     {"U32", 4},
    {"F32", 4},  {"F64", 8}, {"I64", 8}, {"U64", 8},     {NULL, 0}};

static const struct dtype *find_dtype(const char *name)
{
    if (!name) return NULL;
    for (int i = 0; DTYPES[i].name; i++)
        if (!strcmp(DTYPES[i].name, name)) return &DTYPES[i];
    return NULL;
}

size_t kst_dtype_size(const char *dtype)
{
    const struct dtype *d = find_dtype(dtype);
    return d ? d->size : 0;
}


/* numel * size, or -1 on overflow or a negative dimension. */
static int tensor_bytes(int ndim, const int64_t *shape, size_t size, uint64_t *out)
{
    uint64_t n = 1;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0) return -1;
        if (__builtin_mul_overflow(n, (uint64_t)shape[i], &n)) return -1;
    }
    if (__builtin_mul_overflow(n, (uint64_t)size, &n)) return -1;
    *out = n;
    return 0;
}

/* ---- file helpers -------------------------------------------------------- */

static int write_all(int fd, const void *p, size_t n)
{
    const char *c = p;
    while (n > 0) {
        size_t chunk = n > ((size_t)1 << 30) ? ((size_t)1 << 30) : n;
        ssize_t w = write(fd, c, chunk);
        if (w < 0) {
            if (errno == EINTR) continue;
            return errno ? errno : EIO;
        }
        c += w;
        n -= (size_t)w;
    }
    return 0;
}

static int read_all(int fd, void *p, size_t n)
{
    char *c = p;
    while (n > 0) {
        size_t chunk = n > ((size_t)1 << 30) ? ((size_t)1 << 30) : n;
        ssize_t r = read(fd, c, chunk);
        if (r < 0) {
            if (errno == EINTR) continue;
            return errno ? errno : EIO;
        }
        if (r == 0) return -1; /* end of file */
        c += r;
        n -= (size_t)r;
    }
    return 0;
}

int kst_fsync_dir(const char *dir, char *err, size_t errlen)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) {
        kseterr(err, errlen, "%s: cannot open the folder to sync it: %s", dir, strerror(errno));
        return EX_IOERR;
    }
    int rc = 0;
    if (fsync(fd) && errno != EINVAL && errno != EROFS) {
        kseterr(err, errlen, "%s: fsync of the folder: %s", dir, strerror(errno));
        rc = EX_IOERR;
    }
    close(fd);
    return rc;
}

/* The folder part of path ("." when there is none). Caller frees. */
static char *parent_dir(const char *path)
{
    const char *slash = strrchr(path, '/');
    if (!slash) return xstrdup(".");
    if (slash == path) return xstrdup("/");
    return xstrndup(path, (size_t)(slash - path));
}

/* Atomic write of n_parts byte ranges into path: path.tmp, fsync, rename,
 * fsync of the folder. */
static int write_atomic(const char *path, const void *const *parts, const size_t *lens, int n_parts, char *err,
                        size_t errlen)
{
    size_t plen = strlen(path);
    char *tmp = xmalloc(plen + 5);
    memcpy(tmp, path, plen);
    memcpy(tmp + plen, ".tmp", 5);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        kseterr(err, errlen, "%s: cannot create: %s", tmp, strerror(errno));
        free(tmp);
        return EX_CANTCREAT;
    }
    int e = 0;
    for (int i = 0; i < n_parts && !e; i++) e = write_all(fd, parts[i], lens[i]);
    if (!e && fsync(fd)) e = errno ? errno : EIO;
    if (close(fd) && !e) e = errno ? errno : EIO;
    if (!e && rename(tmp, path)) e = errno ? errno : EIO;
    if (e) {
        kseterr(err, errlen, "%s: cannot write: %s", path, strerror(e));
        unlink(tmp);
        free(tmp);
        return EX_IOERR;
    }
    free(tmp);
    char *dir = parent_dir(path);
    int rc = kst_fsync_dir(dir, err, errlen);
    free(dir);
    return rc;
}

int kst_write_bytes(const char *path, const void *data, size_t len, char *err, size_t errlen)
{
    if (errlen) err[0] = '\0';
    const void *parts[1] = {data};
    size_t lens[1] = {len};
    return write_atomic(path, parts, lens, 1, err, errlen);
}

/* ---- writer -------------------------------------------------------------- */

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* The first name present twice in names[n], or NULL. Sorts names. */
static const char *duplicate(const char **names, int n)
{
    qsort(names, (size_t)n, sizeof *names, cmp_str);
    for (int i = 1; i < n; i++)
        if (!strcmp(names[i - 1], names[i])) return names[i];
    return NULL;
}

int kst_write(const char *path, const kst_tensor *t, int n, const char *const *meta, int n_meta, char *err,
              size_t errlen)
{
    if (errlen) err[0] = '\0';
    if (!path || n < 0 || (n > 0 && !t) || n_meta < 0 || (n_meta > 0 && !meta)) {
        kseterr(err, errlen, "kst_write: bad arguments");
        return EX_SOFTWARE;
    }
    /* arguments */
    for (int i = 0; i < n; i++) {
        const kst_tensor *x = &t[i];
        const struct dtype *d = find_dtype(x->dtype);
        uint64_t nb;
        if (!x->name || !*x->name || !strcmp(x->name, "__metadata__")) {
            kseterr(err, errlen, "%s: tensor %d: missing or reserved name", path, i);
            return EX_SOFTWARE;
        }
        if (!d) {
            kseterr(err, errlen, "%s: tensor '%s': unknown dtype '%s'", path, x->name, x->dtype ? x->dtype : "(null)");
            return EX_SOFTWARE;
        }
        if (x->ndim < 0 || x->ndim > KST_MAX_DIMS || tensor_bytes(x->ndim, x->shape, d->size, &nb)) {
            kseterr(err, errlen, "%s: tensor '%s': bad shape (%d dimensions, negative or too large)", path, x->name,
                   x->ndim);
            return EX_SOFTWARE;
        }
        if (nb != x->nbytes) {
            kseterr(err, errlen, "%s: tensor '%s': %zu bytes given, its shape and dtype need %llu", path, x->name,
                   x->nbytes, (unsigned long long)nb);
            return EX_SOFTWARE;
        }
        if (nb && !x->data) {
            kseterr(err, errlen, "%s: tensor '%s': no data", path, x->name);
            return EX_SOFTWARE;
        }
    }
    const char **names = xmalloc(sizeof *names * (size_t)(n > n_meta + 1 ? n : n_meta + 1));
    for (int i = 0; i < n; i++) names[i] = t[i].name;
    const char *dup = duplicate(names, n);
    if (dup) {
        kseterr(err, errlen, "%s: tensor name '%s' given twice", path, dup);
        free(names);
        return EX_SOFTWARE;
    }
    int n_keys = 0;
    for (int k = 0; k < n_meta; k++) {
        if (!meta[2 * k] || !meta[2 * k + 1]) {
            kseterr(err, errlen, "%s: metadata pair %d: NULL key or value", path, k);
            free(names);
            return EX_SOFTWARE;
        }
        if (strcmp(meta[2 * k], "format")) names[n_keys++] = meta[2 * k];
    }
    dup = duplicate(names, n_keys);
    free(names);
    if (dup) {
        kseterr(err, errlen, "%s: metadata key '%s' given twice", path, dup);
        return EX_SOFTWARE;
    }

    /* header */
    kbuf h = {0};
    const char *format = "pt";
    for (int k = 0; k < n_meta; k++)
        if (!strcmp(meta[2 * k], "format")) format = meta[2 * k + 1];
    kbuf_puts(&h, "{\"__metadata__\":{\"format\":");
    kbuf_json_str(&h, format, strlen(format));
    for (int k = 0; k < n_meta; k++) {
        if (!strcmp(meta[2 * k], "format")) continue;
        kbuf_putc(&h, ',');
        kbuf_json_str(&h, meta[2 * k], strlen(meta[2 * k]));
        kbuf_putc(&h, ':');
        kbuf_json_str(&h, meta[2 * k + 1], strlen(meta[2 * k + 1]));
    }
    kbuf_putc(&h, '}');
    uint64_t off = 0;
    for (int i = 0; i < n; i++) {
        kbuf_putc(&h, ',');
        kbuf_json_str(&h, t[i].name, strlen(t[i].name));
        kbuf_printf(&h, ":{\"dtype\":\"%s\",\"shape\":[", find_dtype(t[i].dtype)->name);
        for (int j = 0; j < t[i].ndim; j++) kbuf_printf(&h, "%s%lld", j ? "," : "", (long long)t[i].shape[j]);
        kbuf_printf(&h, "],\"data_offsets\":[%llu,%llu]}", (unsigned long long)off,
                    (unsigned long long)(off + t[i].nbytes));
        off += t[i].nbytes;
    }
    kbuf_putc(&h, '}');
    while ((8 + h.len) % 8) kbuf_putc(&h, ' ');
    if (h.len > KST_MAX_HEADER) {
        kseterr(err, errlen, "%s: header of %zu bytes is over the format's limit of 100,000,000", path, h.len);
        kbuf_free(&h);
        return EX_SOFTWARE;
    }
    unsigned char len8[8];
    for (int i = 0; i < 8; i++) len8[i] = (unsigned char)((uint64_t)h.len >> (8 * i));

    /* file: length, header, tensors */
    int np = 2 + n;
    const void **parts = xmalloc(sizeof *parts * (size_t)np);
    size_t *lens = xmalloc(sizeof *lens * (size_t)np);
    parts[0] = len8;
    lens[0] = 8;
    parts[1] = h.data;
    lens[1] = h.len;
    for (int i = 0; i < n; i++) {
        parts[2 + i] = t[i].data;
        lens[2 + i] = t[i].nbytes;
    }
    int rc = write_atomic(path, parts, lens, np, err, errlen);
    free(parts);
    free(lens);
    kbuf_free(&h);
    return rc;
}

/* ---- reader -------------------------------------------------------------- */

struct kst_file {
    char *path;
    unsigned char *data;  /* (D) bytes after the header */
    size_t data_len;
    kst_tensor *t;        /* (n) in header order; names owned here */
    int n;
    char **meta;          /* (2 * n_meta) key, value */
    int n_meta;
};

typedef struct span { uint64_t begin, end; int i; } span;

static int cmp_span(const void *a, const void *b)
{
    const span *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end) return x->end < y->end ? -1 : 1;
    return 0;
}

/* Checks one tensor entry (invariants 4 and 5) and fills *t and *s. */
static int read_entry(const char *path, const char *name, json_t *v, kst_tensor *t, span *s, char *err,
                      size_t errlen)
{
    if (!json_is_object(v)) {
        kseterr(err, errlen, "%s: tensor '%s': expected an object {dtype, shape, data_offsets}", path, name);
        return -1;
    }
    const char *k;
    json_t *e;
    json_object_foreach(v, k, e) {
        if (strcmp(k, "dtype") && strcmp(k, "shape") && strcmp(k, "data_offsets")) {
            kseterr(err, errlen, "%s: tensor '%s': unexpected key '%s'", path, name, k);
            return -1;
        }
    }
    json_t *dt = json_object_get(v, "dtype"), *sh = json_object_get(v, "shape"),
           *of = json_object_get(v, "data_offsets");
    if (!dt || !sh || !of) {
        kseterr(err, errlen, "%s: tensor '%s': missing %s", path, name,
               !dt ? "dtype" : !sh ? "shape" : "data_offsets");
        return -1;
    }
    const struct dtype *d = json_is_string(dt) ? find_dtype(json_string_value(dt)) : NULL;
    if (!d) {
        char *s2 = json_dumps(dt, JSON_ENCODE_ANY | JSON_COMPACT);
        kseterr(err, errlen, "%s: tensor '%s': unknown dtype %.40s", path, name, s2 ? s2 : "?");
        free(s2);
        return -1;
    }
    if (!json_is_array(sh) || json_array_size(sh) > KST_MAX_DIMS) {
        kseterr(err, errlen, "%s: tensor '%s': shape must be an array of at most %d integers", path, name,
               KST_MAX_DIMS);
        return -1;
    }
    t->ndim = (int)json_array_size(sh);
    for (int j = 0; j < t->ndim; j++) {
        json_t *x = json_array_get(sh, (size_t)j);
        if (!json_is_integer(x) || json_integer_value(x) < 0) {
            kseterr(err, errlen, "%s: tensor '%s': shape[%d] is not an integer >= 0", path, name, j);
            return -1;
        }
        t->shape[j] = (int64_t)json_integer_value(x);
    }
    if (!json_is_array(of) || json_array_size(of) != 2 || !json_is_integer(json_array_get(of, 0)) ||
        !json_is_integer(json_array_get(of, 1))) {
        kseterr(err, errlen, "%s: tensor '%s': data_offsets must be [BEGIN, END], two integers", path, name);
        return -1;
    }
    json_int_t b = json_integer_value(json_array_get(of, 0)), en = json_integer_value(json_array_get(of, 1));
    if (b < 0 || en < b) {
        kseterr(err, errlen, "%s: tensor '%s': data_offsets [%lld, %lld] need 0 <= BEGIN <= END", path, name,
               (long long)b, (long long)en);
        return -1;
    }
    uint64_t nb;
    if (tensor_bytes(t->ndim, t->shape, d->size, &nb)) {
        kseterr(err, errlen, "%s: tensor '%s': shape too large (numel * size overflows 64 bits)", path, name);
        return -1;
    }
    if ((uint64_t)(en - b) != nb) {
        kseterr(err, errlen, "%s: tensor '%s': data_offsets [%lld, %lld] hold %llu bytes, its shape and dtype %s "
               "need %llu", path, name, (long long)b, (long long)en, (unsigned long long)(en - b), d->name,
               (unsigned long long)nb);
        return -1;
    }
    t->dtype = d->name;
    t->nbytes = (size_t)nb;
    s->begin = (uint64_t)b;
    s->end = (uint64_t)en;
    return 0;
}

kst_file *kst_open(const char *path, char *err, size_t errlen)
{
    if (errlen) err[0] = '\0';
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        kseterr(err, errlen, "%s: %s", path, strerror(errno));
        return NULL;
    }
    struct stat st;
    if (fstat(fd, &st) || !S_ISREG(st.st_mode)) {
        kseterr(err, errlen, "%s: not a regular file", path);
        close(fd);
        return NULL;
    }
    uint64_t size = (uint64_t)st.st_size;
    kst_file *f = xcalloc(1, sizeof *f);
    f->path = xstrdup(path);
    char *hdr = NULL;
    json_t *root = NULL;
    span *sp = NULL;
    int rc;

    /* 1. lengths */
    unsigned char len8[8];
    if (size < 8 || read_all(fd, len8, 8)) {
        kseterr(err, errlen, "%s: truncated: %llu bytes, less than the 8-byte header length", path,
               (unsigned long long)size);
        goto fail;
    }
    uint64_t hn = 0;
    for (int i = 0; i < 8; i++) hn |= (uint64_t)len8[i] << (8 * i);
    if (hn > KST_MAX_HEADER) {
        kseterr(err, errlen, "%s: header length %llu is over the format's limit of 100,000,000 (not a "
               "safetensors file?)", path, (unsigned long long)hn);
        goto fail;
    }
    if (hn > size - 8) {
        kseterr(err, errlen, "%s: truncated: the header needs %llu bytes, the file has %llu after the length",
               path, (unsigned long long)hn, (unsigned long long)(size - 8));
        goto fail;
    }
    /* 2. header JSON */
    hdr = xmalloc((size_t)hn + 1);
    if ((rc = read_all(fd, hdr, (size_t)hn))) {
        kseterr(err, errlen, "%s: reading the header: %s", path, rc < 0 ? "file shrank while reading" : strerror(rc));
        goto fail;
    }
    hdr[hn] = '\0';
    if (hn == 0 || hdr[0] != '{') {
        kseterr(err, errlen, "%s: the header does not start with '{' (not a safetensors file?)", path);
        goto fail;
    }
    json_error_t je;
    root = json_loadb(hdr, (size_t)hn, JSON_REJECT_DUPLICATES, &je);
    if (!root) {
        kseterr(err, errlen, "%s: header is not valid JSON: byte %d: %s", path, je.position, je.text);
        goto fail;
    }
    if (!json_is_object(root)) {
        kseterr(err, errlen, "%s: header is not a JSON object", path);
        goto fail;
    }
    /* 3, 4, 5. entries */
    size_t n_keys = json_object_size(root);
    f->t = xcalloc(n_keys ? n_keys : 1, sizeof *f->t);
    sp = xcalloc(n_keys ? n_keys : 1, sizeof *sp);
    const char *k;
    json_t *v;
    json_object_foreach(root, k, v) {
        if (!strcmp(k, "__metadata__")) {
            if (!json_is_object(v)) {
                kseterr(err, errlen, "%s: __metadata__ is not an object of strings", path);
                goto fail;
            }
            f->meta = xcalloc(2 * json_object_size(v) + 1, sizeof *f->meta);
            const char *mk;
            json_t *mv;
            json_object_foreach(v, mk, mv) {
                if (!json_is_string(mv)) {
                    kseterr(err, errlen, "%s: __metadata__: the value of '%s' is not a string", path, mk);
                    goto fail;
                }
                f->meta[2 * f->n_meta] = xstrdup(mk);
                f->meta[2 * f->n_meta + 1] = xstrdup(json_string_value(mv));
                f->n_meta++;
            }
            continue;
        }
        kst_tensor *t = &f->t[f->n];
        if (read_entry(path, k, v, t, &sp[f->n], err, errlen)) goto fail;
        t->name = xstrdup(k);
        sp[f->n].i = f->n;
        f->n++;
    }
    /* 6. tiling */
    qsort(sp, (size_t)f->n, sizeof *sp, cmp_span);
    uint64_t at = 0;
    for (int i = 0; i < f->n; i++) {
        const char *name = f->t[sp[i].i].name;
        if (sp[i].begin < at) {
            kseterr(err, errlen, "%s: tensor '%s': data_offsets [%llu, %llu] overlap tensor '%s' (ends at %llu)",
                   path, name, (unsigned long long)sp[i].begin, (unsigned long long)sp[i].end,
                   f->t[sp[i - 1].i].name, (unsigned long long)at);
            goto fail;
        }
        if (sp[i].begin > at) {
            kseterr(err, errlen, "%s: tensor '%s': data bytes %llu..%llu before it belong to no tensor", path, name,
                   (unsigned long long)at, (unsigned long long)sp[i].begin);
            goto fail;
        }
        at = sp[i].end;
    }
    /* 7. size */
    uint64_t have = size - 8 - hn;
    if (at > have) {
        kseterr(err, errlen, "%s: truncated: the tensors need %llu bytes of data, the file has %llu", path,
               (unsigned long long)at, (unsigned long long)have);
        goto fail;
    }
    if (at < have) {
        kseterr(err, errlen, "%s: %llu bytes after the last tensor (the data is %llu bytes)", path,
               (unsigned long long)(have - at), (unsigned long long)at);
        goto fail;
    }
    f->data_len = (size_t)at;
    f->data = xmalloc(f->data_len ? f->data_len : 1);
    if ((rc = read_all(fd, f->data, f->data_len))) {
        kseterr(err, errlen, "%s: reading the data: %s", path, rc < 0 ? "file shrank while reading" : strerror(rc));
        goto fail;
    }
    for (int i = 0; i < f->n; i++) f->t[sp[i].i].data = f->data + sp[i].begin;
    free(sp);
    free(hdr);
    json_decref(root);
    close(fd);
    return f;

fail:
    free(sp);
    free(hdr);
    if (root) json_decref(root);
    close(fd);
    kst_close(f);
    return NULL;
}

int kst_count(const kst_file *f) { return f ? f->n : 0; }

const kst_tensor *kst_get(const kst_file *f, int i)
{
    if (!f || i < 0 || i >= f->n) return NULL;
    return &f->t[i];
}

const kst_tensor *kst_find(const kst_file *f, const char *name)
{
    if (!f || !name) return NULL;
    for (int i = 0; i < f->n; i++)
        if (!strcmp(f->t[i].name, name)) return &f->t[i];
    return NULL;
}

const char *kst_meta(const kst_file *f, const char *key)
{
    if (!f || !key) return NULL;
    for (int i = 0; i < f->n_meta; i++)
        if (!strcmp(f->meta[2 * i], key)) return f->meta[2 * i + 1];
    return NULL;
}

const char *kst_path(const kst_file *f) { return f ? f->path : NULL; }

void kst_close(kst_file *f)
{
    if (!f) return;
    for (int i = 0; i < f->n; i++) free((char *)f->t[i].name);
    for (int i = 0; i < 2 * f->n_meta; i++) free(f->meta[i]);
    free(f->meta);
    free(f->t);
    free(f->data);
    free(f->path);
    free(f);
}
