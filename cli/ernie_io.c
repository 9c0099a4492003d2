/* ernie_io.c: kiln export of an ERNIE checkpoint (a run with a knowledge
 * section; docs/ernie.md, "Export"). ERNIE has no Hugging Face class, so
 * OUT gets two folders:
 *
 *   OUT/text   the text encoder as BertModel / AlbertModel (kexport_hf2,
 *              the base head): every bert.* / albert.* tensor. A fusion
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
 *                             "embedding": the kg_embeddings id it was trained with}
 *   entities.tsv              header "row\tkg_key\tname", then one line per
 *                             table row 1 .. entity_vocab_size - 1 (row 0 =
 *                             no entity): the entity's external id (the KG's
 *                             key, e.g. a Freebase mid) and its label
 *   vocab.txt, tokenizer_config.json, special_tokens_map.json   as OUT/text's
 *
 * The entity vocabulary comes from the store the run used (--db): the
 * checkpoint pins the embedding by id, whose rows are the table's. */
#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli/cli.h"
#include "kg/kg.h"
#include "trainer/checkpoint.h"
#include "trainer/export.h"

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
    /* OUT/text: the bert.* / albert.* tensors as the base model */
    kst_tensor *tt = xcalloc((size_t)n, sizeof *tt);
    int nt = 0;
    for (int i = 0; i < n; i++)
        if (!strncmp(t[i].name, "bert.", 5) || !strncmp(t[i].name, "albert.", 7)) tt[nt++] = t[i];
    kmodel_config tm = cfg->model;
    tm.fusion_layers = 0;
    const kexport_head base = {KEXPORT_HEAD_BASE, 0, NULL, NULL};
    char *td = kpath_join(out, "text"), *kd = kpath_join(out, "kiln");
    if (!rc && (rc = kexport_hf2(td, &tm, &base, tt, nt, vocab, vlen, tok, force, e2, sizeof e2)))
        snprintf(err, errlen, "text: %s", e2);
    if (!rc && (rc = export_kiln(kd, ck, cfg, t, n, vocab, vlen, tok, &tsv, force, e2, sizeof e2)))
        snprintf(err, errlen, "kiln: %s", e2);
    free(td);
    free(kd);
    free(tt);
    kbuf_free(&tsv);
    return rc;
}
