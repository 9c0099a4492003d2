/* transe_bench.c: benchmark driver of kg/transe.c on a link-prediction data set
 * (FB15k-237, WN18RR, ...): reads train/valid/test TSV (head TAB relation TAB
 * tail) from a folder or straight from a .tar.gz (through `tar -xOzf`), maps
 * names to dense ids (order of first appearance in train, valid, test), trains
 * with the given options (defaults = ktranse_opts_default), prints one line per
 * epoch (loss, validation MRR when measured, epoch and total seconds), then the
 * filtered test MRR / Hits@1/3/10 and the times.
 *
 * Usage: transe_bench DATA [--dim N] [--epochs N] [--lr X] [--margin X] [--neg N]
 *        [--norm 1|2] [--adv 0|1] [--temp X] [--batch N] [--seed N] [--threads N]
 *        [--eval-every N] [--patience N] [--eval-sample N] [--max-seconds X]
 *        [--share N] [--both 0|1] [--optim adam|adagrad] [--init X] [--lr-decay X]
 *        [--no-test]
 * DATA: a folder holding train.txt valid.txt test.txt, or a .tar.gz of them. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kg/transe.h"
#include "util/util.h"

/* ---- string -> id map (open addressing, FNV-1a) ---- */
typedef struct smap { char **keys; uint32_t *vals; size_t cap, n; } smap;

static uint64_t fnv(const char *s)
{
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

static uint32_t smap_id(smap *m, const char *s)
{
    if (2 * (m->n + 1) > m->cap) {
        size_t oc = m->cap, nc = oc ? oc * 2 : 1024;
        char **ok = m->keys;
        uint32_t *ov = m->vals;
        m->keys = xcalloc(nc, sizeof(char *));
        m->vals = xmalloc(nc * sizeof(uint32_t));
        m->cap = nc;
        for (size_t i = 0; i < oc; i++)
            if (ok[i]) {
                size_t j = fnv(ok[i]) & (nc - 1);
                while (m->keys[j]) j = (j + 1) & (nc - 1);
                m->keys[j] = ok[i];
                m->vals[j] = ov[i];
            }
        free(ok);
        free(ov);
    }
    size_t j = fnv(s) & (m->cap - 1);
    while (m->keys[j]) {
        if (!strcmp(m->keys[j], s)) return m->vals[j];
        j = (j + 1) & (m->cap - 1);
    }
    m->keys[j] = xstrdup(s);
    m->vals[j] = (uint32_t)m->n;
    return (uint32_t)m->n++;
}

static void smap_free(smap *m)
{
    for (size_t i = 0; i < m->cap; i++) free(m->keys[i]);
    free(m->keys);
    free(m->vals);
}

/* Reads split name of data into *out (malloc'd), *n triples. Returns 0 or -1. */
static int read_split(const char *data, const char *name, smap *ents, smap *rels, ktriple **out, size_t *n)
{
    size_t len = strlen(data);
    int targz = len > 7 && !strcmp(data + len - 7, ".tar.gz");
    FILE *fp;
    char path[4096];
    if (targz) {
        snprintf(path, sizeof path, "tar -xOzf '%s' %s.txt", data, name);
        fp = popen(path, "r");
    } else {
        snprintf(path, sizeof path, "%s/%s.txt", data, name);
        fp = fopen(path, "r");
    }
    if (!fp) {
        fprintf(stderr, "transe_bench: cannot open %s\n", path);
        return -1;
    }
    size_t cap = 1024;
    *n = 0;
    *out = xmalloc(cap * sizeof(ktriple));
    char *line = NULL;
    size_t lcap = 0;
    ssize_t got;
    size_t lineno = 0;
    while ((got = getline(&line, &lcap, fp)) > 0) {
        lineno++;
        while (got > 0 && (line[got - 1] == '\n' || line[got - 1] == '\r')) line[--got] = '\0';
        if (!got) continue;
        char *a = line, *b = strchr(a, '\t'), *c = b ? strchr(b + 1, '\t') : NULL;
        if (!b || !c) {
            fprintf(stderr, "transe_bench: %s line %zu: expected head TAB relation TAB tail\n", path, lineno);
            free(line);
            targz ? pclose(fp) : fclose(fp);
            return -1;
        }
        *b++ = '\0';
        *c++ = '\0';
        if (*n == cap) *out = xrealloc(*out, (cap *= 2) * sizeof(ktriple));
        uint32_t h = smap_id(ents, a), r = smap_id(rels, b), t = smap_id(ents, c);
        (*out)[(*n)++] = (ktriple){h, r, t};
    }
    free(line);
    int rc = targz ? pclose(fp) : fclose(fp);
    if (rc != 0 || *n == 0) {
        fprintf(stderr, "transe_bench: reading %s failed (%zu triples)\n", path, *n);
        return -1;
    }
    return 0;
}

typedef struct pctx { double last; } pctx;

static void progress(int epoch, double loss, double vmrr, double secs, void *ctx)
{
    pctx *p = ctx;
    if (vmrr >= 0)
        printf("epoch %4d  loss %.5f  valid_mrr %.4f  epoch_s %.3f  total_s %.1f\n", epoch, loss, vmrr,
               secs - p->last, secs);
    else
        printf("epoch %4d  loss %.5f  epoch_s %.3f  total_s %.1f\n", epoch, loss, secs - p->last, secs);
    fflush(stdout);
    p->last = secs;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: transe_bench DATA [options] (see the top of transe_bench.c)\n");
        return 64;
    }
    ktranse_opts o;
    ktranse_opts_default(&o);
    int no_test = 0;
    for (int i = 2; i < argc; i++) {
        const char *k = argv[i];
        if (!strcmp(k, "--no-test")) { no_test = 1; continue; }
        if (i + 1 >= argc) { fprintf(stderr, "transe_bench: %s needs a value\n", k); return 64; }
        const char *v = argv[++i];
        if (!strcmp(k, "--dim")) o.dim = atoi(v);
        else if (!strcmp(k, "--epochs")) o.epochs = atoi(v);
        else if (!strcmp(k, "--lr")) o.lr = strtof(v, NULL);
        else if (!strcmp(k, "--margin")) o.margin = strtof(v, NULL);
        else if (!strcmp(k, "--neg")) o.negatives = atoi(v);
        else if (!strcmp(k, "--norm")) o.norm = atoi(v);
        else if (!strcmp(k, "--adv")) o.adversarial = atoi(v);
        else if (!strcmp(k, "--temp")) o.adv_temperature = strtof(v, NULL);
        else if (!strcmp(k, "--batch")) o.batch = atoi(v);
        else if (!strcmp(k, "--seed")) o.seed = strtoull(v, NULL, 10);
        else if (!strcmp(k, "--threads")) o.threads = atoi(v);
        else if (!strcmp(k, "--eval-every")) o.eval_every = atoi(v);
        else if (!strcmp(k, "--patience")) o.patience = atoi(v);
        else if (!strcmp(k, "--eval-sample")) o.eval_sample = strtoull(v, NULL, 10);
        else if (!strcmp(k, "--max-seconds")) o.max_seconds = strtod(v, NULL);
        else if (!strcmp(k, "--share")) o.share = atoi(v);
        else if (!strcmp(k, "--both")) o.both_sides = atoi(v);
        else if (!strcmp(k, "--optim")) o.optimizer = !strcmp(v, "adagrad") ? KTRANSE_ADAGRAD : KTRANSE_ADAM;
        else if (!strcmp(k, "--init")) o.init_scale = strtof(v, NULL);
        else if (!strcmp(k, "--lr-decay")) o.lr_decay = strtof(v, NULL);
        else { fprintf(stderr, "transe_bench: unknown option %s\n", k); return 64; }
    }
    const char *data = argv[1];
    double t0 = know_seconds();
    smap ents = {0}, rels = {0};
    ktriple *tr = NULL, *va = NULL, *te = NULL;
    size_t ntr, nva, nte;
    if (read_split(data, "train", &ents, &rels, &tr, &ntr) || read_split(data, "valid", &ents, &rels, &va, &nva) ||
        read_split(data, "test", &ents, &rels, &te, &nte))
        return 66;
    ktranse_data d = {tr, ntr, va, nva, te, nte, (uint32_t)ents.n, (uint32_t)rels.n};
    printf("data %s: %u entities, %u relations, %zu/%zu/%zu triples (read in %.2f s)\n", data, d.n_ent,
           d.n_rel, ntr, nva, nte, know_seconds() - t0);
    printf("opts: dim %d epochs %d lr %g margin %g neg %d norm %d adv %d temp %g batch %d share %d both %d "
           "optim %s seed %llu threads %d eval_every %d patience %d eval_sample %zu max_seconds %g lr_decay %g\n",
           o.dim, o.epochs, o.lr, o.margin, o.negatives, o.norm, o.adversarial, o.adv_temperature, o.batch,
           o.share, o.both_sides, o.optimizer == KTRANSE_ADAM ? "adam" : "adagrad",
           (unsigned long long)o.seed, o.threads, o.eval_every, o.patience, o.eval_sample, o.max_seconds,
           o.lr_decay);
    fflush(stdout);
    pctx pc = {0};
    o.progress = progress;
    o.progress_ctx = &pc;
    float *ent = xmalloc((size_t)d.n_ent * o.dim * sizeof(float));
    float *rel = xmalloc((size_t)d.n_rel * o.dim * sizeof(float));
    ktranse_report rep;
    char err[256];
    double t1 = know_seconds();
    if (ktranse_train(&d, &o, ent, rel, &rep, err, sizeof err)) {
        fprintf(stderr, "transe_bench: %s\n", err);
        return 70;
    }
    double t2 = know_seconds();
    printf("train: %d epochs in %.1f s (%.3f s/epoch incl. validation), best valid MRR %.4f at epoch %d\n",
           rep.epochs, t2 - t1, (t2 - t1) / (rep.epochs ? rep.epochs : 1), rep.best_valid_mrr, rep.best_epoch);
    uint64_t fp = 1469598103934665603ull; /* FNV-1a of the weights' bytes: determinism checks */
    const unsigned char *wb[2] = {(const unsigned char *)ent, (const unsigned char *)rel};
    size_t wn[2] = {(size_t)d.n_ent * o.dim * sizeof(float), (size_t)d.n_rel * o.dim * sizeof(float)};
    for (int k = 0; k < 2; k++)
        for (size_t i = 0; i < wn[k]; i++) fp = (fp ^ wb[k][i]) * 1099511628211ull;
    printf("weights fnv1a64 %016llx\n", (unsigned long long)fp);
    if (!no_test) {
        keval ev;
        if (ktranse_eval(&d, te, nte, ent, rel, o.dim, o.norm, o.threads, &ev)) {
            fprintf(stderr, "transe_bench: eval failed\n");
            return 70;
        }
        double t3 = know_seconds();
        printf("test (filtered, %zu triples): MRR %.4f  H@1 %.4f  H@3 %.4f  H@10 %.4f  eval %.1f s\n", ev.triples,
               ev.mrr, ev.hits1, ev.hits3, ev.hits10, t3 - t2);
        printf("total (train + eval): %.1f s\n", t3 - t1);
    }
    free(ent); free(rel); free(tr); free(va); free(te);
    smap_free(&ents);
    smap_free(&rels);
    return 0;
}
