/* cmd_run.c: kiln run (submit, list, show, pause, resume, cancel) and kiln
 * status: the daemon's clients. A request goes to the daemon that serves the
 * store (found through STORE.daemon.lock), or, when none runs, is handled on
 * the store directly by the same code (kctl_handle, cli/ctl.c), so both paths
 * give the same result. docs/daemon.md. */
#define _GNU_SOURCE
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli/cli.h"
#include "cli/ctl.h"

#define CALL_TIMEOUT_MS 60000

static int call(const char *socket, json_t *req, json_t **resp, char *err, size_t errlen)
{
    return kctl_call(socket, req, resp, CALL_TIMEOUT_MS, err, errlen);
}

/* Sends req to the daemon of the store (or to --socket), else handles it on
 * the store directly. *via_daemon tells which. Returns 0 with *resp set, or
 * an EX_* code (message logged). */
static int route(const cli_common *c, const char *socket, json_t *req, json_t **resp, int *via_daemon)
{
    char err[8192];
    *resp = NULL;
    *via_daemon = 0;
    if (socket) {
        *via_daemon = 1;
        int rc = call(socket, req, resp, err, sizeof err);
        if (rc) kerr("%s", err);
        return rc;
    }
    kctl_daemon d;
    int lockfd = -1;
    int f = kctl_find(cli_db_path(c), &d, &lockfd, err, sizeof err);
    if (f < 0) {
        kerr("%s", err);
        return EX_IOERR;
    }
    if (f == 1) {
        *via_daemon = 1;
        int rc = call(d.socket, req, resp, err, sizeof err);
        if (rc) kerr("%s (the daemon is pid %ld)", err, (long)d.pid);
        return rc;
    }
    kstore *s;
    int rc = cli_open_store(c, 0, &s);
    if (!rc) {
        *resp = kctl_handle(s, req, NULL);
        kstore_close(s);
    }
    if (lockfd >= 0) close(lockfd);
    return rc;
}

/* 0 for {"ok": true}; else logs the error and returns its code. */
static int answer_code(json_t *r)
{
    if (json_is_true(json_object_get(r, "ok"))) return 0;
    const char *e = json_string_value(json_object_get(r, "error"));
    kerr("%s", e ? e : "the request failed");
    int code = (int)json_integer_value(json_object_get(r, "code"));
    return code > 0 ? code : EX_SOFTWARE;
}

static const char *js(json_t *o, const char *k)
{
    const char *s = json_string_value(json_object_get(o, k));
    return s ? s : "-";
}

static void fmt_time(json_t *v, char *b, size_t n)
{
    if (!json_is_integer(v)) {
        snprintf(b, n, "-");
        return;
    }
    time_t t = (time_t)json_integer_value(v);
    struct tm tm;
    localtime_r(&t, &tm);
    strftime(b, n, "%Y-%m-%d %H:%M:%S", &tm);
}

static void fmt_dur(double s, char *b, size_t n)
{
    if (!isfinite(s) || s < 0) snprintf(b, n, "-");
    else snprintf(b, n, "%d:%02d:%02d", (int)(s / 3600), (int)fmod(s / 60, 60), (int)fmod(s, 60));
}

static void print_json_line(json_t *o)
{
    char *t = json_dumps(o, JSON_COMPACT);
    printf("%s\n", t);
    free(t);
}

static void print_job(json_t *j)
{
    char c[64], u[64];
    fmt_time(json_object_get(j, "created_at"), c, sizeof c);
    fmt_time(json_object_get(j, "updated_at"), u, sizeof u);
    printf("job %lld: %s (%s)\n", (long long)json_integer_value(json_object_get(j, "id")), js(j, "name"), js(j, "kind"));
    printf("  state       %s%s%s\n", js(j, "state"), json_is_string(json_object_get(j, "request")) ? ", asked to " : "",
           json_is_string(json_object_get(j, "request")) ? js(j, "request") : "");
    printf("  priority    %lld\n", (long long)json_integer_value(json_object_get(j, "priority")));
    printf("  step        %lld\n", (long long)json_integer_value(json_object_get(j, "step")));
    printf("  checkpoint  %s\n", js(j, "checkpoint"));
    printf("  error       %s\n", js(j, "error"));
    printf("  queued by   %s\n", json_is_string(json_object_get(j, "origin")) ? "kiln run submit" : "kiln train (its own row)");
    printf("  created     %s\n  updated     %s\n", c, u);
}

static void print_table(json_t *jobs)
{
    if (!json_array_size(jobs)) {
        printf("no jobs\n");
        return;
    }
    printf("%5s  %-10s %5s %9s  %-9s %s\n", "ID", "STATE", "PRIO", "STEP", "KIND", "NAME");
    size_t i;
    json_t *j;
    json_array_foreach(jobs, i, j) {
        const char *req = json_string_value(json_object_get(j, "request"));
        char st[32];
        snprintf(st, sizeof st, "%s%s", js(j, "state"), req ? "*" : "");
        printf("%5lld  %-10s %5lld %9lld  %-9s %s%s\n", (long long)json_integer_value(json_object_get(j, "id")), st,
               (long long)json_integer_value(json_object_get(j, "priority")),
               (long long)json_integer_value(json_object_get(j, "step")), js(j, "kind"), js(j, "name"),
               json_is_string(json_object_get(j, "origin")) ? "" : "  (kiln train)");
    }
}

static int parse_id(const char *s, int64_t *id)
{
    char *end;
    long long v = strtoll(s, &end, 10);
    if (*end || v < 1) return -1;
    *id = v;
    return 0;
}

int cmd_run(int argc, char **argv, const char *db)
{
    static const char usage[] =
        "usage: kiln run submit --config FILE [--kind train|vocab|kg-embed] [--set section.key=value]...\n"
        "                       [--name N] [--priority P] [--resume] [--ranks N [--hostfile F]] [--json]\n"
        "       kiln run list [--json]\n"
        "       kiln run show ID [--json]\n"
        "       kiln run pause|resume|cancel ID [--wait SECONDS] [--json]\n"
        "       (all: [--db PATH] [--socket PATH] [-q|-v])\n\n"
        "Jobs kept in the store and run by kiln daemon, one at a time, highest priority\n"
        "first, then oldest (docs/daemon.md). submit validates the config first: a run\n"
        "config (docs/train.md; a relative checkpoint.dir is taken from here), a vocab\n"
        "config {\"size\", \"name\", \"cased\", \"min_frequency\", \"limit_alphabet\",\n"
        "\"max_words\", \"strip_accents\" (true|false), \"words\" (\"bert\"|\"icu\")} or a kg-embed config (TransE: {\"dim\", \"epochs\", \"lr\", \"margin\",\n"
        "\"negatives\", \"norm\", \"adversarial\", \"adv_temperature\", \"batch\", \"seed\",\n"
        "\"eval_every\", \"patience\", \"max_seconds\"}). --resume continues a run whose\n"
        "checkpoint.dir already holds checkpoints (else that is refused). --ranks N\n"
        "(launch.ranks) has the daemon run a training job as mpirun -np N [--hostfile F]\n"
        "kiln train, data parallel, rank 0 on the daemon's machine (docs/distributed.md).\n"
        "pause and cancel stop a running job after its current step (pause checkpoints\n"
        "first); they wait up to --wait seconds (default 120; 0: do not wait) for it.\n"
        "resume queues a paused, failed or cancelled job again; a training job goes on\n"
        "from its latest checkpoint. The command talks to the daemon serving --db when\n"
        "there is one, else changes the store directly (the same rules apply).\n"
        "--json: list prints one job object a line; the others print the job object\n"
        "{\"id\", \"name\", \"kind\", \"state\", \"priority\", \"step\", \"checkpoint\",\n"
        "\"error\", \"request\", \"origin\", \"created_at\", \"updated_at\"} (show adds \"config\").\n"
        "Exit: 0; 64 usage; 65 not possible in the job's state; 66 no such job or file;\n"
        "69 the daemon does not answer; 73 checkpoint.dir taken; 75 store locked;\n"
        "77 refused by the daemon; 78 bad config.\n";
    enum { O_CONFIG = 1, O_KIND, O_SET, O_NAME, O_PRIO, O_RESUME, O_WAIT, O_SOCKET, O_RANKS, O_HOSTFILE };
    static const struct option lo[] = {CLI_COMMON_LONGOPTS,
                                       {"config", required_argument, 0, O_CONFIG},
                                       {"kind", required_argument, 0, O_KIND},
                                       {"set", required_argument, 0, O_SET},
                                       {"name", required_argument, 0, O_NAME},
                                       {"priority", required_argument, 0, O_PRIO},
                                       {"resume", no_argument, 0, O_RESUME},
                                       {"wait", required_argument, 0, O_WAIT},
                                       {"socket", required_argument, 0, O_SOCKET},
                                       {"ranks", required_argument, 0, O_RANKS},
                                       {"hostfile", required_argument, 0, O_HOSTFILE},
                                       {0, 0, 0, 0}};
    cli_common c;
    cli_common_init(&c, db);
    const char *config = NULL, *kind = "train", *name = NULL, *socket = NULL;
    const char **sets = xcalloc((size_t)argc + 3, sizeof *sets);
    char set_ranks[64], set_host[4200];
    int n_sets = 0, resume = 0, opt, rc = 0;
    long long prio = 0;
    double wait = 120;
    optind = 1;
    while ((opt = getopt_long(argc, argv, CLI_COMMON_SHORT, lo, NULL)) != -1) {
        if (cli_common_opt(&c, opt, optarg)) continue;
        char *end;
        switch (opt) {
        case O_CONFIG: config = optarg; break;
        case O_KIND: kind = optarg; break;
        case O_SET: sets[n_sets++] = optarg; break;
        case O_NAME: name = optarg; break;
        case O_RESUME: resume = 1; break;
        case O_SOCKET: socket = optarg; break;
        case O_RANKS: {
            long r = strtol(optarg, &end, 10);
            if (*end || r < 1 || r > 65536) { free(sets); return cli_usage_error("run", "--ranks: 1 to 65536"); }
            snprintf(set_ranks, sizeof set_ranks, "launch.ranks=%ld", r);
            sets[n_sets++] = set_ranks;
            break;
        }
        case O_HOSTFILE:
            snprintf(set_host, sizeof set_host, "launch.hostfile=%s", optarg);
            sets[n_sets++] = set_host;
            break;
        case O_PRIO:
            prio = strtoll(optarg, &end, 10);
            if (*end || !*optarg) { free(sets); return cli_usage_error("run", "--priority: an integer"); }
            break;
        case O_WAIT:
            wait = strtod(optarg, &end);
            if (*end || wait < 0) { free(sets); return cli_usage_error("run", "--wait: seconds >= 0"); }
            break;
        default: free(sets); return cli_usage_error("run", "bad option");
        }
    }
    if (c.help) {
        fputs(usage, stdout);
        free(sets);
        return 0;
    }
    if (optind >= argc) {
        free(sets);
        return cli_usage_error("run", "a command: submit, list, show, pause, resume or cancel");
    }
    const char *sub = argv[optind++];
    int nargs = argc - optind;
    json_t *req = NULL;
    int64_t id = 0;
    if (!strcmp(sub, "submit")) {
        if (!config) { free(sets); return cli_usage_error("run", "submit: --config FILE is required"); }
        if (nargs) { free(sets); return cli_usage_error("run", "submit: unexpected argument '%s'", argv[optind]); }
        char err[2048];
        rc = kctl_submit_request(kind, config, sets, n_sets, name, prio, resume, &req, err, sizeof err);
        if (rc) {
            kerr("%s", err);
            free(sets);
            return rc;
        }
    } else if (!strcmp(sub, "list")) {
        if (nargs) { free(sets); return cli_usage_error("run", "list: unexpected argument '%s'", argv[optind]); }
        req = json_pack("{s:s}", "cmd", "list");
    } else if (!strcmp(sub, "show") || !strcmp(sub, "pause") || !strcmp(sub, "resume") || !strcmp(sub, "cancel")) {
        if (nargs != 1 || parse_id(argv[optind], &id)) {
            free(sets);
            return cli_usage_error("run", "%s: one job ID (see kiln run list)", sub);
        }
        req = json_pack("{s:s, s:I}", "cmd", sub, "id", (json_int_t)id);
    } else {
        free(sets);
        return cli_usage_error("run", "unknown command '%s'", sub);
    }
    free(sets);
    if (n_sets && strcmp(sub, "submit")) {
        json_decref(req);
        return cli_usage_error("run", "--set goes with submit");
    }
    json_t *resp = NULL;
    int via = 0;
    rc = route(&c, socket, req, &resp, &via);
    json_decref(req);
    if (rc) return rc;
    if ((rc = answer_code(resp))) {
        json_decref(resp);
        return rc;
    }
    if (!strcmp(sub, "list")) {
        json_t *jobs = json_object_get(resp, "jobs");
        if (c.json) {
            size_t i;
            json_t *j;
            json_array_foreach(jobs, i, j) print_json_line(j);
        } else {
            print_table(jobs);
        }
        json_decref(resp);
        return 0;
    }
    json_t *job = json_incref(json_object_get(resp, "job"));
    const char *pending = json_string_value(json_object_get(resp, "pending"));
    const char *note = json_string_value(json_object_get(resp, "note"));
    id = json_integer_value(json_object_get(job, "id"));
    if (pending && wait > 0) {
        /* the daemon stops the job after its current step: wait for it */
        kinfo("job %lld: %s asked; waiting for its current step to end%s", (long long)id, pending,
              pending[0] == 'p' ? " and its checkpoint" : "");
        double t0 = know_seconds();
        for (;;) {
            usleep(200000);
            json_t *q = json_pack("{s:s, s:I}", "cmd", "show", "id", (json_int_t)id), *r = NULL;
            int v2;
            int rc2 = route(&c, socket, q, &r, &v2);
            json_decref(q);
            if (rc2 || !json_is_true(json_object_get(r, "ok"))) {
                json_decref(r);
                break;
            }
            json_t *nj = json_object_get(r, "job");
            json_object_del(nj, "config");
            json_decref(job);
            job = json_incref(nj);
            json_decref(r);
            if (strcmp(js(job, "state"), "running")) break;
            if (know_seconds() - t0 > wait) {
                kwarn("job %lld still runs after %.0f s: the %s applies when its current step ends", (long long)id, wait,
                      pending);
                break;
            }
        }
    }
    if (!strcmp(sub, "submit") && !via)
        kinfo("no daemon serves %s: the job starts when kiln daemon runs", cli_db_path(&c));
    if (c.json) {
        print_json_line(job);
    } else if (!strcmp(sub, "show")) {
        print_job(job);
    } else if (!strcmp(sub, "submit")) {
        printf("queued job %lld: %s (%s, priority %lld)\n", (long long)id, js(job, "name"), js(job, "kind"),
               (long long)json_integer_value(json_object_get(job, "priority")));
    } else {
        printf("job %lld: %s%s%s%s\n", (long long)id, js(job, "state"), note ? " (" : "", note ? note : "", note ? ")" : "");
    }
    json_decref(job);
    json_decref(resp);
    return 0;
}

static void print_status(json_t *r)
{
    json_t *d = json_object_get(r, "daemon"), *sp = json_object_get(r, "spool"), *run = json_object_get(r, "running");
    char t[64], a[32], b[32];
    if (json_is_object(d)) {
        fmt_dur((double)json_integer_value(json_object_get(d, "uptime_s")), t, sizeof t);
        json_t *cf = json_object_get(d, "config");
        printf("kiln daemon: %s (pid %lld, up %s)\n", js(d, "state"), (long long)json_integer_value(json_object_get(d, "pid")), t);
        printf("  store   %s\n  socket  %s\n", js(d, "store"), js(d, "socket"));
        if (json_is_string(json_object_get(d, "http"))) printf("  page    %s\n", js(d, "http"));
        printf("  threads training %lld, ingest %lld", (long long)json_integer_value(json_object_get(cf, "train_threads")),
               (long long)json_integer_value(json_object_get(cf, "ingest_threads")));
        double m = json_number_value(json_object_get(cf, "checkpoint_minutes"));
        if (m > 0) printf("; a checkpoint at least every %g min", m);
        printf("\n");
        printf("spool %s: %s waiting, %s done, %lld failed\n", js(d, "spool"),
               cli_num((uint64_t)json_integer_value(json_object_get(sp, "waiting")), a, sizeof a),
               cli_num((uint64_t)json_integer_value(json_object_get(sp, "done")), b, sizeof b),
               (long long)json_integer_value(json_object_get(sp, "failed")));
        if (json_is_string(json_object_get(sp, "current"))) {
            json_t *pg = json_object_get(sp, "progress");
            printf("  now: %s %s", js(sp, "phase"), js(sp, "current"));
            if (json_is_number(pg)) printf(" (%.0f%%)", 100 * json_number_value(pg));
            printf("\n");
        }
        if (json_is_string(json_object_get(sp, "last_error"))) {
            fmt_time(json_object_get(sp, "last_error_at"), t, sizeof t);
            printf("  last problem (%s): %s\n", t, js(sp, "last_error"));
        }
    } else {
        printf("kiln daemon: not running (no daemon serves this store)\n");
    }
    if (json_is_object(run)) {
        printf("running: job %lld %s (%s)", (long long)json_integer_value(json_object_get(run, "id")), js(run, "name"),
               js(run, "kind"));
        json_t *st = json_object_get(run, "step"), *tot = json_object_get(run, "total_steps");
        if (json_is_integer(st)) {
            if (json_is_integer(tot)) printf(": step %lld/%lld", (long long)json_integer_value(st), (long long)json_integer_value(tot));
            else printf(": step %lld", (long long)json_integer_value(st));
        }
        json_t *loss = json_object_get(run, "loss"), *tps = json_object_get(run, "tokens_per_s"),
               *eta = json_object_get(run, "eta_s"), *vl = json_object_get(run, "val_loss");
        if (json_is_number(loss)) printf(", loss %.4f", json_number_value(loss));
        if (json_is_number(vl)) printf(", validation %.4f", json_number_value(vl));
        if (json_is_number(tps)) printf(", %s tokens/s", cli_num((uint64_t)json_number_value(tps), a, sizeof a));
        if (json_is_number(eta)) {
            fmt_dur(json_number_value(eta), t, sizeof t);
            printf(", ETA %s", t);
        }
        if (json_is_string(json_object_get(run, "stopping"))) printf(" [stopping: %s]", js(run, "stopping"));
        printf("\n");
        if (json_is_string(json_object_get(run, "checkpoint"))) printf("  checkpoint %s\n", js(run, "checkpoint"));
    } else if (json_is_object(d)) {
        printf("running: nothing\n");
    }
    json_t *q = json_object_get(r, "queue");
    printf("queue: ");
    if (!json_array_size(q)) printf("empty\n");
    else {
        printf("\n");
        print_table(q);
    }
}

/* ---- kiln status --watch ---------------------------------------------------------------- */

static volatile sig_atomic_t watch_stop;
static void on_watch_signal(int sig)
{
    (void)sig;
    watch_stop = 1;
}

/* The status without what changes every second by itself (uptimes), to tell
 * whether anything happened. Owned by the caller. */
static char *status_key(json_t *r)
{
    json_t *k = json_deep_copy(r);
    json_object_del(json_object_get(k, "daemon"), "uptime_s");
    json_object_del(json_object_get(k, "running"), "seconds");
    char *t = json_dumps(k, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(k);
    return t;
}

/* Redraws the status every interval seconds until SIGINT or SIGTERM: on a
 * terminal the screen is cleared and drawn again (one write a frame); else a
 * status is printed only when it changed, plainly. Returns 0. */
static int status_watch(const cli_common *c, const char *socket, double interval)
{
    int tty = isatty(STDOUT_FILENO);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_watch_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    static char frame[1 << 16];
    if (tty) {
        setvbuf(stdout, frame, _IOFBF, sizeof frame);
        fputs("\033[?25l", stdout); /* no cursor while drawing */
    }
    char *last = NULL;
    while (!watch_stop) {
        json_t *req = json_pack("{s:s}", "cmd", "status"), *resp = NULL;
        int via = 0;
        int rc = route(c, socket, req, &resp, &via);
        json_decref(req);
        int ok = !rc && json_is_true(json_object_get(resp, "ok"));
        if (ok) {
            json_object_del(resp, "ok");
            if (!json_object_get(resp, "spool")) json_object_set_new(resp, "spool", json_null());
        }
        char when[32];
        time_t now = time(NULL);
        struct tm tm;
        localtime_r(&now, &tm);
        strftime(when, sizeof when, "%H:%M:%S", &tm);
        if (tty) {
            printf("\033[H\033[2J%s  kiln status --watch (every %g s; Ctrl-C quits)\n\n", when, interval);
            if (ok && c->json) print_json_line(resp);
            else if (ok) print_status(resp);
            else printf("no answer: %s\n", resp ? js(resp, "error") : "see the message above");
            fflush(stdout);
        } else {
            char *key = ok ? status_key(resp) : xstrdup(resp ? js(resp, "error") : "no answer");
            if (!last || strcmp(key, last)) {
                if (ok && c->json) print_json_line(resp);
                else {
                    printf("-- %s\n", when);
                    if (ok) print_status(resp);
                    else printf("no answer: %s\n", key);
                }
                fflush(stdout);
                free(last);
                last = key;
            } else {
                free(key);
            }
        }
        json_decref(resp);
        for (double t = 0; t < interval && !watch_stop; t += 0.05) usleep(50000);
    }
    if (tty) {
        fputs("\033[?25h", stdout);
        fflush(stdout);
    }
    free(last);
    return 0;
}

int cmd_status(int argc, char **argv, const char *db)
{
    static const char usage[] =
        "usage: kiln status [--watch [--interval SECONDS]] [--json] [--db PATH] [--socket PATH]\n\n"
        "The daemon serving the store (docs/daemon.md): its state, pid and uptime, the\n"
        "spool (files waiting, done, failed; the file in hand; the last problem), the\n"
        "running job's step, loss, tokens/s and ETA, and the queue (queued, running and\n"
        "paused jobs). --json prints one object: {\"daemon\", \"spool\", \"running\",\n"
        "\"queue\"} (daemon, spool and running are null without a daemon).\n"
        "--watch redraws it every --interval seconds (default 2) until Ctrl-C; when the\n"
        "output is not a terminal it prints a new status only when something changed\n"
        "(no escape codes; with --json, one object a line). The daemon's status page\n"
        "(kiln daemon --http) shows the same in a browser, with curves: docs/observe.md.\n"
        "Exit: 0 a daemon runs (--watch: after Ctrl-C); 69 none does (the queue is still\n"
        "shown).\n";
    enum { O_SOCKET = 1, O_WATCH, O_INTERVAL };
    static const struct option lo[] = {CLI_COMMON_LONGOPTS, {"socket", required_argument, 0, O_SOCKET},
                                       {"watch", no_argument, 0, O_WATCH},
                                       {"interval", required_argument, 0, O_INTERVAL}, {0, 0, 0, 0}};
    cli_common c;
    cli_common_init(&c, db);
    const char *socket = NULL;
    int opt, watch = 0;
    double interval = 2;
    optind = 1;
    while ((opt = getopt_long(argc, argv, CLI_COMMON_SHORT, lo, NULL)) != -1) {
        if (cli_common_opt(&c, opt, optarg)) continue;
        if (opt == O_SOCKET) socket = optarg;
        else if (opt == O_WATCH) watch = 1;
        else if (opt == O_INTERVAL) {
            char *end;
            interval = strtod(optarg, &end);
            if (*end || !(interval >= 0.1 && interval <= 3600)) return cli_usage_error("status", "--interval: seconds from 0.1 to 3600");
        } else return cli_usage_error("status", "bad option");
    }
    if (c.help) {
        fputs(usage, stdout);
        return 0;
    }
    if (optind < argc) return cli_usage_error("status", "unexpected argument '%s'", argv[optind]);
    if (watch) return status_watch(&c, socket, interval);
    json_t *req = json_pack("{s:s}", "cmd", "status"), *resp = NULL;
    int via = 0;
    int rc = route(&c, socket, req, &resp, &via);
    json_decref(req);
    if (rc) return rc;
    if ((rc = answer_code(resp))) {
        json_decref(resp);
        return rc;
    }
    json_object_del(resp, "ok");
    if (!json_object_get(resp, "spool")) json_object_set_new(resp, "spool", json_null());
    if (c.json) print_json_line(resp);
    else print_status(resp);
    rc = json_is_object(json_object_get(resp, "daemon")) ? 0 : EX_UNAVAILABLE;
    json_decref(resp);
    return rc;
}
