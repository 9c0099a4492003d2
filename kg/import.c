/* import.c: knowledge-graph files into the store: TSV triples, N-Triples
 * (IRI objects -> triples; label/name/altLabel/description literals -> labels,
 * aliases, descriptions) and id TAB name files, read through libarchive (so
 * .gz, .bz2, .xz and members of a .tar.gz work). One transaction per 20,000
 * lines; a bad line is reported with file:line and skipped; importing the
 * same bytes again is a no-op (and re-adding what exists changes nothing). */
#define _DEFAULT_SOURCE /* realpath */
#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "kg/kg.h"
#include "kg/parse.h"
#include "text/text.h"

#define LINES_PER_TX 20000
#define MAX_WARNINGS 20

/* External id -> store id cache (open addressing; keys in an arena). */
typedef struct idmap {
    uint64_t *hash;     /* (cap) 0 = empty */
    int64_t *id;        /* (cap) */
    size_t *key;        /* (cap) offset of the key in arena */
    size_t n, cap;
    kbuf arena;
} idmap;

static uint64_t hkey(const char *s, size_t n)
{
    uint8_t h[KHASH_LEN];
    khash128(s, n, h);
    uint64_t v;
    memcpy(&v, h, 8);
    return v ? v : 1;
}

static void idmap_grow(idmap *m);

static int64_t *idmap_slot(idmap *m, const char *k, size_t n, int *fresh)
{
    if (2 * (m->n + 1) > m->cap) idmap_grow(m);
    uint64_t h = hkey(k, n);
    for (size_t i = h & (m->cap - 1);; i = (i + 1) & (m->cap - 1)) {
        if (!m->hash[i]) {
            m->hash[i] = h;
            m->key[i] = m->arena.len;
            kbuf_append(&m->arena, k, n);
            kbuf_putc(&m->arena, '\0');
            m->n++;
            *fresh = 1;
            return &m->id[i];
        }
        if (m->hash[i] == h && strlen(m->arena.data + m->key[i]) == n &&
            memcmp(m->arena.data + m->key[i], k, n) == 0) {
            *fresh = 0;
            return &m->id[i];
        }
    }
}

static void idmap_grow(idmap *m)
{
    size_t cap = m->cap ? m->cap * 2 : 1024;
    uint64_t *oh = m->hash;
    int64_t *oi = m->id;
    size_t *ok = m->key, ocap = m->cap;
    m->hash = xcalloc(cap, sizeof *m->hash);
    m->id = xcalloc(cap, sizeof *m->id);
    m->key = xcalloc(cap, sizeof *m->key);
    m->cap = cap;
    for (size_t i = 0; i < ocap; i++)
        if (oh[i])
            for (size_t j = oh[i] & (cap - 1);; j = (j + 1) & (cap - 1))
                if (!m->hash[j]) { m->hash[j] = oh[i]; m->id[j] = oi[i]; m->key[j] = ok[i]; break; }
    free(oh);
    free(oi);
    free(ok);
}

static void idmap_free(idmap *m)
{
    free(m->hash);
    free(m->id);
    free(m->key);
    kbuf_free(&m->arena);
}

/* ---- the import of one run ------------------------------------------------------- */

typedef struct imp {
    kstore *s;
    const kkg_import_opts *o;
    kkg_import_summary *sum;
    int kind;
    idmap ents, rels;
    knt_parser *nt;
    kbuf norm, lab, desc;
    int64_t file_id;
    const char *split;        /* of the current entry */
    int format;               /* of the current entry */
    int gloss;                /* of the current names file */
    uint64_t lines_in_tx;
    int in_tx;
    uint64_t file_triples, file_names, file_bad;
    /* of the open transaction: added to the file's row (kstore_kg_file_add)
     * and the aliases mark (kstore_kg_aliases_pending) when it commits */
    uint64_t tx_triples, tx_names;
    int tx_aliases;
    int rc;                   /* store error: stop */
} imp;

/* Commits the open transaction with the file's counters of what it stored. */
static int commit_tx(imp *m)
{
    if ((m->rc = kstore_kg_file_add(m->s, m->file_id, (int64_t)m->tx_triples, (int64_t)m->tx_names))) return m->rc;
    if (m->tx_aliases && (m->rc = kstore_kg_aliases_pending(m->s))) return m->rc;
    if ((m->rc = kstore_commit(m->s))) return m->rc;
    m->tx_triples = m->tx_names = 0;
    m->tx_aliases = 0;
    return 0;
}

static int tx(imp *m)
{
    if (m->in_tx && m->lines_in_tx < LINES_PER_TX) return 0;
    if (m->in_tx && commit_tx(m)) return m->rc;
    m->in_tx = 0;
    if ((m->rc = kstore_begin(m->s))) return m->rc;
    m->in_tx = 1;
    m->lines_in_tx = 0;
    return 0;
}

static int64_t entity(imp *m, const char *k, size_t n)
{
    int fresh;
    int64_t *slot = idmap_slot(&m->ents, k, n, &fresh);
    if (fresh && (m->rc = kstore_kg_entity(m->s, k, n, slot))) return 0;
    return *slot;
}

static int64_t relation(imp *m, const char *k, size_t n)
{
    int fresh;
    int64_t *slot = idmap_slot(&m->rels, k, n, &fresh);
    if (fresh && (m->rc = kstore_kg_relation(m->s, k, n, slot))) return 0;
    return *slot;
}

static void triple(imp *m, int64_t h, int64_t r, int64_t t)
{
    if (!h || !r || !t) return;
    int ins = 0;
    if ((m->rc = kstore_kg_triple_add(m->s, h, r, t, m->split, m->file_id, &ins))) return;
    if (ins) { m->sum->triples++; m->file_triples++; m->tx_triples++; }
    else m->sum->duplicates++;
}

/* Sets label/description and adds the label (normalized) as an alias. */
static void name_entity(imp *m, int64_t id, const char *label, size_t ll, const char *desc,
                        size_t dl, int as_label, int only_if_empty)
{
    kbuf_clear(&m->lab);
    kbuf_append(&m->lab, label, ll);
    kbuf_clear(&m->desc);
    if (desc) kbuf_append(&m->desc, desc, dl);
    int changed = 0;
    if (as_label || desc) {
        m->rc = kstore_kg_entity_set(m->s, id, as_label ? m->lab.data : NULL, desc ? m->desc.data : NULL,
                                     only_if_empty, &changed);
        if (m->rc) return;
        if (changed) { m->sum->entities_named++; m->file_names++; m->tx_names++; }
    }
    if (!ll) return;
    ktext_normalize_short(label, ll, KTEXT_NFKC, &m->norm);
    if (!m->norm.len) return;
    int ins = 0;
    if ((m->rc = kstore_kg_alias_add(m->s, id, m->norm.data, &ins))) return;
    if (ins) { m->sum->aliases++; m->tx_aliases = 1; }
}

static void bad_line(imp *m, const char *loc, uint64_t line, const char *msg, int col)
{
    m->sum->bad_lines++;
    m->file_bad++;
    if (m->file_bad <= MAX_WARNINGS) {
        if (col > 0) kwarn("%s:%llu: column %d: %s: line skipped", loc, (unsigned long long)line, col, msg);
        else kwarn("%s:%llu: %s: line skipped", loc, (unsigned long long)line, msg);
    } else if (m->file_bad == MAX_WARNINGS + 1) {
        kwarn("%s: more malformed lines; only the count is reported from here", loc);
    }
}

static int lang_ok(const imp *m, const knt_term *t)
{
    const char *want = m->o->lang;
    if (!t->lang || !want || !*want) return 1;
    size_t w = strlen(want);
    return t->lang_len >= w && strncasecmp(t->lang, want, w) == 0 &&
           (t->lang_len == w || t->lang[w] == '-');
}

static int iri_is(const knt_term *t, const char *iri)
{
    return t->len == strlen(iri) && memcmp(t->value, iri, t->len) == 0;
}

static void nt_line(imp *m, const char *loc, uint64_t ln, const char *line, size_t n)
{
    knt_term s, p, o;
    char err[256];
    int col = 0;
    int r = knt_parse_line(m->nt, line, n, &s, &p, &o, err, sizeof err, &col);
    if (r == 0) return;
    if (r < 0) { bad_line(m, loc, ln, err, col); return; }
    kbuf sub = {0};
    if (s.kind == KNT_BNODE) kbuf_puts(&sub, "_:");
    kbuf_append(&sub, s.value, s.len);
    if (o.kind == KNT_IRI || o.kind == KNT_BNODE) {
        kbuf obj = {0};
        if (o.kind == KNT_BNODE) kbuf_puts(&obj, "_:");
        kbuf_append(&obj, o.value, o.len);
        int64_t h = entity(m, sub.data, sub.len);
        int64_t rel = m->rc ? 0 : relation(m, p.value, p.len);
        int64_t t = m->rc ? 0 : entity(m, obj.data, obj.len);
        if (!m->rc) triple(m, h, rel, t);
        kbuf_free(&obj);
        kbuf_free(&sub);
        return;
    }
    /* a literal: names and descriptions in the wanted language */
    static const char *const label_preds[] = {
        "http://www.w3.org/2000/01/rdf-schema#label", "http://www.w3.org/2004/02/skos/core#prefLabel",
        "http://schema.org/name", "https://schema.org/name", "http://xmlns.com/foaf/0.1/name"};
    static const char *const desc_preds[] = {"http://schema.org/description",
                                             "https://schema.org/description"};
    int is_label = 0, is_alt = iri_is(&p, "http://www.w3.org/2004/02/skos/core#altLabel"), is_desc = 0;
    for (size_t i = 0; i < sizeof label_preds / sizeof *label_preds; i++) is_label |= iri_is(&p, label_preds[i]);
    for (size_t i = 0; i < sizeof desc_preds / sizeof *desc_preds; i++) is_desc |= iri_is(&p, desc_preds[i]);
    if (!(is_label || is_alt || is_desc) || !lang_ok(m, &o)) {
        m->sum->literals_skipped++;
        kbuf_free(&sub);
        return;
    }
    int64_t id = entity(m, sub.data, sub.len);
    if (!m->rc) {
        if (is_desc) {
            int changed = 0;
            kbuf_clear(&m->desc);
            kbuf_append(&m->desc, o.value, o.len);
            m->rc = kstore_kg_entity_set(m->s, id, NULL, m->desc.data, 1, &changed);
            if (changed) { m->sum->entities_named++; m->file_names++; m->tx_names++; }
        } else {
            name_entity(m, id, o.value, o.len, NULL, 0, is_label, 1);
        }
    }
    kbuf_free(&sub);
}

static void tsv_line(imp *m, const char *loc, uint64_t ln, const char *line, size_t n)
{
    const char *f[3];
    size_t len[3];
    char err[256];
    int r = ktsv_parse_line(line, n, f, len, err, sizeof err);
    if (r == 0) return;
    if (r < 0) { bad_line(m, loc, ln, err, 0); return; }
    int64_t h = entity(m, f[0], len[0]);
    int64_t rel = m->rc ? 0 : relation(m, f[1], len[1]);
    int64_t t = m->rc ? 0 : entity(m, f[2], len[2]);
    if (!m->rc) triple(m, h, rel, t);
}

static void name_line(imp *m, const char *loc, uint64_t ln, const char *line, size_t n)
{
    const char *id, *label, *desc;
    size_t il, ll, dl;
    char err[256];
    int r = kname_parse_line(line, n, m->gloss == KKG_GLOSS_YES, &id, &il, &label, &ll, &desc, &dl,
                             err, sizeof err);
    if (r == 0) return;
    if (r < 0) { bad_line(m, loc, ln, err, 0); return; }
    if (m->kind == KKG_RELATION_NAMES) {
        int64_t rid = relation(m, id, il);
        if (m->rc) return;
        kbuf_clear(&m->lab);
        kbuf_append(&m->lab, label, ll);
        if (!(m->rc = kstore_kg_relation_set_label(m->s, rid, m->lab.data))) {
            m->sum->relations_named++;
            m->file_names++;
            m->tx_names++;
        }
        return;
    }
    int64_t eid = entity(m, id, il);
    if (!m->rc) name_entity(m, eid, label, ll, desc && dl ? desc : NULL, dl, 1, 0);
}

/* ---- files and entries ------------------------------------------------------------- */

static const char *split_of(const imp *m, const char *name)
{
    if (m->o->split) return m->o->split;
    const char *base = strrchr(name, '/');
    base = base ? base + 1 : name;
    if (strstr(base, "valid") || strstr(base, "dev")) return "valid";
    if (strstr(base, "test")) return "test";
    return "train";
}

static int format_of(const imp *m, const char *name, const char *head, size_t n)
{
    if (m->o->format != KKG_AUTO) return m->o->format;
    size_t l = strlen(name);
    if ((l > 3 && !strcasecmp(name + l - 3, ".nt")) || strstr(name, ".nt.")) return KKG_NTRIPLES;
    for (size_t i = 0; i < n; i++) {
        if (head[i] == ' ' || head[i] == '\t' || head[i] == '\r' || head[i] == '\n') continue;
        if (head[i] == '#') { /* a comment line: look at the next */
            const char *nl = memchr(head + i, '\n', n - i);
            if (!nl) break;
            i = (size_t)(nl - head);
            continue;
        }
        return head[i] == '<' || (head[i] == '_' && i + 1 < n && head[i + 1] == ':') ? KKG_NTRIPLES : KKG_TSV;
    }
    return KKG_TSV;
}

/* For names files in auto mode: gloss files have ", " on most lines. */
static int detect_gloss(const char *data, size_t n)
{
    size_t lines = 0, with = 0;
    for (size_t i = 0; i < n && lines < 2000;) {
        const char *nl = memchr(data + i, '\n', n - i);
        size_t e = nl ? (size_t)(nl - data) : n;
        const char *tab = memchr(data + i, '\t', e - i);
        if (tab) {
            lines++;
            for (const char *c = tab; c + 1 < data + e; c++)
                if (c[0] == ',' && c[1] == ' ') { with++; break; }
        }
        i = e + 1;
    }
    return lines && with * 10 >= lines * 9;
}

static void handle_line(imp *m, const char *loc, uint64_t ln, const char *line, size_t n)
{
    if (tx(m)) return;
    m->lines_in_tx++;
    if (m->kind != KKG_TRIPLES) name_line(m, loc, ln, line, n);
    else if (m->format == KKG_NTRIPLES) nt_line(m, loc, ln, line, n);
    else tsv_line(m, loc, ln, line, n);
}

/* Streams an entry's lines; returns 0 at its end, 1 if the archive failed. */
static int read_entry(imp *m, struct archive *a, const char *loc, const char *name, kbuf *err)
{
    kbuf line = {0};
    uint64_t ln = 0;
    int started = 0, toolong = 0, ret = 0;
    for (;;) {
        const void *buf;
        size_t n;
        la_int64_t off;
        int r = archive_read_data_block(a, &buf, &n, &off);
        if (r == ARCHIVE_EOF) break;
        if (r < ARCHIVE_WARN) {
            kbuf_printf(err, "%s: %s (after line %llu)", loc,
                        archive_error_string(a) ? archive_error_string(a) : "read error",
                        (unsigned long long)ln);
            ret = 1;
            break;
        }
        const char *p = buf, *e = p + n;
        if (!started) {
            started = 1;
            m->split = split_of(m, name);
            m->format = format_of(m, name, p, n);
            if (m->kind == KKG_NAMES || m->kind == KKG_RELATION_NAMES)
                m->gloss = m->o->gloss == KKG_GLOSS_AUTO ? detect_gloss(p, n) : m->o->gloss;
            if (m->kind == KKG_NAMES && m->gloss)
                kinfo("%s: names with glosses (\"name, gloss\"): the gloss becomes the description", loc);
        }
        while (p < e && !m->rc) {
            const char *nl = memchr(p, '\n', (size_t)(e - p));
            size_t k = nl ? (size_t)(nl - p) : (size_t)(e - p);
            if (!toolong) {
                if (line.len + k > m->o->max_line_bytes) { toolong = 1; kbuf_clear(&line); }
                else kbuf_append(&line, p, k);
            }
            if (!nl) break;
            ln++;
            if (toolong) bad_line(m, loc, ln, "line longer than the limit", 0);
            else handle_line(m, loc, ln, line.data ? line.data : "", line.len);
            kbuf_clear(&line);
            toolong = 0;
            p = nl + 1;
        }
        if (m->rc) break;
    }
    if (!ret && !m->rc && (line.len || toolong)) {
        ln++;
        if (toolong) bad_line(m, loc, ln, "line longer than the limit", 0);
        else handle_line(m, loc, ln, line.data, line.len);
    }
    kbuf_free(&line);
    return ret;
}

static int import_file(imp *m, const char *path)
{
    uint8_t hash[KHASH_LEN];
    int e = khash_file(path, hash, NULL);
    if (e) {
        kerr("%s: %s", path, strerror(e));
        m->sum->missing++;
        return EX_NOINPUT;
    }
    static const char *const kinds[] = {"triples", "names", "relation-names"};
    char options[256];
    snprintf(options, sizeof options, "format=%d;split=%s;lang=%s;gloss=%d", m->o->format,
             m->o->split ? m->o->split : "auto", m->o->lang ? m->o->lang : "", m->o->gloss);
    char abspath[PATH_MAX];
    if (!realpath(path, abspath)) snprintf(abspath, sizeof abspath, "%s", path);
    int already = 0;
    int rc = kstore_kg_file_begin(m->s, abspath, hash, kinds[m->kind], options, &m->file_id, &already);
    if (rc) { kerr("%s", kstore_errmsg(m->s)); return rc; }
    m->sum->files++;
    if (already) {
        kinfo("%s: already imported (same content and options), nothing to do", path);
        m->sum->already++;
        return 0;
    }
    m->file_triples = m->file_names = m->file_bad = 0;
    m->tx_triples = m->tx_names = 0;
    m->tx_aliases = 0;
    struct archive *a = archive_read_new();
    archive_read_support_filter_gzip(a);
    archive_read_support_filter_bzip2(a);
    archive_read_support_filter_xz(a);
    archive_read_support_filter_zstd(a);
    archive_read_support_filter_lz4(a);
    archive_read_support_format_tar(a);
    archive_read_support_format_zip(a);
    archive_read_support_format_empty(a);
    archive_read_support_format_raw(a);
    kbuf err = {0};
    if (archive_read_open_filename(a, path, 1 << 20) != ARCHIVE_OK) {
        kbuf_printf(&err, "%s: %s", path, archive_error_string(a) ? archive_error_string(a) : "cannot open");
    } else {
        struct archive_entry *ent;
        int r;
        while (!m->rc && !err.len && (r = archive_read_next_header(a, &ent)) != ARCHIVE_EOF) {
            if (r < ARCHIVE_WARN) {
                kbuf_printf(&err, "%s: %s", path, archive_error_string(a) ? archive_error_string(a) : "read error");
                break;
            }
            int raw = archive_format(a) == ARCHIVE_FORMAT_RAW;
            const char *en = archive_entry_pathname(ent);
            if (!en) en = "";
            const char *base = strrchr(en, '/');
            base = base ? base + 1 : en;
            if (!raw && (archive_entry_filetype(ent) != AE_IFREG || base[0] == '.' ||
                         !strncasecmp(base, "readme", 6) || !strncasecmp(base, "license", 7)))
                continue;
            kbuf loc = {0};
            kbuf_puts(&loc, path);
            if (!raw) { kbuf_putc(&loc, ':'); kbuf_puts(&loc, en); }
            char name[PATH_MAX];
            snprintf(name, sizeof name, "%s", raw ? path : en);
            if (raw) kpath_strip_compression(name); /* for the format and split guesses */
            read_entry(m, a, loc.data, name, &err);
            kbuf_free(&loc);
        }
    }
    archive_read_free(a);
    if (m->in_tx) {
        if (m->rc) kstore_rollback(m->s);
        else commit_tx(m);
        m->in_tx = 0;
    }
    if (m->rc) { kerr("%s", kstore_errmsg(m->s)); kbuf_free(&err); return m->rc; }
    if (err.len) kwarn("%s", err.data);
    kbuf summary = {0};
    if (err.len) kbuf_puts(&summary, err.data);
    if (m->file_bad) kbuf_printf(&summary, "%s%llu malformed line(s) skipped", summary.len ? "; " : "",
                                 (unsigned long long)m->file_bad);
    int partial = err.len > 0;
    /* triples and names are in the row already (commit_tx) */
    rc = kstore_kg_file_finish(m->s, m->file_id, partial ? "partial" : "complete",
                               summary.len ? summary.data : NULL, 0, 0, (int64_t)m->file_bad);
    kbuf_free(&summary);
    kbuf_free(&err);
    if (rc) { kerr("%s", kstore_errmsg(m->s)); m->rc = rc; return rc; }
    return (m->file_bad || partial) ? EX_DATAERR : 0;
}

int kkg_import(kstore *s, int kind, const char *const *paths, int n, const kkg_import_opts *o,
               kkg_import_summary *sum)
{
    double t0 = know_seconds();
    imp m = {0};
    m.s = s;
    m.o = o;
    m.sum = sum;
    m.kind = kind;
    m.nt = knt_parser_new();
    int rc = 0;
    for (int i = 0; i < n && !m.rc; i++) {
        int r = import_file(&m, paths[i]);
        if (r == EX_NOINPUT || (r == EX_DATAERR && rc != EX_NOINPUT)) rc = r;
        else if (r && r != EX_DATAERR) { rc = r; break; }
    }
    /* aliases added, by this import or by an earlier one that failed
     * before its bump: the documents are linked again */
    if (!m.rc && !(rc && rc != EX_DATAERR && rc != EX_NOINPUT)) {
        int bumped = 0, r = kstore_kg_bump_if_pending(s, &bumped);
        if (r) { kerr("%s", kstore_errmsg(s)); rc = r; }
    }
    knt_parser_free(m.nt);
    idmap_free(&m.ents);
    idmap_free(&m.rels);
    kbuf_free(&m.norm);
    kbuf_free(&m.lab);
    kbuf_free(&m.desc);
    sum->seconds += know_seconds() - t0;
    return m.rc ? m.rc : rc;
}
