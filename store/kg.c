/* kg.c: the store's knowledge-graph tables (kg_files, kg_entities,
 * kg_relations, kg_triples, kg_aliases, kg_mentions, kg_linked, kg_meta,
 * kg_embeddings): typed access, every SQL string of them. See docs/store.md. */
#define _POSIX_C_SOURCE 200809L
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "store/internal.h"

enum {
    K_FILE_FIND = KSTORE_ST_KG,
    K_FILE_INSERT,
    K_FILE_RESET,
    K_FILE_FINISH,
    K_ENT_INSERT,
    K_ENT_GET,
    K_REL_INSERT,
    K_REL_GET,
    K_TRIPLE_ADD,
    K_ENT_SET,
    K_ENT_SET_IF_EMPTY,
    K_REL_LABEL,
    K_ALIAS_ADD,
    K_GEN_BUMP,
    K_GEN_GET,
    K_FILE_ADD,
    K_PENDING_SET,
    K_PENDING_GET,
    K_PENDING_CLEAR,
    K_FILES_STATE,
    K_TRIPLES_ALL,
    K_ENTS_ALL,
    K_RELS_ALL,
    K_ALIASES_ALL,
    K_FIND_EXT,
    K_FIND_LABEL,
    K_FIND_ALIAS,
    K_ENT_ONE,
    K_ENT_TRIPLES,
    K_ENT_ALIASES,
    K_MENTION_ADD,
    K_MENTIONS_DEL,
    K_LINKED_SET,
    K_UNLINKED,
    K_MENTION_TOTALS,
    K_MENTIONS_ALL,
    K_MENTIONS_SUMMARY,
    K_TOP_ENTITIES,
    K_EMB_PUT,
    K_EMB_LATEST,
    K_END
};
_Static_assert(K_END <= KSTORE_ST_JOBS, "too many statements for the slots");

static const char *const sql[K_END - KSTORE_ST_KG] = {
#define S(k) [k - KSTORE_ST_KG]
    S(K_FILE_FIND) = "SELECT id, status FROM kg_files WHERE content_hash = ?1 AND kind = ?2 AND options = ?3",
    S(K_FILE_INSERT) = "INSERT INTO kg_files(path, content_hash, kind, options, status, imported_at) "
                       "VALUES (?1, ?2, ?3, ?4, 'running', ?5)",
    S(K_FILE_RESET) = "UPDATE kg_files SET path = ?2, status = 'running', error = NULL, imported_at = ?3 WHERE id = ?1",
    S(K_FILE_FINISH) = "UPDATE kg_files SET status = ?2, error = ?3, triples = triples + ?4, names = names + ?5, "
                       "bad_lines = ?6 WHERE id = ?1",
    S(K_ENT_INSERT) = "INSERT INTO kg_entities(ext_id) VALUES (?1) ON CONFLICT(ext_id) DO NOTHING",
    S(K_ENT_GET) = "SELECT id FROM kg_entities WHERE ext_id = ?1",
    S(K_REL_INSERT) = "INSERT INTO kg_relations(ext_id) VALUES (?1) ON CONFLICT(ext_id) DO NOTHING",
    S(K_REL_GET) = "SELECT id FROM kg_relations WHERE ext_id = ?1",
    S(K_TRIPLE_ADD) = "INSERT INTO kg_triples(head, relation, tail, split, file_id) VALUES (?1, ?2, ?3, ?4, ?5) "
                      "ON CONFLICT DO NOTHING",
    S(K_ENT_SET) = "UPDATE kg_entities SET label = coalesce(?2, label), description = coalesce(?3, description) "
                   "WHERE id = ?1 AND (label IS NOT coalesce(?2, label) OR description IS NOT coalesce(?3, description))",
    S(K_ENT_SET_IF_EMPTY) = "UPDATE kg_entities SET label = coalesce(label, ?2), description = coalesce(description, ?3) "
                            "WHERE id = ?1 AND ((label IS NULL AND ?2 IS NOT NULL) OR (description IS NULL AND ?3 IS NOT NULL))",
    S(K_REL_LABEL) = "UPDATE kg_relations SET label = ?2 WHERE id = ?1",
    S(K_ALIAS_ADD) = "INSERT INTO kg_aliases(alias, entity_id) VALUES (?1, ?2) ON CONFLICT DO NOTHING",
    S(K_GEN_BUMP) = "UPDATE kg_meta SET value = value + 1 WHERE key = 'alias_generation'",
    S(K_GEN_GET) = "SELECT value FROM kg_meta WHERE key = 'alias_generation'",
    S(K_FILE_ADD) = "UPDATE kg_files SET triples = triples + ?2, names = names + ?3 WHERE id = ?1",
    /* aliases committed whose generation bump is still to come (kstore_kg_aliases_pending) */
    S(K_PENDING_SET) = "INSERT INTO kg_meta(key, value) VALUES ('aliases_pending', 1) "
                       "ON CONFLICT(key) DO UPDATE SET value = 1",
    S(K_PENDING_GET) = "SELECT value FROM kg_meta WHERE key = 'aliases_pending'",
    S(K_PENDING_CLEAR) = "DELETE FROM kg_meta WHERE key = 'aliases_pending'",
    S(K_FILES_STATE) = "SELECT coalesce(max(id), 0), coalesce(sum(triples), 0) FROM kg_files",
    S(K_TRIPLES_ALL) = "SELECT head, relation, tail, split FROM kg_triples ORDER BY head, relation, tail, split",
    S(K_ENTS_ALL) = "SELECT id, ext_id, label FROM kg_entities ORDER BY id",
    S(K_RELS_ALL) = "SELECT id, ext_id, label FROM kg_relations ORDER BY id",
    S(K_ALIASES_ALL) = "SELECT entity_id, alias FROM kg_aliases ORDER BY alias, entity_id",
    S(K_FIND_EXT) = "SELECT id FROM kg_entities WHERE ext_id = ?1",
    S(K_FIND_LABEL) = "SELECT id FROM kg_entities WHERE label = ?1 ORDER BY id LIMIT 1",
    S(K_FIND_ALIAS) = "SELECT entity_id FROM kg_aliases WHERE alias = ?1 ORDER BY entity_id LIMIT 1",
    S(K_ENT_ONE) = "SELECT ext_id, label, description FROM kg_entities WHERE id = ?1",
    S(K_ENT_TRIPLES) =
        "SELECT h.ext_id, h.label, r.ext_id, r.label, t.ext_id, t.label, x.split FROM "
        "(SELECT head, relation, tail, split FROM kg_triples WHERE head = ?1 UNION "
        " SELECT head, relation, tail, split FROM kg_triples WHERE tail = ?1 LIMIT ?2) x "
        "JOIN kg_entities h ON h.id = x.head JOIN kg_relations r ON r.id = x.relation "
        "JOIN kg_entities t ON t.id = x.tail ORDER BY x.head != ?1, r.ext_id, t.ext_id",
    S(K_ENT_ALIASES) = "SELECT alias FROM kg_aliases WHERE entity_id = ?1 ORDER BY alias",
    S(K_MENTION_ADD) = "INSERT OR REPLACE INTO kg_mentions(vocab_id, doc_id, tok_start, tok_end, entity_id, score) "
                       "VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    S(K_MENTIONS_DEL) = "DELETE FROM kg_mentions WHERE vocab_id = ?1 AND doc_id = ?2",
    S(K_LINKED_SET) = "INSERT OR REPLACE INTO kg_linked(vocab_id, doc_id, generation) VALUES (?1, ?2, ?3)",
    S(K_UNLINKED) =
        "SELECT t.doc_id, t.vocab_id, t.layout, t.n_tokens, t.tokens, t.sent_ends, t.word_starts "
        "FROM doc_tokens t WHERE t.vocab_id = ?1 AND t.doc_id > ?2 AND NOT EXISTS "
        "(SELECT 1 FROM kg_linked l WHERE l.vocab_id = ?1 AND l.doc_id = t.doc_id AND l.generation = ?3) "
        "ORDER BY t.doc_id LIMIT ?4",
    S(K_MENTIONS_ALL) = "SELECT doc_id, tok_start, tok_end, entity_id FROM kg_mentions WHERE vocab_id = ?1 "
                        "AND doc_id <= ?2 ORDER BY doc_id, tok_start",
    S(K_MENTIONS_SUMMARY) = "SELECT count(*), coalesce(sum(entity_id), 0), coalesce(sum(tok_start), 0) "
                            "FROM kg_mentions WHERE vocab_id = ?1",
    S(K_MENTION_TOTALS) =
        "SELECT (SELECT count(*) FROM kg_mentions WHERE vocab_id = ?1), "
        "(SELECT count(DISTINCT entity_id) FROM kg_mentions WHERE vocab_id = ?1), "
        "(SELECT count(*) FROM kg_linked WHERE vocab_id = ?1), "
        "(SELECT coalesce(sum(t.n_tokens), 0) FROM doc_tokens t JOIN kg_linked l ON l.vocab_id = t.vocab_id "
        " AND l.doc_id = t.doc_id WHERE t.vocab_id = ?1)",
    S(K_TOP_ENTITIES) =
        "SELECT e.id, e.ext_id, e.label, m.n FROM (SELECT entity_id, count(*) AS n FROM kg_mentions "
        "WHERE vocab_id = ?1 GROUP BY entity_id ORDER BY n DESC, entity_id LIMIT ?2) m "
        "JOIN kg_entities e ON e.id = m.entity_id ORDER BY m.n DESC, e.id",
    S(K_EMB_PUT) = "INSERT INTO kg_embeddings(model, dim, config, n_entities, n_relations, entity_ids, "
                   "relation_ids, entities, relations, valid_mrr, test_mrr, created_at) VALUES "
                   "(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
    S(K_EMB_LATEST) = "SELECT id, model, dim, config, n_entities, n_relations, entity_ids, relation_ids, "
                      "entities, relations, valid_mrr, test_mrr FROM kg_embeddings "
                      "WHERE (?1 = 0 AND model <> 'imported') OR id = ?1 "
                      "ORDER BY id DESC LIMIT 1",
#undef S
};

static sqlite3_stmt *st(kstore *s, int i) { return kstore_stmt(s, i, sql[i - KSTORE_ST_KG]); }

/* Steps a one-row query; *found = 0 if no row. The statement stays on the row. */
static int row(kstore *s, sqlite3_stmt *q, int *found, const char *what)
{
    int r = sqlite3_step(q);
    *found = r == SQLITE_ROW;
    if (r == SQLITE_ROW || r == SQLITE_DONE) return 0;
    sqlite3_reset(q);
    return kstore_dbfail(s, r, what);
}

/* Runs all rows of q through fn; fn returns nonzero to stop. */
#define FOREACH_ROW(s, q, what, body)                                                              \
    do {                                                                                           \
        int r_;                                                                                    \
        while ((r_ = sqlite3_step(q)) == SQLITE_ROW) {                                             \
            body                                                                                   \
        }                                                                                          \
        sqlite3_reset(q);                                                                          \
        if (r_ != SQLITE_ROW && r_ != SQLITE_DONE) return kstore_dbfail(s, r_, what);              \
        return 0;                                                                                  \
    } while (0)

int kstore_kg_file_begin(kstore *s, const char *path, const uint8_t hash[KHASH_LEN],
                         const char *kind, const char *options, int64_t *id, int *already)
{
    *already = 0;
    int rc = kstore_begin(s), found;
    if (rc) return rc;
    sqlite3_stmt *q = st(s, K_FILE_FIND);
    if (!q) { rc = KSTORE_LAST_CODE(s); goto out; }
    sqlite3_bind_blob(q, 1, hash, KHASH_LEN, SQLITE_STATIC);
    sqlite3_bind_text(q, 2, kind, -1, SQLITE_STATIC);
    sqlite3_bind_text(q, 3, options, -1, SQLITE_STATIC);
    if ((rc = row(s, q, &found, "find KG file"))) goto out;
    int64_t now = (int64_t)time(NULL);
    if (found) {
        *id = sqlite3_column_int64(q, 0);
        int complete = strcmp((const char *)sqlite3_column_text(q, 1), "complete") == 0;
        sqlite3_reset(q);
        if (complete) { *already = 1; return kstore_commit(s); }
        q = st(s, K_FILE_RESET);
        if (!q) { rc = KSTORE_LAST_CODE(s); goto out; }
        sqlite3_bind_int64(q, 1, *id);
        sqlite3_bind_text(q, 2, path, -1, SQLITE_STATIC);
        sqlite3_bind_int64(q, 3, now);
        if ((rc = kstore_step_done(s, q, "reset KG file"))) goto out;
    } else {
        sqlite3_reset(q);
        q = st(s, K_FILE_INSERT);
        if (!q) { rc = KSTORE_LAST_CODE(s); goto out; }
        sqlite3_bind_text(q, 1, path, -1, SQLITE_STATIC);
        sqlite3_bind_blob(q, 2, hash, KHASH_LEN, SQLITE_STATIC);
        sqlite3_bind_text(q, 3, kind, -1, SQLITE_STATIC);
        sqlite3_bind_text(q, 4, options, -1, SQLITE_STATIC);
        sqlite3_bind_int64(q, 5, now);
        if ((rc = kstore_step_done(s, q, "insert KG file"))) goto out;
        *id = sqlite3_last_insert_rowid(s->db);
    }
    return kstore_commit(s);
out:
    kstore_rollback(s);
    return rc;
}

int kstore_kg_file_finish(kstore *s, int64_t id, const char *status, const char *error,
                          int64_t triples, int64_t names, int64_t bad_lines)
{
    sqlite3_stmt *q = st(s, K_FILE_FINISH);
    if (!q) return KSTORE_LAST_CODE(s);
    sqlite3_bind_int64(q, 1, id);
    sqlite3_bind_text(q, 2, status, -1, SQLITE_STATIC);
    kstore_bind_text_or_null(q, 3, error);
    sqlite3_bind_int64(q, 4, triples);
    sqlite3_bind_int64(q, 5, names);
    sqlite3_bind_int64(q, 6, bad_lines);
    return kstore_step_done(s, q, "finish KG file");
}

static int get_or_create(kstore *s, int ins, int get, const char *ext, size_t len, int64_t *id)
{
    sqlite3_stmt *q = st(s, ins);
    if (!q) return KSTORE_LAST_CODE(s);
    sqlite3_bind_text(q, 1, ext, (int)len, SQLITE_STATIC);
    int rc = kstore_step_done(s, q, "insert KG id");
    if (rc) return rc;
    if (sqlite3_changes(s->db) > 0) { *id = sqlite3_last_insert_rowid(s->db); return 0; }
    q = st(s, get);
    if (!q) return KSTORE_LAST_CODE(s);
    sqlite3_bind_text(q, 1, ext, (int)len, SQLITE_STATIC);
    int found;
    if ((rc = row(s, q, &found, "find KG id"))) return rc;
    *id = found ? sqlite3_column_int64(q, 0) : 0;
    sqlite3_reset(q);
    return found ? 0 : kstore_fail(s, EX_SOFTWARE, "KG id vanished");
}

int kstore_kg_entity(kstore *s, const char *ext_id, size_t len, int64_t *id)
{
    return get_or_create(s, K_ENT_INSERT, K_ENT_GET, ext_id, len, id);
}

int kstore_kg_relation(kstore *s, const char *ext_id, size_t len, int64_t *id)
{
    return get_or_create(s, K_REL_INSERT, K_REL_GET, ext_id, len, id);
}

int kstore_kg_triple_add(kstore *s, int64_t h, int64_t r, int64_t t, const char *split,
                         int64_t file_id, int *inserted)
{
    sqlite3_stmt *q = st(s, K_TRIPLE_ADD);
    if (!q) return KSTORE_LAST_CODE(s);
    sqlite3_bind_int64(q, 1, h);
    sqlite3_bind_int64(q, 2, r);
    sqlite3_bind_int64(q, 3, t);
    sqlite3_bind_text(q, 4, split, -1, SQLITE_STATIC);
    sqlite3_bind_int64(q, 5, file_id);
    int rc = kstore_step_done(s, q, "insert triple");
    *inserted = !rc && sqlite3_changes(s->db) > 0;
    return rc;
}

int kstore_kg_entity_set(kstore *s, int64_t id, const char *label, const char *desc,
                         int only_if_empty, int *changed)
{
    sqlite3_stmt *q = st(s, only_if_empty ? K_ENT_SET_IF_EMPTY : K_ENT_SET);
    if (!q) return KSTORE_LAST_CODE(s);
    sqlite3_bind_int64(q, 1, id);
    kstore_bind_text_or_null(q, 2, label);
    kstore_bind_text_or_null(q, 3, desc);
    int rc = kstore_step_done(s, q, "set entity label");
    *changed = !rc && sqlite3_changes(s->db) > 0;
    return rc;
}

int kstore_kg_relation_set_label(kstore *s, int64_t id, const char *label)
{
    sqlite3_stmt *q = st(s, K_REL_LABEL);
    if (!q) return KSTORE_LAST_CODE(s);
    sqlite3_bind_int64(q, 1, id);
    sqlite3_bind_text(q, 2, label, -1, SQLITE_STATIC);
    return kstore_step_done(s, q, "set relation label");
}

int kstore_kg_alias_add(kstore *s, int64_t entity_id, const char *alias, int *inserted)
{
    sqlite3_stmt *q = st(s, K_ALIAS_ADD);
    if (!q) return KSTORE_LAST_CODE(s);
    sqlite3_bind_text(q, 1, alias, -1, SQLITE_STATIC);
    sqlite3_bind_int64(q, 2, entity_id);
    int rc = kstore_step_done(s, q, "insert alias");
    *inserted = !rc && sqlite3_changes(s->db) > 0;
    return rc;
}

int kstore_kg_bump_generation(kstore *s)
{
    sqlite3_stmt *q = st(s, K_GEN_BUMP);
    return q ? kstore_step_done(s, q, "bump alias generation") : KSTORE_LAST_CODE(s);
}

int kstore_kg_file_add(kstore *s, int64_t id, int64_t triples, int64_t names)
{
    sqlite3_stmt *q = st(s, K_FILE_ADD);
    if (!q) return KSTORE_LAST_CODE(s);
    sqlite3_bind_int64(q, 1, id);
    sqlite3_bind_int64(q, 2, triples);
    sqlite3_bind_int64(q, 3, names);
    return kstore_step_done(s, q, "update KG file counters");
}

int kstore_kg_aliases_pending(kstore *s)
{
    sqlite3_stmt *q = st(s, K_PENDING_SET);
    return q ? kstore_step_done(s, q, "mark aliases added") : KSTORE_LAST_CODE(s);
}

int kstore_kg_bump_if_pending(kstore *s, int *bumped)
{
    *bumped = 0;
    int rc = kstore_begin(s), found;
    if (rc) return rc;
    sqlite3_stmt *q = st(s, K_PENDING_GET);
    if (!q) { rc = KSTORE_LAST_CODE(s); goto out; }
    if ((rc = row(s, q, &found, "aliases added"))) goto out;
    int pending = found && sqlite3_column_int64(q, 0) != 0;
    sqlite3_reset(q);
    if (!pending) return kstore_commit(s);
    if ((rc = kstore_kg_bump_generation(s))) goto out;
    if (!(q = st(s, K_PENDING_CLEAR))) { rc = KSTORE_LAST_CODE(s); goto out; }
    if ((rc = kstore_step_done(s, q, "clear aliases added"))) goto out;
    if ((rc = kstore_commit(s))) goto out;
    *bumped = 1;
    return 0;
out:
    kstore_rollback(s);
    return rc;
}

int kstore_kg_generation(kstore *s, int64_t *gen)
{
    sqlite3_stmt *q = st(s, K_GEN_GET);
    if (!q) return KSTORE_LAST_CODE(s);
    int found, rc = row(s, q, &found, "alias generation");
    if (rc) return rc;
    *gen = found ? sqlite3_column_int64(q, 0) : 0;
    sqlite3_reset(q);
    return 0;
}

int kstore_kg_state(kstore *s, int64_t *gen, int64_t *files, int64_t *triples)
{
    int rc = kstore_kg_generation(s, gen);
    if (rc) return rc;
    sqlite3_stmt *q = st(s, K_FILES_STATE);
    if (!q) return KSTORE_LAST_CODE(s);
    int found;
    if ((rc = row(s, q, &found, "knowledge graph files"))) return rc;
    *files = found ? sqlite3_column_int64(q, 0) : 0;
    *triples = found ? sqlite3_column_int64(q, 1) : 0;
    sqlite3_reset(q);
    return 0;
}

int kstore_kg_counts(kstore *s, kkg_counts *c)
{
    static const char *const q[] = {
        "SELECT count(*) FROM kg_entities", "SELECT count(*) FROM kg_relations",
        "SELECT count(*) FROM kg_triples", "SELECT count(*) FROM kg_triples WHERE split = 'train'",
        "SELECT count(*) FROM kg_triples WHERE split = 'valid'",
        "SELECT count(*) FROM kg_triples WHERE split = 'test'", "SELECT count(*) FROM kg_aliases",
        "SELECT count(*) FROM kg_mentions", "SELECT count(*) FROM kg_embeddings",
        "SELECT count(*) FROM kg_files", "SELECT count(*) FROM kg_linked"};
    int64_t *dst[] = {&c->entities, &c->relations, &c->triples, &c->train, &c->valid, &c->test,
                      &c->aliases, &c->mentions, &c->embeddings, &c->files, &c->linked_docs};
    for (size_t i = 0; i < sizeof q / sizeof *q; i++) {
        int rc = kstore_query_int(s, q[i], dst[i]);
        if (rc) return rc;
    }
    return 0;
}

int kstore_kg_triples_foreach(kstore *s, int (*cb)(int64_t, int64_t, int64_t, int, void *), void *ctx)
{
    sqlite3_stmt *q = st(s, K_TRIPLES_ALL);
    if (!q) return KSTORE_LAST_CODE(s);
    FOREACH_ROW(s, q, "read triples", {
        const char *sp = (const char *)sqlite3_column_text(q, 3);
        int split = sp[0] == 't' && sp[1] == 'r' ? 0 : sp[0] == 'v' ? 1 : 2;
        if (cb(sqlite3_column_int64(q, 0), sqlite3_column_int64(q, 1), sqlite3_column_int64(q, 2),
               split, ctx))
            break;
    });
}

int kstore_kg_entities_foreach(kstore *s, int (*cb)(int64_t, const char *, const char *, void *),
                               void *ctx)
{
    sqlite3_stmt *q = st(s, K_ENTS_ALL);
    if (!q) return KSTORE_LAST_CODE(s);
    FOREACH_ROW(s, q, "read entities", {
        if (cb(sqlite3_column_int64(q, 0), (const char *)sqlite3_column_text(q, 1),
               (const char *)sqlite3_column_text(q, 2), ctx))
            break;
    });
}

int kstore_kg_relations_foreach(kstore *s, int (*cb)(int64_t, const char *, const char *, void *),
                                void *ctx)
{
    sqlite3_stmt *q = st(s, K_RELS_ALL);
    if (!q) return KSTORE_LAST_CODE(s);
    FOREACH_ROW(s, q, "read relations", {
        if (cb(sqlite3_column_int64(q, 0), (const char *)sqlite3_column_text(q, 1),
               (const char *)sqlite3_column_text(q, 2), ctx))
            break;
    });
}

int kstore_kg_aliases_foreach(kstore *s, int (*cb)(int64_t, const char *, void *), void *ctx)
{
    sqlite3_stmt *q = st(s, K_ALIASES_ALL);
    if (!q) return KSTORE_LAST_CODE(s);
    FOREACH_ROW(s, q, "read aliases", {
        if (cb(sqlite3_column_int64(q, 0), (const char *)sqlite3_column_text(q, 1), ctx)) break;
    });
}

/* One lookup of an entity id by statement which (bound to text); *id = 0 if none. */
static int find_by(kstore *s, int which, const char *text, int64_t *id)
{
    *id = 0;
    sqlite3_stmt *q = st(s, which);
    if (!q) return KSTORE_LAST_CODE(s);
    sqlite3_bind_text(q, 1, text, -1, SQLITE_STATIC);
    int found, rc = row(s, q, &found, "find entity");
    if (rc) return rc;
    if (found) *id = sqlite3_column_int64(q, 0);
    sqlite3_reset(q);
    return 0;
}

int kstore_kg_find_entity(kstore *s, const char *text, int64_t *id)
{
    static const int order[] = {K_FIND_EXT, K_FIND_LABEL, K_FIND_ALIAS};
    *id = 0;
    for (int i = 0; i < 3 && !*id; i++) {
        int rc = find_by(s, order[i], text, id);
        if (rc) return rc;
    }
    return 0;
}

int kstore_kg_entity_by_key(kstore *s, const char *ext_id, int64_t *id)
{
    return find_by(s, K_FIND_EXT, ext_id, id);
}

static void put_col(kbuf *b, sqlite3_stmt *q, int i)
{
    kbuf_clear(b);
    const char *v = (const char *)sqlite3_column_text(q, i);
    if (v) kbuf_puts(b, v);
}

int kstore_kg_entity_get(kstore *s, int64_t id, kbuf *ext_id, kbuf *label, kbuf *desc)
{
    sqlite3_stmt *q = st(s, K_ENT_ONE);
    if (!q) return KSTORE_LAST_CODE(s);
    sqlite3_bind_int64(q, 1, id);
    int found, rc = row(s, q, &found, "read entity");
    if (rc) return rc;
    if (!found) { sqlite3_reset(q); return kstore_fail(s, EX_NOINPUT, "no entity %lld", (long long)id); }
    put_col(ext_id, q, 0);
    put_col(label, q, 1);
    put_col(desc, q, 2);
    sqlite3_reset(q);
    return 0;
}

int kstore_kg_entity_triples(kstore *s, int64_t id, int limit,
                             int (*cb)(const char *const f[6], const char *split, void *), void *ctx)
{
    sqlite3_stmt *q = st(s, K_ENT_TRIPLES);
    if (!q) return KSTORE_LAST_CODE(s);
    sqlite3_bind_int64(q, 1, id);
    sqlite3_bind_int(q, 2, limit);
    FOREACH_ROW(s, q, "read entity triples", {
        const char *f[6];
        for (int i = 0; i < 6; i++) f[i] = (const char *)sqlite3_column_text(q, i);
        if (cb(f, (const char *)sqlite3_column_text(q, 6), ctx)) break;
    });
}

int kstore_kg_entity_aliases(kstore *s, int64_t id, int (*cb)(const char *, void *), void *ctx)
{
    sqlite3_stmt *q = st(s, K_ENT_ALIASES);
    if (!q) return KSTORE_LAST_CODE(s);
    sqlite3_bind_int64(q, 1, id);
    FOREACH_ROW(s, q, "read aliases", {
        if (cb((const char *)sqlite3_column_text(q, 0), ctx)) break;
    });
}

int kstore_kg_mention_add(kstore *s, int64_t vocab, int64_t doc, int64_t start, int64_t end,
                          int64_t entity, double score)
{
    sqlite3_stmt *q = st(s, K_MENTION_ADD);
    if (!q) return KSTORE_LAST_CODE(s);
    sqlite3_bind_int64(q, 1, vocab);
    sqlite3_bind_int64(q, 2, doc);
    sqlite3_bind_int64(q, 3, start);
    sqlite3_bind_int64(q, 4, end);
    sqlite3_bind_int64(q, 5, entity);
    sqlite3_bind_double(q, 6, score);
    return kstore_step_done(s, q, "insert mention");
}

int kstore_kg_doc_relink(kstore *s, int64_t vocab, int64_t doc)
{
    sqlite3_stmt *q = st(s, K_MENTIONS_DEL);
    if (!q) return KSTORE_LAST_CODE(s);
    sqlite3_bind_int64(q, 1, vocab);
    sqlite3_bind_int64(q, 2, doc);
    return kstore_step_done(s, q, "clear mentions");
}

int kstore_kg_doc_linked(kstore *s, int64_t vocab, int64_t doc, int64_t generation)
{
    sqlite3_stmt *q = st(s, K_LINKED_SET);
    if (!q) return KSTORE_LAST_CODE(s);
    sqlite3_bind_int64(q, 1, vocab);
    sqlite3_bind_int64(q, 2, doc);
    sqlite3_bind_int64(q, 3, generation);
    return kstore_step_done(s, q, "mark linked");
}

int kstore_kg_unlinked_foreach(kstore *s, int64_t vocab, int64_t gen, int64_t after, size_t limit,
                               int (*cb)(const ktokens_row *, void *), void *ctx)
{
    sqlite3_stmt *q = st(s, K_UNLINKED);
    if (!q) return KSTORE_LAST_CODE(s);
    sqlite3_bind_int64(q, 1, vocab);
    sqlite3_bind_int64(q, 2, after);
    sqlite3_bind_int64(q, 3, gen);
    sqlite3_bind_int64(q, 4, (int64_t)limit);
    FOREACH_ROW(s, q, "read tokens to link", {
        ktokens_row t;
        int rc = kstore_tokens_row(s, q, &t);
        if (rc) { sqlite3_reset(q); return rc; }
        if (cb(&t, ctx)) break;
    });
}

int kstore_kg_mention_totals(kstore *s, int64_t vocab, int64_t *mentions, int64_t *entities,
                             int64_t *docs, int64_t *tokens)
{
    sqlite3_stmt *q = st(s, K_MENTION_TOTALS);
    if (!q) return KSTORE_LAST_CODE(s);
    sqlite3_bind_int64(q, 1, vocab);
    int found, rc = row(s, q, &found, "mention totals");
    if (rc) return rc;
    *mentions = sqlite3_column_int64(q, 0);
    *entities = sqlite3_column_int64(q, 1);
    *docs = sqlite3_column_int64(q, 2);
    *tokens = sqlite3_column_int64(q, 3);
    sqlite3_reset(q);
    return 0;
}

int kstore_kg_top_entities(kstore *s, int64_t vocab, int limit,
                           int (*cb)(int64_t, const char *, const char *, int64_t, void *), void *ctx)
{
    sqlite3_stmt *q = st(s, K_TOP_ENTITIES);
    if (!q) return KSTORE_LAST_CODE(s);
    sqlite3_bind_int64(q, 1, vocab);
    sqlite3_bind_int(q, 2, limit);
    FOREACH_ROW(s, q, "top entities", {
        if (cb(sqlite3_column_int64(q, 0), (const char *)sqlite3_column_text(q, 1),
               (const char *)sqlite3_column_text(q, 2), sqlite3_column_int64(q, 3), ctx))
            break;
    });
}

int kstore_kg_embedding_put(kstore *s, const kkg_embedding *e, int64_t *id)
{
    sqlite3_stmt *q = st(s, K_EMB_PUT);
    if (!q) return KSTORE_LAST_CODE(s);
    sqlite3_bind_text(q, 1, e->model, -1, SQLITE_STATIC);
    sqlite3_bind_int(q, 2, e->dim);
    sqlite3_bind_text(q, 3, e->config, -1, SQLITE_STATIC);
    sqlite3_bind_int64(q, 4, (int64_t)e->n_entities);
    sqlite3_bind_int64(q, 5, (int64_t)e->n_relations);
    sqlite3_bind_blob64(q, 6, e->entity_ids, e->n_entities * sizeof(int64_t), SQLITE_STATIC);
    sqlite3_bind_blob64(q, 7, e->relation_ids, e->n_relations * sizeof(int64_t), SQLITE_STATIC);
    sqlite3_bind_blob64(q, 8, e->entities, e->n_entities * (size_t)e->dim * sizeof(float), SQLITE_STATIC);
    sqlite3_bind_blob64(q, 9, e->relations, e->n_relations * (size_t)e->dim * sizeof(float), SQLITE_STATIC);
    if (e->valid_mrr >= 0) sqlite3_bind_double(q, 10, e->valid_mrr);
    else sqlite3_bind_null(q, 10);
    if (e->test_mrr >= 0) sqlite3_bind_double(q, 11, e->test_mrr);
    else sqlite3_bind_null(q, 11);
    sqlite3_bind_int64(q, 12, (int64_t)time(NULL));
    int rc = kstore_step_done(s, q, "store embedding");
    if (!rc) *id = sqlite3_last_insert_rowid(s->db);
    return rc;
}

int kstore_kg_embedding_latest(kstore *s, kkg_embedding *e, kbuf *blobs)
{
    return kstore_kg_embedding_get(s, 0, e, blobs);
}

int kstore_kg_embedding_get(kstore *s, int64_t id, kkg_embedding *e, kbuf *blobs)
{
    sqlite3_stmt *q = st(s, K_EMB_LATEST);
    if (!q) return KSTORE_LAST_CODE(s);
    sqlite3_bind_int64(q, 1, id);
    int found, rc = row(s, q, &found, "read embedding");
    if (rc) return rc;
    if (!found) {
        sqlite3_reset(q);
        if (id > 0) return kstore_fail(s, EX_NOINPUT, "no KG embedding %lld (kiln kg stats lists them)", (long long)id);
        return kstore_fail(s, EX_NOINPUT, "no KG embedding yet (train one: kiln kg embed)");
    }
    memset(e, 0, sizeof *e);
    e->id = sqlite3_column_int64(q, 0);
    e->dim = sqlite3_column_int(q, 2);
    e->n_entities = (size_t)sqlite3_column_int64(q, 4);
    e->n_relations = (size_t)sqlite3_column_int64(q, 5);
    size_t sz[4] = {e->n_entities * sizeof(int64_t), e->n_relations * sizeof(int64_t),
                    e->n_entities * (size_t)e->dim * sizeof(float),
                    e->n_relations * (size_t)e->dim * sizeof(float)};
    size_t off[6];
    kbuf_clear(blobs);
    for (int i = 0; i < 4; i++) {
        if ((size_t)sqlite3_column_bytes(q, 6 + i) != sz[i]) {
            sqlite3_reset(q);
            return kstore_fail(s, EX_DATAERR, "embedding %lld: blob %d has the wrong size",
                               (long long)e->id, i);
        }
        while (blobs->len % 8) kbuf_putc(blobs, 0);
        off[i] = blobs->len;
        kbuf_append(blobs, sqlite3_column_blob(q, 6 + i), sz[i]);
    }
    off[4] = blobs->len;
    kbuf_append(blobs, sqlite3_column_text(q, 1), (size_t)sqlite3_column_bytes(q, 1) + 1);
    off[5] = blobs->len;
    kbuf_append(blobs, sqlite3_column_text(q, 3), (size_t)sqlite3_column_bytes(q, 3) + 1);
    e->valid_mrr = sqlite3_column_type(q, 10) == SQLITE_NULL ? -1 : sqlite3_column_double(q, 10);
    e->test_mrr = sqlite3_column_type(q, 11) == SQLITE_NULL ? -1 : sqlite3_column_double(q, 11);
    sqlite3_reset(q);
    e->entity_ids = (const int64_t *)(const void *)(blobs->data + off[0]);
    e->relation_ids = (const int64_t *)(const void *)(blobs->data + off[1]);
    e->entities = (const float *)(const void *)(blobs->data + off[2]);
    e->relations = (const float *)(const void *)(blobs->data + off[3]);
    e->model = blobs->data + off[4];
    e->config = blobs->data + off[5];
    return 0;
}

int kstore_kg_mentions_foreach(kstore *s, int64_t vocab, int64_t max_doc_id,
                               int (*cb)(int64_t doc, int64_t start, int64_t end, int64_t entity, void *),
                               void *ctx)
{
    sqlite3_stmt *q = st(s, K_MENTIONS_ALL);
    if (!q) return KSTORE_LAST_CODE(s);
    sqlite3_bind_int64(q, 1, vocab);
    sqlite3_bind_int64(q, 2, max_doc_id);
    int r;
    while ((r = sqlite3_step(q)) == SQLITE_ROW)
        if (cb(sqlite3_column_int64(q, 0), sqlite3_column_int64(q, 1), sqlite3_column_int64(q, 2),
               sqlite3_column_int64(q, 3), ctx))
            break;
    sqlite3_reset(q);
    return (r == SQLITE_ROW || r == SQLITE_DONE) ? 0 : kstore_dbfail(s, r, "read mentions");
}

int kstore_kg_mentions_summary(kstore *s, int64_t vocab, int64_t *n, int64_t *sum_entities,
                               int64_t *sum_starts)
{
    sqlite3_stmt *q = st(s, K_MENTIONS_SUMMARY);
    if (!q) return KSTORE_LAST_CODE(s);
    sqlite3_bind_int64(q, 1, vocab);
    int r = sqlite3_step(q);
    if (r == SQLITE_ROW) {
        *n = sqlite3_column_int64(q, 0);
        *sum_entities = sqlite3_column_int64(q, 1);
        *sum_starts = sqlite3_column_int64(q, 2);
        r = SQLITE_DONE;
    }
    sqlite3_reset(q);
    return r == SQLITE_DONE ? 0 : kstore_dbfail(s, r, "mention summary");
}
