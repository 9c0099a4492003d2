/* snapshot.c: the sampler's snapshot file: every tokenized document of one
 * vocabulary, frozen at the moment it was made, laid out for mmap and random
 * access (in the spirit of Megatron's .bin/.idx). Made from the store by
 * ksnapshot_build, read by ksnapshot_open; never modified after the rename.
 *
 * Layout, version 1 (all little-endian; sections start on 8-byte bounds):
 *
 * | offset | size | field                                                   |
 * |--------|------|---------------------------------------------------------|
 * | 0      | 8    | magic "KILNSNAP"                                        |
 * | 8      | 4    | version (1)                                             |
 * | 12     | 4    | token width in bytes (2 or 4)                           |
 * | 16     | 8    | vocabulary id                                           |
 * | 24     | 8    | largest document id included                            |
 * | 32     | 8    | D: documents                                            |
 * | 40     | 8    | S: sentences                                            |
 * | 48     | 8    | T: tokens                                               |
 * | 56     | 8    | M: mentions                                             |
 * | 64     | 4    | vocabulary size                                         |
 * | 68     | 4    | 0                                                       |
 * | 72     | 16   | content key: XXH3-128 of every section below            |
 * | 88     | 8    | file size                                               |
 * | 96     | 64   | section offsets: tokens, word starts, doc ids, doc      |
 * |        |      | hashes, token offsets, sentence offsets, mention        |
 * |        |      | offsets, sentence ends (8 x u64)                        |
 * | 160    | 8    | section offset: mentions                                |
 * | 168    | 88   | 0                                                       |
 * | 256    |      | sections:                                               |
 * |        |      | tokens      (T) u16 or u32 ids, documents back to back  |
 * |        |      | word starts ceil(T/8) bytes, bit t LSB-first            |
 * |        |      | doc ids     (D) i64, ascending                          |
 * |        |      | doc hashes  (D) u64: first 8 bytes of the content hash  |
 * |        |      | tok offsets (D+1) u64 into tokens                       |
 * |        |      | sent offsets(D+1) u64 into sentence ends                |
 * |        |      | ment offsets(D+1) u64 into mentions                     |
 * |        |      | sent ends   (S) u32 token offsets within the document   |
 * |        |      | mentions    (M) {u32 start, u32 end, i32 entity} within |
 * |        |      |             the document, ordered by start              |
 *
 * The building memory is the small arrays (about 36 bytes per document,
 * 4 per sentence, 12 per mention, T/8 for word starts); tokens stream to the
 * file. */
#define _GNU_SOURCE /* O_DIRECTORY */
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sysexits.h>
#include <unistd.h>

#include "sampler/internal.h"
#include "util/util.h"

#define SNAP_MAGIC "KILNSNAP"
#define SNAP_VERSION 1
#define SNAP_HEADER 256

/* Growable array of fixed-size items. */
typedef struct vec { void *p; size_t n, cap, item; } vec;
static void vec_push(vec *v, const void *x)
{
    if (v->n == v->cap) {
        v->cap = v->cap ? v->cap * 2 : 1024;
        v->p = xrealloc(v->p, v->cap * v->item);
    }
    memcpy((char *)v->p + v->n * v->item, x, v->item);
    v->n++;
}

typedef struct build_ctx {
    FILE *f;
    const char *path;
    int width;
    uint32_t vocab_size;
    vec doc_ids, doc_hash, tok_off, sent_off, sent_ends;
    uint8_t *ws;              /* word-start bits, (ws_cap) bytes */
    size_t ws_cap;
    uint64_t tokens;
    khash_stream *h;
    char *err;
    size_t errlen;
    int rc;
    uint8_t *tmp;             /* conversion buffer */
    size_t tmp_cap;
} build_ctx;

static int put_doc(const ktokens_row *r, const uint8_t *hash, void *vctx)
{
    build_ctx *c = vctx;
    size_t n = r->n_tokens;
    if (c->tmp_cap < n * 4) {
        c->tmp_cap = n * 4 + 4096;
        c->tmp = xrealloc(c->tmp, c->tmp_cap);
    }
    /* ids in the snapshot's width, checked against the vocabulary */
    for (size_t i = 0; i < n; i++) {
        uint32_t id = r->layout == KTOK_LAYOUT_U16 ? ((const uint16_t *)r->tokens)[i]
                                                   : ((const uint32_t *)r->tokens)[i];
        if (id >= c->vocab_size) {
            snprintf(c->err, c->errlen, "document %lld: token id %u is outside the vocabulary (%u)",
                     (long long)r->doc_id, id, c->vocab_size);
            c->rc = EX_DATAERR;
            return 1;
        }
        if (c->width == 2) ((uint16_t *)c->tmp)[i] = (uint16_t)id;
        else ((uint32_t *)c->tmp)[i] = id;
    }
    if (n && fwrite(c->tmp, (size_t)c->width, n, c->f) != n) {
        snprintf(c->err, c->errlen, "%s: %s", c->path, strerror(errno));
        c->rc = EX_IOERR;
        return 1;
    }
    khash_stream_update(c->h, c->tmp, n * (size_t)c->width);
    /* word starts at global bit offsets */
    uint64_t need = (c->tokens + n + 7) / 8 + 8;
    if (need > c->ws_cap) {
        size_t cap = c->ws_cap ? c->ws_cap : 4096;
        while (cap < need) cap *= 2;
        c->ws = xrealloc(c->ws, cap);
        memset(c->ws + c->ws_cap, 0, cap - c->ws_cap);
        c->ws_cap = cap;
    }
    for (size_t i = 0; i < n; i++)
        if (r->word_starts[i >> 3] >> (i & 7) & 1) {
            uint64_t g = c->tokens + i;
            c->ws[g >> 3] |= (uint8_t)(1u << (g & 7));
        }
    uint64_t h64;
    memcpy(&h64, hash, 8);
    vec_push(&c->doc_ids, &r->doc_id);
    vec_push(&c->doc_hash, &h64);
    uint64_t so = c->sent_ends.n;
    vec_push(&c->sent_off, &so);
    uint64_t to = c->tokens;
    vec_push(&c->tok_off, &to);
    for (size_t i = 0; i < r->n_sentences; i++) {
        uint32_t e = r->sent_ends[i];
        if (e == 0 || (i && e == r->sent_ends[i - 1])) continue;   /* empty sentence */
        vec_push(&c->sent_ends, &e);
    }
    /* a document whose last sentence end is short of its tokens: close it */
    if (n && (c->sent_ends.n == so || ((uint32_t *)c->sent_ends.p)[c->sent_ends.n - 1] != n)) {
        uint32_t e = (uint32_t)n;
        vec_push(&c->sent_ends, &e);
    }
    c->tokens += n;
    return 0;
}

typedef ksnap_mention ment;

typedef struct ment_ctx {
    build_ctx *b;
    vec ments, ment_off;
    size_t doc;               /* index of the document being filled */
} ment_ctx;

static int put_mention(int64_t doc, int64_t start, int64_t end, int64_t entity, void *vctx)
{
    ment_ctx *m = vctx;
    build_ctx *b = m->b;
    const int64_t *ids = b->doc_ids.p;
    while (m->doc < b->doc_ids.n && ids[m->doc] < doc) {
        uint64_t o = m->ments.n;
        vec_push(&m->ment_off, &o);
        m->doc++;
    }
    if (m->doc >= b->doc_ids.n || ids[m->doc] != doc) return 0;   /* not in the snapshot */
    const uint64_t *to = b->tok_off.p;
    uint64_t nt = (m->doc + 1 < b->doc_ids.n ? to[m->doc + 1] : b->tokens) - to[m->doc];
    if (start < 0 || end <= start || (uint64_t)end > nt || entity <= 0 || entity > INT32_MAX)
        return 0;                                                  /* stale mention: ignored */
    ment x = {(uint32_t)start, (uint32_t)end, (int32_t)entity};
    vec_push(&m->ments, &x);
    return 0;
}

static int write_section(build_ctx *c, const void *p, size_t bytes, uint64_t *off, int hash)
{
    long pos = ftell(c->f);
    size_t pad = (size_t)((8 - pos % 8) % 8);
    static const uint8_t zeros[8];
    if (pad && fwrite(zeros, 1, pad, c->f) != pad) goto io;
    *off = (uint64_t)(pos + (long)pad);
    if (bytes && fwrite(p, 1, bytes, c->f) != bytes) goto io;
    if (hash) khash_stream_update(c->h, p, bytes);
    return 0;
io:
    snprintf(c->err, c->errlen, "%s: %s", c->path, strerror(errno));
    return EX_IOERR;
}

static void put_u32(uint8_t *p, uint32_t v) { memcpy(p, &v, 4); }
static void put_u64(uint8_t *p, uint64_t v) { memcpy(p, &v, 8); }

int ksnapshot_build(kstore *s, int64_t vocab_id, uint32_t vocab_size, const char *dir,
                    char *path_out, size_t len, char *err, size_t errlen)
{
    int64_t docs, max_id, sum_ids, tokens, nm = 0, sum_ent = 0, sum_start = 0;
    int rc = kstore_tokens_summary(s, vocab_id, &docs, &max_id, &sum_ids, &tokens);
    if (!rc) rc = kstore_kg_mentions_summary(s, vocab_id, &nm, &sum_ent, &sum_start);
    if (rc) {
        snprintf(err, errlen, "%s", kstore_errmsg(s));
        return rc;
    }
    if (docs == 0) {
        snprintf(err, errlen, "no tokenized documents under this vocabulary: run kiln tokenize first");
        return EX_DATAERR;
    }
    int64_t summary[8] = {vocab_id, docs, max_id, sum_ids, tokens, nm, sum_ent, sum_start};
    uint8_t sh[KHASH_LEN];
    khash128(summary, sizeof summary, sh);
    char hex[2 * KHASH_LEN + 1];
    khash_hex(sh, hex);
    if (mkdir(dir, 0755) && errno != EEXIST) {
        snprintf(err, errlen, "%s: %s", dir, strerror(errno));
        return EX_CANTCREAT;
    }
    int n = snprintf(path_out, len, "%s/snap-%lld-%.16s.ksnap", dir, (long long)vocab_id, hex);
    if (n < 0 || (size_t)n >= len) {
        snprintf(err, errlen, "%s: path too long", dir);
        return EX_SOFTWARE;
    }
    struct stat stt;
    if (stat(path_out, &stt) == 0) {
        ksnapshot *sn = ksnapshot_open(path_out, err, errlen);
        if (sn) {   /* a complete file with this summary: reuse */
            ksnapshot_close(sn);
            return 0;
        }
        kwarn("%s: %s; making it again", path_out, err);
    }

    kbuf tmp = {0};
    static _Atomic unsigned long seq;   /* unique per build in this process (several threads may build) */
    kbuf_printf(&tmp, "%s.tmp.%ld.%lu", path_out, (long)getpid(), (unsigned long)atomic_fetch_add(&seq, 1));
    build_ctx c = {.path = tmp.data, .vocab_size = vocab_size, .err = err, .errlen = errlen,
                   .width = vocab_size > 65536 ? 4 : 2};
    c.doc_ids.item = c.doc_hash.item = c.tok_off.item = c.sent_off.item = 8;
    c.sent_ends.item = 4;
    ment_ctx m = {.b = &c};
    m.ments.item = sizeof(ment);
    m.ment_off.item = 8;
    c.f = fopen(tmp.data, "wb");
    if (!c.f) {
        snprintf(err, errlen, "%s: %s", tmp.data, strerror(errno));
        kbuf_free(&tmp);
        return EX_CANTCREAT;
    }
    c.h = khash_stream_new();
    uint64_t zero = 0;
    vec_push(&m.ment_off, &zero);
    uint8_t header[SNAP_HEADER] = {0};
    rc = fwrite(header, 1, SNAP_HEADER, c.f) == SNAP_HEADER ? 0 : EX_IOERR;
    if (rc) snprintf(err, errlen, "%s: %s", tmp.data, strerror(errno));
    if (!rc) {
        rc = kstore_snapshot_docs_foreach(s, vocab_id, max_id, put_doc, &c);
        if (rc) snprintf(err, errlen, "%s", kstore_errmsg(s));
        else rc = c.rc;
    }
    if (!rc) {
        rc = kstore_kg_mentions_foreach(s, vocab_id, max_id, put_mention, &m);
        if (rc) snprintf(err, errlen, "%s", kstore_errmsg(s));
    }
    uint64_t off[9] = {SNAP_HEADER};
    if (!rc) {
        /* close the offset tables */
        while (m.ment_off.n <= c.doc_ids.n) {
            uint64_t o = m.ments.n;
            vec_push(&m.ment_off, &o);
        }
        uint64_t o = c.tokens;
        vec_push(&c.tok_off, &o);
        o = c.sent_ends.n;
        vec_push(&c.sent_off, &o);
        uint64_t D = c.doc_ids.n;
        rc = write_section(&c, c.ws, (c.tokens + 7) / 8, &off[1], 1);
        if (!rc) rc = write_section(&c, c.doc_ids.p, D * 8, &off[2], 1);
        if (!rc) rc = write_section(&c, c.doc_hash.p, D * 8, &off[3], 1);
        if (!rc) rc = write_section(&c, c.tok_off.p, (D + 1) * 8, &off[4], 1);
        if (!rc) rc = write_section(&c, c.sent_off.p, (D + 1) * 8, &off[5], 1);
        if (!rc) rc = write_section(&c, m.ment_off.p, (D + 1) * 8, &off[6], 1);
        if (!rc) rc = write_section(&c, c.sent_ends.p, c.sent_ends.n * 4, &off[7], 1);
        if (!rc) rc = write_section(&c, m.ments.p, m.ments.n * sizeof(ment), &off[8], 1);
    }
    if (!rc) {
        uint64_t fsize = (uint64_t)ftell(c.f);
        uint8_t key[KHASH_LEN];
        khash_stream_final(c.h, key);
        memcpy(header, SNAP_MAGIC, 8);
        put_u32(header + 8, SNAP_VERSION);
        put_u32(header + 12, (uint32_t)c.width);
        put_u64(header + 16, (uint64_t)vocab_id);
        put_u64(header + 24, (uint64_t)max_id);
        put_u64(header + 32, c.doc_ids.n);
        put_u64(header + 40, c.sent_ends.n);
        put_u64(header + 48, c.tokens);
        put_u64(header + 56, m.ments.n);
        put_u32(header + 64, vocab_size);
        memcpy(header + 72, key, KHASH_LEN);
        put_u64(header + 88, fsize);
        for (int i = 0; i < 8; i++) put_u64(header + 96 + 8 * i, off[i]);
        put_u64(header + 160, off[8]);
        if (fseek(c.f, 0, SEEK_SET) || fwrite(header, 1, SNAP_HEADER, c.f) != SNAP_HEADER ||
            fflush(c.f) || fsync(fileno(c.f))) {
            snprintf(err, errlen, "%s: %s", tmp.data, strerror(errno));
            rc = EX_IOERR;
        }
    }
    if (fclose(c.f) && !rc) {
        snprintf(err, errlen, "%s: %s", tmp.data, strerror(errno));
        rc = EX_IOERR;
    }
    if (!rc && rename(tmp.data, path_out)) {
        snprintf(err, errlen, "%s: %s", path_out, strerror(errno));
        rc = EX_CANTCREAT;
    }
    if (!rc) {
        int dfd = open(dir, O_RDONLY | O_DIRECTORY);
        if (dfd >= 0) {
            fsync(dfd);
            close(dfd);
        }
    } else {
        unlink(tmp.data);
    }
    khash_stream_free(c.h);
    free(c.doc_ids.p), free(c.doc_hash.p), free(c.tok_off.p), free(c.sent_off.p);
    free(c.sent_ends.p), free(c.ws), free(c.tmp), free(m.ments.p), free(m.ment_off.p);
    kbuf_free(&tmp);
    return rc;
}

/* ---- reading -------------------------------------------------------------- */

static uint64_t get_u64(const uint8_t *p) { uint64_t v; memcpy(&v, p, 8); return v; }
static uint32_t get_u32(const uint8_t *p) { uint32_t v; memcpy(&v, p, 4); return v; }

ksnapshot *ksnapshot_open(const char *path, char *err, size_t errlen)
{
    int fd = open(path, O_RDONLY);
    if (fd < 0) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return NULL;
    }
    struct stat st;
    if (fstat(fd, &st) || st.st_size < SNAP_HEADER) {
        snprintf(err, errlen, "%s: not a kiln snapshot (too short)", path);
        close(fd);
        return NULL;
    }
    void *map = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_SHARED, fd, 0);
    close(fd);
    if (map == MAP_FAILED) {
        snprintf(err, errlen, "%s: mmap: %s", path, strerror(errno));
        return NULL;
    }
    const uint8_t *h = map;
    ksnapshot *sn = xcalloc(1, sizeof *sn);
    sn->map = map;
    sn->size = (size_t)st.st_size;
    const char *why = NULL;
    if (memcmp(h, SNAP_MAGIC, 8)) why = "not a kiln snapshot (bad magic)";
    else if (get_u32(h + 8) != SNAP_VERSION) why = "unsupported snapshot version";
    else if (get_u64(h + 88) != (uint64_t)st.st_size) why = "truncated or padded (size differs from the header)";
    if (!why) {
        sn->width = (int)get_u32(h + 12);
        sn->vocab_id = (int64_t)get_u64(h + 16);
        sn->max_doc_id = (int64_t)get_u64(h + 24);
        sn->D = get_u64(h + 32);
        sn->S = get_u64(h + 40);
        sn->T = get_u64(h + 48);
        sn->M = get_u64(h + 56);
        sn->vocab_size = get_u32(h + 64);
        memcpy(sn->key, h + 72, 16);
        uint64_t off[9];
        for (int i = 0; i < 8; i++) off[i] = get_u64(h + 96 + 8 * i);
        off[8] = get_u64(h + 160);
        /* every section inside the file, in order, sized by the counts */
        const uint64_t lim = (uint64_t)1 << 40;
        uint64_t size[9];
        if ((sn->width != 2 && sn->width != 4) || sn->D > lim || sn->S > lim || sn->T > lim ||
            sn->M > lim || sn->D == 0)
            why = "bad counts in the header";
        else {
            size[0] = sn->T * (uint64_t)sn->width;
            size[1] = (sn->T + 7) / 8;
            size[2] = size[3] = sn->D * 8;
            size[4] = size[5] = size[6] = (sn->D + 1) * 8;
            size[7] = sn->S * 4;
            size[8] = sn->M * sizeof(ment);
            uint64_t end = SNAP_HEADER;
            for (int i = 0; i < 9 && !why; i++) {
                if (off[i] < end || off[i] % 8 || off[i] > sn->size || size[i] > sn->size - off[i])
                    why = "section table out of bounds";
                end = off[i] + size[i];
            }
        }
        if (!why) {
            const uint8_t *b = map;
            sn->tokens = b + off[0];
            sn->word_starts = b + off[1];
            sn->doc_ids = (const int64_t *)(b + off[2]);
            sn->doc_hash = (const uint64_t *)(b + off[3]);
            sn->tok_off = (const uint64_t *)(b + off[4]);
            sn->sent_off = (const uint64_t *)(b + off[5]);
            sn->ment_off = (const uint64_t *)(b + off[6]);
            sn->sent_ends = (const uint32_t *)(b + off[7]);
            sn->ments = (const ksnap_mention *)(b + off[8]);
            /* offsets monotone and closed; sentence ends inside their document */
            if (sn->tok_off[0] || sn->sent_off[0] || sn->ment_off[0] || sn->tok_off[sn->D] != sn->T ||
                sn->sent_off[sn->D] != sn->S || sn->ment_off[sn->D] != sn->M)
                why = "offset tables do not close";
            for (uint64_t d = 0; d < sn->D && !why; d++) {
                if (sn->tok_off[d + 1] < sn->tok_off[d] || sn->sent_off[d + 1] < sn->sent_off[d] ||
                    sn->ment_off[d + 1] < sn->ment_off[d] || (d && sn->doc_ids[d] <= sn->doc_ids[d - 1])) {
                    why = "offset tables are not monotone";
                    break;
                }
                uint64_t nt = sn->tok_off[d + 1] - sn->tok_off[d];
                uint32_t prev = 0;
                for (uint64_t k = sn->sent_off[d]; k < sn->sent_off[d + 1]; k++) {
                    if (sn->sent_ends[k] <= prev || sn->sent_ends[k] > nt) { why = "bad sentence ends"; break; }
                    prev = sn->sent_ends[k];
                }
                if (!why && nt && prev != nt) why = "sentence ends do not cover a document";
                for (uint64_t k = sn->ment_off[d]; k < sn->ment_off[d + 1] && !why; k++)
                    if (sn->ments[k].start >= sn->ments[k].end || sn->ments[k].end > nt)
                        why = "bad mention span";
            }
        }
    }
    if (why) {
        snprintf(err, errlen, "%s: %s", path, why);
        ksnapshot_close(sn);
        return NULL;
    }
    return sn;
}

void ksnapshot_close(ksnapshot *sn)
{
    if (!sn) return;
    if (sn->map) munmap(sn->map, sn->size);
    free(sn);
}

void ksnapshot_get_info(const ksnapshot *sn, ksnapshot_info *info)
{
    memset(info, 0, sizeof *info);
    info->vocab_id = sn->vocab_id;
    info->max_doc_id = sn->max_doc_id;
    info->docs = sn->D;
    info->sentences = sn->S;
    info->tokens = sn->T;
    info->mentions = sn->M;
    info->vocab_size = sn->vocab_size;
    memcpy(info->key, sn->key, 16);
    khash_hex(sn->key, info->key_hex);
}

void ksnapshot_token_counts(const ksnapshot *sn, uint64_t *counts)
{
    for (uint64_t g = 0; g < sn->T; g++) counts[ksnap_token(sn, g)]++;
}
