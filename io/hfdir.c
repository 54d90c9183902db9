/* io/hfdir.c: config.json and companion files of Hugging Face model directories. */
#include "hfdir.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../core/alloc.h"
#include "../core/file.h"
#include "checkpoint.h"

/* Largest chat_template.jinja read (real templates are a few kB). */
#define AL_HF_MAX_TEMPLATE (16u << 20)

/* Files carried along with the weights (mergekit copies the same set). */
static const char *const k_aux_files[] = {
    "generation_config.json", "tokenizer.json", "tokenizer_config.json",
    "special_tokens_map.json", "tokenizer.model", "vocab.json", "merges.txt",
    "added_tokens.json", "chat_template.jinja", "chat_template.json",
    "preprocessor_config.json",
};

const char *al_dtype_torch_name(al_dtype t)
{
    switch (t) {
    case AL_F32: return "float32";
    case AL_F16: return "float16";
    case AL_BF16: return "bfloat16";
    case AL_F64: return "float64";
    default: return NULL;
    }
}

static char *join(const char *a, const char *b)
{
    size_t na = strlen(a), nb = strlen(b);
    char *p = al_malloc(na + nb + 2);
    if (!p) return NULL;
    memcpy(p, a, na);
    p[na] = '/';
    memcpy(p + na + 1, b, nb + 1);
    return p;
}

/* transformers defaults: PretrainedConfig ties embeddings unless a model's config
 * class overrides it; these families default to separate heads. */
static bool default_tie(const char *model_type)
{
    static const char *const untied[] = {
        "llama", "mistral", "mixtral", "qwen2", "qwen2_moe", "qwen3", "gptj", "gpt_neox",
        "phi", "phi3", "falcon", "olmo", "olmo2", "stablelm", "starcoder2", "cohere",
    };
    for (size_t i = 0; i < sizeof untied / sizeof untied[0]; i++)
        if (strcmp(model_type, untied[i]) == 0) return false;
    return true;
}

al_status al_hf_config_read(const char *dir, al_hf_config *cfg, al_error *err)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->num_hidden_layers = -1;
    char *p = join(dir, "config.json");
    if (!p) return al_errorf(err, AL_ERR_NOMEM, "out of memory");
    struct stat st;
    if (stat(p, &st) != 0) { al_free(p); return AL_OK; }
    json_error_t je;
    json_t *root = json_load_file(p, 0, &je);
    if (!root || !json_is_object(root)) {
        al_status s = root ? al_errorf(err, AL_ERR_FORMAT, "%s: not a JSON object", p)
                           : al_errorf(err, AL_ERR_FORMAT, "%s:%d:%d: invalid JSON: %s", p, je.line, je.column, je.text);
        json_decref(root);
        al_free(p);
        return s;
    }
    cfg->present = true;
    json_t *v = json_object_get(root, "model_type");
    if (json_is_string(v)) snprintf(cfg->model_type, sizeof cfg->model_type, "%s", json_string_value(v));
    v = json_object_get(root, "torch_dtype");
    if (json_is_string(v)) snprintf(cfg->torch_dtype, sizeof cfg->torch_dtype, "%s", json_string_value(v));
    json_t *arch = json_array_get(json_object_get(root, "architectures"), 0);
    if (json_is_string(arch)) {
        const char *a = json_string_value(arch);
        cfg->is_causal_lm = strstr(a, "LMHead") || strstr(a, "ForCausalLM");
    }
    v = json_object_get(root, "tie_word_embeddings");
    cfg->tie_word_embeddings = json_is_boolean(v) ? json_is_true(v) : default_tie(cfg->model_type);
    v = json_object_get(root, "num_hidden_layers");
    if (!json_is_integer(v)) v = json_object_get(root, "n_layer");
    if (json_is_integer(v)) cfg->num_hidden_layers = (long)json_integer_value(v);
    json_decref(root);
    al_free(p);
    return AL_OK;
}

al_status al_copy_file(const char *src, const char *dst, al_error *err)
{
    al_status s = AL_OK;
    char buf[1 << 16];
    int in = open(src, O_RDONLY | O_CLOEXEC), out = -1;
    if (in < 0) return al_errorf(err, AL_ERR_IO, "%s: %s", src, strerror(errno));
    out = open(dst, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (out < 0) { s = al_errorf(err, AL_ERR_IO, "%s: %s", dst, strerror(errno)); goto done; }
    for (;;) {
        ssize_t n = read(in, buf, sizeof buf);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) { s = al_errorf(err, AL_ERR_IO, "%s: read failed: %s", src, strerror(errno)); goto done; }
        if (n == 0) break;
        for (ssize_t o = 0; o < n;) {
            ssize_t w = write(out, buf + o, (size_t)(n - o));
            if (w < 0 && errno == EINTR) continue;
            if (w < 0) { s = al_errorf(err, AL_ERR_IO, "%s: write failed: %s", dst, strerror(errno)); goto done; }
            o += w;
        }
    }
done:
    if (out >= 0 && close(out) != 0 && s == AL_OK)
        s = al_errorf(err, AL_ERR_IO, "%s: close failed: %s", dst, strerror(errno));
    close(in);
    return s;
}

static al_status write_config(const char *src, const char *dst, const char *torch_dtype,
                              long num_layers, long vocab_size, al_error *err)
{
    json_error_t je;
    json_t *root = json_load_file(src, JSON_PRESERVE_ORDER, &je);
    if (!root || !json_is_object(root)) {
        json_decref(root);
        return al_errorf(err, AL_ERR_FORMAT, "%s:%d:%d: invalid JSON: %s", src, je.line, je.column, je.text);
    }
    if (torch_dtype) json_object_set_new(root, "torch_dtype", json_string(torch_dtype));
    if (num_layers >= 0) {
        const char *key = json_object_get(root, "n_layer") ? "n_layer" : "num_hidden_layers";
        json_object_set_new(root, key, json_integer(num_layers));
    }
    if (vocab_size >= 0) json_object_set_new(root, "vocab_size", json_integer(vocab_size));
    int rc = json_dump_file(root, dst, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    json_decref(root);
    if (rc != 0) return al_errorf(err, AL_ERR_IO, "%s: cannot write", dst);
    return AL_OK;
}

/* Copy src_dir/name to dst_dir/name if it exists (config.json is rewritten). */
static al_status copy_one(const char *src_dir, const char *dst_dir, const char *name,
                          const char *torch_dtype, long num_layers, long vocab_size, al_error *err)
{
    struct stat st;
    al_status s = AL_OK;
    char *sp = join(src_dir, name), *dp = join(dst_dir, name);
    if (!sp || !dp) s = al_errorf(err, AL_ERR_NOMEM, "out of memory");
    else if (stat(sp, &st) == 0 && S_ISREG(st.st_mode))
        s = strcmp(name, "config.json") == 0 ? write_config(sp, dp, torch_dtype, num_layers, vocab_size, err)
                                             : al_copy_file(sp, dp, err);
    al_free(sp);
    al_free(dp);
    return s;
}

al_status al_hf_write_config(const char *src_dir, const char *dst_dir, const char *torch_dtype,
                             long num_layers, al_error *err)
{
    return copy_one(src_dir, dst_dir, "config.json", torch_dtype, num_layers, -1, err);
}

al_status al_hf_write_config_vocab(const char *src_dir, const char *dst_dir, const char *torch_dtype,
                                   long num_layers, long vocab_size, al_error *err)
{
    return copy_one(src_dir, dst_dir, "config.json", torch_dtype, num_layers, vocab_size, err);
}

al_status al_hf_copy_tokenizer(const char *src_dir, const char *dst_dir, al_error *err)
{
    al_status s = AL_OK;
    for (size_t i = 0; i < sizeof k_aux_files / sizeof k_aux_files[0] && s == AL_OK; i++)
        s = copy_one(src_dir, dst_dir, k_aux_files[i], NULL, -1, -1, err);
    return s;
}

al_status al_hf_copy_files(const char *src_dir, const char *dst_dir, const char *torch_dtype,
                           long num_layers, al_error *err)
{
    al_status s = al_hf_write_config(src_dir, dst_dir, torch_dtype, num_layers, err);
    return s == AL_OK ? al_hf_copy_tokenizer(src_dir, dst_dir, err) : s;
}

al_status al_copy_aux_files(const char *src_dir, const char *dst_dir, al_error *err)
{
    return al_hf_copy_files(src_dir, dst_dir, NULL, -1, err);
}

al_status al_hf_read_chat_template(const char *dir, char **out, al_error *err)
{
    *out = NULL;
    al_status s;
    struct stat st;
    char *p = join(dir, "chat_template.jinja");
    if (!p) return al_errorf(err, AL_ERR_NOMEM, "out of memory");
    bool jinja = stat(p, &st) == 0;
    s = jinja ? al_read_file(p, AL_HF_MAX_TEMPLATE, "chat template", out, NULL, err) : AL_OK;
    al_free(p);
    if (jinja) return s;
    if (!(p = join(dir, "tokenizer_config.json"))) return al_errorf(err, AL_ERR_NOMEM, "out of memory");
    if (stat(p, &st) != 0) { al_free(p); return AL_OK; }
    json_error_t je;
    json_t *root = json_load_file(p, 0, &je);
    if (!root) {
        s = al_errorf(err, AL_ERR_FORMAT, "%s:%d:%d: invalid JSON: %s", p, je.line, je.column, je.text);
        al_free(p);
        return s;
    }
    json_t *t = json_object_get(root, "chat_template");
    if (json_is_array(t)) {                 /* [{"name": ..., "template": ...}, ...] */
        size_t i;
        json_t *e, *pick = NULL;
        json_array_foreach(t, i, e) {
            const char *name = json_string_value(json_object_get(e, "name"));
            if (name && strcmp(name, "default") == 0) pick = json_object_get(e, "template");
        }
        t = pick;
    }
    if (json_is_string(t) && !(*out = al_strdup(json_string_value(t))))
        s = al_errorf(err, AL_ERR_NOMEM, "out of memory");
    json_decref(root);
    al_free(p);
    return s;
}

al_status al_hf_set_chat_template(const char *dir, const char *tmpl, al_error *err)
{
    al_status s = AL_OK;
    char *cp = join(dir, "tokenizer_config.json"), *jp = join(dir, "chat_template.jinja");
    json_t *root = NULL;
    if (!cp || !jp) { s = al_errorf(err, AL_ERR_NOMEM, "out of memory"); goto done; }
    struct stat st;
    if (stat(cp, &st) == 0) {
        json_error_t je;
        root = json_load_file(cp, JSON_PRESERVE_ORDER, &je);
        if (!root || !json_is_object(root)) {
            s = al_errorf(err, AL_ERR_FORMAT, "%s:%d:%d: invalid JSON: %s", cp, je.line, je.column, je.text);
            goto done;
        }
    } else if (!(root = json_object())) {
        s = al_errorf(err, AL_ERR_NOMEM, "out of memory");
        goto done;
    }
    if (json_object_set_new(root, "chat_template", json_string(tmpl)) != 0) {
        s = al_errorf(err, AL_ERR_FORMAT, "chat template is not valid UTF-8");
        goto done;
    }
    if (json_dump_file(root, cp, JSON_INDENT(2) | JSON_PRESERVE_ORDER) != 0) {
        s = al_errorf(err, AL_ERR_IO, "%s: cannot write", cp);
        goto done;
    }
    if (stat(jp, &st) == 0) {
        FILE *f = fopen(jp, "wb");
        size_t n = strlen(tmpl);
        bool ok = f && fwrite(tmpl, 1, n, f) == n;
        if ((f && fclose(f) != 0) || !ok) s = al_errorf(err, AL_ERR_IO, "%s: cannot write", jp);
    }
done:
    json_decref(root);
    al_free(cp);
    al_free(jp);
    return s;
}
