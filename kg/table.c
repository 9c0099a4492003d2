/* table.c: ERNIE's entity table from a stored KG embedding: the vectors of
 * one kg_embeddings row as rows 1 .. n of a table whose row 0 (no entity) is
 * zeros, the lookup of a kg_entities id's row (0 = the entity has no
 * vector: linked by alias only, or not in any triple), and the share of
 * the corpus's mentions that have a vector. See kg.h. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>

#include "kg/kg.h"

void kkg_table_free(kkg_table *t)
{
    if (!t) return;
    free(t->vectors);
    free(t->ids);
    free(t->order);
    memset(t, 0, sizeof *t);
}

static const int64_t *sort_ids; /* qsort's context (single-threaded use) */
static int cmp_rows(const void *a, const void *b)
{
    int64_t x = sort_ids[*(const int32_t *)a], y = sort_ids[*(const int32_t *)b];
    return (x > y) - (x < y);
}

int kkg_table_load(kstore *s, int64_t embedding, kkg_table *t, char *err, size_t errlen)
{
    memset(t, 0, sizeof *t);
    kbuf blobs = {0};
    kkg_embedding e;
    int rc = kstore_kg_embedding_get(s, embedding, &e, &blobs);
    if (rc) {
        snprintf(err, errlen, "%s", kstore_errmsg(s));
        kbuf_free(&blobs);
        return rc;
    }
    if (e.n_entities < 1 || e.n_entities >= (1u << 30) - 1 || e.dim < 1) {
        kbuf_free(&blobs);
        snprintf(err, errlen, "embedding %lld: %zu entities of width %d cannot make an entity table", (long long)e.id,
                 e.n_entities, e.dim);
        return EX_DATAERR;
    }
    const size_t rows = e.n_entities + 1, dim = (size_t)e.dim;
    t->embedding_id = e.id;
    t->dim = e.dim;
    t->rows = (int32_t)rows;
    t->vectors = xcalloc(rows * dim, sizeof *t->vectors);
    t->ids = xcalloc(rows, sizeof *t->ids);
    t->order = xmalloc((rows - 1) * sizeof *t->order);
    memcpy(t->vectors + dim, e.entities, e.n_entities * dim * sizeof(float));
    memcpy(t->ids + 1, e.entity_ids, e.n_entities * sizeof(int64_t));
    for (size_t i = 0; i + 1 < rows; i++) t->order[i] = (int32_t)(i + 1);
    sort_ids = t->ids;
    qsort(t->order, rows - 1, sizeof *t->order, cmp_rows);
    sort_ids = NULL;
    kbuf_free(&blobs);
    return 0;
}

int32_t kkg_table_row(const kkg_table *t, int64_t entity)
{
    size_t lo = 0, hi = (size_t)t->rows - 1;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (t->ids[t->order[mid]] < entity) lo = mid + 1;
        else hi = mid;
    }
    return lo < (size_t)t->rows - 1 && t->ids[t->order[lo]] == entity ? t->order[lo] : 0;
}

typedef struct cover { const kkg_table *t; int64_t with, all; } cover;

static int cover_cb(int64_t doc, int64_t start, int64_t end, int64_t entity, void *ctx)
{
    (void)doc, (void)start, (void)end;
    cover *c = ctx;
    c->all++;
    c->with += kkg_table_row(c->t, entity) > 0;
    return 0;
}

int kkg_table_coverage(kstore *s, const kkg_table *t, int64_t vocab, int64_t max_doc_id, int64_t *with,
                       int64_t *all)
{
    cover c = {.t = t};
    int rc = kstore_kg_mentions_foreach(s, vocab, max_doc_id, cover_cb, &c);
    *with = c.with;
    *all = c.all;
    return rc;
}
