/* fuzz_common.h: helpers shared by kiln's libFuzzer targets (tests/fuzz/fuzz_*.c;
 * docs/reliability.md, "Fuzzing").
 *
 * Rules every target keeps: deterministic (no clock, no random, no state kept
 * between inputs that changes what the next input does), no leak of its own,
 * nothing written outside /tmp (memfds are preferred: no file at all), and the
 * parser is handed exactly the input's bytes in a buffer of exactly that size
 * (no NUL after it), so that AddressSanitizer sees a read past the end. */
#ifndef KILN_FUZZ_COMMON_H
#define KILN_FUZZ_COMMON_H

#define _GNU_SOURCE
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "util/util.h"

/* kiln's log lines (warnings about the malformed input) are formatted as in
 * production, so a bad format argument still shows, but go to /dev/null:
 * only the C stream stderr is redirected; libFuzzer and the sanitizers write
 * to the file descriptor 2 themselves. KILN_FUZZ_VERBOSE=1 keeps them. */
static inline void fuzz_quiet(void)
{
    klog_threshold = KLOG_DEBUG;
    if (getenv("KILN_FUZZ_VERBOSE")) return;
    FILE *f = fopen("/dev/null", "w");
    if (f) stderr = f;
}

/* A copy of data[0..n) in a buffer of exactly n bytes (1 when n is 0, never
 * read): a parser reading past n trips AddressSanitizer. Free it. */
static inline char *fuzz_dup(const uint8_t *data, size_t n)
{
    char *p = malloc(n ? n : 1);
    if (!p) abort();
    if (n) memcpy(p, data, n);
    return p;
}

/* A NUL-terminated copy of data[0..n). Free it. */
static inline char *fuzz_str(const uint8_t *data, size_t n)
{
    char *p = malloc(n + 1);
    if (!p) abort();
    if (n) memcpy(p, data, n);
    p[n] = '\0';
    return p;
}

/* The input as a file for a parser that only takes a path: an anonymous
 * memory file (memfd, nothing on disk) whose contents are replaced on every
 * call; the path is /proc/self/fd/N (stat says a regular file). */
static inline const char *fuzz_memfile(const uint8_t *data, size_t n)
{
    static int fd = -1;
    static char path[64];
    if (fd < 0) {
        fd = memfd_create("kiln-fuzz", MFD_CLOEXEC);
        if (fd < 0) { perror("memfd_create"); abort(); }
        snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    }
    if (ftruncate(fd, 0) != 0) abort();
    size_t off = 0;
    while (off < n) {
        ssize_t w = pwrite(fd, data + off, n - off, (off_t)off);
        if (w <= 0) abort();
        off += (size_t)w;
    }
    return path;
}

/* Splits data[0..n) at NUL bytes: the part before the first NUL, then up to
 * max_parts - 1 more. parts[i] are NUL-terminated copies (free each with
 * fuzz_parts_free); lens[i] their lengths. Returns the number of parts. */
static inline int fuzz_split_nul(const uint8_t *data, size_t n, char **parts, size_t *lens, int max_parts)
{
    int k = 0;
    size_t i = 0;
    while (k < max_parts) {
        const uint8_t *z = memchr(data + i, 0, n - i);
        size_t e = z ? (size_t)(z - data) : n;
        if (k == max_parts - 1) e = n; /* the last part takes the rest, NULs and all */
        parts[k] = fuzz_str(data + i, e - i);
        lens[k] = e - i;
        k++;
        if (e >= n) break;
        i = e + 1;
    }
    return k;
}

static inline void fuzz_parts_free(char **parts, int n)
{
    for (int i = 0; i < n; i++) free(parts[i]);
}

/* A contract of the parser broken: report and crash (libFuzzer keeps the input). */
#define FUZZ_CHECK(cond)                                                                      \
    do {                                                                                      \
        if (!(cond)) {                                                                        \
            dprintf(2, "fuzz check failed at %s:%d: %s\n", __FILE__, __LINE__, #cond);         \
            abort();                                                                          \
        }                                                                                     \
    } while (0)

#endif
