/* ernie_io.c: kiln export of an ERNIE checkpoint (a run with a knowledge
 * section; docs/ernie.md, "Export"). ERNIE has no Hugging Face class, so
 * OUT gets two folders:
 *
 *   OUT/text   the text encoder as BertModel / AlbertModel (kexport_hf2,
 *              the base head): every bert.* / albert.* tensor (a fine-tuned
 *              checkpoint: *ForSequenceClassification, its classifier
 *              too, as kiln exports any fine-tuned BERT / ALBERT). A fusion
 *              layer without entities is exactly its text layer (the entity
 *              side adds nothing then: trainer/ernie.c), so this folder is
 *              the ERNIE model on text without a KG, usable by fine-tuning.
 *   OUT/kiln   kiln's own format, version 1 (table below): every tensor of
 *              the checkpoint under kiln's names, the fusion layers
 *              described in config.json, the entity vocabulary.
 *
 *   file                      content
 *   model.safetensors         F32 tensors, kiln's registry names (ernie.*,
 *                             cls.predictions_ent.* and the text model's);
 *                             __metadata__ {"format": "pt", "kiln_format":
 *                             "ernie", "kiln_format_version": "1"}
 *   config.json               {"kiln_format": "ernie", "kiln_format_version": 1,
 *                             "base_model": "bert" | "albert",
 *                             "run_config": the checkpoint's run config
 *                             (model, data, knowledge sections ...),
 *                             "fusion": {"num_hidden_layers", "fusion_layers",
 *                             "first_fusion_layer", "entity_attention_from",
 *                             "entity_output_until", "entity_vocab_size",
 *                             "entity_dim", "entity_hidden_size",
 *                             "entity_attention_heads", "dea"},
 *                             "embedding": the kg_embeddings id it was trained with,
 *                             "tokenizer": {"cased", "strip_accents", "icu_words"},
 *                             "checkpoint": the exported checkpoint's path,
 *                             "finetuned" (a fine-tuned classifier only): {"kind",
 *                             "architecture", "heads", "pooler", "num_labels",
 *                             "id2label", "problem_type", "finetune": its
 *                             fine-tuning config}: the head the tensors hold}
 *   entities.tsv              header "row\tkg_key\tname", then one line per
 *                             table row 1 .. entity_vocab_size - 1 (row 0 =
 *                             no entity): the entity's external id (the KG's
 *                             key, e.g. a Freebase mid) and its label
 *   vocab.txt, tokenizer_config.json, special_tokens_map.json   as OUT/text's
 *
 * The entity vocabulary comes from the store the run used (--db): the
 * checkpoint pins the embedding by id, whose rows are the table's. */
#include <errno.h>
#include <unistd.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli/cli.h"
#include "kg/kg.h"
#include "sampler/batch.h"
#include "trainer/checkpoint.h"
#include "trainer/export.h"
#include "trainer/hfimport.h"
#include "trainer/model.h"

/* entities.tsv of the table: row, external id, label (tabs and newlines in
 * a label become spaces). */
static int entities_tsv(kstore *s, const kkg_table *kt, kbuf *out, char *err, size_t errlen)
{
    kbuf ext = {0}, label = {0}, desc = {0};
    kbuf_puts(out, "row\tkg_key\tname\n");
    int rc = 0;
    for (int32_t r = 1; r < kt->rows && !rc; r++) {
        if ((rc = kstore_kg_entity_get(s, kt->ids[r], &ext, &label, &desc))) {
            snprintf(err, errlen, "entity %lld (row %d): %s", (long long)kt->ids[r], r, kstore_errmsg(s));
            break;
        }
        kbuf_printf(out, "%d\t%s\t", r, ext.data ? ext.data : "");
        for (size_t i = 0; label.data && i < label.len && label.data[i]; i++) {
            char c = label.data[i];
            kbuf_putc(out, c == '\t' || c == '\n' || c == '\r' ? ' ' : c);
        }
        kbuf_putc(out, '\n');
    }
    kbuf_free(&ext);
    kbuf_free(&label);
    kbuf_free(&desc);
    return rc;
}

static int put_file(const char *dir, const char *name, const char *data, size_t len, char *err, size_t errlen)
{
    char *p = kpath_join(dir, name);
    int rc = kst_write_bytes(p, data, len, err, errlen);
    free(p);
    return rc;
}

/* OUT/kiln, built in a temporary sibling and published. */
static int export_kiln(const char *dir, const kckpt *ck, const ktrain_config *cfg, const kst_tensor *t, int n,
                       const char *vocab, size_t vlen, int tok, const kbuf *tsv, int force, char *err, size_t errlen)
{
    char *final, *parent, *tmp = kckpt_tmp_sibling(dir, "export", &final, &parent);
    kckpt_remove_tree(tmp);
    int rc = kckpt_mkdirs(tmp, err, errlen);
    char *mp = kpath_join(tmp, "model.safetensors");
    static const char *const meta[] = {"format", "pt", "kiln_format", "ernie", "kiln_format_version", "1"};
    if (!rc) rc = kst_write(mp, t, n, meta, 3, err, errlen);
    free(mp);
    const kmodel_config *m = &cfg->model;
    char *rcj = ktrain_config_to_json(cfg);
    json_t *c = json_object();
    json_object_set_new(c, "kiln_format", json_string("ernie"));
    json_object_set_new(c, "kiln_format_version", json_integer(1));
    json_object_set_new(c, "base_model", json_string(m->type == KMODEL_ALBERT ? "albert" : "bert"));
    json_object_set_new(c, "run_config", json_loads(rcj, 0, NULL));
    free(rcj);
    const int first = m->num_hidden_layers - m->fusion_layers;
    json_t *f = json_pack("{s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:b}", "num_hidden_layers",
                          m->num_hidden_layers, "fusion_layers", m->fusion_layers, "first_fusion_layer", first,
                          "entity_attention_from", first + 1, "entity_output_until", m->num_hidden_layers - 2,
                          "entity_vocab_size", m->entity_vocab_size, "entity_dim", m->entity_dim,
                          "entity_hidden_size", m->entity_hidden_size ? m->entity_hidden_size : m->entity_dim,
                          "entity_attention_heads", m->entity_attention_heads, "dea", m->dea);
    json_object_set_new(c, "fusion", f);
    json_object_set_new(c, "embedding", json_integer(cfg->knowledge_embedding));
    json_t *ex = json_loads(kckpt_state_of(ck)->extra_json ? kckpt_state_of(ck)->extra_json : "{}", 0, NULL);
    json_t *tk = json_object(); /* the tokenizer of the checkpoint (kiln import restores it) */
    const char *keys[] = {"cased", "strip_accents", "icu_words"};
    for (int i = 0; i < 3; i++) {
        json_t *v = json_object_get(ex, keys[i]);
        json_object_set(tk, keys[i], v ? v : json_null());
    }
    json_object_set_new(c, "tokenizer", tk);
    const char *kind = json_string_value(json_object_get(ex, "kind"));
    if (kind && !strcmp(kind, "finetune")) { /* a fine-tuned classifier: its head and labels (kiln import restores them) */
        json_t *ft = json_object();
        const char *fk[] = {"kind", "architecture", "model_type", "heads", "pooler", "num_labels", "id2label",
                            "problem_type", "finetune"};
        for (size_t i = 0; i < sizeof fk / sizeof *fk; i++)
            if (json_object_get(ex, fk[i])) json_object_set(ft, fk[i], json_object_get(ex, fk[i]));
        json_object_set_new(c, "finetuned", ft);
    }
    json_decref(ex);
    json_object_set_new(c, "checkpoint", json_string(kckpt_path(ck)));
    char *cj = json_dumps(c, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    json_decref(c);
    if (!rc) rc = put_file(tmp, "config.json", cj, strlen(cj), err, errlen);
    free(cj);
    if (!rc) rc = put_file(tmp, "entities.tsv", tsv->data, tsv->len, err, errlen);
    if (!rc) rc = put_file(tmp, "vocab.txt", vocab, vlen, err, errlen);
    char *tc = kexport_tokenizer_config_of(m->type, tok, m->max_position_embeddings), *sm = kexport_special_tokens_map();
    if (!rc) rc = put_file(tmp, "tokenizer_config.json", tc, strlen(tc), err, errlen);
    if (!rc) rc = put_file(tmp, "special_tokens_map.json", sm, strlen(sm), err, errlen);
    free(tc);
    free(sm);
    if (!rc) rc = kckpt_publish_dir(tmp, final, force, err, errlen);
    if (rc) kckpt_remove_tree(tmp);
    free(tmp);
    free(final);
    free(parent);
    return rc;
}

int cli_export_ernie(const cli_common *c, const char *out, const kckpt *ck, const ktrain_config *cfg,
                     const kst_tensor *t, int n, const char *vocab, size_t vlen, int tok, int force, char *err,
                     size_t errlen)
{
    /* the entity vocabulary first: nothing is written without it */
    kstore *s = NULL;
    int rc = cli_open_store(c, KSTORE_READONLY, &s);
    if (rc) {
        snprintf(err, errlen, "the entity vocabulary (OUT/kiln/entities.tsv) comes from the run's store: open it with "
                              "--db");
        return rc;
    }
    kkg_table kt;
    char e2[900];
    if ((rc = kkg_table_load(s, cfg->knowledge_embedding, &kt, e2, sizeof e2))) {
        snprintf(err, errlen, "the checkpoint's embedding %lld: %s", (long long)cfg->knowledge_embedding, e2);
        kstore_close(s);
        return rc;
    }
    if (kt.rows != cfg->model.entity_vocab_size) {
        snprintf(err, errlen, "embedding %lld has %d rows, the checkpoint's entity table %d", (long long)kt.embedding_id,
                 kt.rows, cfg->model.entity_vocab_size);
        kkg_table_free(&kt);
        kstore_close(s);
        return EX_DATAERR;
    }
    kbuf tsv = {0};
    rc = entities_tsv(s, &kt, &tsv, err, errlen);
    kkg_table_free(&kt);
    kstore_close(s);
    struct stat st;
    if (!rc && !stat(out, &st) && !S_ISDIR(st.st_mode)) {
        snprintf(err, errlen, "%s exists and is not a folder", out);
        rc = EX_CANTCREAT;
    } else if (!rc && mkdir(out, 0755) && errno != EEXIST) {
        snprintf(err, errlen, "%s: cannot create: %s", out, strerror(errno));
        rc = EX_CANTCREAT;
    }
    /* OUT/text: the bert.* / albert.* tensors as the base model; a fine-tuned
     * checkpoint's with its classifier (*ForSequenceClassification) */
    khf_export_head eh;
    khf_export_head_of(cfg->model.type, kckpt_state_of(ck)->extra_json, t, n, &eh);
    const int clf = eh.head.kind == KEXPORT_HEAD_CLASSIFICATION;
    kst_tensor *tt = xcalloc((size_t)n, sizeof *tt);
    int nt = 0;
    for (int i = 0; i < n; i++)
        if (!strncmp(t[i].name, "bert.", 5) || !strncmp(t[i].name, "albert.", 7) ||
            (clf && !strncmp(t[i].name, "classifier.", 11)))
            tt[nt++] = t[i];
    kmodel_config tm = cfg->model;
    tm.fusion_layers = 0;
    const kexport_head base = {KEXPORT_HEAD_BASE, 0, NULL, NULL};
    char *td = kpath_join(out, "text"), *kd = kpath_join(out, "kiln");
    if (!rc && (rc = kexport_hf2(td, &tm, clf ? &eh.head : &base, tt, nt, vocab, vlen, tok, force, e2, sizeof e2)))
        snprintf(err, errlen, "text: %s", e2);
    khf_export_head_free(&eh);
    if (!rc && (rc = export_kiln(kd, ck, cfg, t, n, vocab, vlen, tok, &tsv, force, e2, sizeof e2)))
        snprintf(err, errlen, "kiln: %s", e2);
    free(td);
    free(kd);
    free(tt);
    kbuf_free(&tsv);
    return rc;
}

/* ---- entities of text outside the store (kiln finetune / eval / classify) ---------- */

typedef struct vnames { char (*name)[256]; int n, cap; } vnames;

static int vocab_cb(const kvocab_row *r, void *ctx)
{
    vnames *v = ctx;
    if (r->kind != KVOCAB_WORDPIECE) return 0;
    if (v->n == v->cap) {
        v->cap = v->cap ? 2 * v->cap : 8;
        v->name = xrealloc(v->name, (size_t)v->cap * sizeof *v->name);
    }
    snprintf(v->name[v->n++], sizeof v->name[0], "%s", r->name);
    return 0;
}

int cli_vocab_with_pieces(kstore *s, const char *pieces, size_t len, int64_t *id, char name[256])
{
    vnames v = {0};
    *id = 0;
    int rc = kstore_vocabs_foreach(s, vocab_cb, &v);
    kbuf text = {0}, meta = {0};
    for (int i = 0; i < v.n && !rc && !*id; i++) {
        kvocab_row r;
        if ((rc = kstore_vocab_get(s, v.name[i], &r, &text, &meta))) break;
        if (r.pieces_len == len && !memcmp(r.pieces, pieces, len)) {
            *id = r.id;
            if (name) snprintf(name, 256, "%s", v.name[i]);
        }
    }
    kbuf_free(&text);
    kbuf_free(&meta);
    free(v.name);
    return rc;
}

int cli_kg_table_match(kstore *s, int64_t embedding, int rows, int dim, const float *table, kkg_table *kt,
                       int *differs, char *err, size_t errlen)
{
    *differs = 0;
    int rc = kkg_table_load(s, embedding, kt, err, errlen);
    if (rc) return rc;
    if (kt->rows != rows || (dim > 0 && kt->dim != dim)) {
        snprintf(err, errlen, "embedding %lld is %d x %d in the store, the model's entity table %d x %d",
                 (long long)embedding, kt->rows, kt->dim, rows, dim > 0 ? dim : kt->dim);
        kkg_table_free(kt);
        return EX_DATAERR;
    }
    /* the rows map to the store's entities through this embedding: only if it is the one the
     * model's (frozen) table was copied from, vector for vector */
    if (table && memcmp(table, kt->vectors, (size_t)kt->rows * (size_t)kt->dim * sizeof(float))) {
        if (errlen) err[0] = '\0';
        *differs = 1;
        kkg_table_free(kt);
        return EX_DATAERR;
    }
    return 0;
}

int cli_kg_open(const cli_common *c, int64_t embedding, int entity_rows, const float *table, const char *vocab,
                size_t vlen, cli_kg *k)
{
    memset(k, 0, sizeof *k);
    kstore *s = NULL;
    int rc = cli_open_store(c, 0, &s); /* read-write: building a linker may record the corpus's piece counts */
    if (rc) {
        kerr("an ERNIE model reads the entities of its text with the KG of its store: give it with --db");
        return rc;
    }
    char err[900];
    int differs;
    if ((rc = cli_kg_table_match(s, embedding, entity_rows, 0, table, &k->kt, &differs, err, sizeof err))) {
        if (differs)
            kerr("the store's embedding %lld is not the one the model was trained with (its vectors differ from the "
                 "model's entity table): use the store the model was trained on",
                 (long long)embedding);
        else
            kerr("the model's embedding %lld: %s", (long long)embedding, err);
        goto out;
    }
    /* the store's vocabulary with the model's pieces: the linker's aliases are in its ids */
    char vname[256];
    int64_t vid;
    if ((rc = cli_vocab_with_pieces(s, vocab, vlen, &vid, vname))) {
        kerr("%s", kstore_errmsg(s));
        goto out;
    }
    if (!vid) {
        kerr("no vocabulary of the store has the model's pieces: entities are linked in the ids of the vocabulary "
             "the model trained with (kiln vocab import its vocab.txt, kiln tokenize, kiln kg link)");
        rc = EX_DATAERR;
        goto out;
    }
    kkg_link_opts lo = {.vocab = vname, .min_alias_chars = 3, .max_alias_share = 1e-4};
    if ((rc = kkg_linker_new(s, &lo, &k->linker))) goto out;
    /* the word starts: every piece but the "##" continuations; special pieces ([CLS] ...) are barriers */
    size_t V = 1;
    for (size_t i = 0; i < vlen; i++) V += vocab[i] == '\n';
    k->V = (int)V;
    k->piece = xcalloc(V, 1);
    size_t id = 0;
    for (const char *p = vocab, *e = vocab + vlen; p < e && id < V; id++) {
        const char *nl = memchr(p, '\n', (size_t)(e - p));
        size_t n = nl ? (size_t)(nl - p) : (size_t)(e - p);
        if (n && p[n - 1] == '\r') n--;
        k->piece[id] = n >= 2 && p[0] == '#' && p[1] == '#' ? 1 : n >= 2 && p[0] == '[' && p[n - 1] == ']' ? 2 : 0;
        p = nl ? nl + 1 : e;
    }
out:
    kstore_close(s);
    if (rc) cli_kg_close(k);
    return rc;
}

void cli_kg_link(cli_kg *k, ksample_batch *b)
{
    const size_t n = (size_t)b->capacity * b->L;
    if ((size_t)b->L > k->cap) {
        free(k->ids);
        free(k->ws);
        free(k->found);
        k->ids = xcalloc((size_t)b->L, sizeof *k->ids);
        k->ws = xcalloc((size_t)b->L, 1);
        k->found = xcalloc((size_t)b->L, sizeof *k->found);
        k->cap = (size_t)b->L;
    }
    /* the batch's own entity array (its free function frees it; the dataset's batches come without) */
    if (!b->entity_ids) b->entity_ids = xcalloc(n, sizeof *b->entity_ids);
    memset(b->entity_ids, 0, n * sizeof *b->entity_ids);
    for (int r = 0; r < b->B; r++) {
        const int len = b->lengths[r];
        for (int t = 0; t < len; t++) {
            int32_t id = b->input_ids[(size_t)r * b->L + t];
            int kind = id >= 0 && id < k->V ? k->piece[id] : 2;
            k->ids[t] = kind == 2 ? -1 : id;
            k->ws[t] = kind == 0;
        }
        k->tokens += (uint64_t)len;
        if (!kkg_linker_link_ids(k->linker, k->ids, k->ws, len, k->found)) continue;
        for (int t = 0; t < len; t++) {
            if (!k->found[t]) continue;
            int32_t row = kkg_table_row(&k->kt, k->found[t]);
            k->mentions++;
            k->with_vector += row > 0;
            b->entity_ids[(size_t)r * b->L + t] = row;
        }
    }
}

void cli_kg_close(cli_kg *k)
{
    kkg_linker_free(k->linker);
    kkg_table_free(&k->kt);
    free(k->piece);
    free(k->ids);
    free(k->ws);
    free(k->found);
    memset(k, 0, sizeof *k);
}

int64_t cli_kg_embedding_of(const char *config_json)
{
    json_t *j = config_json ? json_loads(config_json, 0, NULL) : NULL;
    json_t *e = json_object_get(json_object_get(j, "knowledge"), "embedding");
    int64_t id = json_is_integer(e) ? (int64_t)json_integer_value(e) : 0;
    json_decref(j);
    return id;
}

/* ---- kiln import --from kiln (OUT/kiln back into a checkpoint) ------------------------------ */

/* The table (rows x dim, row 0 = no entity) onto store s: see cli.h. Reads
 * DIR/entities.tsv (row TAB kg_key TAB name, rows 1..rows-1 in order); a
 * malformed line is EX_DATAERR naming the file and the line. Writes one
 * kg_embeddings row at most (model "imported", no relations; the rows whose
 * key the store lacks get entity id 0, which no mention links to). */
static int map_table(kstore *s, const char *dir, const float *table, int64_t rows, int dim, ktrain_config *cfg,
                     cli_ernie_map *map, char *err, size_t errlen)
{
    map->how = "unmapped";
    map->origin_embedding = map->embedding = cfg->knowledge_embedding;
    map->rows = rows - 1;
    map->mapped = 0;
    const size_t n = (size_t)(rows - 1), d = (size_t)dim;
    kbuf tsv = {0};
    kkg_table kt;
    int differs;
    if (!cli_kg_table_match(s, cfg->knowledge_embedding, (int)rows, dim, table, &kt, &differs, err, errlen)) {
        kkg_table_free(&kt);
        map->how = "kept";
        map->mapped = (int64_t)n;
        return 0;
    }
    int rc;
    char *tp = kpath_join(dir, "entities.tsv");
    int64_t *ids = xcalloc(n ? n : 1, sizeof *ids);
    rc = 0;
    if (kbuf_read_file(&tsv, tp)) {
        snprintf(err, errlen, "%s: cannot read (the entity vocabulary that ties the table to a KG)", tp);
        rc = EX_NOINPUT;
        goto out;
    }
    kbuf_putc(&tsv, '\0');
    char *line = tsv.data, *next;
    int64_t lineno = 0, r = 0;
    for (; line && *line; line = next) {
        next = strchr(line, '\n');
        if (next) *next++ = '\0';
        lineno++;
        if (lineno == 1) {
            if (strncmp(line, "row\tkg_key\t", 11)) {
                snprintf(err, errlen, "%s: line 1: expected the header row TAB kg_key TAB name", tp);
                rc = EX_DATAERR;
                goto out;
            }
            continue;
        }
        char *t1 = strchr(line, '\t'), *t2 = t1 ? strchr(t1 + 1, '\t') : NULL, *end;
        long long row = t1 ? strtoll(line, &end, 10) : -1;
        if (!t2 || end != t1 || row != r + 1 || row > (long long)n || t2 == t1 + 1) {
            snprintf(err, errlen, "%s: line %lld: expected row %lld TAB kg_key TAB name", tp, (long long)lineno,
                     (long long)(r + 1));
            rc = EX_DATAERR;
            goto out;
        }
        *t2 = '\0';
        if ((rc = kstore_kg_entity_by_key(s, t1 + 1, &ids[r]))) {
            snprintf(err, errlen, "%s", kstore_errmsg(s));
            goto out;
        }
        map->mapped += ids[r] > 0;
        r++;
    }
    if (r != (int64_t)n) {
        snprintf(err, errlen, "%s: %lld rows, the entity table has %lld", tp, (long long)r, (long long)n);
        rc = EX_DATAERR;
        goto out;
    }
    if (!map->mapped) goto out; /* none of the keys in this store's KG: the pin stays, linking refuses */
    /* an earlier import of the same table (the latest embedding of any kind with these ids and vectors) */
    for (int64_t id = 1;; id++) {
        kbuf b2 = {0};
        kkg_embedding x;
        int r2 = kstore_kg_embedding_get(s, id, &x, &b2);
        int same = !r2 && !strcmp(x.model, "imported") && x.n_entities == n && x.dim == dim &&
                   !memcmp(x.entity_ids, ids, n * sizeof *ids) && !memcmp(x.entities, table + d, n * d * sizeof(float));
        kbuf_free(&b2);
        if (same) {
            map->how = "mapped";
            map->embedding = cfg->knowledge_embedding = id;
            goto out;
        }
        if (r2 == EX_NOINPUT) break;
        if (r2) {
            snprintf(err, errlen, "%s", kstore_errmsg(s));
            rc = r2;
            goto out;
        }
    }
    char conf[1200];
    json_t *cj = json_pack("{s:s, s:I, s:I, s:I}", "imported_from", dir, "origin_embedding",
                           (json_int_t)cfg->knowledge_embedding, "rows", (json_int_t)n, "mapped",
                           (json_int_t)map->mapped);
    char *cs = json_dumps(cj, JSON_COMPACT);
    snprintf(conf, sizeof conf, "%s", cs ? cs : "{}");
    free(cs);
    json_decref(cj);
    static const int64_t no_rel[1];
    static const float no_vec[1];
    kkg_embedding ne = {.model = "imported", .dim = dim, .config = conf, .n_entities = n, .n_relations = 0,
                        .entity_ids = ids, .relation_ids = no_rel, .entities = table + d, .relations = no_vec,
                        .valid_mrr = -1, .test_mrr = -1};
    int64_t nid;
    if ((rc = kstore_kg_embedding_put(s, &ne, &nid))) {
        snprintf(err, errlen, "%s", kstore_errmsg(s));
        goto out;
    }
    map->how = "mapped";
    map->embedding = cfg->knowledge_embedding = nid;
out:
    free(ids);
    free(tp);
    kbuf_free(&tsv);
    return rc;
}

int cli_import_ernie(const char *dir, const char *out, int force, kstore *s, cli_ernie_map *map, char *path,
                     size_t plen, char *err, size_t errlen)
{
    char *cp = kpath_join(dir, "config.json"), *mp = kpath_join(dir, "model.safetensors"),
         *vp = kpath_join(dir, "vocab.txt");
    json_error_t je;
    json_t *c = json_load_file(cp, 0, &je);
    kst_file *f = NULL;
    kbuf vocab = {0};
    char *cfg_json = NULL, *extra = NULL, e2[900];
    int rc = 0;
    ktrain_config cfg;
    if (!c) {
        snprintf(err, errlen, "%s: %s", cp, je.text);
        rc = access(cp, R_OK) ? EX_NOINPUT : EX_DATAERR;
        goto out;
    }
    if (strcmp(json_string_value(json_object_get(c, "kiln_format")) ? json_string_value(json_object_get(c, "kiln_format")) : "", "ernie") ||
        json_integer_value(json_object_get(c, "kiln_format_version")) != 1) {
        snprintf(err, errlen, "%s: not kiln's ERNIE format version 1 (kiln_format \"ernie\", kiln_format_version 1)", cp);
        rc = EX_DATAERR;
        goto out;
    }
    char *rj = json_dumps(json_object_get(c, "run_config"), JSON_COMPACT);
    rc = rj ? ktrain_config_parse(&cfg, rj, strlen(rj), NULL, 0, e2, sizeof e2) : EX_DATAERR;
    free(rj);
    if (rc || cfg.model.fusion_layers <= 0 || !cfg.model.entity_vocab_size) {
        snprintf(err, errlen, "%s: run_config: %s", cp, rc ? e2 : "no knowledge section with the entity table's shape");
        rc = EX_DATAERR;
        goto out;
    }
    if (!(f = kst_open(mp, e2, sizeof e2))) {
        snprintf(err, errlen, "%s", e2);
        rc = access(mp, R_OK) ? EX_NOINPUT : EX_DATAERR;
        goto out;
    }
    if (kbuf_read_file(&vocab, vp)) {
        snprintf(err, errlen, "%s: cannot read", vp);
        rc = EX_NOINPUT;
        goto out;
    }
    /* the tensors must be the registry of the model the config describes: nothing missing, nothing extra */
    int ob = cfg.data.objectives;
    kmodel_spec sp = kmodel_spec_pretrain_of(&cfg.model, 1, cfg.data.seq_len, cfg.data.seq_len,
                                             (ob & (KOBJ_SOP | KOBJ_NSP)) != 0);
    json_t *fted = json_object_get(c, "finetuned"); /* a fine-tuned classifier: its head, not pretraining's */
    if (json_is_object(fted)) {
        json_int_t K = json_integer_value(json_object_get(fted, "num_labels"));
        if (K < 1 || K > 100000) {
            snprintf(err, errlen, "%s: finetuned.num_labels must be a positive integer", cp);
            rc = EX_DATAERR;
            goto out;
        }
        sp = (kmodel_spec){.heads = KHEAD_CLASSIFY, .max_B = 1, .L = cfg.data.seq_len, .num_labels = (int)K,
                           .classifier_dropout = 0, .inference = 1};
    }
    int nr;
    ktensor *reg = kmodel_registry(&cfg.model, &sp, &nr, e2, sizeof e2);
    if (!reg) {
        snprintf(err, errlen, "%s: the model: %s", cp, e2);
        rc = EX_DATAERR;
        goto out;
    }
    const int n = kst_count(f);
    kst_tensor *t = xcalloc((size_t)(n ? n : 1), sizeof *t);
    for (int i = 0; i < nr && !rc; i++) {
        const kst_tensor *x = kst_find(f, reg[i].name);
        int ok = x && !strcmp(x->dtype, "F32") && x->ndim == reg[i].ndim;
        for (int d = 0; ok && d < x->ndim; d++) ok = x->shape[d] == reg[i].shape[d];
        if (!ok) {
            snprintf(err, errlen, "%s: tensor %s %s", mp, reg[i].name, x ? "has another shape or dtype" : "missing");
            rc = EX_DATAERR;
        } else {
            t[i] = *x;
        }
    }
    if (!rc && n != nr) {
        snprintf(err, errlen, "%s: %d tensors, the model has %d", mp, n, nr);
        rc = EX_DATAERR;
    }
    free(reg);
    if (map) {
        memset(map, 0, sizeof *map);
        map->how = "unmapped";
        map->origin_embedding = map->embedding = cfg.knowledge_embedding;
        map->rows = cfg.model.entity_vocab_size - 1;
    }
    if (!rc && s && map) {
        const float *table = cli_kg_table_of(t, nr);
        rc = table ? map_table(s, dir, table, cfg.model.entity_vocab_size, cfg.model.entity_dim, &cfg, map, err, errlen)
                   : EX_DATAERR;
        if (!table) snprintf(err, errlen, "%s: no entity table (ernie.entity_embeddings.weight)", mp);
    }
    if (!rc) {
        char *final, *parent, *tmp = kckpt_tmp_sibling(out, "import", &final, &parent);
        snprintf(cfg.checkpoint.dir, sizeof cfg.checkpoint.dir, "%s", final);
        cfg_json = ktrain_config_to_json(&cfg);
        json_t *tk = json_object_get(c, "tokenizer"), *ex = json_object();
        const char *keys[] = {"cased", "strip_accents", "icu_words"};
        for (int i = 0; i < 3; i++) {
            json_t *v = json_object_get(tk, keys[i]);
            json_object_set(ex, keys[i], v ? v : json_null());
        }
        json_object_set_new(ex, "imported_from", json_string(dir));
        if (json_is_object(fted)) json_object_update(ex, fted); /* kind, heads, labels, the fine-tuning config */
        json_object_set_new(ex, "knowledge", json_pack("{s:I, s:i, s:i}", "embedding",
                                                       (json_int_t)cfg.knowledge_embedding, "rows",
                                                       cfg.model.entity_vocab_size, "dim", cfg.model.entity_dim));
        extra = json_dumps(ex, JSON_COMPACT);
        json_decref(ex);
        kckpt_state st = {.step = 0, .config_json = cfg_json, .vocab_name = "", .extra_json = extra};
        kckpt_part part = {"model.safetensors", t, nr};
        kckpt_remove_tree(tmp);
        rc = kckpt_save(tmp, &st, &part, 1, vocab.data, vocab.len, 0, NULL, 0, err, errlen);
        if (!rc) rc = kckpt_publish_dir(tmp, final, force, err, errlen);
        if (rc) kckpt_remove_tree(tmp);
        else snprintf(path, plen, "%s/step-000000000", final);
        free(tmp);
        free(parent);
        free(final);
    }
    free(t);
out:
    json_decref(c);
    kst_close(f);
    kbuf_free(&vocab);
    free(cfg_json);
    free(extra);
    free(cp);
    free(mp);
    free(vp);
    return rc;
}

const float *cli_kg_table_of(const kst_tensor *t, int n)
{
    for (int i = 0; i < n; i++)
        if (!strcmp(t[i].name, "ernie.entity_embeddings.weight") && !strcmp(t[i].dtype, "F32")) return t[i].data;
    return NULL;
}
