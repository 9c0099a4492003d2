/* cmd_store.c: kiln init, stats, sources and docs: the store seen from the
 * command line. */
#define _POSIX_C_SOURCE 200809L
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"

/* Parses only the common options; returns -1 to go on, else an exit code. */
static int parse_common(int argc, char **argv, cli_common *c, const char *usage)
{
    static const struct option lo[] = {CLI_COMMON_LONGOPTS, {0, 0, 0, 0}};
    int opt;
    optind = 1;
    while ((opt = getopt_long(argc, argv, CLI_COMMON_SHORT, lo, NULL)) != -1)
        if (!cli_common_opt(c, opt, optarg)) return cli_usage_error(argv[0], "bad option");
    if (c->help) { fputs(usage, stdout); return 0; }
    if (optind < argc) return cli_usage_error(argv[0], "unexpected argument '%s'", argv[optind]);
    return -1;
}

int cmd_init(int argc, char **argv, const char *db)
{
    cli_common c;
    cli_common_init(&c, db);
    int r = parse_common(argc, argv, &c,
                         "usage: kiln init [--db PATH] [--json]\n\n"
                         "Creates the store (an SQLite file) or migrates an older one to this\n"
                         "kiln's schema. Refuses a file that is not a kiln store or is newer.\n");
    if (r >= 0) return r;
    kstore *s;
    int rc = cli_open_store(&c, KSTORE_CREATE, &s);
    if (rc) return rc;
    if (c.json) printf("{\"schema_version\": %d}\n", kstore_schema_version(s));
    else printf("store ready (schema version %d)\n", kstore_schema_version(s));
    kstore_close(s);
    return 0;
}

typedef struct status_count { const char *name; uint64_t n; } status_count;
typedef struct stats_ctx { status_count st[5]; } stats_ctx;

static int count_status(const ksource *src, void *ctx)
{
    stats_ctx *sc = ctx;
    for (int i = 0; i < 5; i++)
        if (sc->st[i].name && !strcmp(sc->st[i].name, src->status)) { sc->st[i].n++; break; }
    return 0;
}

int cmd_stats(int argc, char **argv, const char *db)
{
    cli_common c;
    cli_common_init(&c, db);
    int r = parse_common(argc, argv, &c,
                         "usage: kiln stats [--db PATH] [--json]\n\n"
                         "Corpus totals: sources, documents, sentences, bytes of text, and the\n"
                         "sources by status (complete, partial, interrupted, running, failed).\n"
                         "--json prints {\"sources\", \"documents\", \"sentences\", \"bytes\",\n"
                         "\"status\": {...}, \"schema_version\"}.\n");
    if (r >= 0) return r;
    kstore *s;
    int rc = cli_open_store(&c, KSTORE_READONLY, &s);
    if (rc) return rc;
    kstore_totals t;
    stats_ctx sc = {{{"complete", 0}, {"partial", 0}, {"interrupted", 0}, {"running", 0}, {"failed", 0}}};
    if ((rc = kstore_totals_get(s, &t)) || (rc = kstore_sources_foreach(s, count_status, &sc))) {
        kerr("%s", kstore_errmsg(s));
        kstore_close(s);
        return rc;
    }
    if (c.json) {
        printf("{\"sources\": %lld, \"documents\": %lld, \"sentences\": %lld, \"bytes\": %lld, "
               "\"status\": {",
               (long long)t.sources, (long long)t.documents, (long long)t.sentences,
               (long long)t.bytes);
        for (int i = 0; i < 5; i++)
            printf("%s\"%s\": %llu", i ? ", " : "", sc.st[i].name, (unsigned long long)sc.st[i].n);
        printf("}, \"schema_version\": %d}\n", kstore_schema_version(s));
    } else {
        char a[32];
        printf("sources    %s", cli_num((uint64_t)t.sources, a, sizeof a));
        int first = 1;
        for (int i = 0; i < 5; i++)
            if (sc.st[i].n) {
                printf("%s%llu %s", first ? " (" : ", ", (unsigned long long)sc.st[i].n, sc.st[i].name);
                first = 0;
            }
        printf("%s\n", first ? "" : ")");
        printf("documents  %s\n", cli_num((uint64_t)t.documents, a, sizeof a));
        printf("sentences  %s\n", cli_num((uint64_t)t.sentences, a, sizeof a));
        printf("bytes      %s (%s)\n", cli_num((uint64_t)t.bytes, a, sizeof a),
               cli_bytes((double)t.bytes, (char[32]){0}, 32));
    }
    kstore_close(s);
    return 0;
}

static int print_source(const ksource *src, void *ctx)
{
    int json = *(int *)ctx;
    char hex[2 * KHASH_LEN + 1];
    khash_hex(src->hash, hex);
    if (json) {
        kbuf b = {0};
        kbuf_printf(&b, "{\"id\": %lld, \"path\": ", (long long)src->id);
        kbuf_json_str(&b, src->path, strlen(src->path));
        kbuf_printf(&b, ", \"status\": \"%s\", \"format\": \"%s\", \"documents\": %lld, "
                        "\"duplicates\": %lld, \"skipped\": %lld, \"sentences\": %lld, "
                        "\"bytes\": %lld, \"size\": %lld, \"bytes_in\": %lld, \"hash\": \"%s\", "
                        "\"error\": ",
                    src->status, src->format, (long long)src->documents, (long long)src->duplicates,
                    (long long)src->skipped, (long long)src->sentences, (long long)src->text_bytes,
                    (long long)src->size, (long long)src->bytes_in, hex);
        if (src->error) kbuf_json_str(&b, src->error, strlen(src->error));
        else kbuf_puts(&b, "null");
        kbuf_puts(&b, "}\n");
        fputs(b.data, stdout);
        kbuf_free(&b);
    } else {
        printf("%4lld  %-11s %-9s %8lld docs %6lld dup %6lld skip  %s\n", (long long)src->id,
               src->status, src->format, (long long)src->documents, (long long)src->duplicates,
               (long long)src->skipped, src->path);
        if (src->error) printf("      %s\n", src->error);
    }
    return 0;
}

int cmd_sources(int argc, char **argv, const char *db)
{
    cli_common c;
    cli_common_init(&c, db);
    int r = parse_common(argc, argv, &c,
                         "usage: kiln sources [--db PATH] [--json]\n\n"
                         "Lists the ingested files: id, status (complete, partial, interrupted,\n"
                         "running, failed), format, documents stored, duplicates dropped, records\n"
                         "skipped, path, and the error or warning summary. --json: one object per\n"
                         "line.\n");
    if (r >= 0) return r;
    kstore *s;
    int rc = cli_open_store(&c, KSTORE_READONLY, &s);
    if (rc) return rc;
    rc = kstore_sources_foreach(s, print_source, &c.json);
    if (rc) kerr("%s", kstore_errmsg(s));
    kstore_close(s);
    return rc;
}

static int dump_doc(const kdoc *d, void *ctx)
{
    int jsonl = *(int *)ctx;
    kbuf b = {0};
    if (jsonl) {
        kbuf_printf(&b, "{\"id\": %lld, \"source\": %lld, \"title\": ", (long long)d->id,
                    (long long)d->source_id);
        if (d->title) kbuf_json_str(&b, d->title, strlen(d->title));
        else kbuf_puts(&b, "null");
        kbuf_puts(&b, ", \"sentences\": [");
        uint32_t start = 0;
        for (size_t i = 0; i < d->n_sentences; i++) {
            if (i) kbuf_puts(&b, ", ");
            kbuf_json_str(&b, d->text + start, d->sent_ends[i] - start);
            start = d->sent_ends[i] + 1;
        }
        kbuf_puts(&b, "]}\n");
    } else {
        /* BERT's pretraining text layout: a sentence a line, a blank line between documents */
        kbuf_append(&b, d->text, d->text_len);
        kbuf_puts(&b, "\n\n");
    }
    fwrite(b.data, 1, b.len, stdout);
    kbuf_free(&b);
    return ferror(stdout) ? 1 : 0;
}

int cmd_docs(int argc, char **argv, const char *db)
{
    static const char usage[] =
        "usage: kiln docs dump [--source ID] [--jsonl] [--db PATH]\n\n"
        "Writes the documents to standard output, in id order: by default as text,\n"
        "one sentence a line and a blank line between documents (BERT's pretraining\n"
        "layout); with --jsonl one object per document:\n"
        "  {\"id\", \"source\", \"title\", \"sentences\": [...]}\n"
        "--source ID restricts to one source (see kiln sources).\n";
    static const struct option lo[] = {CLI_COMMON_LONGOPTS, {"source", required_argument, 0, 's'},
                                       {"jsonl", no_argument, 0, 'j'}, {0, 0, 0, 0}};
    cli_common c;
    cli_common_init(&c, db);
    int64_t source = 0;
    int jsonl = 0, opt;
    optind = 1;
    while ((opt = getopt_long(argc, argv, CLI_COMMON_SHORT, lo, NULL)) != -1) {
        if (cli_common_opt(&c, opt, optarg)) continue;
        if (opt == 's') {
            char *end;
            source = strtoll(optarg, &end, 10);
            if (*end || source <= 0) return cli_usage_error("docs", "--source takes a source id");
        } else if (opt == 'j') jsonl = 1;
        else return cli_usage_error("docs", "bad option");
    }
    if (c.help) { fputs(usage, stdout); return 0; }
    if (optind >= argc || strcmp(argv[optind], "dump") != 0 || optind + 1 != argc)
        return cli_usage_error("docs", "expected 'kiln docs dump'");
    jsonl |= c.json;
    kstore *s;
    int rc = cli_open_store(&c, KSTORE_READONLY, &s);
    if (rc) return rc;
    rc = kstore_docs_foreach(s, source, dump_doc, &jsonl);
    if (rc) kerr("%s", kstore_errmsg(s));
    kstore_close(s);
    if (!rc && fflush(stdout) != 0) { kerr("writing standard output failed"); rc = EX_IOERR; }
    return rc;
}
