/* daemon_http.c: kiln daemon's status page (docs/observe.md): libmicrohttpd
 * in one internal thread serves the page (cli/web/, embedded) and read-only
 * JSON endpoints:
 *
 *   GET /                      the page (HTML; status.js and status.css)
 *   GET /api/status            what kiln status --json prints (kctl_handle)
 *   GET /api/spool?limit=N     the spool's files: waiting, done, failed (+ why)
 *   GET /api/runs              every job, with the last value of each metric
 *   GET /api/runs/ID           one job with its config, metric names, last values
 *   GET /api/metrics?run=ID&after=STEP&max=ROWS&names=a,b
 *                              a run's metrics after a step, in chunks
 *   GET /api/corpus            corpus totals, vocabularies, knowledge graph
 *
 * Invariants:
 *  1. Nothing here writes: the thread has its own store handle opened
 *     read-only (WAL: it never blocks the daemon's writers, nor they it), and
 *     the daemon's state comes through the status hook (a copy under d->mu).
 *     The job thread and the spool thread never wait for this one.
 *  2. Every response this file makes carries the security headers (CSP
 *     default-src 'self', nosniff, X-Frame-Options DENY, no referrer,
 *     no-store). Only GET and HEAD are served (405 otherwise); a request
 *     with a body is refused (413); libmicrohttpd refuses malformed and
 *     oversized requests (400, 414, 431) before they reach this file.
 *  3. With a token, every request carries it (Authorization: Bearer TOKEN,
 *     or ?token=TOKEN), compared in constant time; without one the server is
 *     bound to a loopback address and answers only requests whose Host
 *     header names a loopback address (no DNS rebinding).
 *  4. Work per request is bounded: metrics come in chunks (max rows), spool
 *     listings are capped, corpus figures are cached for 10 s, the last
 *     values of a finished run are computed once and then only for the rows
 *     after the cached step. */
#define _GNU_SOURCE
#include "cli/daemon_http.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <microhttpd.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sysexits.h>
#include <time.h>
#include <unistd.h>

#include "cli/cli.h"
#include "cli/daemon.h"
#include "cli/web.h"

#define METRICS_DEFAULT_ROWS 20000
#define METRICS_MAX_ROWS 200000
#define SPOOL_DEFAULT_LIMIT 50
#define SPOOL_MAX_LIMIT 1000
#define SPOOL_SCAN_MAX 20000     /* entries read per folder and listing */
#define ERROR_FILE_MAX 4096      /* bytes of a failed file's .error shown */
#define CORPUS_CACHE_S 10.0

/* The last value of each metric of one job, kept up to date incrementally. */
typedef struct last_vals {
    int64_t job;
    int64_t through;   /* every row with step <= this is in vals */
    json_t *vals;      /* {name: [step, value]} */
} last_vals;

struct dhttp {
    struct MHD_Daemon *mhd;
    kdaemon *d;
    kctl_hooks hooks;
    char token[257];
    int has_token;
    unsigned port;
    char host[136];         /* the bound address as written in a URL ("127.0.0.1", "[::1]") */
    int loopback;
    /* the server thread's own (one thread: no lock) */
    kstore *store;
    double store_retry_at;
    last_vals *lv;
    size_t n_lv;
    json_t *corpus;
    double corpus_at;
    double last_refusal_log;
};

/* ---- addresses and tokens ------------------------------------------------------------- */

typedef struct bind_addr {
    struct sockaddr_storage ss;
    socklen_t len;
    int v6, loopback;
    unsigned port;
    char host[136];
} bind_addr;

static int parse_addr(const char *spec, bind_addr *b, char *err, size_t errlen)
{
    memset(b, 0, sizeof *b);
    char host[128] = "127.0.0.1";
    const char *port_s = spec;
    if (spec[0] == '[') {
        const char *close = strchr(spec, ']');
        if (!close || close[1] != ':' || (size_t)(close - spec - 1) >= sizeof host) {
            snprintf(err, errlen, "--http %s: an IPv6 address is written [ADDRESS]:PORT", spec);
            return EX_USAGE;
        }
        memcpy(host, spec + 1, (size_t)(close - spec - 1));
        host[close - spec - 1] = '\0';
        port_s = close + 2;
        b->v6 = 1;
    } else if (strchr(spec, ':')) {
        const char *colon = strrchr(spec, ':');
        if ((size_t)(colon - spec) >= sizeof host || strchr(spec, ':') != colon) {
            snprintf(err, errlen, "--http %s: expected HOST:PORT (an IPv6 address in brackets: [::1]:PORT)", spec);
            return EX_USAGE;
        }
        memcpy(host, spec, (size_t)(colon - spec));
        host[colon - spec] = '\0';
        port_s = colon + 1;
    }
    char *end;
    errno = 0;
    long port = strtol(port_s, &end, 10);
    if (!*port_s || *end || errno || port < 0 || port > 65535) {
        snprintf(err, errlen, "--http %s: the port must be a number from 0 to 65535 (0: any free one)", spec);
        return EX_USAGE;
    }
    b->port = (unsigned)port;
    if (!strcasecmp(host, "localhost")) snprintf(host, sizeof host, "127.0.0.1");
    if (b->v6) {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)&b->ss;
        a->sin6_family = AF_INET6;
        a->sin6_port = htons((uint16_t)port);
        if (inet_pton(AF_INET6, host, &a->sin6_addr) != 1) {
            snprintf(err, errlen, "--http %s: '%s' is not an IPv6 address", spec, host);
            return EX_USAGE;
        }
        const uint8_t *x = a->sin6_addr.s6_addr;
        b->loopback = IN6_IS_ADDR_LOOPBACK(&a->sin6_addr) || (IN6_IS_ADDR_V4MAPPED(&a->sin6_addr) && x[12] == 127);
        b->len = sizeof *a;
        snprintf(b->host, sizeof b->host, "[%s]", host);
    } else {
        struct sockaddr_in *a = (struct sockaddr_in *)&b->ss;
        a->sin_family = AF_INET;
        a->sin_port = htons((uint16_t)port);
        if (inet_pton(AF_INET, host, &a->sin_addr) != 1) {
            snprintf(err, errlen, "--http %s: '%s' is not an IPv4 address (or localhost)", spec, host);
            return EX_USAGE;
        }
        b->loopback = (ntohl(a->sin_addr.s_addr) >> 24) == 127;
        b->len = sizeof *a;
        snprintf(b->host, sizeof b->host, "%s", host);
    }
    return 0;
}

static int token_ok(const char *t)
{
    size_t n = strlen(t);
    if (n < 16 || n > 256) return 0;
    for (size_t i = 0; i < n; i++) {
        char c = t[i];
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
              c == '~' || c == '-'))
            return 0;
    }
    return 1;
}

int dhttp_check(const char *addr, const char *token, char *err, size_t errlen)
{
    bind_addr b;
    int rc = parse_addr(addr, &b, err, errlen);
    if (rc) return rc;
    int has = token && token[0];
    if (has && !token_ok(token)) {
        snprintf(err, errlen,
                 "--http-token: a token is 16 to 256 characters of A-Z a-z 0-9 . _ ~ - (for example the output of "
                 "`openssl rand -hex 24`)");
        return EX_USAGE;
    }
    if (!b.loopback && !has) {
        snprintf(err, errlen,
                 "--http %s is not a loopback address: the status page would be open to the network; give a token "
                 "with --http-token TOKEN or $KILN_HTTP_TOKEN (every request must then carry it), or bind to "
                 "127.0.0.1",
                 addr);
        return EX_USAGE;
    }
    return 0;
}

/* Equal strings, in time that depends only on the lengths. */
static int same_secret(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    unsigned char diff = (unsigned char)(la != lb);
    for (size_t i = 0; i < la; i++) diff |= (unsigned char)(a[i] ^ b[i % (lb ? lb : 1)]);
    return diff == 0;
}

/* ---- responses -------------------------------------------------------------------------- */

static void security_headers(struct MHD_Response *r)
{
    MHD_add_response_header(r, "Content-Security-Policy",
                            "default-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'");
    MHD_add_response_header(r, "X-Content-Type-Options", "nosniff");
    MHD_add_response_header(r, "X-Frame-Options", "DENY");
    MHD_add_response_header(r, "Referrer-Policy", "no-referrer");
    MHD_add_response_header(r, "Cache-Control", "no-store");
    MHD_add_response_header(r, "Cross-Origin-Opener-Policy", "same-origin");
    MHD_add_response_header(r, "Cross-Origin-Resource-Policy", "same-origin");
}

/* Queues a response of len bytes at data (mode: copy, persistent or must-free). */
static enum MHD_Result send_body(struct MHD_Connection *con, unsigned status, const char *ctype, const void *data,
                                 size_t len, enum MHD_ResponseMemoryMode mode, const char *extra_name,
                                 const char *extra_value)
{
    struct MHD_Response *r = MHD_create_response_from_buffer(len, (void *)data, mode);
    if (!r) {
        if (mode == MHD_RESPMEM_MUST_FREE) free((void *)data);
        return MHD_NO;
    }
    MHD_add_response_header(r, "Content-Type", ctype);
    security_headers(r);
    if (extra_name) MHD_add_response_header(r, extra_name, extra_value);
    enum MHD_Result ret = MHD_queue_response(con, status, r);
    MHD_destroy_response(r);
    return ret;
}

/* A JSON string of s with ill-formed UTF-8 replaced by U+FFFD: file names,
 * .error files and job names are bytes, and Jansson writes only UTF-8. */
static json_t *str_json(const char *s)
{
    kbuf b = {0};
    kbuf_put_utf8(&b, s, strlen(s), 0);
    json_t *j = json_stringn(b.data ? b.data : "", b.len);
    kbuf_free(&b);
    return j ? j : json_string("");
}

static const char DUMP_FAILED[] = "{\"error\":\"the answer could not be written as JSON\",\"status\":500}";

/* Sends o (the reference is taken) as compact JSON. */
static enum MHD_Result send_json(struct MHD_Connection *con, unsigned status, json_t *o)
{
    char *t = o ? json_dumps(o, JSON_COMPACT | JSON_REAL_PRECISION(10)) : NULL;
    json_decref(o);
    if (!t)
        return send_body(con, MHD_HTTP_INTERNAL_SERVER_ERROR, "application/json; charset=utf-8", DUMP_FAILED,
                         strlen(DUMP_FAILED), MHD_RESPMEM_PERSISTENT, NULL, NULL);
    return send_body(con, status, "application/json; charset=utf-8", t, strlen(t), MHD_RESPMEM_MUST_FREE, NULL, NULL);
}

static enum MHD_Result send_error(struct MHD_Connection *con, unsigned status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static enum MHD_Result send_error(struct MHD_Connection *con, unsigned status, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return send_json(con, status, json_pack("{s:s, s:i}", "error", msg, "status", (int)status));
}

/* ---- the store (read-only, this thread's) ------------------------------------------------- */

static kstore *store_of(dhttp *h, char *err, size_t errlen)
{
    if (h->store) return h->store;
    if (know_seconds() < h->store_retry_at) {
        snprintf(err, errlen, "the store cannot be read just now");
        return NULL;
    }
    if (kstore_open(h->d->db, KSTORE_READONLY, &h->store, err, errlen)) {
        h->store = NULL;
        h->store_retry_at = know_seconds() + 1;
        return NULL;
    }
    return h->store;
}

/* A store failure: the handle is reopened on the next request (a store
 * replaced or repaired underneath is picked up). */
static enum MHD_Result store_failed(dhttp *h, struct MHD_Connection *con)
{
    const char *m = h->store ? kstore_errmsg(h->store) : "the store cannot be read";
    enum MHD_Result r = send_error(con, MHD_HTTP_SERVICE_UNAVAILABLE, "%s", m);
    kstore_close(h->store);
    h->store = NULL;
    return r;
}

/* ---- query arguments ----------------------------------------------------------------------- */

/* The integer argument name: 0 and *v set (dflt when absent), or -1 when it is not an integer in [lo, hi]. */
static int arg_int(struct MHD_Connection *con, const char *name, int64_t dflt, int64_t lo, int64_t hi, int64_t *v)
{
    const char *s = MHD_lookup_connection_value(con, MHD_GET_ARGUMENT_KIND, name);
    if (!s) {
        *v = dflt;
        return 0;
    }
    char *end;
    errno = 0;
    long long x = strtoll(s, &end, 10);
    if (!*s || *end || errno || x < lo || x > hi) return -1;
    *v = x;
    return 0;
}

/* ---- /api/status, /api/runs ------------------------------------------------------------------ */

static json_t *ctl(dhttp *h, kstore *s, json_t *req)
{
    json_t *r = kctl_handle(s, req, &h->hooks);
    json_decref(req);
    return r;
}

static enum MHD_Result api_status(dhttp *h, struct MHD_Connection *con, kstore *s)
{
    json_t *r = ctl(h, s, json_pack("{s:s}", "cmd", "status"));
    if (!json_is_true(json_object_get(r, "ok"))) {
        json_decref(r);
        return store_failed(h, con);
    }
    json_object_del(r, "ok");
    return send_json(con, MHD_HTTP_OK, r);
}

typedef struct lv_fill {
    json_t *vals;
    const char *only;   /* NULL: every name */
} lv_fill;

static int lv_row(int64_t step, const char *name, double value, void *ctx)
{
    lv_fill *f = ctx;
    json_t *pair = json_pack("[I, o]", (json_int_t)step, cli_json_num(value));
    json_object_set_new(f->vals, name, pair);
    return 0;
}

/* The last values of job (its step as the jobs table has it), updated with
 * the rows after the cached step; NULL on a store failure. Borrowed. */
static json_t *last_values(dhttp *h, kstore *s, int64_t job, int64_t job_step)
{
    last_vals *lv = NULL;
    for (size_t i = 0; i < h->n_lv; i++)
        if (h->lv[i].job == job) lv = &h->lv[i];
    if (!lv) {
        h->lv = xrealloc(h->lv, (h->n_lv + 1) * sizeof *h->lv);
        lv = &h->lv[h->n_lv++];
        lv->job = job;
        lv->through = 0;
        lv->vals = json_object();
    }
    if (job_step < lv->through) { /* a run started again: its rows were replaced */
        json_object_clear(lv->vals);
        lv->through = 0;
    }
    lv_fill f = {lv->vals, NULL};
    int64_t last = lv->through;
    int more = 1;
    while (more) {
        if (kstore_metrics_since(s, job, lv->through, 100000, lv_row, &f, &last, &more)) return NULL;
        lv->through = last;
    }
    return lv->vals;
}

static enum MHD_Result api_runs(dhttp *h, struct MHD_Connection *con, kstore *s)
{
    json_t *r = ctl(h, s, json_pack("{s:s}", "cmd", "list"));
    if (!json_is_true(json_object_get(r, "ok"))) {
        json_decref(r);
        return store_failed(h, con);
    }
    json_t *jobs = json_incref(json_object_get(r, "jobs"));
    json_decref(r);
    size_t i;
    json_t *j;
    json_array_foreach(jobs, i, j) {
        const char *kind = json_string_value(json_object_get(j, "kind"));
        if (!kind || strcmp(kind, "train")) continue;
        json_t *v = last_values(h, s, json_integer_value(json_object_get(j, "id")),
                                json_integer_value(json_object_get(j, "step")));
        if (!v) {
            json_decref(jobs);
            return store_failed(h, con);
        }
        json_object_set(j, "last", v);
    }
    return send_json(con, MHD_HTTP_OK, json_pack("{s:o}", "runs", jobs));
}

static int name_row(const char *name, int64_t rows, void *ctx)
{
    json_object_set_new(ctx, name, json_integer(rows));
    return 0;
}

static enum MHD_Result api_run(dhttp *h, struct MHD_Connection *con, kstore *s, const char *id_s)
{
    char *end;
    errno = 0;
    long long id = strtoll(id_s, &end, 10);
    if (!*id_s || *end || errno || id < 1) return send_error(con, MHD_HTTP_BAD_REQUEST, "/api/runs/ID: ID is a run id");
    json_t *r = ctl(h, s, json_pack("{s:s, s:I}", "cmd", "show", "id", (json_int_t)id));
    if (!json_is_true(json_object_get(r, "ok"))) {
        int code = (int)json_integer_value(json_object_get(r, "code"));
        json_decref(r);
        if (code == EX_NOINPUT) return send_error(con, MHD_HTTP_NOT_FOUND, "no run %lld", id);
        return store_failed(h, con);
    }
    json_t *job = json_incref(json_object_get(r, "job"));
    json_decref(r);
    json_t *names = json_object();
    if (kstore_metric_names(s, id, name_row, names)) {
        json_decref(names);
        json_decref(job);
        return store_failed(h, con);
    }
    json_object_set_new(job, "metrics", names);
    json_t *v = last_values(h, s, id, json_integer_value(json_object_get(job, "step")));
    if (!v) {
        json_decref(job);
        return store_failed(h, con);
    }
    json_object_set(job, "last", v);
    return send_json(con, MHD_HTTP_OK, job);
}

/* ---- /api/metrics ------------------------------------------------------------------------------ */

typedef struct mrows {
    json_t *series;        /* {name: {"steps": [...], "values": [...]}} */
    char **only;           /* names asked (NULL: all) */
    int n_only;
} mrows;

static int metric_row(int64_t step, const char *name, double value, void *ctx)
{
    mrows *m = ctx;
    if (m->only) {
        int want = 0;
        for (int i = 0; i < m->n_only && !want; i++) want = !strcmp(m->only[i], name);
        if (!want) return 0;
    }
    json_t *o = json_object_get(m->series, name);
    if (!o) {
        o = json_pack("{s:[], s:[]}", "steps", "values");
        json_object_set_new(m->series, name, o);
    }
    json_array_append_new(json_object_get(o, "steps"), json_integer(step));
    json_array_append_new(json_object_get(o, "values"), cli_json_num(value));
    return 0;
}

static enum MHD_Result api_metrics(dhttp *h, struct MHD_Connection *con, kstore *s)
{
    int64_t run, after, max;
    if (arg_int(con, "run", 0, 1, INT64_MAX, &run) || !run)
        return send_error(con, MHD_HTTP_BAD_REQUEST, "/api/metrics needs run=ID (a run id: see /api/runs)");
    if (arg_int(con, "after", 0, -1, INT64_MAX, &after))
        return send_error(con, MHD_HTTP_BAD_REQUEST, "after: a step (an integer >= -1)");
    if (arg_int(con, "max", METRICS_DEFAULT_ROWS, 1, METRICS_MAX_ROWS, &max))
        return send_error(con, MHD_HTTP_BAD_REQUEST, "max: rows from 1 to %d", METRICS_MAX_ROWS);
    json_t *r = ctl(h, s, json_pack("{s:s, s:I}", "cmd", "show", "id", (json_int_t)run));
    if (!json_is_true(json_object_get(r, "ok"))) {
        int code = (int)json_integer_value(json_object_get(r, "code"));
        json_decref(r);
        if (code == EX_NOINPUT) return send_error(con, MHD_HTTP_NOT_FOUND, "no run %lld", (long long)run);
        return store_failed(h, con);
    }
    json_t *job = json_object_get(r, "job");
    mrows m = {json_object(), NULL, 0};
    char *names_buf = NULL;
    const char *names = MHD_lookup_connection_value(con, MHD_GET_ARGUMENT_KIND, "names");
    if (names && *names) {
        size_t len = strlen(names), cnt = 1;
        for (size_t i = 0; i < len; i++) cnt += names[i] == ',';
        if (cnt > 64) {
            json_decref(r);
            json_decref(m.series);
            return send_error(con, MHD_HTTP_BAD_REQUEST, "names: at most 64");
        }
        names_buf = xstrdup(names);
        m.only = xmalloc(cnt * sizeof *m.only);
        for (char *t = strtok(names_buf, ","); t; t = strtok(NULL, ","))
            if (*t) m.only[m.n_only++] = t;
    }
    int64_t last = after;
    int more = 0;
    int rc = kstore_metrics_since(s, run, after, max, metric_row, &m, &last, &more);
    free(m.only);
    free(names_buf);
    if (rc) {
        json_decref(r);
        json_decref(m.series);
        return store_failed(h, con);
    }
    json_t *o = json_pack("{s:I, s:O, s:O, s:O, s:I, s:I, s:b, s:o}", "run", (json_int_t)run, "name",
                          json_object_get(job, "name"), "kind", json_object_get(job, "kind"), "state",
                          json_object_get(job, "state"), "after", (json_int_t)after, "last_step", (json_int_t)last,
                          "more", more, "series", m.series);
    json_decref(r);
    return send_json(con, MHD_HTTP_OK, o);
}

/* ---- /api/spool ------------------------------------------------------------------------------------ */

typedef struct fent {
    char *name;
    int64_t size, mtime;
} fent;

static int cmp_newest(const void *a, const void *b)
{
    const fent *x = a, *y = b;
    if (x->mtime != y->mtime) return x->mtime > y->mtime ? -1 : 1;
    return strcmp(x->name, y->name);
}

/* The regular files of dir (the spool's waiting files when waiting: a writer's
 * temporary names left out; .error files left out of failed/), newest first,
 * at most SPOOL_SCAN_MAX; *n of them, owned by the caller (free_list). NULL
 * when the folder cannot be read (or is empty). */
static fent *list_dir(const char *dir, int waiting, int failed, size_t *n, int64_t *total)
{
    *n = 0;
    *total = 0;
    DIR *dp = opendir(dir);
    if (!dp) return NULL;
    fent *v = NULL;
    size_t cap = 0;
    struct dirent *e;
    while ((e = readdir(dp)) && *n < SPOOL_SCAN_MAX) {
        const char *nm = e->d_name;
        if (nm[0] == '.') continue;
        if (waiting && daemon_spool_ignored(nm)) continue;
        size_t l = strlen(nm);
        if (failed && l > 6 && !strcmp(nm + l - 6, ".error")) continue;
        struct stat st;
        if (fstatat(dirfd(dp), nm, &st, AT_SYMLINK_NOFOLLOW) || S_ISDIR(st.st_mode)) continue;
        if (*n == cap) {
            cap = cap ? 2 * cap : 64;
            v = xrealloc(v, cap * sizeof *v);
        }
        v[(*n)++] = (fent){xstrdup(nm), (int64_t)st.st_size, (int64_t)st.st_mtime};
    }
    closedir(dp);
    *total = (int64_t)*n;
    if (*n) qsort(v, *n, sizeof *v, cmp_newest);
    return v;
}

static void free_list(fent *v, size_t n)
{
    for (size_t i = 0; i < n; i++) free(v[i].name);
    free(v);
}

/* failed/NAME.error: its text (at most ERROR_FILE_MAX bytes) and its reason: line. */
static void error_of(const char *dir, const char *name, json_t *o)
{
    char p[PATH_MAX + 512];
    int pl = snprintf(p, sizeof p, "%s/%s.error", dir, name);
    if (pl < 0 || (size_t)pl >= sizeof p) return;
    FILE *fp = fopen(p, "r");
    if (!fp) return;
    char buf[ERROR_FILE_MAX + 1];
    size_t n = fread(buf, 1, ERROR_FILE_MAX, fp);
    fclose(fp);
    buf[n] = '\0';
    json_object_set_new(o, "error", str_json(buf));
    for (char *line = buf; line && *line;) {
        char *nl = strchr(line, '\n');
        if (nl) *nl = '\0';
        if (!strncmp(line, "reason:", 7)) {
            const char *r = line + 7;
            while (*r == ' ') r++;
            json_object_set_new(o, "reason", str_json(r));
        }
        line = nl ? nl + 1 : NULL;
    }
}

static json_t *files_json(const char *dir, fent *v, size_t n, int64_t limit, int failed)
{
    json_t *a = json_array();
    for (size_t i = 0; i < n && (int64_t)i < limit; i++) {
        json_t *o = json_pack("{s:o, s:I, s:I}", "name", str_json(v[i].name), "size", (json_int_t)v[i].size,
                              "mtime", (json_int_t)v[i].mtime);
        if (failed) error_of(dir, v[i].name, o);
        json_array_append_new(a, o);
    }
    return a;
}

static enum MHD_Result api_spool(dhttp *h, struct MHD_Connection *con)
{
    int64_t limit;
    if (arg_int(con, "limit", SPOOL_DEFAULT_LIMIT, 1, SPOOL_MAX_LIMIT, &limit))
        return send_error(con, MHD_HTTP_BAD_REQUEST, "limit: 1 to %d", SPOOL_MAX_LIMIT);
    const char *spool = h->d->spool;
    char sub[sizeof h->d->spool + 16];
    json_t *o = json_pack("{s:s, s:I}", "dir", spool, "limit", (json_int_t)limit);
    static const char *const part[3] = {"waiting", "done", "failed"};
    for (int k = 0; k < 3; k++) {
        if (k == 0) snprintf(sub, sizeof sub, "%s", spool);
        else snprintf(sub, sizeof sub, "%s/%s", spool, part[k]);
        size_t n;
        int64_t total;
        fent *v = list_dir(sub, k == 0, k == 2, &n, &total);
        json_object_set_new(o, part[k], files_json(sub, v, n, limit, k == 2));
        char key[32];
        snprintf(key, sizeof key, "%s_count", part[k]);
        json_object_set_new(o, key, json_integer(total));
        free_list(v, n);
    }
    /* what the spool thread is doing, from the daemon's status */
    pthread_mutex_lock(&h->d->mu);
    json_object_set_new(o, "current", h->d->current[0] ? str_json(h->d->current) : json_null());
    json_object_set_new(o, "phase", h->d->current[0] ? json_string(h->d->phase) : json_null());
    json_object_set_new(o, "last_error", h->d->last_error[0] ? str_json(h->d->last_error) : json_null());
    pthread_mutex_unlock(&h->d->mu);
    return send_json(con, MHD_HTTP_OK, o);
}

/* ---- /api/corpus --------------------------------------------------------------------------------------- */

static int vocab_row(const kvocab_row *v, void *ctx)
{
    json_array_append_new(ctx, json_pack("{s:I, s:o, s:I, s:b, s:b, s:I, s:I, s:I}", "id", (json_int_t)v->id, "name",
                                         str_json(v->name), "size", (json_int_t)v->size, "cased", v->cased,
                                         "active", v->active, "tokenized_docs", (json_int_t)v->tokenized_docs,
                                         "tokens", (json_int_t)v->tokens, "created_at", (json_int_t)v->created_at));
    return 0;
}

typedef struct src_counts { int64_t by[5]; } src_counts;

static int source_row(const ksource *src, void *ctx)
{
    src_counts *c = ctx;
    static const char *const st[4] = {"complete", "partial", "failed", "interrupted"};
    int k = 4;
    for (int i = 0; i < 4; i++)
        if (src->status && !strcmp(src->status, st[i])) k = i;
    c->by[k]++;
    return 0;
}

static enum MHD_Result api_corpus(dhttp *h, struct MHD_Connection *con, kstore *s)
{
    double now = know_seconds();
    if (!h->corpus || now - h->corpus_at > CORPUS_CACHE_S) {
        kstore_totals t;
        kkg_counts k;
        src_counts sc = {{0}};
        json_t *vocabs = json_array();
        if (kstore_totals_get(s, &t) || kstore_sources_foreach(s, source_row, &sc) ||
            kstore_vocabs_foreach(s, vocab_row, vocabs) || kstore_kg_counts(s, &k)) {
            json_decref(vocabs);
            return store_failed(h, con);
        }
        json_decref(h->corpus);
        h->corpus = json_pack(
            "{s:{s:I, s:I, s:I, s:I}, s:{s:I, s:I, s:I, s:I, s:I}, s:o, "
            "s:{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I}}",
            "totals", "sources", (json_int_t)t.sources, "documents", (json_int_t)t.documents, "sentences",
            (json_int_t)t.sentences, "bytes", (json_int_t)t.bytes, "sources", "complete", (json_int_t)sc.by[0],
            "partial", (json_int_t)sc.by[1], "failed", (json_int_t)sc.by[2], "interrupted", (json_int_t)sc.by[3],
            "running", (json_int_t)sc.by[4], "vocabularies", vocabs, "kg", "entities", (json_int_t)k.entities,
            "relations", (json_int_t)k.relations, "triples", (json_int_t)k.triples, "train", (json_int_t)k.train,
            "valid", (json_int_t)k.valid, "test", (json_int_t)k.test, "aliases", (json_int_t)k.aliases, "mentions",
            (json_int_t)k.mentions, "linked_docs", (json_int_t)k.linked_docs, "embeddings", (json_int_t)k.embeddings,
            "files", (json_int_t)k.files);
        h->corpus_at = now;
    }
    json_t *o = json_deep_copy(h->corpus);
    json_object_set_new(o, "age_s", json_real(now - h->corpus_at));
    return send_json(con, MHD_HTTP_OK, o);
}

/* ---- the page ---------------------------------------------------------------------------------------- */

static const kweb_file *web_file(const char *name)
{
    for (unsigned i = 0; i < kweb_count; i++)
        if (!strcmp(kweb_files[i].name, name)) return &kweb_files[i];
    return NULL;
}

/* The page, with {{Q}} (after status.js and status.css) replaced by ?token=T
 * when a token is set, so that the browser's own requests carry it. */
static enum MHD_Result send_page(dhttp *h, struct MHD_Connection *con)
{
    const kweb_file *f = web_file("status.html");
    if (!f) return send_error(con, MHD_HTTP_INTERNAL_SERVER_ERROR, "the page is not built in");
    kbuf b = {0};
    const char *p = (const char *)f->data, *e = p + f->size;
    while (p < e) {
        const char *q = strstr(p, "{{Q}}");
        if (!q || q >= e) {
            kbuf_append(&b, p, (size_t)(e - p));
            break;
        }
        kbuf_append(&b, p, (size_t)(q - p));
        if (h->has_token) kbuf_printf(&b, "?token=%s", h->token); /* token_ok: URL- and HTML-safe */
        p = q + 5;
    }
    size_t len = b.len;
    char *data = b.data ? b.data : xstrdup(""); /* owned by the response now (malloc'd) */
    return send_body(con, MHD_HTTP_OK, "text/html; charset=utf-8", data, len, MHD_RESPMEM_MUST_FREE, NULL, NULL);
}

static enum MHD_Result send_static(struct MHD_Connection *con, const char *name, const char *ctype)
{
    const kweb_file *f = web_file(name);
    if (!f) return send_error(con, MHD_HTTP_NOT_FOUND, "no %s", name);
    return send_body(con, MHD_HTTP_OK, ctype, f->data, f->size, MHD_RESPMEM_PERSISTENT, NULL, NULL);
}

/* ---- the request handler ------------------------------------------------------------------------------ */

static void peer_of(struct MHD_Connection *con, char *buf, size_t n)
{
    snprintf(buf, n, "?");
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(con, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    if (!ci || !ci->client_addr) return;
    const struct sockaddr *sa = ci->client_addr;
    socklen_t sl = sa->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
    if (getnameinfo(sa, sl, buf, (socklen_t)n, NULL, 0, NI_NUMERICHOST)) snprintf(buf, n, "?");
}

/* Host header check when serving loopback without a token: the browser came
 * for this server, not for a name that now resolves to it. */
static int host_ok(const dhttp *h, const char *host)
{
    if (!host) return 1; /* HTTP/1.0 without Host: not a browser */
    char want[128];
    const char *names[4] = {h->host, "127.0.0.1", "localhost", "[::1]"};
    for (int i = 0; i < 4; i++) {
        snprintf(want, sizeof want, "%s:%u", names[i], h->port);
        if (!strcasecmp(host, want)) return 1;
    }
    return 0;
}

static const char NOT_ALLOWED[] = "{\"error\":\"read-only: only GET and HEAD\",\"status\":405}";
static const char UNAUTHORIZED[] =
    "{\"error\":\"this page needs the daemon's token: Authorization: Bearer TOKEN, or ?token=TOKEN\",\"status\":401}";

static enum MHD_Result on_request(void *cls, struct MHD_Connection *con, const char *url, const char *method,
                                  const char *version, const char *upload_data, size_t *upload_data_size,
                                  void **req_cls)
{
    (void)version;
    (void)upload_data;
    (void)req_cls;
    dhttp *h = cls;
    if (*upload_data_size) { /* answered already at the first call; a body is not read */
        *upload_data_size = 0;
        return MHD_YES;
    }
    kdebug("http: %s %s", method, url);
    if (strcmp(method, "GET") && strcmp(method, "HEAD"))
        return send_body(con, MHD_HTTP_METHOD_NOT_ALLOWED, "application/json; charset=utf-8", NOT_ALLOWED,
                         strlen(NOT_ALLOWED), MHD_RESPMEM_PERSISTENT, "Allow", "GET, HEAD");
    const char *cl = MHD_lookup_connection_value(con, MHD_HEADER_KIND, "Content-Length");
    const char *te = MHD_lookup_connection_value(con, MHD_HEADER_KIND, "Transfer-Encoding");
    if ((cl && strcmp(cl, "0")) || te) return send_error(con, MHD_HTTP_CONTENT_TOO_LARGE, "a GET carries no body");
    if (h->has_token) {
        const char *auth = MHD_lookup_connection_value(con, MHD_HEADER_KIND, "Authorization");
        const char *qt = MHD_lookup_connection_value(con, MHD_GET_ARGUMENT_KIND, "token");
        int ok = 0;
        if (auth && !strncasecmp(auth, "Bearer ", 7)) ok = same_secret(auth + 7, h->token);
        if (!ok && qt) ok = same_secret(qt, h->token);
        if (!ok) {
            double now = know_seconds();
            if (now - h->last_refusal_log > 10) {
                char peer[64];
                peer_of(con, peer, sizeof peer);
                kwarn("http: refused %s %s from %s: %s token (further refusals within 10 s are not logged)", method,
                      url, peer, auth || qt ? "a wrong" : "no");
                h->last_refusal_log = now;
            }
            return send_body(con, MHD_HTTP_UNAUTHORIZED, "application/json; charset=utf-8", UNAUTHORIZED,
                             strlen(UNAUTHORIZED), MHD_RESPMEM_PERSISTENT, "WWW-Authenticate", "Bearer realm=\"kiln\"");
        }
    } else if (!host_ok(h, MHD_lookup_connection_value(con, MHD_HEADER_KIND, "Host"))) {
        return send_error(con, MHD_HTTP_MISDIRECTED_REQUEST,
                          "Host %s is not this server's address (use http://%s:%u/)",
                          MHD_lookup_connection_value(con, MHD_HEADER_KIND, "Host"), h->host, h->port);
    }

    if (!strcmp(url, "/") || !strcmp(url, "/index.html")) return send_page(h, con);
    if (!strcmp(url, "/status.js")) return send_static(con, "status.js", "text/javascript; charset=utf-8");
    if (!strcmp(url, "/status.css")) return send_static(con, "status.css", "text/css; charset=utf-8");
    if (strncmp(url, "/api/", 5)) return send_error(con, MHD_HTTP_NOT_FOUND, "no page %s (the page is /)", url);
    if (!strcmp(url, "/api/spool")) return api_spool(h, con);
    char err[1024];
    kstore *s = store_of(h, err, sizeof err);
    if (!s) return send_error(con, MHD_HTTP_SERVICE_UNAVAILABLE, "%s", err);
    if (!strcmp(url, "/api/status")) return api_status(h, con, s);
    if (!strcmp(url, "/api/runs")) return api_runs(h, con, s);
    if (!strncmp(url, "/api/runs/", 10)) return api_run(h, con, s, url + 10);
    if (!strcmp(url, "/api/metrics")) return api_metrics(h, con, s);
    if (!strcmp(url, "/api/corpus")) return api_corpus(h, con, s);
    return send_error(con, MHD_HTTP_NOT_FOUND,
                      "no endpoint %s (status, spool, runs, runs/ID, metrics, corpus: docs/observe.md)", url);
}

static void mhd_log(void *cls, const char *fmt, va_list ap)
{
    (void)cls;
    char msg[512];
    vsnprintf(msg, sizeof msg, fmt, ap);
    size_t n = strlen(msg);
    while (n && (msg[n - 1] == '\n' || msg[n - 1] == '\r')) msg[--n] = '\0';
    kdebug("http: %s", msg); /* clients' mistakes (malformed requests) are not the daemon's problems */
}

/* ---- start and stop -------------------------------------------------------------------------------------- */

int dhttp_start(kdaemon *d, const char *addr, const char *token, const kctl_hooks *hooks, dhttp **out, char *err,
                size_t errlen)
{
    *out = NULL;
    int rc = dhttp_check(addr, token, err, errlen);
    if (rc) return rc;
    bind_addr b;
    parse_addr(addr, &b, err, errlen);
    dhttp *h = xcalloc(1, sizeof *h);
    h->d = d;
    h->hooks = *hooks;
    h->has_token = token && token[0];
    if (h->has_token) snprintf(h->token, sizeof h->token, "%s", token);
    h->loopback = b.loopback;
    snprintf(h->host, sizeof h->host, "%s", b.host);
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old); /* the server's thread leaves signals to the main thread */
    errno = 0;
    h->mhd = MHD_start_daemon(MHD_USE_AUTO_INTERNAL_THREAD | MHD_USE_ERROR_LOG | (b.v6 ? MHD_USE_IPv6 : 0),
                              (uint16_t)b.port, NULL, NULL, on_request, h,
                              MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&b.ss,
                              MHD_OPTION_CONNECTION_LIMIT, (unsigned)64,
                              MHD_OPTION_PER_IP_CONNECTION_LIMIT, (unsigned)32,
                              MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)20,
                              MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)32768,
                              MHD_OPTION_STRICT_FOR_CLIENT, (int)1,
                              MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL,
                              MHD_OPTION_END);
    int e = errno;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (!h->mhd) {
        snprintf(err, errlen, "--http %s: cannot listen there%s%s (taken by another program, or not an address of "
                 "this machine)", addr, e ? ": " : "", e ? strerror(e) : "");
        free(h);
        return EX_CANTCREAT;
    }
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(h->mhd, MHD_DAEMON_INFO_BIND_PORT);
    h->port = di && di->port ? di->port : b.port;
    snprintf(d->http_url, sizeof d->http_url, "http://%s:%u/", h->host, h->port);
    *out = h;
    return 0;
}

void dhttp_stop(dhttp *h)
{
    if (!h) return;
    MHD_stop_daemon(h->mhd); /* joins the server's thread: its handle is ours after */
    kstore_close(h->store);
    for (size_t i = 0; i < h->n_lv; i++) json_decref(h->lv[i].vals);
    free(h->lv);
    json_decref(h->corpus);
    free(h);
}
