/* blas_check.c: which OpenBLAS build the process has loaded (util.h,
 * kblas_build). The library is chosen at run time (Debian's
 * update-alternatives swaps libopenblas.so.0 between the OpenMP, pthreads
 * and sequential builds), so the binary cannot know it at compile time.
 * Only the symbols below are used; the executable that calls kblas_build
 * links OpenBLAS (kiln_trainer does). */
#include <stdio.h>
#include <string.h>

#include "util/util.h"

int openblas_get_parallel(void); /* 0 sequential, 1 pthreads, 2 OpenMP */
char *openblas_get_config(void);

int kblas_build(char *desc, size_t n)
{
    const char *cfg = openblas_get_config();
    if (desc && n) snprintf(desc, n, "%s", cfg ? cfg : "OpenBLAS (no configuration string)");
    switch (openblas_get_parallel()) {
    case 0: return KBLAS_SEQUENTIAL;
    case 1: return KBLAS_PTHREADS;
    case 2: return KBLAS_OPENMP;
    default: return KBLAS_UNKNOWN;
    }
}
