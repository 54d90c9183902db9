/* tests/mpi/stats_cmp.c: compare two alloy statistics files (HDF5). Exit 0 when the
 * counts are equal and every entry of S agrees to a relative `tol` (of the largest
 * |S| entry), printing the largest difference; 1 otherwise. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "../../edit/stats.h"

int main(int argc, char **argv)
{
    if (argc != 4) { fprintf(stderr, "usage: stats_cmp A.h5 B.h5 TOL\n"); return 2; }
    al_stats *a = NULL, *b = NULL;
    al_error e;
    if (al_stats_load(argv[1], &a, &e) != AL_OK || al_stats_load(argv[2], &b, &e) != AL_OK) {
        fprintf(stderr, "%s\n", e.msg);
        return 2;
    }
    int rc = 0;
    if (a->m != b->m || a->count != b->count) {
        fprintf(stderr, "m %d vs %d, count %lld vs %lld\n", a->m, b->m, (long long)a->count, (long long)b->count);
        rc = 1;
    } else {
        double big = 0, diff = 0;
        size_t n = (size_t)a->m * (size_t)a->m, same = 0;
        for (size_t i = 0; i < n; i++) {
            if (fabs(a->sum[i]) > big) big = fabs(a->sum[i]);
            double d = fabs(a->sum[i] - b->sum[i]);
            if (d > diff) diff = d;
            same += a->sum[i] == b->sum[i];
        }
        double rel = big > 0 ? diff / big : diff;
        printf("count %lld, m %d: max |dS| / max |S| = %.3g, %zu of %zu entries bit-identical\n",
               (long long)a->count, a->m, rel, same, n);
        rc = rel <= atof(argv[3]) ? 0 : 1;
    }
    al_stats_free(a);
    al_stats_free(b);
    return rc;
}
