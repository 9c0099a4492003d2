/* util.h: kiln's bottom layer: growable byte buffers, logging, sysexits codes,
 * 128-bit content hashes and small helpers shared by every module.
 *
 * It knows nothing of SQLite, ICU or the modules above it. */
#ifndef KILN_UTIL_H
#define KILN_UTIL_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <sysexits.h>

/* ---- growable byte buffer ------------------------------------------------
 * kbuf owns data (malloc'd, NUL-terminated whenever len < cap, which every
 * function here keeps true). A zeroed kbuf is a valid empty buffer.
 * Allocation failure aborts: kiln treats out-of-memory as fatal, never as
 * bad input (inputs are bounded by the ingest limits before they get here). */
typedef struct kbuf {
    char  *data; /* (cap) bytes, data[len] == '\0' */
    size_t len;
    size_t cap;
} kbuf;

void kbuf_reserve(kbuf *b, size_t extra);          /* room for extra more bytes + NUL */
void kbuf_append(kbuf *b, const void *p, size_t n);
void kbuf_putc(kbuf *b, char c);
void kbuf_puts(kbuf *b, const char *s);
void kbuf_printf(kbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void kbuf_clear(kbuf *b);                          /* len = 0, keeps memory */
void kbuf_free(kbuf *b);                           /* frees, leaves a zeroed kbuf */
/* Appends s as a JSON string literal (quotes included, escapes as RFC 8259). */
void kbuf_json_str(kbuf *b, const char *s, size_t n);

/* printf into a caller's error buffer (nothing when errlen is 0): how the
 * lower modules hand a message up. */
void kseterr(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Appends the UTF-8 encoding of code point cp (<= 0x10FFFF). */
void kbuf_put_cp(kbuf *b, uint32_t cp);
/* Reads a whole file (path "-" is standard input) into b (appended).
 * Returns 0 or an errno value. */
int kbuf_read_file(kbuf *b, const char *path);

/* Decodes one UTF-8 sequence at p (p < e) per Unicode Table 3-7: returns its
 * length and sets *cp, or, for an ill-formed sequence, returns the length of
 * its maximal subpart (>= 1: the Unicode-recommended U+FFFD substitution
 * unit), sets *cp = 0xFFFD and *bad = 1. */
size_t kutf8_decode(const unsigned char *p, const unsigned char *e, uint32_t *cp, int *bad);
/* 1 when s[0..n) is well-formed UTF-8 (kutf8_decode finds nothing bad). */
int kutf8_valid(const char *s, size_t n);
/* Appends the n bytes at s with every ill-formed UTF-8 sequence replaced by
 * U+FFFD (kutf8_decode's units); with no_controls, C0 controls and DEL are
 * left out. The result is valid UTF-8 (for JSON, Cairo, XML). */
void kbuf_put_utf8(kbuf *b, const char *s, size_t n, int no_controls);

/* "a/b", malloc'd (ends the process when out of memory, as xmalloc); the
 * caller frees it. */
char *kpath_join(const char *a, const char *b);

/* Out of memory where kiln cannot go on (an allocation wrapper, a library
 * saying so: ICU's U_MEMORY_ALLOCATION_ERROR): "kiln: error: out of memory"
 * on stderr, then _exit(EX_OSERR) at once (docs/reliability.md, "Fault
 * injection: allocation failures and full disks"). n: the size, 0 if unknown. */
void koom(size_t n) __attribute__((noreturn));

/* Allocation wrappers: koom() on failure (never NULL). */
void *xmalloc(size_t n);
void *xcalloc(size_t n, size_t size);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);

/* ---- logging --------------------------------------------------------------
 * Lines go to stderr as "kiln: LEVEL: message". Level threshold is global:
 * -q shows errors only, default shows warnings and info, -v adds debug. */
enum klog_level { KLOG_ERROR = 0, KLOG_WARN = 1, KLOG_INFO = 2, KLOG_DEBUG = 3 };
extern int klog_threshold; /* default KLOG_INFO */
void klog(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
#define kerr(...)   klog(KLOG_ERROR, __VA_ARGS__)
#define kwarn(...)  klog(KLOG_WARN, __VA_ARGS__)
#define kinfo(...)  klog(KLOG_INFO, __VA_ARGS__)
#define kdebug(...) klog(KLOG_DEBUG, __VA_ARGS__)

/* ---- hashing --------------------------------------------------------------
 * XXH3-128 (libxxhash) of a byte string, written as 16 big-endian bytes. */
#define KHASH_LEN 16
void khash128(const void *p, size_t n, uint8_t out[KHASH_LEN]);
/* Streaming form for whole files. Owns its state; free with khash_stream_free. */
typedef struct khash_stream khash_stream;
khash_stream *khash_stream_new(void);
void khash_stream_update(khash_stream *h, const void *p, size_t n);
void khash_stream_final(khash_stream *h, uint8_t out[KHASH_LEN]);
void khash_stream_free(khash_stream *h);
/* XXH3-128 of a whole file, read in 1 MiB blocks; *size gets its length.
 * Returns 0 or an errno value. */
int khash_file(const char *path, uint8_t out[KHASH_LEN], int64_t *size);
/* 32 lowercase hex digits + NUL. */
void khash_hex(const uint8_t h[KHASH_LEN], char out[2 * KHASH_LEN + 1]);

/* Removes compression suffixes (.gz .bz2 .xz .zst .zstd .lz4 .lzma .Z) from
 * the end of name, in place, repeatedly ("a.txt.gz" -> "a.txt"). */
void kpath_strip_compression(char *name);

/* Online cores (>= 1): the default thread count of bulk commands. */
int kcpu_count(void);

/* ---- time ------------------------------------------------------------------ */
double know_seconds(void); /* monotonic clock, seconds */

/* ---- BLAS (blas_check.c) ----------------------------------------------------
 * The OpenBLAS build loaded at run time. kiln's products are deterministic
 * with the OpenMP build and with the sequential one (its kernels call sgemm
 * on one thread per tile); the pthreads build runs its own thread pool,
 * ignores omp_set_num_threads and splits sums by its own thread count. */
enum { KBLAS_OPENMP = 0, KBLAS_SEQUENTIAL = 1, KBLAS_PTHREADS = 2, KBLAS_UNKNOWN = 3 };
/* Returns the build (KBLAS_*) and openblas_get_config()'s text into desc
 * (n bytes; may be NULL). Needs OpenBLAS linked into the executable. */
int kblas_build(char *desc, size_t n);

#endif
