/* trainer/optim.h: AdamW and LAMB over a model's parameter arena, with a
 * warmup + decay learning-rate schedule and global gradient-norm clipping
 * (trainer/optim.c). Pure computation: no I/O.
 *
 * The moments m and v are two more arenas with the parameters' layout: the
 * ktensor list names their slices too (a checkpoint writes them by name).
 *
 * Update number `step` (1 for the first update), with g the gradient after
 * clipping, lr_t = kopt_lr(config, step, total_steps), b1, b2, eps, wd from
 * the config, bc1 = 1 - b1^step, bc2 = 1 - b2^step:
 *   both:  m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2
 *   AdamW (torch.optim.AdamW):
 *          w = w (1 - lr_t wd)      [tensors with decay = 1 only]
 *          w = w - (lr_t / bc1) m / (sqrt(v) / sqrt(bc2) + eps)
 *   LAMB (You et al. 2019, Algorithm 2; NVIDIA's FusedLAMB):
 *          u = (m / bc1) / (sqrt(v / bc2) + eps) + wd w   [wd term: decay = 1 only]
 *          r = ||w|| / ||u|| per tensor (1 when either norm is 0, and 1 for
 *              tensors with decay = 0: LayerNorm and biases get neither decay
 *              nor layer adaptation, as in ALBERT's and NVIDIA's code)
 *          w = w - lr_t r u
 *   (Google's ALBERT LAMB omits the bias corrections; with the trust ratio
 *   the difference is confined to eps and the first few hundred steps.)
 * Clipping (torch.nn.utils.clip_grad_norm_): n = global L2 norm of all
 * gradients; when clip_norm > 0, g = g * min(1, clip_norm / (n + 1e-6)).
 * The gradient arena itself is left as it is.
 *
 * Determinism: element-wise work, and norms summed per fixed chunk of each
 * tensor in double then in chunk order: the same bits for any thread count.  * Tensors with frozen = 1 (the registry's flag) are skipped whole: no
 * update, no decay, no moments, and their gradients do not count in the norm.
 */
#ifndef KILN_TRAINER_OPTIM_H
#define KILN_TRAINER_OPTIM_H

#include <stddef.h>
#include <stdint.h>

#include "trainer/config.h"
#include "trainer/tensor.h"

typedef struct kopt kopt;

/* An optimizer for the n tensors t of the arenas params and grads (numel
 * floats each; both stay the caller's and must outlive the optimizer).
 * The moments start at zero. Returns NULL with err filled on a bad config
 * (which field) or out of memory; free with kopt_free. */
kopt *kopt_new(const kopt_config *c, const ktensor *t, int n, float *params, float *grads, size_t numel,
               char *err, size_t errlen);
void kopt_free(kopt *o);

/* Data parallel, the update split over ranks: rank r updates the pieces
 * (runs of at most 32768 floats of one tensor) that start
 * in its arena range [lo, hi), then the ranks exchange parameters.
 * kopt_split_at is the first arena offset at or past `want` where a range
 * may begin: the start of any piece for AdamW (element-wise), of a tensor's
 * first piece for LAMB (its trust ratio needs the whole tensor); numel when
 * there is none. Ranges must begin and end at such offsets (or 0 / numel).
 * kopt_grad_sumsq_range is the sum of squares of the gradients of those
 * pieces (frozen tensors have none; per piece as kopt_grad_norm, then over
 * the pieces in arena order); kopt_step_range applies kopt_step's update to them only,
 * with the gradient norm gn over all tensors (the square root of the ranks'
 * sums). Returns 0; EX_DATAERR when gn is not finite; EX_SOFTWARE when a
 * LAMB range cuts a tensor (nothing changed in either case). Moments outside
 * the range are not touched. Tensors may lie in the arena in any order
 * (not overlapping). */
size_t kopt_split_at(const kopt *o, size_t want);
double kopt_grad_sumsq_range(const kopt *o, size_t lo, size_t hi);
int kopt_step_range(kopt *o, int64_t step, int64_t total_steps, double gn, size_t lo, size_t hi, double *lr_out);

/* The moment arenas (numel floats, parameter layout), to save or restore. */
float *kopt_m(kopt *o);
float *kopt_v(kopt *o);

/* Learning rate of update `step` (1-based) of total_steps: linear warmup
 * lr step / warmup_steps for step <= warmup_steps, then by schedule:
 * constant lr; linear from lr down to min_lr_ratio lr at total_steps; cosine
 * lr (r + (1 - r) (1 + cos(pi t)) / 2), r = min_lr_ratio, t = progress in
 * [0, 1] after the warmup. total_steps <= warmup_steps (or <= 0: unknown)
 * means no decay. */
double kopt_lr(const kopt_config *c, int64_t step, int64_t total_steps);

/* Global L2 norm of the gradients (double, fixed order). */
double kopt_grad_norm(const kopt *o);

/* Applies update number `step` (>= 1) from the current gradients. *lr and
 * *grad_norm (either may be NULL) receive the learning rate used and the
 * gradient norm before clipping. Returns 0, or EX_DATAERR when the gradient
 * norm is not finite: then nothing is updated (the step is skipped). */
int kopt_step(kopt *o, int64_t step, int64_t total_steps, double *lr, double *grad_norm);

#endif
