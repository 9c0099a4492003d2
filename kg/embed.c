/* embed.c: TransE embeddings of the stored knowledge graph: the triples are
 * read from the store and renumbered densely (entities and relations that
 * occur in triples, in store id order), trained with kg/transe.c, and the
 * vectors stored with the store ids of their rows (kg_embeddings). Also
 * filtered evaluation and nearest neighbours with the latest embedding. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kg/kg.h"

/* Store ids -> dense rows: a sorted array and binary search. */
typedef struct idx { int64_t *ids; size_t n, cap; } idx;

static void idx_add(idx *x, int64_t id)
{
    if (x->n == x->cap) { x->cap = x->cap ? x->cap * 2 : 1024; x->ids = xrealloc(x->ids, x->cap * sizeof *x->ids); }
    x->ids[x->n++] = id;
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

static void idx_sort_unique(idx *x)
{
    qsort(x->ids, x->n, sizeof *x->ids, cmp_i64);
    size_t k = 0;
    for (size_t i = 0; i < x->n; i++)
        if (!k || x->ids[k - 1] != x->ids[i]) x->ids[k++] = x->ids[i];
    x->n = k;
}

static int64_t idx_find(const int64_t *ids, size_t n, int64_t id)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (ids[mid] < id) lo = mid + 1;
        else hi = mid;
    }
    return lo < n && ids[lo] == id ? (int64_t)lo : -1;
}

typedef struct raw { int64_t h, r, t; int split; } raw;
typedef struct rawv { raw *v; size_t n, cap; } rawv;

static int collect(int64_t h, int64_t r, int64_t t, int split, void *ctx)
{
    rawv *x = ctx;
    if (x->n == x->cap) { x->cap = x->cap ? x->cap * 2 : 65536; x->v = xrealloc(x->v, x->cap * sizeof *x->v); }
    x->v[x->n++] = (raw){h, r, t, split};
    return 0;
}

/* The triples of the store mapped to rows of ents/rels (triples whose
 * entities or relation are not in the maps are dropped); split arrays. */
typedef struct dataset {
    ktriple *t[3];
    size_t n[3];
} dataset;

static void map_triples(const rawv *all, const int64_t *ents, size_t ne, const int64_t *rels,
                        size_t nr, dataset *d)
{
    for (int s = 0; s < 3; s++) { d->t[s] = xmalloc((all->n + 1) * sizeof(ktriple)); d->n[s] = 0; }
    for (size_t i = 0; i < all->n; i++) {
        const raw *x = &all->v[i];
        int64_t h = idx_find(ents, ne, x->h), t = idx_find(ents, ne, x->t), r = idx_find(rels, nr, x->r);
        if (h < 0 || t < 0 || r < 0) continue;
        d->t[x->split][d->n[x->split]++] = (ktriple){(uint32_t)h, (uint32_t)r, (uint32_t)t};
    }
}

static void dataset_free(dataset *d) { for (int s = 0; s < 3; s++) free(d->t[s]); }

int kkg_embed(kstore *s, const ktranse_opts *o, kkg_embed_summary *sum)
{
    memset(sum, 0, sizeof *sum);
    double t0 = know_seconds();
    rawv all = {0};
    idx ents = {0}, rels = {0};
    dataset d = {{NULL, NULL, NULL}, {0, 0, 0}};
    float *E = NULL, *R = NULL;
    int rc = kstore_kg_triples_foreach(s, collect, &all);
    if (rc) { kerr("%s", kstore_errmsg(s)); goto out; }
    for (size_t i = 0; i < all.n; i++) {
        idx_add(&ents, all.v[i].h);
        idx_add(&ents, all.v[i].t);
        idx_add(&rels, all.v[i].r);
    }
    idx_sort_unique(&ents);
    idx_sort_unique(&rels);
    map_triples(&all, ents.ids, ents.n, rels.ids, rels.n, &d);
    if (!d.n[0]) {
        kerr("no training triples: import a knowledge graph first (kiln kg import FILE)");
        rc = EX_NOINPUT;
        goto out;
    }
    ktranse_data data = {d.t[0], d.n[0], d.t[1], d.n[1], d.t[2], d.n[2], (uint32_t)ents.n, (uint32_t)rels.n};
    sum->entities = (uint32_t)ents.n;
    sum->relations = (uint32_t)rels.n;
    sum->train = d.n[0];
    sum->valid = d.n[1];
    sum->test = d.n[2];
    E = xmalloc(ents.n * (size_t)o->dim * sizeof *E);
    R = xmalloc(rels.n * (size_t)o->dim * sizeof *R);
    char err[512];
    if (ktranse_train(&data, o, E, R, &sum->report, err, sizeof err)) {
        kerr("TransE: %s", err);
        rc = EX_DATAERR;
        goto out;
    }
    sum->valid_eval.mrr = -1;
    if (d.n[1] && ktranse_eval(&data, d.t[1], d.n[1], E, R, o->dim, o->norm, o->threads, &sum->valid_eval)) {
        kerr("TransE: evaluation failed");
        rc = EX_SOFTWARE;
        goto out;
    }
    kbuf cfg = {0};
    kbuf_printf(&cfg,
                "{\"dim\": %d, \"epochs\": %d, \"lr\": %g, \"margin\": %g, \"negatives\": %d, "
                "\"norm\": %d, \"adversarial\": %d, \"adv_temperature\": %g, \"batch\": %d, "
                "\"seed\": %llu, \"threads\": %d, \"epochs_run\": %d, \"best_epoch\": %d, "
                "\"train_seconds\": %.1f, \"train\": %zu, \"valid\": %zu, \"test\": %zu}",
                o->dim, o->epochs, (double)o->lr, (double)o->margin, o->negatives, o->norm,
                o->adversarial, (double)o->adv_temperature, o->batch, (unsigned long long)o->seed,
                o->threads, sum->report.epochs, sum->report.best_epoch, sum->report.seconds, d.n[0],
                d.n[1], d.n[2]);
    kkg_embedding e = {0};
    e.model = "transe";
    e.dim = o->dim;
    e.config = cfg.data;
    e.n_entities = ents.n;
    e.n_relations = rels.n;
    e.entity_ids = ents.ids;
    e.relation_ids = rels.ids;
    e.entities = E;
    e.relations = R;
    e.valid_mrr = d.n[1] ? sum->valid_eval.mrr : -1;
    e.test_mrr = -1;
    rc = kstore_kg_embedding_put(s, &e, &sum->embedding_id);
    kbuf_free(&cfg);
    if (rc) kerr("%s", kstore_errmsg(s));
out:
    free(all.v);
    free(ents.ids);
    free(rels.ids);
    dataset_free(&d);
    free(E);
    free(R);
    sum->seconds = know_seconds() - t0;
    return rc;
}

/* The norm an embedding was trained with (its config), default 1. */
static int emb_norm(const kkg_embedding *e)
{
    const char *p = strstr(e->config, "\"norm\": ");
    return p ? atoi(p + 8) : 1;
}

int kkg_eval(kstore *s, int split, int threads, keval *out)
{
    memset(out, 0, sizeof *out);
    kkg_embedding e;
    kbuf blobs = {0};
    rawv all = {0};
    dataset d = {{NULL, NULL, NULL}, {0, 0, 0}};
    int rc = kstore_kg_embedding_latest(s, &e, &blobs);
    if (rc) { kerr("%s", kstore_errmsg(s)); goto out; }
    if ((rc = kstore_kg_triples_foreach(s, collect, &all))) { kerr("%s", kstore_errmsg(s)); goto out; }
    map_triples(&all, e.entity_ids, e.n_entities, e.relation_ids, e.n_relations, &d);
    if (!d.n[split]) {
        kerr("no %s triples to evaluate", split == 0 ? "train" : split == 1 ? "valid" : "test");
        rc = EX_NOINPUT;
        goto out;
    }
    ktranse_data data = {d.t[0], d.n[0], d.t[1], d.n[1], d.t[2], d.n[2], (uint32_t)e.n_entities,
                         (uint32_t)e.n_relations};
    if (ktranse_eval(&data, d.t[split], d.n[split], e.entities, e.relations, e.dim, emb_norm(&e),
                     threads, out)) {
        kerr("evaluation failed");
        rc = EX_SOFTWARE;
    }
out:
    kbuf_free(&blobs);
    free(all.v);
    dataset_free(&d);
    return rc;
}

int kkg_neighbours(kstore *s, int64_t entity, int k, int64_t *ids, float *dist, int *n)
{
    *n = 0;
    kkg_embedding e;
    kbuf blobs = {0};
    int rc = kstore_kg_embedding_latest(s, &e, &blobs);
    if (rc) { kbuf_free(&blobs); return rc; }
    int64_t row = idx_find(e.entity_ids, e.n_entities, entity);
    if (row < 0) { kbuf_free(&blobs); return 0; }
    const float *q = e.entities + (size_t)row * (size_t)e.dim;
    for (size_t i = 0; i < e.n_entities; i++) {
        if ((int64_t)i == row) continue;
        const float *x = e.entities + i * (size_t)e.dim;
        double acc = 0;
        for (int j = 0; j < e.dim; j++) acc += (double)(q[j] - x[j]) * (q[j] - x[j]);
        float dd = (float)sqrt(acc);
        /* insertion into the sorted top k */
        int pos = *n < k ? *n : k;
        while (pos > 0 && dist[pos - 1] > dd) pos--;
        if (pos >= k) continue;
        int last = *n < k ? *n : k - 1;
        for (int m = last; m > pos; m--) { dist[m] = dist[m - 1]; ids[m] = ids[m - 1]; }
        dist[pos] = dd;
        ids[pos] = e.entity_ids[i];
        if (*n < k) (*n)++;
    }
    kbuf_free(&blobs);
    return 0;
}
