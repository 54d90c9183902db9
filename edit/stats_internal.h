/* edit/stats_internal.h: shared between edit/stats.c and edit/stats_npz.c (not installed). */
#ifndef AL_STATS_INTERNAL_H
#define AL_STATS_INTERNAL_H

#include "stats.h"

/* A zeroed al_stats with an m x m sum (m may be 0: no sum yet) and every provenance
 * string set to "" ; NULL when out of memory. */
al_stats *al_stats_alloc(int m);
/* Replace *dst with a copy of src (NULL -> ""); false when out of memory. */
bool al_stats_set_str(char **dst, const char *src);

#endif
