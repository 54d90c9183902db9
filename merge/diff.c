/* merge/diff.c: tensor and block statistics between checkpoints, and their SVG chart. */
#include "diff.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/alloc.h"
#include "../io/checkpoint.h"
#include "../io/names.h"

#define DIFF_CHUNK ((int64_t)1 << 20)

double al_diff_l2(const al_diff_sums *s, int i) { return s->n ? sqrt(s->dd[i]) : NAN; }

double al_diff_rel(const al_diff_sums *s, int i)
{
    return s->rr > 0 ? sqrt(s->dd[i]) / sqrt(s->rr) : NAN;
}

double al_diff_cos(const al_diff_sums *s, int i)
{
    return s->rr > 0 && s->mm[i] > 0 ? s->rm[i] / (sqrt(s->rr) * sqrt(s->mm[i])) : NAN;
}

double al_diff_conflict_rate(const al_diff_sums *s)
{
    return s->n ? (double)s->conflicts / (double)s->n : NAN;
}

static void sums_add(al_diff_sums *a, const al_diff_sums *b, int n)
{
    for (int i = 0; i < n; i++) { a->dd[i] += b->dd[i]; a->mm[i] += b->mm[i]; a->rm[i] += b->rm[i]; }
    a->rr += b->rr;
    a->n += b->n;
    a->conflicts += b->conflicts;
}

void al_diff_free(al_diff *d)
{
    if (!d) return;
    for (size_t i = 0; i < d->n_tensors; i++) al_free(d->t[i].name);
    for (int i = 0; i < d->n_models; i++) al_free(d->models[i]);
    al_free(d->t);
    al_free(d->b);
    al_free(d->ref);
    al_free(d);
}

/* Block slot for a tensor: pre first, then stack 0 and stack 1 blocks, post last. */
static al_status block_of(al_diff *d, const al_layer_info *li, al_diff_block **out, al_error *err)
{
    char label[32];
    if (li->kind == AL_LAYER_PRE) snprintf(label, sizeof label, "pre");
    else if (li->kind == AL_LAYER_POST) snprintf(label, sizeof label, "post");
    else snprintf(label, sizeof label, "%s%ld", li->stack ? "dec." : "", li->index);
    for (size_t i = 0; i < d->n_blocks; i++)
        if (strcmp(d->b[i].label, label) == 0) { *out = &d->b[i]; return AL_OK; }
    al_diff_block *nb = al_realloc(d->b, (d->n_blocks + 1) * sizeof *nb);
    if (!nb) return al_errorf(err, AL_ERR_NOMEM, "out of memory");
    d->b = nb;
    memset(&d->b[d->n_blocks], 0, sizeof *d->b);
    snprintf(d->b[d->n_blocks].label, sizeof d->b[d->n_blocks].label, "%s", label);
    *out = &d->b[d->n_blocks++];
    return AL_OK;
}

/* Sort key of a block label: pre, 0.., dec.0.., post. */
static long block_rank(const char *label)
{
    if (strcmp(label, "pre") == 0) return -1;
    if (strcmp(label, "post") == 0) return 1L << 40;
    if (strncmp(label, "dec.", 4) == 0) return (1L << 30) + atol(label + 4);
    return atol(label);
}

static int cmp_block(const void *a, const void *b)
{
    long x = block_rank(((const al_diff_block *)a)->label), y = block_rank(((const al_diff_block *)b)->label);
    return (x > y) - (x < y);
}

al_status al_diff_run(const char *ref, const char *const *models, int n, int task_mode, al_diff **out,
                      al_error *err)
{
    al_status s = AL_OK;
    al_ckpt *rc = NULL, *mc[AL_DIFF_MAX_MODELS] = {0};
    float *rbuf = NULL, *mbuf[AL_DIFF_MAX_MODELS] = {0};
    *out = NULL;
    if (n < 1 || n > AL_DIFF_MAX_MODELS)
        return al_errorf(err, AL_ERR_USAGE, "diff compares 1 to %d models with the reference", AL_DIFF_MAX_MODELS);
    al_diff *d = al_calloc(1, sizeof *d);
    if (!d || !(d->ref = al_strdup(ref))) { al_free(d); return al_errorf(err, AL_ERR_NOMEM, "out of memory"); }
    d->n_models = n;
    d->task_mode = task_mode;
    if ((s = al_ckpt_open(&rc, ref, err)) != AL_OK) goto done;
    for (int i = 0; i < n; i++) {
        if (!(d->models[i] = al_strdup(models[i]))) { s = al_errorf(err, AL_ERR_NOMEM, "out of memory"); goto done; }
        if ((s = al_ckpt_open(&mc[i], models[i], err)) != AL_OK) goto done;
    }
    if (!(d->t = al_calloc(al_ckpt_count(rc) + 1, sizeof *d->t))) { s = al_errorf(err, AL_ERR_NOMEM, "out of memory"); goto done; }
    size_t cap = (size_t)DIFF_CHUNK;
    for (size_t ti = 0; ti < al_ckpt_count(rc); ti++) {
        int64_t rr = al_shape_row_numel(al_ckpt_info(rc, ti)->ndim, al_ckpt_info(rc, ti)->shape);
        if ((size_t)rr > cap) cap = (size_t)rr;
    }
    bool have = (rbuf = al_malloc(cap * 4)) != NULL;
    for (int i = 0; i < n; i++) have = (mbuf[i] = al_malloc(cap * 4)) != NULL && have;
    if (!have) { s = al_errorf(err, AL_ERR_NOMEM, "out of memory"); goto done; }

    for (size_t ti = 0; ti < al_ckpt_count(rc); ti++) {
        const al_tensor_info *t = al_ckpt_info(rc, ti);
        if (t->tied || !al_dtype_is_float(t->dtype)) continue;
        long mi[AL_DIFF_MAX_MODELS];
        bool ok = true;
        for (int i = 0; i < n && ok; i++) {
            mi[i] = al_ckpt_find(mc[i], t->name);
            ok = mi[i] >= 0 && al_shape_equal(al_ckpt_info(mc[i], (size_t)mi[i])->ndim, al_ckpt_info(mc[i], (size_t)mi[i])->shape,
                                              t->ndim, t->shape) && al_dtype_is_float(al_ckpt_info(mc[i], (size_t)mi[i])->dtype);
        }
        if (!ok) {
            if (!d->skipped++) snprintf(d->first_skipped, sizeof d->first_skipped, "%s", t->name);
            continue;
        }
        al_diff_tensor *dt = &d->t[d->n_tensors];
        if (!(dt->name = al_strdup(t->name))) { s = al_errorf(err, AL_ERR_NOMEM, "out of memory"); goto done; }
        d->n_tensors++;
        al_layer_info li;
        al_layer_of(t->name, &li);
        dt->stack = li.stack;
        dt->block = li.index;
        dt->kind = li.kind;
        int64_t rows = t->ndim ? t->shape[0] : 1, rn = al_shape_row_numel(t->ndim, t->shape);
        int64_t step = rn ? (int64_t)(cap / (size_t)rn) : rows;
        if (step < 1) step = 1;
        for (int64_t r = 0; r < rows && rn; r += step) {
            int64_t k = rows - r < step ? rows - r : step;
            if ((s = al_ckpt_read(rc, ti, r, k, rbuf, AL_F32, err)) != AL_OK) goto done;
            for (int i = 0; i < n; i++)
                if ((s = al_ckpt_read(mc[i], (size_t)mi[i], r, k, mbuf[i], AL_F32, err)) != AL_OK) goto done;
            for (int64_t e = 0; e < k * rn; e++) {
                double rv = rbuf[e];
                bool pos = false, neg = false;
                dt->s.rr += rv * rv;
                for (int i = 0; i < n; i++) {
                    double mv = mbuf[i][e], dv = mv - rv;
                    dt->s.dd[i] += dv * dv;
                    dt->s.mm[i] += mv * mv;
                    dt->s.rm[i] += rv * mv;
                    pos |= dv > 0;
                    neg |= dv < 0;
                }
                dt->s.conflicts += pos && neg;
            }
            dt->s.n += k * rn;
        }
        al_diff_block *blk = NULL;
        if ((s = block_of(d, &li, &blk, err)) != AL_OK) goto done;
        sums_add(&blk->s, &dt->s, n);
        sums_add(&d->total, &dt->s, n);
    }
    qsort(d->b, d->n_blocks, sizeof *d->b, cmp_block);
    *out = d;
    d = NULL;
done:
    al_free(rbuf);
    for (int i = 0; i < n; i++) { al_free(mbuf[i]); al_ckpt_close(mc[i]); }
    al_ckpt_close(rc);
    al_diff_free(d);
    return s;
}

/* ---- SVG ------------------------------------------------------------------------ */

static const char *const k_colors[] = {"#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
                                       "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"};

/* A "nice" axis maximum and tick step: 1, 2 or 5 times a power of ten. */
static void nice_axis(double lo, double hi, double *a0, double *a1, double *step)
{
    if (!(hi > lo)) hi = lo + 1.0;
    double raw = (hi - lo) / 5.0, p = pow(10.0, floor(log10(raw))), f = raw / p;
    double st = (f <= 1 ? 1 : f <= 2 ? 2 : f <= 5 ? 5 : 10) * p;
    *step = st;
    *a0 = floor(lo / st) * st;
    *a1 = ceil(hi / st) * st;
}

static void xml_text(FILE *f, const char *s)
{
    for (; *s; s++) {
        if (*s == '<') fputs("&lt;", f);
        else if (*s == '>') fputs("&gt;", f);
        else if (*s == '&') fputs("&amp;", f);
        else fputc(*s, f);
    }
}

/* One panel: axes, grid, tick labels, block labels, and values[b][i] as grouped bars
 * (bars = 1) or dots joined by lines (bars = 0). NaN values are left out. */
static void panel(FILE *f, const al_diff *d, double x0, double y0, double w, double h, const char *title,
                  const char *ylabel, int nser, double (*val)(const al_diff_sums *, int), bool bars, bool from_zero)
{
    double lo = INFINITY, hi = -INFINITY;
    for (size_t b = 0; b < d->n_blocks; b++)
        for (int i = 0; i < nser; i++) {
            double v = val(&d->b[b].s, i);
            if (isnan(v)) continue;
            if (v < lo) lo = v;
            if (v > hi) hi = v;
        }
    if (!isfinite(lo)) { lo = 0; hi = 1; }
    if (from_zero) lo = 0;
    double a0, a1, st;
    nice_axis(lo, hi, &a0, &a1, &st);
    fprintf(f, "<text x='%.1f' y='%.1f' font-size='15' font-weight='bold'>", x0, y0 - 12);
    xml_text(f, title);
    fprintf(f, "</text>\n");
    /* grid and y ticks */
    for (double v = a0; v <= a1 + st * 0.5; v += st) {
        double y = y0 + h - (v - a0) / (a1 - a0) * h;
        fprintf(f, "<line x1='%.1f' y1='%.1f' x2='%.1f' y2='%.1f' stroke='#ddd'/>\n", x0, y, x0 + w, y);
        fprintf(f, "<text x='%.1f' y='%.1f' font-size='11' text-anchor='end'>%.3g</text>\n", x0 - 6, y + 4, v);
    }
    fprintf(f, "<line x1='%.1f' y1='%.1f' x2='%.1f' y2='%.1f' stroke='#333'/>\n", x0, y0, x0, y0 + h);
    fprintf(f, "<line x1='%.1f' y1='%.1f' x2='%.1f' y2='%.1f' stroke='#333'/>\n", x0, y0 + h, x0 + w, y0 + h);
    fprintf(f, "<text transform='translate(%.1f,%.1f) rotate(-90)' font-size='12' text-anchor='middle'>", x0 - 48,
            y0 + h / 2);
    xml_text(f, ylabel);
    fprintf(f, "</text>\n");
    double slot = w / (double)(d->n_blocks ? d->n_blocks : 1);
    size_t every = d->n_blocks > 40 ? (d->n_blocks + 39) / 40 : 1;
    for (size_t b = 0; b < d->n_blocks; b++) {
        double cx = x0 + slot * ((double)b + 0.5);
        if (b % every == 0 || b + 1 == d->n_blocks)
            fprintf(f, "<text x='%.1f' y='%.1f' font-size='10' text-anchor='middle'>%s</text>\n", cx, y0 + h + 14,
                    d->b[b].label);
        for (int i = 0; i < nser; i++) {
            double v = val(&d->b[b].s, i);
            if (isnan(v)) continue;
            double y = y0 + h - (v - a0) / (a1 - a0) * h;
            if (bars) {
                double bw = slot * 0.8 / nser, bx = x0 + slot * (double)b + slot * 0.1 + bw * i;
                fprintf(f, "<rect x='%.2f' y='%.2f' width='%.2f' height='%.2f' fill='%s'><title>%s: %.4g</title></rect>\n",
                        bx, y, bw > 0.5 ? bw - 0.3 : bw, y0 + h - y, k_colors[i % 10], d->b[b].label, v);
            } else {
                fprintf(f, "<circle cx='%.2f' cy='%.2f' r='3' fill='%s'><title>%s: %.6g</title></circle>\n", cx, y,
                        k_colors[i % 10], d->b[b].label, v);
                if (b > 0 && !isnan(val(&d->b[b - 1].s, i))) {
                    double py = y0 + h - (val(&d->b[b - 1].s, i) - a0) / (a1 - a0) * h;
                    fprintf(f, "<line x1='%.2f' y1='%.2f' x2='%.2f' y2='%.2f' stroke='%s'/>\n", cx - slot, py, cx, y,
                            k_colors[i % 10]);
                }
            }
        }
    }
    fprintf(f, "<text x='%.1f' y='%.1f' font-size='12' text-anchor='middle'>block (pre: embeddings, post: final "
               "norm and head)</text>\n", x0 + w / 2, y0 + h + 32);
}

static double conflict_val(const al_diff_sums *s, int i) { (void)i; return al_diff_conflict_rate(s); }

static const char *base_name(const char *p)
{
    size_t n = strlen(p);
    while (n > 1 && p[n - 1] == '/') n--;
    const char *e = p + n;
    const char *b = e;
    while (b > p && b[-1] != '/') b--;
    static char buf[128];
    snprintf(buf, sizeof buf, "%.*s", (int)(e - b), b);
    return buf;
}

al_status al_diff_write_svg(const al_diff *d, const char *path, al_error *err)
{
    FILE *f = fopen(path, "w");
    if (!f) return al_errorf(err, AL_ERR_IO, "%s: cannot create", path);
    const double W = 960, x0 = 80, pw = W - x0 - 200, ph = 220;
    double H = 2 * ph + 215;
    fprintf(f, "<svg xmlns='http://www.w3.org/2000/svg' width='%.0f' height='%.0f' viewBox='0 0 %.0f %.0f' "
               "font-family='sans-serif'>\n<rect width='100%%' height='100%%' fill='white'/>\n", W, H, W, H);
    fprintf(f, "<text x='%.1f' y='24' font-size='17' font-weight='bold'>", x0);
    xml_text(f, d->task_mode ? "Task vectors against the base, per block" : "Difference between two checkpoints, per block");
    fprintf(f, "</text>\n<text x='%.1f' y='42' font-size='12' fill='#555'>reference: ", x0);
    xml_text(f, d->ref);
    fprintf(f, "</text>\n");
    panel(f, d, x0, 80, pw, ph, d->task_mode ? "Relative change ||M - base|| / ||base||" : "Relative change ||B - A|| / ||A||",
          "relative change", d->n_models, al_diff_rel, true, true);
    if (d->task_mode)
        panel(f, d, x0, 80 + ph + 80, pw, ph, "TIES sign conflicts: share of elements whose task vectors disagree in sign",
              "conflict rate", 1, conflict_val, true, true);
    else
        panel(f, d, x0, 80 + ph + 80, pw, ph, "Cosine similarity cos(A, B)", "cosine", d->n_models, al_diff_cos, false, false);
    /* legend */
    double lx = x0 + pw + 24, ly = 90;
    fprintf(f, "<text x='%.1f' y='%.1f' font-size='12' font-weight='bold'>%s</text>\n", lx, ly,
            d->task_mode ? "fine-tuned models" : "compared model");
    for (int i = 0; i < d->n_models; i++) {
        fprintf(f, "<rect x='%.1f' y='%.1f' width='12' height='12' fill='%s'/>\n", lx, ly + 10 + 20 * i, k_colors[i % 10]);
        fprintf(f, "<text x='%.1f' y='%.1f' font-size='12'>", lx + 18, ly + 21 + 20 * i);
        xml_text(f, base_name(d->models[i]));
        fprintf(f, "</text>\n");
    }
    if (d->task_mode) {
        double cy = 80 + ph + 90;
        fprintf(f, "<rect x='%.1f' y='%.1f' width='12' height='12' fill='%s'/>\n", lx, cy, k_colors[0]);
        fprintf(f, "<text x='%.1f' y='%.1f' font-size='12'>all %d task vectors</text>\n", lx + 18, cy + 11, d->n_models);
    }
    fprintf(f, "</svg>\n");
    bool ok = !ferror(f);
    ok = fclose(f) == 0 && ok;
    return ok ? AL_OK : al_errorf(err, AL_ERR_IO, "%s: write failed", path);
}
