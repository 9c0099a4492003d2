/* cmd_ingest.c: kiln ingest: options, signals, progress line and summary
 * around kingest_run (ingest/). */
#define _POSIX_C_SOURCE 200809L
#include <getopt.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "cli/cli.h"
#include "ingest/ingest.h"
#include "text/text.h"


static const char usage[] =
    "usage: kiln ingest [options] PATH...\n"
    "\n"
    "Reads files, directories (recursively) and archives (tar, zip, 7z, cpio; gz, bz2,\n"
    "xz, zstd, lz4 and single compressed files), cleans, normalizes and splits the text\n"
    "into sentences, and stores new documents (duplicates by content are dropped).\n"
    "Re-ingesting a file that was ingested whole does nothing; an interrupted one is\n"
    "completed.\n"
    "\n"
    "formats (detected per file or entry):\n"
    "  --format auto|text|jsonl|mediawiki\n"
    "  --split doc|blank-line|line  plain text: a document per file (default), per\n"
    "                      blank-line separated block (lines are sentences), or per line\n"
    "  --text-field NAME   JSONL field holding the text (default text; id, title, url kept)\n"
    "  --all-namespaces    MediaWiki: keep every namespace, not only articles (0)\n"
    "  --keep-redirects    MediaWiki: keep redirect pages\n"
    "text:\n"
    "  --encoding auto|NAME  input charset: auto = UTF-8, UTF-16 by its BOM, else\n"
    "                      detected when the text is mostly not UTF-8; NAME forces one\n"
    "                      (windows-1252, ISO-8859-2, Shift_JIS, GB18030, ...)\n"
    "  --normalize nfkc|nfc|none   Unicode normalization (default nfkc)\n"
    "  --lang LANG         sentence rules and abbreviations (default en): ICU's rules\n"
    "                      for the locale, with its list of abbreviations that end no\n"
    "                      sentence where ICU has one (en, de, fr, es, it, pt, ...); for\n"
    "                      ko, ja, zh there is none: . ! ? and 。！？ end sentences, with\n"
    "                      or without a space after them (docs/tokenizer.md, Scripts)\n"
    "limits (sizes take k, M, G suffixes):\n"
    "  --max-entry-size N  one file or archive entry, uncompressed (default 256G)\n"
    "  --max-ratio R       expansion of a compressed file (default 1000)\n"
    "  --max-doc-bytes N   one document (default 64M)\n"
    "  --max-line-bytes N  one line of JSONL or line-split text (default 64M)\n"
    "other:\n"
    "  --threads N         worker threads (default: the number of cores)\n"
    "  --json              print the summary as one JSON object\n"
    "  --db PATH, -q, -v, -h\n"
    "\n"
    "exit: 0 all ingested; 65 a file was partial (truncated, corrupt) or records were\n"
    "malformed (all else is kept); 66 a path was missing or unreadable; 130/143\n"
    "interrupted by SIGINT/SIGTERM (a second signal exits at once).\n";

typedef struct prog_ctx { cli_progress p; } prog_ctx;

static void on_progress(const kingest_progress *pr, void *ctx)
{
    prog_ctx *pc = ctx;
    char line[512], a[32], b[32], c[32], d[32];
    double rate = pr->seconds > 0 ? (double)pr->bytes_done / pr->seconds : 0;
    double pct = pr->bytes_total ? 100.0 * (double)pr->bytes_done / (double)pr->bytes_total : 0;
    double eta = rate > 0 ? (double)(pr->bytes_total - pr->bytes_done) / rate : 0;
    const char *cur = pr->current ? strrchr(pr->current, '/') : NULL;
    cur = cur ? cur + 1 : pr->current ? pr->current : "";
    snprintf(line, sizeof line, "%s / %s (%.0f%%)  %s docs  %s/s  ETA %d:%02d  %.40s",
             cli_bytes((double)pr->bytes_done, a, sizeof a), cli_bytes((double)pr->bytes_total, b, sizeof b),
             pct, cli_num(pr->documents, c, sizeof c), cli_bytes(rate, d, sizeof d),
             (int)(eta / 60), (int)eta % 60, cur);
    cli_progress_line(&pc->p, line);
}

int cmd_ingest(int argc, char **argv, const char *db)
{
    enum { O_FORMAT = 1, O_ENC, O_SPLIT, O_FIELD, O_NORM, O_LANG, O_THREADS, O_ALLNS, O_REDIR, O_MAXENT,
           O_RATIO, O_MAXDOC, O_MAXLINE };
    static const struct option lo[] = {
        CLI_COMMON_LONGOPTS,
        {"format", required_argument, 0, O_FORMAT},
        {"split", required_argument, 0, O_SPLIT},
        {"encoding", required_argument, 0, O_ENC},
        {"text-field", required_argument, 0, O_FIELD},
        {"normalize", required_argument, 0, O_NORM},
        {"lang", required_argument, 0, O_LANG},
        {"threads", required_argument, 0, O_THREADS},
        {"all-namespaces", no_argument, 0, O_ALLNS},
        {"keep-redirects", no_argument, 0, O_REDIR},
        {"max-entry-size", required_argument, 0, O_MAXENT},
        {"max-ratio", required_argument, 0, O_RATIO},
        {"max-doc-bytes", required_argument, 0, O_MAXDOC},
        {"max-line-bytes", required_argument, 0, O_MAXLINE},
        {0, 0, 0, 0}};
    cli_common c;
    cli_common_init(&c, db);
    kingest_opts o;
    kingest_opts_default(&o);
    int opt;
    optind = 1;
    while ((opt = getopt_long(argc, argv, CLI_COMMON_SHORT, lo, NULL)) != -1) {
        if (cli_common_opt(&c, opt, optarg)) continue;
        char *end;
        switch (opt) {
        case O_FORMAT:
            if (!strcmp(optarg, "auto")) o.format = KFMT_AUTO;
            else if (!strcmp(optarg, "text")) o.format = KFMT_TEXT;
            else if (!strcmp(optarg, "jsonl")) o.format = KFMT_JSONL;
            else if (!strcmp(optarg, "mediawiki")) o.format = KFMT_MEDIAWIKI;
            else return cli_usage_error("ingest", "--format: unknown format '%s'", optarg);
            break;
        case O_SPLIT:
            if (!strcmp(optarg, "doc")) o.split = KSPLIT_DOC;
            else if (!strcmp(optarg, "blank-line")) o.split = KSPLIT_BLANK_LINE;
            else if (!strcmp(optarg, "line")) o.split = KSPLIT_LINE;
            else return cli_usage_error("ingest", "--split: expected doc, blank-line or line");
            break;
        case O_FIELD: o.text_field = optarg; break;
        case O_ENC: {
            o.encoding = optarg;
            if (strcasecmp(optarg, "auto")) {
                char err[256];
                ktext_conv *cv = ktext_conv_new(optarg, err, sizeof err);
                if (!cv) return cli_usage_error("ingest", "--encoding: %s", err);
                ktext_conv_free(cv);
            }
            break;
        }
        case O_NORM:
            if ((o.normalize = ktext_norm_parse(optarg)) < 0)
                return cli_usage_error("ingest", "--normalize: expected nfkc, nfc or none");
            break;
        case O_LANG: o.lang = optarg; break;
        case O_THREADS:
            o.threads = (int)strtol(optarg, &end, 10);
            if (*end || o.threads < 1 || o.threads > 64)
                return cli_usage_error("ingest", "--threads: expected 1 to 64");
            break;
        case O_ALLNS: o.all_namespaces = 1; break;
        case O_REDIR: o.keep_redirects = 1; break;
        case O_MAXENT:
        case O_MAXDOC:
        case O_MAXLINE: {
            uint64_t v;
            if (cli_parse_size(optarg, &v) || v == 0)
                return cli_usage_error("ingest", "bad size '%s'", optarg);
            if (opt == O_MAXENT) o.max_entry_bytes = v;
            else if (opt == O_MAXDOC) o.max_doc_bytes = v;
            else o.max_line_bytes = v;
            break;
        }
        case O_RATIO:
            o.max_ratio = strtod(optarg, &end);
            if (*end || o.max_ratio < 1) return cli_usage_error("ingest", "--max-ratio: expected >= 1");
            break;
        default: return cli_usage_error("ingest", "bad option");
        }
    }
    if (c.help) { fputs(usage, stdout); return 0; }
    if (optind >= argc) return cli_usage_error("ingest", "no PATH given");
    const char *dbp = cli_db_path(&c);

    cli_catch_stop_signals();
    o.stop = &cli_stop;
    prog_ctx pc;
    cli_progress_init(&pc.p, c.json);
    if (pc.p.on) { o.progress = on_progress; o.progress_ctx = &pc; }

    kingest_summary s;
    int rc = kingest_run(dbp, (const char *const *)argv + optind, argc - optind, &o, &s);
    cli_progress_done(&pc.p);
    if (s.interrupted) {
        kwarn("interrupted: what was read is stored; run the same command again to complete it");
        rc = 128 + (int)cli_stop;
    }
    double mbps = s.seconds > 0 ? (double)s.bytes_in / 1e6 / s.seconds : 0;
    if (c.json) {
        printf("{\"files\": %llu, \"already\": %llu, \"missing\": %llu, \"partial\": %llu, "
               "\"documents\": %llu, \"duplicates\": %llu, \"skipped\": %llu, \"errors\": %llu, "
               "\"invalid_utf8\": %llu, \"sentences\": %llu, \"bytes_read\": %llu, "
               "\"bytes_in\": %llu, \"text_bytes\": %llu, \"seconds\": %.3f, \"mb_per_s\": %.2f, "
               "\"stages\": {\"read\": %.3f, \"parse\": %.3f, \"wikitext\": %.3f, \"clean\": %.3f, "
               "\"segment\": %.3f, \"write\": %.3f}, \"interrupted\": %s, \"exit\": %d}\n",
               (unsigned long long)s.files, (unsigned long long)s.already,
               (unsigned long long)s.missing, (unsigned long long)s.partial,
               (unsigned long long)s.documents, (unsigned long long)s.duplicates,
               (unsigned long long)s.skipped, (unsigned long long)s.errors,
               (unsigned long long)s.invalid_utf8, (unsigned long long)s.sentences,
               (unsigned long long)s.bytes_read, (unsigned long long)s.bytes_in,
               (unsigned long long)s.text_bytes, s.seconds, mbps, s.t_read, s.t_parse, s.t_wikitext,
               s.t_clean, s.t_segment, s.t_write, s.interrupted ? "true" : "false", rc);
    } else if (klog_threshold >= KLOG_INFO) {
        char a[32], b[32], d[32], e[32];
        printf("ingested %llu file(s)%s: %s documents, %s sentences, %s of text from %s in %.1f s "
               "(%.1f MB/s)\n",
               (unsigned long long)(s.files - s.already),
               s.already ? " (others already ingested)" : "",
               cli_num(s.documents, a, sizeof a), cli_num(s.sentences, b, sizeof b),
               cli_bytes((double)s.text_bytes, d, sizeof d), cli_bytes((double)s.bytes_in, e, sizeof e),
               s.seconds, mbps);
        if (s.duplicates || s.skipped || s.errors || s.partial || s.missing || s.invalid_utf8)
            printf("  %llu duplicate(s) dropped, %llu record(s) skipped, %llu malformed, "
                   "%llu partial file(s), %llu missing path(s), %llu invalid UTF-8 sequence(s) "
                   "replaced\n",
                   (unsigned long long)s.duplicates, (unsigned long long)s.skipped,
                   (unsigned long long)s.errors, (unsigned long long)s.partial,
                   (unsigned long long)s.missing, (unsigned long long)s.invalid_utf8);
    }
    return rc;
}
