/* tests/util/testutil.c: see testutil.h. */
#include "testutil.h"

#ifdef _OPENMP
#include <omp.h>
#endif

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "../../core/alloc.h"

float *tu_read_f32(al_ckpt *c, const char *name, int64_t *numel)
{
    long i = al_ckpt_find(c, name);
    if (i < 0) fail_msg("tensor %s missing", name);
    const al_tensor_info *ti = al_ckpt_info(c, (size_t)i);
    int64_t n = 1;
    for (int d = 0; d < ti->ndim; d++) n *= ti->shape[d];
    float *p = al_malloc((size_t)(n ? n : 1) * sizeof(float));
    assert_non_null(p);
    al_error e = {0};
    if (al_ckpt_read(c, (size_t)i, 0, ti->ndim ? ti->shape[0] : 1, p, AL_F32, &e) != AL_OK) fail_msg("%s", e.msg);
    if (numel) *numel = n;
    return p;
}

int tu_rm_rf(const char *dir)
{
    al_remove_tree(dir);
    return 0;
}

void tu_set_threads(int t)
{
#ifdef _OPENMP
    omp_set_num_threads(t);
#else
    (void)t;
#endif
}
