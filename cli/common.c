/* common.c: the kiln command's shared helpers (see cli.h). */
#define _POSIX_C_SOURCE 200809L
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>
#include <unistd.h>

#include "cli/cli.h"
#include "text/wordpiece.h"
#include "trainer/bf16.h"
#include "trainer/config.h"
#include "trainer/export.h"
#include "trainer/kernels.h"

void cli_common_init(cli_common *c, const char *global_db)
{
    memset(c, 0, sizeof *c);
    c->db = global_db;
}

int cli_common_opt(cli_common *c, int opt, const char *arg)
{
    switch (opt) {
    case OPT_DB: c->db = arg; return 1;
    case OPT_JSON: c->json = 1; return 1;
    case 'h': c->help = 1; return 1;
    case 'q': klog_threshold = KLOG_ERROR; return 1;
    case 'v': klog_threshold = KLOG_DEBUG; return 1;
    }
    return 0;
}

const char *cli_db_path(const cli_common *c)
{
    const char *db = c->db;
    if (!db) db = getenv("KILN_DB");
    if (!db || !*db) db = "kiln.db";
    return db;
}

volatile sig_atomic_t cli_stop;

static void on_stop_signal(int sig)
{
    if (cli_stop) _exit(128 + sig); /* a second signal: leave at once */
    cli_stop = sig;
}

void cli_catch_stop_signals(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
}

int cli_open_store(const cli_common *c, int flags, kstore **s)
{
    char err[1024];
    int rc = kstore_open(cli_db_path(c), flags, s, err, sizeof err);
    if (rc) kerr("%s", err);
    return rc;
}

const char *cli_num(uint64_t v, char *buf, size_t n)
{
    char tmp[32];
    int len = snprintf(tmp, sizeof tmp, "%llu", (unsigned long long)v);
    size_t o = 0;
    for (int i = 0; i < len && o + 2 < n; i++) {
        if (i && (len - i) % 3 == 0) buf[o++] = ',';
        buf[o++] = tmp[i];
    }
    buf[o] = '\0';
    return buf;
}

const char *cli_bytes(double v, char *buf, size_t n)
{
    const char *u[] = {"B", "kB", "MB", "GB", "TB"};
    int i = 0;
    while (v >= 1000 && i < 4) { v /= 1000; i++; }
    snprintf(buf, n, i ? "%.1f %s" : "%.0f %s", v, u[i]);
    return buf;
}

int cli_parse_size(const char *s, uint64_t *out)
{
    char *end;
    double v = strtod(s, &end);
    if (end == s || v < 0) return -1;
    double m = 1;
    switch (*end) {
    case 'k': case 'K': m = 1024.0; end++; break;
    case 'm': case 'M': m = 1024.0 * 1024; end++; break;
    case 'g': case 'G': m = 1024.0 * 1024 * 1024; end++; break;
    case 't': case 'T': m = 1024.0 * 1024 * 1024 * 1024; end++; break;
    }
    if (*end == 'i' || *end == 'B') end++;
    if (*end == 'B') end++;
    if (*end) return -1;
    *out = (uint64_t)(v * m);
    return 0;
}

int cli_usage_error(const char *cmd, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    kerr("%s: %s (see kiln %s --help)", cmd, msg, cmd);
    return EX_USAGE;
}

void cli_progress_init(cli_progress *p, int json)
{
    memset(p, 0, sizeof *p);
    p->on = !json && klog_threshold >= KLOG_INFO && isatty(STDERR_FILENO);
}

void cli_progress_line(cli_progress *p, const char *line)
{
    if (!p->on) return;
    fprintf(stderr, "\r%s\033[K", line);
    fflush(stderr);
    p->shown = 1;
}

void cli_progress_done(cli_progress *p)
{
    if (p->on && p->shown) fprintf(stderr, "\r\033[K");
    p->shown = 0;
}

json_t *cli_json_num(double v) { return isfinite(v) ? json_real(v) : json_null(); }

json_t *cli_json_str(const char *s)
{
    json_t *j = json_string(s);
    return j ? j : json_string_nocheck(s);
}

void cli_json_print(json_t *o, int full)
{
    size_t flags = JSON_ENCODE_ANY | JSON_PRESERVE_ORDER | JSON_COMPACT | (full ? 0 : JSON_REAL_PRECISION(6));
    char *t = json_dumps(o, flags);
    if (t) printf("%s\n", t);
    free(t);
    json_decref(o);
    fflush(stdout);
}

/* ---- tokenizer modes ------------------------------------------------------ */

void cli_tokenizer_json(json_t *extra, int mode)
{
    json_object_set_new(extra, "cased", json_boolean(mode & KWP_CASED));
    json_object_set_new(extra, "strip_accents", mode & KWP_STRIP_ACCENTS  ? json_true()
                                                : mode & KWP_KEEP_ACCENTS ? json_false()
                                                                          : json_null());
    json_object_set_new(extra, "icu_words", json_boolean(mode & KWP_ICU_WORDS));
}

int cli_export_tok(int mode)
{
    return (mode & KWP_CASED ? 0 : KEXPORT_TOK_LOWER) | (mode & KWP_STRIP_ACCENTS ? KEXPORT_TOK_STRIP_ACCENTS : 0) |
           (mode & KWP_KEEP_ACCENTS ? KEXPORT_TOK_KEEP_ACCENTS : 0);
}

int cli_hf_mode(int do_lower_case, int strip_accents)
{
    return (do_lower_case ? 0 : KWP_CASED) | (strip_accents > 0 ? KWP_STRIP_ACCENTS : 0) |
           (strip_accents == 0 ? KWP_KEEP_ACCENTS : 0);
}

int cli_precision(int want, char name[8], char *msg, size_t n)
{
    char why[256] = "", cpu[64], feats[128], blas[96], where[320];
    int bf = want != KPRECISION_FP32 && !kbf16_available(why, sizeof why);
    kcpu_describe(cpu, sizeof cpu, feats, sizeof feats);
    kblas_core(blas, sizeof blas);
    snprintf(where, sizeof where, "CPU: %s, %s; OpenBLAS %s", cpu, feats, blas);
    if (want == KPRECISION_BF16 && !bf) {
        snprintf(msg, n, "%s (%s)", why, where);
        return EX_UNAVAILABLE;
    }
    kset_precision(bf ? KPREC_BF16 : KPREC_FP32);
    snprintf(name, 8, "%s", bf ? "bf16" : "fp32");
    if (bf)
        snprintf(msg, n,
                 "precision bf16%s: products on bfloat16 operands with fp32 accumulation (oneDNN); weights, "
                 "gradients, optimizer state and reductions in fp32 (%s)",
                 want == KPRECISION_AUTO ? " (auto)" : "", where);
    else if (want == KPRECISION_AUTO)
        snprintf(msg, n, "precision fp32 (auto: %s) (%s)", why, where);
    else
        snprintf(msg, n, "precision fp32 (%s)", where);
    return 0;
}
