/* merge/chat.h: the recipe's chat_template (recipes.md §1.1, §3.3). */
#ifndef AL_MERGE_CHAT_H
#define AL_MERGE_CHAT_H

#include <stddef.h>

#include "../core/status.h"

/* The Jinja text of a built-in template (alpaca, chatml, llama3, mistral, exaone), or
 * NULL for any other name. */
const char *al_chat_template_builtin(const char *name);

/* The template a recipe's chat_template value stands for. "auto": the template most of
 * the model directories dirs[0..n) carry (ties go to the earliest), *out NULL when none
 * carries one; a built-in name: its text; anything else is a literal template. *out is
 * allocated; free it with al_free. */
al_status al_chat_template_resolve(const char *value, const char *const *dirs, size_t n,
                                   char **out, al_error *err);

#endif
