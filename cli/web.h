/* web.h: the status page's files (the .html, .js and .css of cli/web/), embedded in
 * the binary at build time by cmake/embed_web.cmake; served by
 * cli/daemon_http.c. */
#ifndef KILN_CLI_WEB_H
#define KILN_CLI_WEB_H

#include <stddef.h>

typedef struct kweb_file {
    const char *name;          /* "status.html" */
    const unsigned char *data; /* (size) bytes, then a NUL */
    size_t size;
} kweb_file;

extern const kweb_file kweb_files[];
extern const unsigned kweb_count;

#endif
