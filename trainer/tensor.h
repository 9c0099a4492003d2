/* trainer/tensor.h: named views into flat float arenas; one entry of the
 * parameter registry (trainer/registry.h).
 *
 * A model keeps its parameters in ONE float arena, its gradients in a second
 * one of the same size and layout, and the optimizer keeps each of its moment
 * vectors (m, v) in one more, again with the same layout. A ktensor names a
 * slice of such an arena: the same ktensor list therefore addresses the
 * parameter, its gradient and its moments (arena + offset). Checkpoints and
 * exports walk the list and write each slice under its name.
 *
 * Names are the Hugging Face state_dict names of the exported architecture
 * (../../shared/reference/export-formats.md), e.g.
 * "albert.embeddings.word_embeddings.weight". Shapes are row-major; linear
 * weights are [out, in] like torch.nn.Linear. Tied weights (the MLM decoder
 * and the word embeddings) exist once. The list is in state_dict order; the
 * offsets need not be increasing in that order (the model packs some tensors
 * together, e.g. query/key/value, so one matrix product serves all three).
 * Slices do not overlap; the arena may hold zero padding between them. */
#ifndef KILN_TRAINER_TENSOR_H
#define KILN_TRAINER_TENSOR_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define KTENSOR_NAME_MAX 160
#define KTENSOR_MAX_DIMS 4

typedef struct ktensor {
    char name[KTENSOR_NAME_MAX]; /* Hugging Face name, NUL-terminated */
    int ndim;                    /* 1..KTENSOR_MAX_DIMS */
    int64_t shape[KTENSOR_MAX_DIMS];
    size_t offset, numel;        /* in floats, into the arena */
    int decay;                   /* 1: weight decay applies; 0: LayerNorm weights/biases, all biases */
    int frozen;                  /* 1: the optimizer neither updates nor decays it (no moments change) */
    int init;                    /* KINIT_*: how kmodel_init fills it */
    int transpose;               /* 1: exported transposed (Conv1D layouts, GPT-2); 0 for BERT/ALBERT */
} ktensor;

/* KINIT_NORMAL_RESID: normal with std initializer_range / sqrt(2 num_hidden_layers),
 * GPT-2's residual projections (attn.c_proj, mlp.c_proj) */
enum { KINIT_NORMAL = 0, KINIT_ONE = 1, KINIT_ZERO = 2, KINIT_NORMAL_RESID = 3 };

/* Index of the tensor called name in t (n entries), -1 if absent. */
static inline int ktensor_find(const ktensor *t, int n, const char *name)
{
    for (int i = 0; i < n; i++)
        if (strcmp(t[i].name, name) == 0) return i;
    return -1;
}

#endif
