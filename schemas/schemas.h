/* schemas.h: the SQL migrations of schemas/NNN_*.sql, embedded in the binary
 * at build time (cmake/embed_sql.cmake). Migration i (0-based) takes a store
 * from user_version i to i + 1. */
#ifndef KILN_SCHEMAS_H
#define KILN_SCHEMAS_H
extern const char *const kschema_sql[];  /* (kschema_count) NUL-terminated SQL */
extern const char *const kschema_name[]; /* (kschema_count) file names */
extern const unsigned kschema_count;
#endif
