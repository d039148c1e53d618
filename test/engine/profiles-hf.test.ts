// Model profiles from a Hugging Face config.json: the shape read as vLLM reads it, parameters computed
// from the shape (checked against published exact counts), dtype as `--dtype auto` resolves it, mixture
// of experts compute per token, and the fields the engine model cannot use named as ignored.
import { test } from "node:test";
import assert from "node:assert/strict";
import { profileFromConfig, resolveModel, withDtype } from "../../src/models/index.js";

/** meta-llama/Llama-3.1-8B-Instruct config.json (the fields the profile reads) */
const LLAMA31_8B = {
  model_type: "llama",
  hidden_size: 4096,
  intermediate_size: 14336,
  num_hidden_layers: 32,
  num_attention_heads: 32,
  num_key_value_heads: 8,
  vocab_size: 128256,
  max_position_embeddings: 131072,
  tie_word_embeddings: false,
  torch_dtype: "bfloat16",
  rope_scaling: { rope_type: "llama3", factor: 8.0 },
};

/** mistralai/Mixtral-8x7B-v0.1 config.json */
const MIXTRAL = {
  model_type: "mixtral",
  hidden_size: 4096,
  intermediate_size: 14336,
  num_hidden_layers: 32,
  num_attention_heads: 32,
  num_key_value_heads: 8,
  num_local_experts: 8,
  num_experts_per_tok: 2,
  vocab_size: 32000,
  max_position_embeddings: 32768,
  sliding_window: null,
  torch_dtype: "bfloat16",
};

test("a Llama 3.1 8B config.json gives the catalogue profile's shape and its exact parameter count", () => {
  const { profile, ignored } = profileFromConfig(LLAMA31_8B, "llama", "hf:/x");
  const known = resolveModel("meta-llama/Llama-3.1-8B-Instruct");
  assert.equal(profile.params, known.params);
  for (const k of [
    "layers",
    "hiddenSize",
    "numHeads",
    "kvHeads",
    "headDim",
    "dtypeBytes",
    "maxContext",
    "vocabSize",
  ] as const)
    assert.equal(profile[k], known[k], k);
  assert.equal(profile.tokenizer, "hf:/x");
  assert.equal(profile.activeParams, undefined);
  assert.deepEqual(
    ignored.map((i) => i.field),
    ["rope_scaling"],
  );
});

test("a mixture of experts counts every expert's weights and computes with the ones a token uses", () => {
  const { profile } = profileFromConfig(MIXTRAL, "mixtral", "hf:/x");
  // Mixtral 8x7B's published parameter count
  assert.equal(profile.params, 46_702_792_704);
  assert.ok(profile.activeParams! > 12.8e9 && profile.activeParams! < 13.0e9, String(profile.activeParams));
});

test("dtype: auto keeps the checkpoint's, runs float32 checkpoints in bfloat16, and --dtype overrides", () => {
  const f32 = { ...LLAMA31_8B, torch_dtype: "float32" };
  assert.equal(profileFromConfig(f32, "m", "t").profile.dtypeBytes, 2);
  assert.equal(profileFromConfig(f32, "m", "t", { dtype: "float32" }).profile.dtypeBytes, 4);
  assert.equal(
    profileFromConfig({ ...LLAMA31_8B, torch_dtype: undefined, dtype: "float16" }, "m", "t").profile.dtype,
    "float16",
  );
  assert.throws(() => profileFromConfig(LLAMA31_8B, "m", "t", { dtype: "int3" }), /--dtype/);
  const known = resolveModel("facebook/opt-125m");
  assert.equal(withDtype(known, "auto"), known);
  assert.equal(withDtype(known, "float32").dtypeBytes, 4);
});

test("a sliding window or per-layer attention types are recorded as not modelled, and a missing shape field is an error naming it", () => {
  const { ignored } = profileFromConfig(
    {
      ...LLAMA31_8B,
      rope_scaling: null,
      sliding_window: 4096,
      layer_types: ["sliding_attention", "full_attention"],
    },
    "m",
    "t",
  );
  assert.deepEqual(
    ignored.map((i) => i.field),
    ["sliding_window", "layer_types"],
  );
  const { num_hidden_layers: _drop, ...noLayers } = LLAMA31_8B;
  assert.throws(() => profileFromConfig(noLayers, "m", "t"), /num_hidden_layers/);
});

test("a multimodal folder's language model shape is read from text_config", () => {
  const { profile } = profileFromConfig({ model_type: "llava", text_config: LLAMA31_8B }, "m", "t");
  assert.equal(profile.layers, 32);
  assert.equal(profile.kvHeads, 8);
});
