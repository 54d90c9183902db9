/* io/bt_list.c: the growable tensor list that format backends fill (io/backend.h). */
#include "backend.h"

#include "../core/alloc.h"

al_status al_bt_push(al_bt_list *l, const al_bt_tensor *t, al_error *err)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 64;
        al_bt_tensor *v = al_realloc(l->v, cap * sizeof *v);
        if (!v) return al_errorf(err, AL_ERR_NOMEM, "out of memory growing the tensor list (%zu entries)", cap);
        l->v = v;
        l->cap = cap;
    }
    l->v[l->n++] = *t;
    return AL_OK;
}

al_status al_bt_meta_push(al_bt_list *l, const char *key, const char *val, al_error *err)
{
    if (l->nmeta == l->capmeta) {
        size_t cap = l->capmeta ? l->capmeta * 2 : 8;
        char **k = al_realloc(l->meta_keys, cap * sizeof *k);
        if (!k) return al_errorf(err, AL_ERR_NOMEM, "out of memory for metadata");
        l->meta_keys = k;
        char **v = al_realloc(l->meta_vals, cap * sizeof *v);
        if (!v) return al_errorf(err, AL_ERR_NOMEM, "out of memory for metadata");
        l->meta_vals = v;
        l->capmeta = cap;
    }
    char *kk = al_strdup(key), *vv = al_strdup(val);
    if (!kk || !vv) {
        al_free(kk);
        al_free(vv);
        return al_errorf(err, AL_ERR_NOMEM, "out of memory for metadata");
    }
    l->meta_keys[l->nmeta] = kk;
    l->meta_vals[l->nmeta] = vv;
    l->nmeta++;
    return AL_OK;
}

void al_bt_list_free(al_bt_list *l)
{
    if (!l) return;
    for (size_t i = 0; i < l->n; i++) {
        al_free(l->v[i].name);
        al_free(l->v[i].locator);
    }
    for (size_t i = 0; i < l->nmeta; i++) {
        al_free(l->meta_keys[i]);
        al_free(l->meta_vals[i]);
    }
    al_free(l->v);
    al_free(l->meta_keys);
    al_free(l->meta_vals);
    *l = (al_bt_list){0};
}
