/* tests/test_names.c: block index of tensor names, and renumbering for slices. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "../io/checkpoint.h"
#include "../io/hfdir.h"
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

/* Name lists as the architectures' Hugging Face implementations write them: per list,
 * the expected (kind, stack, block) of each name. */
typedef struct { const char *arch; const char *names[12]; const char *expect[12]; } arch_t;

static void test_architectures(void **state)
{
    (void)state;
    static const arch_t archs[] = {
        {"gpt-j", {"transformer.wte.weight", "transformer.h.0.attn.q_proj.weight", "transformer.h.27.mlp.fc_out.bias",
                   "transformer.ln_f.weight", "lm_head.weight"},
                  {"pre", "0:0", "0:27", "post", "post"}},
        {"gpt-neox", {"gpt_neox.embed_in.weight", "gpt_neox.layers.15.attention.query_key_value.weight",
                      "gpt_neox.final_layer_norm.weight", "embed_out.weight"},
                     {"pre", "0:15", "post", "post"}},
        {"llama/mistral/qwen2/gemma", {"model.embed_tokens.weight", "model.layers.0.self_attn.q_proj.weight",
                                       "model.layers.31.mlp.down_proj.weight", "model.layers.9.post_attention_layernorm.weight",
                                       "model.norm.weight", "lm_head.weight"},
                                      {"pre", "0:0", "0:31", "0:9", "post", "post"}},
        {"phi-2", {"model.embed_tokens.weight", "model.layers.3.self_attn.dense.weight", "model.final_layernorm.weight",
                   "lm_head.bias"},
                  {"pre", "0:3", "post", "post"}},
        {"bert/roberta", {"bert.embeddings.position_embeddings.weight", "bert.encoder.layer.11.output.dense.weight",
                          "roberta.encoder.layer.2.attention.self.key.bias", "bert.pooler.dense.weight",
                          "classifier.weight"},
                         {"pre", "0:11", "0:2", "post", "post"}},
        {"t5", {"shared.weight", "encoder.block.1.layer.0.SelfAttention.q.weight",
                "encoder.block.10.layer.1.DenseReluDense.wo.weight", "encoder.final_layer_norm.weight",
                "decoder.block.0.layer.2.DenseReluDense.wi.weight", "decoder.block.11.layer.1.EncDecAttention.k.weight",
                "decoder.final_layer_norm.weight", "lm_head.weight"},
               {"pre", "0:1", "0:10", "post", "1:0", "1:11", "post", "post"}},
        {"clip", {"visual.transformer.resblocks.10.mlp.c_fc.weight", "visual.conv1.weight", "visual.ln_post.weight",
                  "transformer.resblocks.1.attn.in_proj_weight", "positional_embedding", "token_embedding.weight"},
                 {"0:10", "post", "post", "0:1", "pre", "pre"}},
    };
    for (size_t a = 0; a < sizeof archs / sizeof archs[0]; a++)
        for (size_t i = 0; archs[a].names[i]; i++) {
            al_layer_info li;
            al_layer_of(archs[a].names[i], &li);
            char got[32];
            if (li.kind == AL_LAYER_BLOCK) snprintf(got, sizeof got, "%d:%ld", li.stack, li.index);
            else snprintf(got, sizeof got, "%s", li.kind == AL_LAYER_PRE ? "pre" : "post");
            if (strcmp(got, archs[a].expect[i]) || li.guessed)
                fail_msg("%s: %s -> %s%s, want %s", archs[a].arch, archs[a].names[i], got, li.guessed ? " (guessed)" : "",
                         archs[a].expect[i]);
        }
}

/* The real files: every block tensor is found, the block count equals the config's,
 * and nothing is a guess. */
static void check_real(const char *dir, long want_blocks)
{
    al_error err = {0};
    al_ckpt *c = NULL;
    if (al_ckpt_open(&c, dir, &err) != AL_OK) fail_msg("%s", err.msg);
    al_hf_config cfg;
    assert_int_equal(al_hf_config_read(dir, &cfg, &err), AL_OK);
    long max = -1, pre = 0, post = 0;
    for (size_t i = 0; i < al_ckpt_count(c); i++) {
        al_layer_info li;
        al_layer_of(al_ckpt_info(c, i)->name, &li);
        if (li.guessed) fail_msg("%s: %s guessed", dir, al_ckpt_info(c, i)->name);
        if (li.kind == AL_LAYER_BLOCK && li.index > max) max = li.index;
        pre += li.kind == AL_LAYER_PRE;
        post += li.kind == AL_LAYER_POST;
    }
    assert_int_equal(max + 1, want_blocks);
    if (cfg.num_hidden_layers >= 0) assert_int_equal(max + 1, cfg.num_hidden_layers);
    assert_true(pre >= 1 && post >= 1);
    al_ckpt_close(c);
}

static void test_real_files(void **state)
{
    (void)state;
    check_real("tests/fixtures/hf/tiny_gpt2", 1);          /* GPT2Model: h.0. without prefix */
    check_real("tests/fixtures/hf/fake_gpt2", 1);          /* with the tied lm_head alias: post */
    check_real("tests/fixtures/hf/caikit_bert_tf", 5);     /* Keras TF h5, names mapped to PyTorch */
    check_real("examples/models/base", 6);
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
        cmocka_unit_test(test_architectures),
        cmocka_unit_test(test_real_files),
        cmocka_unit_test(test_rename),
        cmocka_unit_test(test_embedding),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
