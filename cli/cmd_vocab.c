/* cmd_vocab.c: kiln vocab import | export | list | use | train. */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "ingest/ingest.h"
#include "text/wordpiece.h"

static const char usage[] =
    "usage: kiln vocab COMMAND [options]\n"
    "\n"
    "  import FILE [--cased|--uncased] [--name N] [--max-word-chars N]\n"
    "        store a vocab.txt (one piece a line, id = line number); uncased by\n"
    "        default, as bert-base-uncased; the name defaults to the file's name\n"
    "  export [--name N] OUT       write the vocabulary (default: the active one) as\n"
    "                              vocab.txt to OUT ('-' for standard output)\n"
    "  list [--json]               the vocabularies, their size, casing, documents tokenized\n"
    "  use NAME                    make NAME the active vocabulary\n"
    "  train --size N [--cased] [--min-frequency F] [--limit-alphabet A] [--name N]\n"
    "        [--max-words W] [--threads T]\n"
    "        train a WordPiece vocabulary on the stored corpus: BERT's basic tokenizer,\n"
    "        then BPE-style merges with ## continuation pieces (as Hugging Face's\n"
    "        WordPieceTrainer); [PAD] [UNK] [CLS] [SEP] [MASK] first, then the alphabet.\n"
    "        Deterministic; memory bounded by --max-words distinct words (default 4M).\n"
    "\n"
    "common: --db PATH, --json, -q, -v, -h\n";


static int vocab_import(cli_common *c, const char *file, int cased, const char *name, long maxw)
{
    kbuf text = {0};
    int e = kbuf_read_file(&text, file);
    if (e) {
        kerr("%s: %s", file, strerror(e));
        kbuf_free(&text);
        return e == ENOENT || e == EACCES || e == EISDIR ? EX_NOINPUT : EX_IOERR;
    }
    char err[512];
    kwp_vocab *v;
    if (kwp_vocab_load(text.data ? text.data : "", text.len, cased, &v, err, sizeof err)) {
        kerr("%s: %s", file, err);
        kbuf_free(&text);
        return EX_DATAERR;
    }
    /* canonical text: what kiln will export */
    kbuf canon = {0};
    kwp_vocab_text(v, &canon);
    size_t size = kwp_vocab_size(v);
    kwp_vocab_free(v);
    kbuf_free(&text);
    char defname[256];
    if (!name) {
        const char *base = strrchr(file, '/');
        snprintf(defname, sizeof defname, "%s", base ? base + 1 : file);
        char *dot = strrchr(defname, '.');
        if (dot && dot != defname) *dot = '\0';
        if (!strcmp(file, "-")) snprintf(defname, sizeof defname, "stdin");
        name = defname;
    }
    kstore *s;
    int rc = cli_open_store(c, KSTORE_CREATE, &s);
    if (rc) { kbuf_free(&canon); return rc; }
    kvocab_row r = {0};
    r.name = name;
    r.cased = cased;
    r.size = (int64_t)size;
    r.pieces = canon.data;
    r.pieces_len = canon.len;
    khash128(canon.data, canon.len, r.hash);
    r.max_word_chars = maxw;
    kbuf origin = {0}, other = {0};
    kbuf_printf(&origin, "import:%s", file);
    r.origin = origin.data;
    int64_t id = 0, same = 0;
    if ((rc = kstore_vocab_find_hash(s, r.hash, cased, &same, &other))) kerr("%s", kstore_errmsg(s));
    else if (same && !strcmp(other.data, name)) {
        kinfo("vocabulary '%s' already imported with the same pieces: nothing to do", name);
    } else if ((rc = kstore_vocab_add(s, &r, &id))) {
        kerr("%s", kstore_errmsg(s));
    } else {
        if (same) kinfo("note: vocabulary '%s' has the same pieces", other.data);
        if (c->json) {
            kbuf j = {0};
            kbuf_printf(&j, "{\"id\": %lld, \"name\": ", (long long)id);
            kbuf_json_str(&j, name, strlen(name));
            kbuf_printf(&j, ", \"size\": %zu, \"cased\": %s}\n", size, cased ? "true" : "false");
            fputs(j.data, stdout);
            kbuf_free(&j);
        }
        else printf("imported vocabulary '%s': %zu pieces, %s\n", name, size, cased ? "cased" : "uncased");
    }
    kbuf_free(&origin);
    kbuf_free(&other);
    kbuf_free(&canon);
    kstore_close(s);
    return rc;
}

static int vocab_export(cli_common *c, const char *name, const char *out)
{
    kstore *s;
    int rc = cli_open_store(c, KSTORE_READONLY, &s);
    if (rc) return rc;
    kvocab_row r;
    kbuf pieces = {0}, meta = {0};
    if ((rc = kstore_vocab_get(s, name, &r, &pieces, &meta))) {
        kerr("%s", kstore_errmsg(s));
    } else {
        FILE *f = strcmp(out, "-") ? fopen(out, "wb") : stdout;
        if (!f) { kerr("%s: %s", out, strerror(errno)); rc = EX_CANTCREAT; }
        else {
            fwrite(pieces.data, 1, pieces.len, f);
            if ((f != stdout ? fclose(f) : fflush(f)) != 0) { kerr("%s: write error", out); rc = EX_IOERR; }
        }
    }
    kbuf_free(&pieces);
    kbuf_free(&meta);
    kstore_close(s);
    return rc;
}

static int list_one(const kvocab_row *v, void *ctx)
{
    int json = *(int *)ctx;
    if (json) {
        kbuf b = {0};
        kbuf_printf(&b, "{\"id\": %lld, \"name\": ", (long long)v->id);
        kbuf_json_str(&b, v->name, strlen(v->name));
        kbuf_printf(&b, ", \"size\": %lld, \"cased\": %s, \"active\": %s, \"max_word_chars\": %lld, "
                        "\"documents\": %lld, \"tokens\": %lld, \"origin\": ",
                    (long long)v->size, v->cased ? "true" : "false", v->active ? "true" : "false",
                    (long long)v->max_word_chars, (long long)v->tokenized_docs, (long long)v->tokens);
        kbuf_json_str(&b, v->origin, strlen(v->origin));
        kbuf_puts(&b, "}\n");
        fputs(b.data, stdout);
        kbuf_free(&b);
    } else {
        printf("%c %-24s %7lld pieces  %-8s %9lld docs tokenized  %s\n", v->active ? '*' : ' ',
               v->name, (long long)v->size, v->cased ? "cased" : "uncased",
               (long long)v->tokenized_docs, v->origin);
    }
    return 0;
}

static void train_progress(const char *phase, uint64_t done, uint64_t total, void *ctx)
{
    cli_progress *p = ctx;
    char line[256], a[32], b[32];
    snprintf(line, sizeof line, "%s: %s / %s (%.0f%%)", phase, cli_num(done, a, sizeof a),
             cli_num(total, b, sizeof b), total ? 100.0 * (double)done / (double)total : 0.0);
    cli_progress_line(p, line);
}

int cmd_vocab(int argc, char **argv, const char *db)
{
    enum { O_CASED = 1, O_UNCASED, O_NAME, O_SIZE, O_MINF, O_ALPHA, O_MAXW, O_THREADS, O_MAXWC };
    static const struct option lo[] = {
        CLI_COMMON_LONGOPTS,
        {"cased", no_argument, 0, O_CASED},
        {"uncased", no_argument, 0, O_UNCASED},
        {"name", required_argument, 0, O_NAME},
        {"size", required_argument, 0, O_SIZE},
        {"min-frequency", required_argument, 0, O_MINF},
        {"limit-alphabet", required_argument, 0, O_ALPHA},
        {"max-words", required_argument, 0, O_MAXW},
        {"max-word-chars", required_argument, 0, O_MAXWC},
        {"threads", required_argument, 0, O_THREADS},
        {0, 0, 0, 0}};
    cli_common c;
    cli_common_init(&c, db);
    int cased = 0, opt;
    const char *name = NULL;
    long size = 0, minf = 2, alpha = 0, maxw = 4000000, threads = 0, maxwc = KWP_DEFAULT_MAX_WORD_CHARS;
    optind = 1;
    while ((opt = getopt_long(argc, argv, CLI_COMMON_SHORT, lo, NULL)) != -1) {
        if (cli_common_opt(&c, opt, optarg)) continue;
        char *end = NULL;
        long *dst = NULL;
        switch (opt) {
        case O_CASED: cased = 1; break;
        case O_UNCASED: cased = 0; break;
        case O_NAME: name = optarg; break;
        case O_SIZE: dst = &size; break;
        case O_MINF: dst = &minf; break;
        case O_ALPHA: dst = &alpha; break;
        case O_MAXW: dst = &maxw; break;
        case O_MAXWC: dst = &maxwc; break;
        case O_THREADS: dst = &threads; break;
        default: return cli_usage_error("vocab", "bad option");
        }
        if (dst) {
            *dst = strtol(optarg, &end, 10);
            if (*end || *dst < 0) return cli_usage_error("vocab", "expected a number, not '%s'", optarg);
        }
    }
    if (c.help || optind >= argc) {
        fputs(usage, c.help ? stdout : stderr);
        return c.help ? 0 : EX_USAGE;
    }
    const char *sub = argv[optind++];
    int rest = argc - optind;
    if (!strcmp(sub, "import")) {
        if (rest != 1) return cli_usage_error("vocab", "import takes one FILE");
        if (maxwc < 1) return cli_usage_error("vocab", "--max-word-chars must be >= 1");
        return vocab_import(&c, argv[optind], cased, name, maxwc);
    }
    if (!strcmp(sub, "export")) {
        if (rest != 1) return cli_usage_error("vocab", "export takes one OUT path ('-' for stdout)");
        return vocab_export(&c, name, argv[optind]);
    }
    if (!strcmp(sub, "list")) {
        if (rest) return cli_usage_error("vocab", "list takes no argument");
        kstore *s;
        int rc = cli_open_store(&c, KSTORE_READONLY, &s);
        if (rc) return rc;
        rc = kstore_vocabs_foreach(s, list_one, &c.json);
        if (rc) kerr("%s", kstore_errmsg(s));
        kstore_close(s);
        return rc;
    }
    if (!strcmp(sub, "use")) {
        if (rest != 1) return cli_usage_error("vocab", "use takes one NAME");
        kstore *s;
        int rc = cli_open_store(&c, 0, &s);
        if (rc) return rc;
        rc = kstore_vocab_set_active(s, argv[optind]);
        if (rc) kerr("%s", kstore_errmsg(s));
        else if (!c.json) printf("active vocabulary: %s\n", argv[optind]);
        kstore_close(s);
        return rc;
    }
    if (!strcmp(sub, "train")) {
        if (rest) return cli_usage_error("vocab", "train takes no argument");
        if (size < 10) return cli_usage_error("vocab", "train needs --size N (N >= 10)");
        kvocab_train_opts o = {0};
        o.size = (size_t)size;
        o.cased = cased;
        o.min_frequency = (uint64_t)(minf < 1 ? 1 : minf);
        o.limit_alphabet = (size_t)alpha;
        o.max_words = (size_t)maxw;
        o.name = name;
        o.threads = threads > 0 ? (int)threads : kcpu_count();
        cli_catch_stop_signals();
        o.stop = &cli_stop;
        cli_progress p;
        cli_progress_init(&p, c.json);
        if (p.on) { o.progress = train_progress; o.progress_ctx = &p; }
        kvocab_train_summary sum;
        const char *dbp = cli_db_path(&c);
        int rc = kvocab_train_run(dbp, &o, &sum);
        cli_progress_done(&p);
        if (sum.interrupted) { kwarn("interrupted: nothing stored"); return 128 + (int)cli_stop; }
        if (rc) return rc;
        if (c.json) {
            kbuf j = {0};
            kbuf_puts(&j, "{\"name\": ");
            kbuf_json_str(&j, sum.name, strlen(sum.name));
            kbuf_printf(&j, ", \"id\": %lld, \"size\": %zu, \"documents\": %llu, "
                        "\"distinct_words\": %llu, \"pruned\": %llu, \"seconds\": %.3f, "
                        "\"count_seconds\": %.3f, \"merge_seconds\": %.3f}\n",
                        (long long)sum.vocab_id, sum.size, (unsigned long long)sum.documents,
                        (unsigned long long)sum.distinct_words, (unsigned long long)sum.pruned, sum.seconds,
                        sum.count_seconds, sum.merge_seconds);
            fputs(j.data, stdout);
            kbuf_free(&j);
        } else
            printf("trained vocabulary '%s': %zu pieces from %llu documents (%llu distinct words) "
                   "in %.1f s\n",
                   sum.name, sum.size, (unsigned long long)sum.documents,
                   (unsigned long long)sum.distinct_words, sum.seconds);
        return 0;
    }
    return cli_usage_error("vocab", "unknown command '%s'", sub);
}
