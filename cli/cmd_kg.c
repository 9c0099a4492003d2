/* cmd_kg.c: kiln kg import | link | embed | eval | stats | show. */
#define _POSIX_C_SOURCE 200809L
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "kg/kg.h"
#include "text/text.h"

static const char usage[] =
    "usage: kiln kg COMMAND [options]\n"
    "\n"
    "  import [--format tsv|ntriples] [--split train|valid|test] [--names FILE]...\n"
    "         [--relation-names FILE]... [--lang en] [--gloss auto|yes|no] [PATH...]\n"
    "        triples (head TAB relation TAB tail, as FB15k-237 and WN18RR; or N-Triples:\n"
    "        IRI objects become triples, rdfs:label, skos:prefLabel/altLabel, schema:name,\n"
    "        foaf:name and schema:description literals in --lang become names), read\n"
    "        through libarchive (.gz, .bz2, members of a .tar.gz); the split comes from\n"
    "        the file or member name (train/valid/test) unless --split; --names files are\n"
    "        'id TAB name' (a name followed by ', gloss' in WN18RR style: the gloss\n"
    "        becomes the description; --gloss auto decides per file). Bad lines are\n"
    "        reported with file:line and skipped; importing again changes nothing.\n"
    "  link [--vocab NAME] [--min-alias-chars 3] [--max-alias-share 1e-4]\n"
    "        find entity mentions (the longest alias, as token sequences) in the\n"
    "        tokenized corpus; incremental; prints coverage\n"
    "  embed [--model transe] [--dim D] [--epochs N] [--lr F] [--margin F] [--negatives K]\n"
    "        [--norm l1|l2] [--adversarial|--margin-ranking] [--temperature F] [--batch B]\n"
    "        [--eval-every N] [--patience P] [--max-minutes M] [--seed S] [--threads T]\n"
    "        train TransE embeddings (defaults reach published quality on FB15k-237\n"
    "        and WN18RR), early stopping on validation MRR, stored in the store\n"
    "  eval [--split test|valid|train] [--threads T]\n"
    "        filtered link prediction with the latest embedding: MRR, Hits@1/3/10\n"
    "  stats        entities, relations, triples, aliases, mentions, embeddings\n"
    "  show ENTITY  an entity (external id, label or alias): names, triples, neighbours\n"
    "\n"
    "common: --db PATH, --json, -q, -v, -h\n";

static void link_progress(uint64_t done, uint64_t total, void *ctx)
{
    char line[128], a[32], b[32];
    snprintf(line, sizeof line, "linked %s / %s documents", cli_num(done, a, sizeof a), cli_num(total, b, sizeof b));
    cli_progress_line(ctx, line);
}

typedef struct eprog { cli_progress p; int epochs; } eprog;

static void embed_progress(int epoch, double loss, double mrr, double secs, void *ctx)
{
    eprog *e = ctx;
    char line[200];
    double eta = epoch > 0 ? secs / epoch * (e->epochs - epoch) : 0;
    if (mrr >= 0) kinfo("epoch %d: loss %.4f, validation MRR %.4f (%.0f s)", epoch, loss, mrr, secs);
    snprintf(line, sizeof line, "epoch %d/%d  loss %.4f  %s%.4f  %.0f s  ETA <= %d:%02d", epoch, e->epochs, loss,
             mrr >= 0 ? "valid MRR " : "", mrr >= 0 ? mrr : 0.0, secs, (int)(eta / 60), (int)eta % 60);
    cli_progress_line(&e->p, line);
}

static int print_top(int64_t id, const char *ext, const char *label, int64_t n, void *ctx)
{
    int *first = ctx;
    (void)id;
    printf("%s%s (%s) x%lld", *first ? "  top entities: " : ", ", label ? label : ext, ext, (long long)n);
    *first = 0;
    return 0;
}

static int print_alias(const char *alias, void *ctx)
{
    int *n = ctx;
    if ((*n)++ < 20) printf("%s%s", *n > 1 ? " | " : "  aliases: ", alias);
    return 0;
}

static int print_triple(const char *const f[6], const char *split, void *ctx)
{
    (void)ctx;
    printf("  %s  --%s-->  %s   [%s]\n", f[1] ? f[1] : f[0], f[3] ? f[3] : f[2], f[5] ? f[5] : f[4], split);
    return 0;
}

static int kg_show(kstore *s, const char *q, int json)
{
    int64_t id;
    int rc = kstore_kg_find_entity(s, q, &id);
    if (rc) { kerr("%s", kstore_errmsg(s)); return rc; }
    if (!id) {
        kbuf norm = {0};
        /* aliases are stored normalized: try that form too */
        ktext_normalize_short(q, strlen(q), 0, &norm);
        rc = kstore_kg_find_entity(s, norm.data, &id);
        kbuf_free(&norm);
        if (rc) { kerr("%s", kstore_errmsg(s)); return rc; }
    }
    if (!id) { kerr("no entity with the id, label or alias '%s'", q); return EX_NOINPUT; }
    kbuf ext = {0}, label = {0}, desc = {0};
    if ((rc = kstore_kg_entity_get(s, id, &ext, &label, &desc))) { kerr("%s", kstore_errmsg(s)); return rc; }
    int64_t nb[10];
    float nd[10];
    int nn = 0;
    kkg_neighbours(s, id, 10, nb, nd, &nn);
    if (json) {
        kbuf b = {0};
        kbuf_printf(&b, "{\"id\": %lld, \"ext_id\": ", (long long)id);
        kbuf_json_str(&b, ext.data, ext.len);
        kbuf_puts(&b, ", \"label\": ");
        kbuf_json_str(&b, label.data ? label.data : "", label.len);
        kbuf_puts(&b, ", \"description\": ");
        kbuf_json_str(&b, desc.data ? desc.data : "", desc.len);
        kbuf_puts(&b, ", \"neighbours\": [");
        kbuf e2 = {0}, l2 = {0}, d2 = {0};
        for (int i = 0; i < nn; i++) {
            kstore_kg_entity_get(s, nb[i], &e2, &l2, &d2);
            kbuf_printf(&b, "%s{\"ext_id\": ", i ? ", " : "");
            kbuf_json_str(&b, e2.data, e2.len);
            kbuf_puts(&b, ", \"label\": ");
            kbuf_json_str(&b, l2.data ? l2.data : "", l2.len);
            kbuf_printf(&b, ", \"distance\": %.4f}", (double)nd[i]);
        }
        kbuf_puts(&b, "]}\n");
        fputs(b.data, stdout);
        kbuf_free(&b); kbuf_free(&e2); kbuf_free(&l2); kbuf_free(&d2);
    } else {
        printf("%s  (%s)\n", label.len ? label.data : "(no label)", ext.data);
        if (desc.len) printf("  %s\n", desc.data);
        int na = 0;
        kstore_kg_entity_aliases(s, id, print_alias, &na);
        if (na) printf("%s\n", na > 20 ? " | ..." : "");
        printf("triples:\n");
        kstore_kg_entity_triples(s, id, 20, print_triple, NULL);
        if (nn) {
            printf("nearest in the embedding:\n");
            kbuf e2 = {0}, l2 = {0}, d2 = {0};
            for (int i = 0; i < nn; i++) {
                kstore_kg_entity_get(s, nb[i], &e2, &l2, &d2);
                printf("  %6.3f  %s (%s)\n", (double)nd[i], l2.len ? l2.data : e2.data, e2.data);
            }
            kbuf_free(&e2); kbuf_free(&l2); kbuf_free(&d2);
        }
    }
    kbuf_free(&ext); kbuf_free(&label); kbuf_free(&desc);
    return 0;
}

int cmd_kg(int argc, char **argv, const char *db)
{
    enum { O_FORMAT = 1, O_SPLIT, O_NAMES, O_RNAMES, O_LANG, O_GLOSS, O_VOCAB, O_MINC, O_MAXS, O_MODEL,
           O_DIM, O_EPOCHS, O_LR, O_MARGIN, O_NEG, O_NORM, O_ADV, O_MR, O_TEMP, O_BATCH, O_EVERY,
           O_PAT, O_MAXMIN, O_SEED, O_THREADS };
    static const struct option lo[] = {
        CLI_COMMON_LONGOPTS,
        {"format", required_argument, 0, O_FORMAT}, {"split", required_argument, 0, O_SPLIT},
        {"names", required_argument, 0, O_NAMES}, {"relation-names", required_argument, 0, O_RNAMES},
        {"lang", required_argument, 0, O_LANG}, {"gloss", required_argument, 0, O_GLOSS},
        {"vocab", required_argument, 0, O_VOCAB}, {"min-alias-chars", required_argument, 0, O_MINC},
        {"max-alias-share", required_argument, 0, O_MAXS}, {"model", required_argument, 0, O_MODEL},
        {"dim", required_argument, 0, O_DIM}, {"epochs", required_argument, 0, O_EPOCHS},
        {"lr", required_argument, 0, O_LR}, {"margin", required_argument, 0, O_MARGIN},
        {"negatives", required_argument, 0, O_NEG}, {"norm", required_argument, 0, O_NORM},
        {"adversarial", no_argument, 0, O_ADV}, {"margin-ranking", no_argument, 0, O_MR},
        {"temperature", required_argument, 0, O_TEMP}, {"batch", required_argument, 0, O_BATCH},
        {"eval-every", required_argument, 0, O_EVERY}, {"patience", required_argument, 0, O_PAT},
        {"max-minutes", required_argument, 0, O_MAXMIN}, {"seed", required_argument, 0, O_SEED},
        {"threads", required_argument, 0, O_THREADS}, {0, 0, 0, 0}};
    cli_common c;
    cli_common_init(&c, db);
    kkg_import_opts io = {KKG_AUTO, NULL, "en", KKG_GLOSS_AUTO, (uint64_t)16 << 20};
    const char **names = xcalloc((size_t)argc + 1, sizeof *names), **rnames = xcalloc((size_t)argc + 1, sizeof *rnames);
    int nnames = 0, nrnames = 0;
    kkg_link_opts lk = {NULL, 3, 1e-4, NULL, NULL, NULL};
    ktranse_opts eo;
    ktranse_opts_default(&eo);
    eo.threads = kcpu_count();
    const char *split = "test";
    int opt, rc = 0;
    optind = 1;
    while ((opt = getopt_long(argc, argv, CLI_COMMON_SHORT, lo, NULL)) != -1) {
        if (cli_common_opt(&c, opt, optarg)) continue;
        char *end = NULL;
        double v = 0;
        if (opt >= O_MINC && opt != O_MODEL && opt != O_NORM && opt != O_ADV && opt != O_MR) {
            v = strtod(optarg, &end);
            if (*end || v < 0) { rc = cli_usage_error("kg", "expected a non-negative number, not '%s'", optarg); goto out; }
        }
        switch (opt) {
        case O_FORMAT:
            if (!strcmp(optarg, "tsv")) io.format = KKG_TSV;
            else if (!strcmp(optarg, "ntriples")) io.format = KKG_NTRIPLES;
            else if (!strcmp(optarg, "auto")) io.format = KKG_AUTO;
            else { rc = cli_usage_error("kg", "--format: tsv, ntriples or auto"); goto out; }
            break;
        case O_SPLIT:
            if (strcmp(optarg, "train") && strcmp(optarg, "valid") && strcmp(optarg, "test")) {
                rc = cli_usage_error("kg", "--split: train, valid or test");
                goto out;
            }
            io.split = optarg;
            split = optarg;
            break;
        case O_NAMES: names[nnames++] = optarg; break;
        case O_RNAMES: rnames[nrnames++] = optarg; break;
        case O_LANG: io.lang = optarg; break;
        case O_GLOSS:
            io.gloss = !strcmp(optarg, "yes") ? KKG_GLOSS_YES : !strcmp(optarg, "no") ? KKG_GLOSS_NO : KKG_GLOSS_AUTO;
            break;
        case O_VOCAB: lk.vocab = optarg; break;
        case O_MINC: lk.min_alias_chars = (size_t)v; break;
        case O_MAXS: lk.max_alias_share = v; break;
        case O_MODEL:
            if (strcmp(optarg, "transe")) { rc = cli_usage_error("kg", "--model: only transe for now"); goto out; }
            break;
        case O_DIM: eo.dim = (int)v; break;
        case O_EPOCHS: eo.epochs = (int)v; break;
        case O_LR: eo.lr = (float)v; break;
        case O_MARGIN: eo.margin = (float)v; break;
        case O_NEG: eo.negatives = (int)v; break;
        case O_NORM:
            if (!strcmp(optarg, "l1")) eo.norm = 1;
            else if (!strcmp(optarg, "l2")) eo.norm = 2;
            else { rc = cli_usage_error("kg", "--norm: l1 or l2"); goto out; }
            break;
        case O_ADV: eo.adversarial = 1; break;
        case O_MR: eo.adversarial = 0; break;
        case O_TEMP: eo.adv_temperature = (float)v; break;
        case O_BATCH: eo.batch = (int)v; break;
        case O_EVERY: eo.eval_every = (int)v; break;
        case O_PAT: eo.patience = (int)v; break;
        case O_MAXMIN: eo.max_seconds = v * 60; break;
        case O_SEED: eo.seed = (uint64_t)v; break;
        case O_THREADS: eo.threads = (int)v; break;
        default: rc = cli_usage_error("kg", "bad option"); goto out;
        }
    }
    if (c.help || optind >= argc) {
        fputs(usage, c.help ? stdout : stderr);
        rc = c.help ? 0 : EX_USAGE;
        goto out;
    }
    const char *sub = argv[optind++];
    int rest = argc - optind;
    if (eo.dim < 1 || eo.batch < 1 || eo.negatives < 1 || eo.threads < 1) {
        rc = cli_usage_error("kg", "--dim, --batch, --negatives and --threads must be >= 1");
        goto out;
    }
    kstore *s = NULL;
    int ro = !strcmp(sub, "stats") || !strcmp(sub, "show") || !strcmp(sub, "eval");
    if (strcmp(sub, "import") && strcmp(sub, "link") && strcmp(sub, "embed") && !ro) {
        rc = cli_usage_error("kg", "unknown command '%s'", sub);
        goto out;
    }
    if ((rc = cli_open_store(&c, ro ? KSTORE_READONLY : KSTORE_CREATE, &s))) goto out;
    if (!strcmp(sub, "import")) {
        if (!rest && !nnames && !nrnames) { rc = cli_usage_error("kg", "import: nothing to import"); goto done; }
        kkg_import_summary sm = {0};
        /* the store failed (not the input): stop there, so that the rerun
         * imports the files in the same order (the same ids) */
#define STORE_FAILED(r) ((r) > EX_DATAERR && (r) != EX_NOINPUT)
        int r1 = rest ? kkg_import(s, KKG_TRIPLES, (const char *const *)argv + optind, rest, &io, &sm) : 0;
        int r2 = nnames && !STORE_FAILED(r1) ? kkg_import(s, KKG_NAMES, names, nnames, &io, &sm) : 0;
        int r3 = nrnames && !STORE_FAILED(r1) && !STORE_FAILED(r2)
                     ? kkg_import(s, KKG_RELATION_NAMES, rnames, nrnames, &io, &sm) : 0;
#undef STORE_FAILED
        rc = r1 > EX_DATAERR && r1 != EX_NOINPUT ? r1 : r2 > EX_DATAERR && r2 != EX_NOINPUT ? r2 : r3 > EX_DATAERR && r3 != EX_NOINPUT ? r3 : 0;
        if (!rc) rc = (r1 == EX_NOINPUT || r2 == EX_NOINPUT || r3 == EX_NOINPUT) ? EX_NOINPUT
                      : (r1 || r2 || r3) ? EX_DATAERR : 0;
        if (c.json)
            printf("{\"files\": %llu, \"already\": %llu, \"triples\": %llu, \"duplicates\": %llu, "
                   "\"entities_named\": %llu, \"aliases\": %llu, \"relations_named\": %llu, "
                   "\"bad_lines\": %llu, \"literals_skipped\": %llu, \"seconds\": %.3f, \"exit\": %d}\n",
                   (unsigned long long)sm.files, (unsigned long long)sm.already, (unsigned long long)sm.triples,
                   (unsigned long long)sm.duplicates, (unsigned long long)sm.entities_named,
                   (unsigned long long)sm.aliases, (unsigned long long)sm.relations_named,
                   (unsigned long long)sm.bad_lines, (unsigned long long)sm.literals_skipped, sm.seconds, rc);
        else if (klog_threshold >= KLOG_INFO) {
            char a[32], b[32], d[32];
            printf("imported %llu file(s)%s: %s new triples (%llu already there), %s names, %s aliases, "
                   "%llu relation names, %llu bad line(s) in %.1f s\n",
                   (unsigned long long)(sm.files - sm.already), sm.already ? " (others already imported)" : "",
                   cli_num(sm.triples, a, sizeof a), (unsigned long long)sm.duplicates,
                   cli_num(sm.entities_named, b, sizeof b), cli_num(sm.aliases, d, sizeof d),
                   (unsigned long long)sm.relations_named, (unsigned long long)sm.bad_lines, sm.seconds);
        }
    } else if (!strcmp(sub, "link")) {
        cli_catch_stop_signals();
        lk.stop = &cli_stop;
        cli_progress p;
        cli_progress_init(&p, c.json);
        if (p.on) { lk.progress = link_progress; lk.progress_ctx = &p; }
        kkg_link_summary ls;
        rc = kkg_link(s, &lk, &ls);
        cli_progress_done(&p);
        if (!rc) {
            double per1k = ls.total_tokens ? 1000.0 * (double)ls.total_mentions / (double)ls.total_tokens : 0;
            if (c.json)
                printf("{\"documents\": %llu, \"mentions\": %llu, \"total_mentions\": %lld, \"entities\": %lld, "
                       "\"linked_documents\": %lld, \"mentions_per_1000_tokens\": %.3f, \"aliases\": %llu, "
                       "\"aliases_used\": %llu, \"aliases_too_short\": %llu, \"aliases_too_common\": %llu, "
                       "\"seconds\": %.3f}\n",
                       (unsigned long long)ls.documents, (unsigned long long)ls.mentions,
                       (long long)ls.total_mentions, (long long)ls.total_entities, (long long)ls.total_docs,
                       per1k, (unsigned long long)ls.aliases, (unsigned long long)ls.aliases_used,
                       (unsigned long long)ls.aliases_dropped_short, (unsigned long long)ls.aliases_dropped_common,
                       ls.seconds);
            else {
                printf("linked %llu document(s): %llu mentions; in all %lld mentions of %lld entities in %lld "
                       "documents, %.2f per 1,000 tokens (%llu of %llu aliases used; %llu too short, %llu too "
                       "common)\n",
                       (unsigned long long)ls.documents, (unsigned long long)ls.mentions,
                       (long long)ls.total_mentions, (long long)ls.total_entities, (long long)ls.total_docs, per1k,
                       (unsigned long long)ls.aliases_used, (unsigned long long)ls.aliases,
                       (unsigned long long)ls.aliases_dropped_short, (unsigned long long)ls.aliases_dropped_common);
                kvocab_row vr;
                kbuf pc = {0}, mc = {0};
                if (!kstore_vocab_get(s, lk.vocab, &vr, &pc, &mc)) {
                    int first = 1;
                    kstore_kg_top_entities(s, vr.id, 10, print_top, &first);
                    if (!first) printf("\n");
                }
                kbuf_free(&pc);
                kbuf_free(&mc);
            }
        }
        if (ls.interrupted) { kwarn("interrupted: run kiln kg link again to go on"); rc = 128 + (int)cli_stop; }
    } else if (!strcmp(sub, "embed")) {
        cli_catch_stop_signals();
        eo.stop = (volatile int *)&cli_stop;
        eprog ep = {.epochs = eo.epochs};
        cli_progress_init(&ep.p, c.json);
        if (ep.p.on) { eo.progress = embed_progress; eo.progress_ctx = &ep; }
        kkg_embed_summary es;
        rc = kkg_embed(s, &eo, &es);
        cli_progress_done(&ep.p);
        if (!rc) {
            if (c.json)
                printf("{\"embedding\": %lld, \"entities\": %u, \"relations\": %u, \"train\": %zu, "
                       "\"epochs\": %d, \"best_epoch\": %d, \"valid_mrr\": %.4f, \"valid_hits@10\": %.4f, "
                       "\"seconds\": %.1f}\n",
                       (long long)es.embedding_id, es.entities, es.relations, es.train, es.report.epochs,
                       es.report.best_epoch, es.valid_eval.mrr, es.valid_eval.hits10, es.seconds);
            else
                printf("trained TransE (dim %d) on %zu triples of %u entities and %u relations: %d epochs "
                       "(best %d), validation MRR %.4f, Hits@10 %.4f, in %.1f s\n",
                       eo.dim, es.train, es.entities, es.relations, es.report.epochs, es.report.best_epoch,
                       es.valid_eval.mrr, es.valid_eval.hits10, es.seconds);
        }
    } else if (!strcmp(sub, "eval")) {
        int sp = !strcmp(split, "train") ? 0 : !strcmp(split, "valid") ? 1 : 2;
        keval ev;
        double t0 = know_seconds();
        rc = kkg_eval(s, sp, eo.threads, &ev);
        if (!rc) {
            if (c.json)
                printf("{\"mrr\": %.4f, \"hits@1\": %.4f, \"hits@3\": %.4f, \"hits@10\": %.4f, \"triples\": %zu, "
                       "\"split\": \"%s\", \"seconds\": %.1f}\n",
                       ev.mrr, ev.hits1, ev.hits3, ev.hits10, ev.triples, split, know_seconds() - t0);
            else
                printf("%s: %zu triples, filtered MRR %.4f, Hits@1 %.4f, Hits@3 %.4f, Hits@10 %.4f (%.1f s)\n",
                       split, ev.triples, ev.mrr, ev.hits1, ev.hits3, ev.hits10, know_seconds() - t0);
        }
    } else if (!strcmp(sub, "stats")) {
        kkg_counts k;
        if ((rc = kstore_kg_counts(s, &k))) kerr("%s", kstore_errmsg(s));
        else if (c.json)
            printf("{\"entities\": %lld, \"relations\": %lld, \"triples\": %lld, \"train\": %lld, \"valid\": %lld, "
                   "\"test\": %lld, \"aliases\": %lld, \"mentions\": %lld, \"linked_documents\": %lld, "
                   "\"embeddings\": %lld, \"files\": %lld}\n",
                   (long long)k.entities, (long long)k.relations, (long long)k.triples, (long long)k.train,
                   (long long)k.valid, (long long)k.test, (long long)k.aliases, (long long)k.mentions,
                   (long long)k.linked_docs, (long long)k.embeddings, (long long)k.files);
        else
            printf("entities    %lld\nrelations   %lld\ntriples     %lld (train %lld, valid %lld, test %lld)\n"
                   "aliases     %lld\nmentions    %lld in %lld linked documents\nembeddings  %lld\n",
                   (long long)k.entities, (long long)k.relations, (long long)k.triples, (long long)k.train,
                   (long long)k.valid, (long long)k.test, (long long)k.aliases, (long long)k.mentions,
                   (long long)k.linked_docs, (long long)k.embeddings);
    } else if (!strcmp(sub, "show")) {
        if (rest != 1) rc = cli_usage_error("kg", "show takes one ENTITY");
        else rc = kg_show(s, argv[optind], c.json);
    }
done:
    kstore_close(s);
out:
    free(names);
    free(rnames);
    return rc;
}
