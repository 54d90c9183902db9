/* tests/test_names.c: block index of tensor names, and renumbering for slices. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "../io/names.h"

typedef struct { const char *name; al_layer_kind kind; long index; bool guessed; } case_t;

static void test_layer_of(void **state)
{
    (void)state;
    static const case_t cases[] = {
        /* GPT-2 (HF, with and without the transformer. prefix): h.1. is not h.10. */
        {"transformer.h.1.attn.c_attn.weight", AL_LAYER_BLOCK, 1, false},
        {"transformer.h.10.attn.c_attn.weight", AL_LAYER_BLOCK, 10, false},
        {"h.0.mlp.c_fc.bias", AL_LAYER_BLOCK, 0, false},
        {"transformer.wte.weight", AL_LAYER_PRE, -1, false},
        {"transformer.wpe.weight", AL_LAYER_PRE, -1, false},
        {"transformer.ln_f.weight", AL_LAYER_POST, -1, false},
        {"lm_head.weight", AL_LAYER_POST, -1, false},
        /* Llama / Mistral / Qwen2 */
        {"model.layers.31.self_attn.q_proj.weight", AL_LAYER_BLOCK, 31, false},
        {"model.embed_tokens.weight", AL_LAYER_PRE, -1, false},
        {"model.norm.weight", AL_LAYER_POST, -1, false},
        /* GPT-NeoX, BERT, CLIP, Meta/FAIR, GGUF */
        {"gpt_neox.layers.5.attention.dense.weight", AL_LAYER_BLOCK, 5, false},
        {"gpt_neox.embed_in.weight", AL_LAYER_PRE, -1, false},
        {"embed_out.weight", AL_LAYER_POST, -1, false},
        {"bert.encoder.layer.4.attention.self.query.weight", AL_LAYER_BLOCK, 4, false},
        {"bert.embeddings.word_embeddings.weight", AL_LAYER_PRE, -1, false},
        {"vision_model.transformer.resblocks.11.attn.in_proj_weight", AL_LAYER_BLOCK, 11, false},
        {"layers.2.attention.wq.weight", AL_LAYER_BLOCK, 2, false},
        {"tok_embeddings.weight", AL_LAYER_PRE, -1, false},
        {"blk.0.ffn_up.weight", AL_LAYER_BLOCK, 0, false},
        /* T5: encoder and decoder stacks; ".layer.1." inside a block is not a block index */
        {"encoder.block.3.layer.1.DenseReluDense.wi.weight", AL_LAYER_BLOCK, 3, false},
        {"decoder.block.11.layer.2.DenseReluDense.wo.weight", AL_LAYER_BLOCK, 11, false},
        {"shared.weight", AL_LAYER_PRE, -1, false},   /* T5's tied input embedding */
        {"model.decoder.layers.5.self_attn.k_proj.weight", AL_LAYER_BLOCK, 5, false},
        /* no known prefix: first ".N." component, flagged as a guess */
        {"backbone.stages.2.conv.weight", AL_LAYER_BLOCK, 2, true},
        /* digits that are not a block index */
        {"model.layers.x7.weight", AL_LAYER_POST, -1, false},
    };
    al_layer_info st;
    al_layer_of("decoder.block.0.layer.0.SelfAttention.q.weight", &st);
    assert_int_equal(st.stack, 1);
    al_layer_of("encoder.block.0.layer.0.SelfAttention.q.weight", &st);
    assert_int_equal(st.stack, 0);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        al_layer_info li;
        al_layer_of(cases[i].name, &li);
        if (li.kind != cases[i].kind || li.index != cases[i].index || li.guessed != cases[i].guessed)
            fail_msg("%s: kind %d index %ld guessed %d", cases[i].name, li.kind, li.index, li.guessed);
    }
}

static void test_rename(void **state)
{
    (void)state;
    char buf[128];
    al_layer_info li;
    al_layer_of("transformer.h.10.attn.c_attn.weight", &li);
    assert_true(al_layer_rename("transformer.h.10.attn.c_attn.weight", &li, 3, buf, sizeof buf));
    assert_string_equal(buf, "transformer.h.3.attn.c_attn.weight");
    al_layer_of("model.layers.2.mlp.up_proj.weight", &li);
    assert_true(al_layer_rename("model.layers.2.mlp.up_proj.weight", &li, 117, buf, sizeof buf));
    assert_string_equal(buf, "model.layers.117.mlp.up_proj.weight");
    assert_false(al_layer_rename("model.layers.2.mlp.up_proj.weight", &li, 117, buf, 10));
    al_layer_of("lm_head.weight", &li);
    assert_false(al_layer_rename("lm_head.weight", &li, 1, buf, sizeof buf));
}

static void test_embedding(void **state)
{
    (void)state;
    assert_true(al_name_is_embedding("model.embed_tokens.weight"));
    assert_true(al_name_is_embedding("lm_head.weight"));
    assert_true(al_name_is_embedding("transformer.wte.weight"));
    assert_false(al_name_is_embedding("transformer.wpe.weight"));
    assert_false(al_name_is_embedding("model.layers.0.mlp.up_proj.weight"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_layer_of),
        cmocka_unit_test(test_rename),
        cmocka_unit_test(test_embedding),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
