/* util.c: buffers, allocation wrappers, logging, hashing and clocks (see util.h). */
#define _POSIX_C_SOURCE 200809L
#include "util/util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <fcntl.h>
#include <strings.h>
#include <unistd.h>
#include <time.h>
#include <xxhash.h>

int klog_threshold = KLOG_INFO;

/* An allocation kiln cannot do without: the process ends at once with
 * EX_OSERR (71) and a message, not a crash. _exit, not exit: another thread
 * may be inside a library that exit's handlers would tear down; nothing is
 * half-written, since every store write is a transaction (what a kill -9
 * leaves: docs/reliability.md, "Fault injection: allocation failures"). */
void koom(size_t n)
{
    char m[96];
    int len = n ? snprintf(m, sizeof m, "kiln: error: out of memory (allocating %zu bytes)\n", n)
                : snprintf(m, sizeof m, "kiln: error: out of memory\n");
    if (write(2, m, (size_t)len) < 0) { /* nothing left to tell it with */ }
    _exit(EX_OSERR);
}

void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p) koom(n);
    return p;
}

void *xcalloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (!p) koom(n * size);
    return p;
}

void *xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n ? n : 1);
    if (!q) koom(n);
    return q;
}

char *xstrdup(const char *s) { return xstrndup(s, strlen(s)); }

char *xstrndup(const char *s, size_t n)
{
    char *p = xmalloc(n + 1);
    memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

void kbuf_reserve(kbuf *b, size_t extra)
{
    size_t need = b->len + extra + 1;
    if (need <= b->cap) return;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < need) cap = cap < ((size_t)1 << 40) ? cap * 2 : need;
    b->data = xrealloc(b->data, cap);
    b->cap = cap;
    b->data[b->len] = '\0';
}

void kbuf_append(kbuf *b, const void *p, size_t n)
{
    kbuf_reserve(b, n);
    if (n) memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = '\0';
}

void kbuf_putc(kbuf *b, char c)
{
    kbuf_reserve(b, 1);
    b->data[b->len++] = c;
    b->data[b->len] = '\0';
}

void kbuf_puts(kbuf *b, const char *s) { kbuf_append(b, s, strlen(s)); }

void kbuf_printf(kbuf *b, const char *fmt, ...)
{
    va_list ap, ap2;
    va_start(ap, fmt);
    va_copy(ap2, ap);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n > 0) {
        kbuf_reserve(b, (size_t)n);
        vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap2);
        b->len += (size_t)n;
    }
    va_end(ap2);
}

void kbuf_clear(kbuf *b)
{
    b->len = 0;
    if (b->data) b->data[0] = '\0';
}

void kbuf_free(kbuf *b)
{
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

void kbuf_json_str(kbuf *b, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    kbuf_reserve(b, n + 2);
    kbuf_putc(b, '"');
    size_t run = 0; /* start of the pending run of bytes that need no escape */
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c != '"' && c != '\\') continue;
        kbuf_append(b, s + run, i - run);
        run = i + 1;
        switch (c) {
        case '"': kbuf_append(b, "\\\"", 2); break;
        case '\\': kbuf_append(b, "\\\\", 2); break;
        case '\n': kbuf_append(b, "\\n", 2); break;
        case '\t': kbuf_append(b, "\\t", 2); break;
        case '\r': kbuf_append(b, "\\r", 2); break;
        default: {
            char e[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
            kbuf_append(b, e, 6);
        }
        }
    }
    kbuf_append(b, s + run, n - run);
    kbuf_putc(b, '"');
}

void kbuf_put_cp(kbuf *b, uint32_t cp)
{
    char s[4];
    size_t n;
    if (cp < 0x80) { s[0] = (char)cp; n = 1; }
    else if (cp < 0x800) { s[0] = (char)(0xC0 | (cp >> 6)); s[1] = (char)(0x80 | (cp & 0x3F)); n = 2; }
    else if (cp < 0x10000) {
        s[0] = (char)(0xE0 | (cp >> 12)); s[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        s[2] = (char)(0x80 | (cp & 0x3F)); n = 3;
    } else {
        s[0] = (char)(0xF0 | (cp >> 18)); s[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
        s[2] = (char)(0x80 | ((cp >> 6) & 0x3F)); s[3] = (char)(0x80 | (cp & 0x3F)); n = 4;
    }
    kbuf_append(b, s, n);
}

int kbuf_read_file(kbuf *b, const char *path)
{
    FILE *f = strcmp(path, "-") ? fopen(path, "rb") : stdin;
    if (!f) return errno ? errno : EIO;
    char buf[65536];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, f)) > 0) kbuf_append(b, buf, n);
    int err = ferror(f) ? (errno ? errno : EIO) : 0;
    if (f != stdin) fclose(f);
    return err;
}

size_t kutf8_decode(const unsigned char *p, const unsigned char *e, uint32_t *cp, int *bad)
{
    unsigned char c = p[0];
    size_t need;
    unsigned char lo = 0x80, hi = 0xBF;
    *bad = 0;
    if (c < 0x80) { *cp = c; return 1; }
    if (c >= 0xC2 && c <= 0xDF) { need = 1; *cp = c & 0x1F; }
    else if (c >= 0xE0 && c <= 0xEF) {
        need = 2; *cp = c & 0x0F;
        if (c == 0xE0) lo = 0xA0;
        if (c == 0xED) hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        need = 3; *cp = c & 0x07;
        if (c == 0xF0) lo = 0x90;
        if (c == 0xF4) hi = 0x8F;
    } else {
        *cp = 0xFFFD; *bad = 1;
        return 1;
    }
    size_t i = 1;
    for (; i <= need; i++) {
        if (p + i >= e) break;
        unsigned char t = p[i];
        if (t < lo || t > hi) break;
        lo = 0x80; hi = 0xBF;
        *cp = (*cp << 6) | (t & 0x3F);
    }
    if (i <= need) { *cp = 0xFFFD; *bad = 1; return i; }
    return need + 1;
}

void klog(int level, const char *fmt, ...)
{
    static const char *names[] = {"error", "warning", "info", "debug"};
    if (level > klog_threshold) return;
    char line[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    /* one fprintf per line so that lines from threads do not interleave */
    fprintf(stderr, "kiln: %s: %s\n", names[level < 0 ? 0 : level > 3 ? 3 : level], line);
}

static void put_be128(XXH128_hash_t h, uint8_t out[KHASH_LEN])
{
    XXH128_canonical_t c;
    XXH128_canonicalFromHash(&c, h);
    memcpy(out, c.digest, KHASH_LEN);
}

void khash128(const void *p, size_t n, uint8_t out[KHASH_LEN])
{
    put_be128(XXH3_128bits(p, n), out);
}

struct khash_stream { XXH3_state_t *st; };

khash_stream *khash_stream_new(void)
{
    khash_stream *h = xmalloc(sizeof *h);
    h->st = XXH3_createState();
    if (!h->st) koom(sizeof *h);
    XXH3_128bits_reset(h->st);
    return h;
}

void khash_stream_update(khash_stream *h, const void *p, size_t n)
{
    XXH3_128bits_update(h->st, p, n);
}

void khash_stream_final(khash_stream *h, uint8_t out[KHASH_LEN])
{
    put_be128(XXH3_128bits_digest(h->st), out);
}

void khash_stream_free(khash_stream *h)
{
    if (!h) return;
    XXH3_freeState(h->st);
    free(h);
}

int khash_file(const char *path, uint8_t out[KHASH_LEN], int64_t *size)
{
    int fd = open(path, O_RDONLY);
    if (fd < 0) return errno;
    khash_stream *hs = khash_stream_new();
    size_t cap = (size_t)1 << 20;
    char *buf = xmalloc(cap);
    ssize_t k;
    int64_t n = 0;
    while ((k = read(fd, buf, cap)) > 0) {
        khash_stream_update(hs, buf, (size_t)k);
        n += k;
    }
    int err = k < 0 ? errno : 0;
    close(fd);
    free(buf);
    khash_stream_final(hs, out);
    khash_stream_free(hs);
    if (size) *size = n;
    return err;
}

void kpath_strip_compression(char *name)
{
    static const char *sufs[] = {".gz", ".bz2", ".xz", ".zst", ".zstd", ".lz4", ".lzma", ".Z"};
    for (int again = 1; again;) {
        again = 0;
        size_t n = strlen(name);
        for (size_t i = 0; i < sizeof sufs / sizeof *sufs; i++) {
            size_t m = strlen(sufs[i]);
            if (n > m && strcasecmp(name + n - m, sufs[i]) == 0) {
                name[n - m] = '\0';
                again = 1;
                break;
            }
        }
    }
}

int kcpu_count(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

void khash_hex(const uint8_t h[KHASH_LEN], char out[2 * KHASH_LEN + 1])
{
    static const char hex[] = "0123456789abcdef";
    for (int i = 0; i < KHASH_LEN; i++) {
        out[2 * i] = hex[h[i] >> 4];
        out[2 * i + 1] = hex[h[i] & 15];
    }
    out[2 * KHASH_LEN] = '\0';
}

double know_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

void kseterr(char *err, size_t errlen, const char *fmt, ...)
{
    if (!errlen) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

char *kpath_join(const char *a, const char *b)
{
    size_t na = strlen(a), nb = strlen(b);
    char *p = xmalloc(na + nb + 2);
    memcpy(p, a, na);
    p[na] = '/';
    memcpy(p + na + 1, b, nb + 1);
    return p;
}

int kutf8_valid(const char *s, size_t n)
{
    const unsigned char *p = (const unsigned char *)s, *e = p + n;
    while (p < e) {
        if (*p < 0x80) { p++; continue; }
        uint32_t cp;
        int bad;
        p += kutf8_decode(p, e, &cp, &bad);
        if (bad) return 0;
    }
    return 1;
}

void kbuf_put_utf8(kbuf *b, const char *s, size_t n, int no_controls)
{
    const unsigned char *p = (const unsigned char *)s, *e = p + n;
    while (p < e) {
        uint32_t cp;
        int bad = 0;
        size_t k = kutf8_decode(p, e, &cp, &bad);
        if (bad) kbuf_put_cp(b, 0xFFFD);
        else if (!no_controls || (cp >= 0x20 && cp != 0x7F)) kbuf_append(b, p, k);
        p += k;
    }
}
