/* sampler/internal.h: the snapshot handle's fields, shared by snapshot.c
 * and sampler.c only. */
#ifndef KILN_SAMPLER_INTERNAL_H
#define KILN_SAMPLER_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "sampler/sampler.h"

typedef struct ksnap_mention { uint32_t start, end; int32_t entity; } ksnap_mention;

struct ksnapshot {
    void *map;                  /* the whole file, read-only */
    size_t size;
    int width;                  /* 2 or 4 bytes per token id */
    int64_t vocab_id, max_doc_id;
    uint64_t D, S, T, M;        /* documents, sentences, tokens, mentions */
    uint32_t vocab_size;
    uint8_t key[16];
    const void *tokens;         /* (T) u16 or u32 */
    const uint8_t *word_starts; /* ceil(T/8) bits */
    const int64_t *doc_ids;     /* (D) */
    const uint64_t *doc_hash;   /* (D) */
    const uint64_t *tok_off;    /* (D+1) */
    const uint64_t *sent_off;   /* (D+1) */
    const uint64_t *ment_off;   /* (D+1) */
    const uint32_t *sent_ends;  /* (S) within each document */
    const ksnap_mention *ments; /* (M) within each document */
};

static inline uint32_t ksnap_token(const struct ksnapshot *sn, uint64_t g)
{
    return sn->width == 2 ? ((const uint16_t *)sn->tokens)[g] : ((const uint32_t *)sn->tokens)[g];
}
static inline int ksnap_word_start(const struct ksnapshot *sn, uint64_t g)
{
    return sn->word_starts[g >> 3] >> (g & 7) & 1;
}

#endif
