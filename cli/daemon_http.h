/* daemon_http.h: the daemon's status page (kiln daemon --http ADDR:PORT):
 * one page (HTML, JS, CSS served from the binary) and read-only JSON
 * endpoints over libmicrohttpd, in a thread of its own with a read-only
 * store handle (cli/daemon_http.c; docs/observe.md). */
#ifndef KILN_CLI_DAEMON_HTTP_H
#define KILN_CLI_DAEMON_HTTP_H

#include <stddef.h>

#include "cli/ctl.h"

struct kdaemon;
typedef struct dhttp dhttp;

/* Checks an --http address (PORT, HOST:PORT, [IPV6]:PORT; HOST an IPv4
 * address or localhost; port 0 picks a free one) and the token: a bind
 * address outside the loopback range needs a token; a token is 16 to 256
 * characters of A-Z a-z 0-9 . _ ~ - (NULL or "": none). Returns 0 or
 * EX_USAGE with err saying what is wrong. Call before anything else starts. */
int dhttp_check(const char *addr, const char *token, char *err, size_t errlen);

/* Starts the server's thread (signals blocked in it) listening on addr.
 * hooks are copied; they must stay valid until dhttp_stop (the daemon's
 * status hook). On success *out owns the server (dhttp_stop frees it) and
 * d->http_url holds the page's address. Returns 0, or EX_USAGE (bad address
 * or token), EX_CANTCREAT (cannot listen: the address is taken, or not this
 * machine's) with err filled. */
int dhttp_start(struct kdaemon *d, const char *addr, const char *token, const kctl_hooks *hooks, dhttp **out,
                char *err, size_t errlen);

/* Stops the server (waits for its thread) and frees it; NULL is a no-op. */
void dhttp_stop(dhttp *h);

#endif
