/* merge/chat.c: built-in chat templates and chat_template: auto.
 *
 * The built-ins are written for alloy from the prompt formats each family documents;
 * they render the same turns (role markers, separators, BOS/EOS placement). */
#include "chat.h"

#include <string.h>

#include "../core/alloc.h"
#include "../io/hfdir.h"

static const struct { const char *name, *text; } k_builtin[] = {
    /* ChatML: <|im_start|>role\ncontent<|im_end|>\n per turn */
    { "chatml",
      "{% for message in messages %}"
      "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
      "{% endfor %}"
      "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}" },
    /* Llama 3: header ids around the role, <|eot_id|> after each turn */
    { "llama3",
      "{{ bos_token }}{% for message in messages %}"
      "{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' + message['content'] | trim"
      " + '<|eot_id|>' }}{% endfor %}"
      "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}" },
    /* Alpaca: ### Instruction / ### Response blocks, system text first */
    { "alpaca",
      "{{ bos_token }}{% for message in messages %}"
      "{% if message['role'] == 'system' %}{{ message['content'] + '\\n\\n' }}"
      "{% elif message['role'] == 'user' %}{{ '### Instruction:\\n' + message['content'] + '\\n\\n' }}"
      "{% else %}{{ '### Response:\\n' + message['content'] + eos_token + '\\n\\n' }}{% endif %}"
      "{% endfor %}"
      "{% if add_generation_prompt %}{{ '### Response:\\n' }}{% endif %}" },
    /* Mistral: [INST] user [/INST] answer</s>; a system message joins the first user turn */
    { "mistral",
      "{{ bos_token }}{% set ns = namespace(system='') %}"
      "{% for message in messages %}"
      "{% if message['role'] == 'system' %}{% set ns.system = message['content'] + '\\n\\n' %}"
      "{% elif message['role'] == 'user' %}{{ '[INST] ' + ns.system + message['content'] + ' [/INST]' }}"
      "{% set ns.system = '' %}"
      "{% else %}{{ message['content'] + eos_token }}{% endif %}"
      "{% endfor %}" },
    /* EXAONE: [|role|]content, [|endofturn|] after system and assistant turns */
    { "exaone",
      "{% for message in messages %}"
      "{{ '[|' + message['role'] + '|]' + message['content'] }}"
      "{% if message['role'] == 'user' %}{{ '\\n' }}{% else %}{{ '[|endofturn|]\\n' }}{% endif %}"
      "{% endfor %}"
      "{% if add_generation_prompt %}{{ '[|assistant|]' }}{% endif %}" },
};

const char *al_chat_template_builtin(const char *name)
{
    for (size_t i = 0; i < sizeof k_builtin / sizeof k_builtin[0]; i++)
        if (strcmp(name, k_builtin[i].name) == 0) return k_builtin[i].text;
    return NULL;
}

al_status al_chat_template_resolve(const char *value, const char *const *dirs, size_t n,
                                   char **out, al_error *err)
{
    *out = NULL;
    if (strcmp(value, "auto") != 0) {
        const char *b = al_chat_template_builtin(value);
        *out = al_strdup(b ? b : value);
        return *out ? AL_OK : al_errorf(err, AL_ERR_NOMEM, "out of memory");
    }
    /* count equal templates; n is the number of input models, a handful */
    al_status s = AL_OK;
    char **t = al_calloc(n ? n : 1, sizeof *t);
    if (!t) return al_errorf(err, AL_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < n && s == AL_OK; i++) s = al_hf_read_chat_template(dirs[i], &t[i], err);
    size_t best = n, best_count = 0;
    for (size_t i = 0; i < n && s == AL_OK; i++) {
        if (!t[i]) continue;
        size_t c = 0;
        for (size_t k = 0; k < n; k++) c += t[k] && strcmp(t[i], t[k]) == 0;
        if (c > best_count) best = i, best_count = c;
    }
    if (s == AL_OK && best < n) { *out = t[best]; t[best] = NULL; }
    for (size_t i = 0; i < n; i++) al_free(t[i]);
    al_free(t);
    return s;
}
