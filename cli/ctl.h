/* ctl.h: the kiln daemon's control plane, shared by the daemon (cli/daemon*.c)
 * and its clients (kiln run, kiln status: cli/cmd_run.c): the files next to
 * the store, finding the daemon that serves a store, the socket's line
 * protocol, and the request handler that runs the job operations on a store.
 * The daemon runs kctl_handle on its own store handle; a client finding no
 * daemon runs it on the store directly, so both paths give the same result.
 * Protocol and files: docs/daemon.md. */
#ifndef KILN_CLI_CTL_H
#define KILN_CLI_CTL_H

#include <jansson.h>
#include <sys/types.h>

#include "store/store.h"

#define KCTL_PATH_MAX 4096
#define KCTL_LINE_MAX (1 << 20) /* one request or response line, newline included */

/* The files next to a store STORE. */
typedef struct kctl_files {
    char lock[KCTL_PATH_MAX]; /* STORE.daemon.lock: the daemon's fcntl write lock; holds "PID\nSOCKET\n" */
    char dir[KCTL_PATH_MAX];  /* STORE.daemon/: the default socket's folder, mode 0700 */
    char sock[KCTL_PATH_MAX]; /* STORE.daemon/sock, mode 0600 */
} kctl_files;
/* Returns 0, or -1 when the paths do not fit. */
int kctl_files_of(const char *db, kctl_files *f);

typedef struct kctl_daemon {
    pid_t pid;
    char socket[KCTL_PATH_MAX];
} kctl_daemon;

/* Finds the daemon serving the store db. Returns 1 with *d filled when a
 * daemon holds STORE.daemon.lock; 0 when none does, and then, if lockfd is
 * not NULL, *lockfd is an open descriptor holding a read lock on that file
 * (a daemon cannot start until it is closed: hold it while changing the
 * store directly), or -1 when the file could not be made (no store yet);
 * -1 on error with err filled. */
int kctl_find(const char *db, kctl_daemon *d, int *lockfd, char *err, size_t errlen);

/* Takes the daemon's lock on STORE.daemon.lock and records pid and socket in
 * it. Returns the descriptor (keep it open for the daemon's life: closing any
 * descriptor of the file releases the lock), or -1 with err filled: the
 * message names the daemon already there (pid, socket); *busy is set to 1 in
 * that case. Waits while clients hold read locks (at most a few seconds). */
int kctl_lock_daemon(const char *db, const char *socket, int *busy, char *err, size_t errlen);

/* A Unix stream socket bound (mode 0600) and listening at path, or connected
 * to it. Paths longer than sun_path go through /proc/self/fd/N/NAME. Return
 * the descriptor (close-on-exec; the listener non-blocking) or -1 with errno
 * set. kctl_listen removes a file already at path. */
int kctl_listen(const char *path, int backlog);
int kctl_connect(const char *path);

/* Sends one request line (req) and reads one response line into *resp (a
 * new reference), within timeout_ms (a socket not there yet, or refusing
 * connections, is retried for up to 5 s first: a daemon starting). Returns 0, or EX_UNAVAILABLE (nobody
 * answers), EX_NOPERM (access refused), EX_PROTOCOL (not one JSON object
 * line) with err filled. */
int kctl_call(const char *socket, json_t *req, json_t **resp, int timeout_ms, char *err, size_t errlen);

/* What the daemon adds to kctl_handle; NULL on the direct path. */
typedef struct kctl_hooks {
    void *ctx;
    /* 1 when the daemon runs job id right now */
    int (*running)(void *ctx, int64_t id);
    /* the running job is to stop after its current step: "pause" or
     * "cancel"; NULL withdraws a request not yet acted on */
    void (*stop)(void *ctx, int64_t id, const char *what);
    /* the queue changed (a job queued or resumed) */
    void (*changed)(void *ctx);
    /* adds "daemon", "spool" and "running" to a status response */
    void (*status)(void *ctx, json_t *resp);
    /* reloads the daemon's config file: 0, or an EX_* code with err filled */
    int (*reload)(void *ctx, char *err, size_t errlen);
} kctl_hooks;

/* Handles one request object against the store (docs/daemon.md, "Socket
 * protocol"): ping, status, list, show, submit, pause, resume, cancel,
 * reload. Returns the response object (a new reference): {"ok": true, ...}
 * or {"ok": false, "error": MESSAGE, "code": EX_*}. */
json_t *kctl_handle(kstore *s, json_t *req, const kctl_hooks *h);

/* {"ok": false, "error": ..., "code": code} */
json_t *kctl_fail(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* A job as JSON: id, name, kind, state, priority, step, checkpoint (the
 * latest recorded, or null), error, request, origin, created_at, updated_at,
 * and with_config: config (the stored object). */
json_t *kctl_job_json(kstore *s, const kjob *j, int with_config);

/* The options of a vocab / kg-embed job from its config object (keys in
 * docs/daemon.md). name (name_len bytes) receives the vocabulary's name and
 * o->name points to it. Return 0 or EX_CONFIG / EX_DATAERR with err filled. */
struct kvocab_train_opts;
struct ktranse_opts;
int kctl_vocab_opts(json_t *cfg, struct kvocab_train_opts *o, char *name, size_t name_len, char *err,
                    size_t errlen);
int kctl_embed_opts(json_t *cfg, struct ktranse_opts *o, char *err, size_t errlen);

/* Builds a submit request from a config file: kind "train" (a run config,
 * docs/train.md; sets are --set overrides; a relative checkpoint.dir is made
 * absolute from the working directory), "vocab" or "kg-embed" (docs/daemon.md).
 * Returns 0 with *req a new reference (the caller decrefs it), or EX_* with
 * err filled and *req NULL. */
int kctl_submit_request(const char *kind, const char *config_path, const char *const *sets, int n_sets,
                        const char *name, int64_t priority, int resume, json_t **req, char *err,
                        size_t errlen);

#endif
