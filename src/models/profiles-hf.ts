// A model profile read from a Hugging Face model folder's config.json (`switchyard sim DIR`, as
// `vllm serve DIR`): the shape the capacity and timing models need, the parameter count computed
// from that shape, and the fields it holds that the engine model cannot use, named so they can be
// logged and documented instead of silently dropped.
import { existsSync, readFileSync, statSync } from "node:fs";
import { join, resolve } from "node:path";
import type { ModelProfile } from "./types.js";
import { InputFileError, InvalidConfigError } from "../errors/index.js";

/** bytes per element of the dtypes config.json and --dtype name */
const DTYPE_BYTES: Record<string, { name: string; bytes: number }> = {
  bfloat16: { name: "bfloat16", bytes: 2 },
  float16: { name: "float16", bytes: 2 },
  half: { name: "float16", bytes: 2 },
  float32: { name: "float32", bytes: 4 },
  float: { name: "float32", bytes: 4 },
};

/** model types whose MLP is two matrices (up, down) instead of the gated three (gate, up, down) */
const UNGATED_MLP = new Set(["opt", "gpt2", "gpt_neox", "gptj", "gpt_bigcode", "bloom", "falcon", "phi"]);

/** fields read elsewhere or harmless, never reported as ignored */
const KNOWN = new Set([
  "architectures",
  "model_type",
  "hidden_size",
  "intermediate_size",
  "num_hidden_layers",
  "num_attention_heads",
  "num_key_value_heads",
  "head_dim",
  "vocab_size",
  "max_position_embeddings",
  "torch_dtype",
  "dtype",
  "tie_word_embeddings",
  "num_experts",
  "num_local_experts",
  "n_routed_experts",
  "num_experts_per_tok",
  "moe_intermediate_size",
  "shared_expert_intermediate_size",
  "n_shared_experts",
  "first_k_dense_replace",
  "bos_token_id",
  "eos_token_id",
  "pad_token_id",
  "text_config",
  "transformers_version",
  "hidden_act",
  "rms_norm_eps",
  "layer_norm_eps",
  "initializer_range",
  "use_cache",
  "attention_dropout",
  "attention_bias",
  "mlp_bias",
  "pretraining_tp",
  "rope_theta",
  "_name_or_path",
]);

/**
 * Fields the engine model cannot use though they change a real engine: reported as ignored. Sliding
 * windows and per-layer attention types shrink a real hybrid KV cache (vLLM's hybrid allocator); here
 * every layer keeps full-attention KV, so capacity is understated for such models.
 */
const IGNORED_NOTES: Record<string, string> = {
  sliding_window: "every layer is modelled with full attention (KV capacity is understated)",
  layer_types: "every layer is modelled with full attention (KV capacity is understated)",
  max_window_layers: "every layer is modelled with full attention",
  use_sliding_window: "every layer is modelled with full attention",
  rope_scaling: "the context length is max_position_embeddings (or --max-model-len)",
  quantization_config: "weights are sized at the model dtype, not the quantized one",
  kv_lora_rank: "multi-head latent attention is modelled as ordinary attention",
};

export interface FolderProfile {
  profile: ModelProfile;
  /** config.json fields the engine model does not use, with what it does instead */
  ignored: Array<{ field: string; note: string }>;
}

function num(cfg: Record<string, unknown>, ...names: string[]): number | undefined {
  for (const n of names) {
    const v = cfg[n];
    if (typeof v === "number" && Number.isFinite(v)) return v;
  }
  return undefined;
}

function need(cfg: Record<string, unknown>, what: string, ...names: string[]): number {
  const v = num(cfg, ...names);
  if (v === undefined || !Number.isInteger(v) || v <= 0)
    throw new InputFileError(`config.json: ${what} (${names.join(" or ")}) must be a positive integer`);
  return v;
}

/** True when `spec` names a folder holding a config.json: it is served as a model folder. */
export function isModelFolder(spec: string): boolean {
  try {
    return statSync(spec).isDirectory() && existsSync(join(spec, "config.json"));
  } catch {
    return false;
  }
}

/**
 * The dtype vLLM runs with: --dtype when given, else the config's; "auto" on a float32 checkpoint
 * runs in bfloat16 as vLLM does on GPUs that support it.
 */
function runDtype(configDtype: unknown, flag: string | undefined): { name: string; bytes: number } {
  const want = (flag ?? "auto").toLowerCase();
  if (want !== "auto") {
    const d = DTYPE_BYTES[want];
    if (!d)
      throw new InvalidConfigError(
        `--dtype must be auto, bfloat16, float16, half, float32 or float, got '${flag}'`,
      );
    return d;
  }
  const fromConfig = typeof configDtype === "string" ? DTYPE_BYTES[configDtype.toLowerCase()] : undefined;
  if (!fromConfig || fromConfig.name === "float32") return DTYPE_BYTES.bfloat16!;
  return fromConfig;
}

/**
 * The profile of a model from its config.json object. `id` is what it is served as; `tokenizer`
 * names its tokenizer (src/tokenizer's "hf:/abs/dir" for a folder's own).
 */
export function profileFromConfig(
  raw: Record<string, unknown>,
  id: string,
  tokenizer: string,
  opts: { dtype?: string; source?: string } = {},
): FolderProfile {
  // multimodal folders keep the language model's shape under text_config
  const text =
    raw.text_config && typeof raw.text_config === "object"
      ? { ...raw, ...(raw.text_config as Record<string, unknown>) }
      : raw;
  const layers = need(text, "number of layers", "num_hidden_layers", "n_layer", "num_layers");
  const hidden = need(text, "hidden size", "hidden_size", "n_embd", "d_model");
  const heads = need(text, "attention heads", "num_attention_heads", "n_head", "num_heads");
  const kvHeads = num(text, "num_key_value_heads", "num_kv_heads", "multi_query_group_num") ?? heads;
  const headDim = num(text, "head_dim") ?? Math.floor(hidden / heads);
  const vocab = need(text, "vocabulary size", "vocab_size");
  const intermediate = num(text, "intermediate_size", "ffn_dim", "n_inner") ?? 4 * hidden;
  const maxContext = num(text, "max_position_embeddings", "n_positions", "max_seq_len", "seq_length") ?? 2048;
  const dtype = runDtype(text.torch_dtype ?? text.dtype, opts.dtype);
  const modelType = typeof text.model_type === "string" ? text.model_type : "";
  const mlpMatrices = UNGATED_MLP.has(modelType) ? 2 : 3;

  // Parameters from the shape: embeddings (and an untied LM head), attention projections, MLPs or
  // experts, norms. Llama-3.1-8B's config gives 8,030,261,248, its safetensors' exact count.
  const tied = text.tie_word_embeddings === true;
  const embed = vocab * hidden * (tied ? 1 : 2);
  const attn = hidden * heads * headDim * 2 + hidden * kvHeads * headDim * 2;
  const dense = mlpMatrices * hidden * intermediate;
  const experts = num(text, "num_experts", "num_local_experts", "n_routed_experts") ?? 0;
  const perTok = num(text, "num_experts_per_tok") ?? (experts > 0 ? 1 : 0);
  const expertSize = mlpMatrices * hidden * (num(text, "moe_intermediate_size") ?? intermediate);
  const sharedSize =
    mlpMatrices *
    hidden *
    ((num(text, "shared_expert_intermediate_size") ?? 0) +
      (num(text, "n_shared_experts") ?? 0) * (num(text, "moe_intermediate_size") ?? intermediate));
  const denseLayers = experts > 0 ? Math.min(layers, num(text, "first_k_dense_replace") ?? 0) : layers;
  const moeLayers = layers - denseLayers;
  const norms = 2 * hidden * layers + hidden;
  const base = embed + layers * attn + denseLayers * dense + norms;
  const params = base + moeLayers * (experts * expertSize + sharedSize + hidden * experts);
  const activeParams = base + moeLayers * (perTok * expertSize + sharedSize + hidden * experts);

  const ignored: FolderProfile["ignored"] = [];
  for (const [field, note] of Object.entries(IGNORED_NOTES)) {
    const v = text[field];
    if (v !== undefined && v !== null && v !== false) ignored.push({ field, note });
  }
  const profile: ModelProfile = {
    id,
    aliases: [],
    params,
    layers,
    hiddenSize: hidden,
    numHeads: heads,
    kvHeads,
    headDim,
    dtypeBytes: dtype.bytes,
    dtype: dtype.name,
    maxContext,
    vocabSize: vocab,
    tokenizer,
    source:
      `${opts.source ?? "config.json"} (hidden ${hidden}, ${layers} layers, ${heads} heads, ${kvHeads} KV heads, ` +
      `head_dim ${headDim}, intermediate ${intermediate}, vocab ${vocab}, max_position_embeddings ${maxContext}` +
      (experts > 0 ? `, ${experts} experts of which ${perTok} per token` : "") +
      `); params computed from the shape`,
  };
  if (experts > 0) profile.activeParams = activeParams;
  return { profile, ignored };
}

/** A catalogue profile run at --dtype (vLLM's flag); "auto" or none keeps the profile's own dtype. */
export function withDtype(profile: ModelProfile, flag: string | undefined): ModelProfile {
  if (!flag || flag.toLowerCase() === "auto") return profile;
  const d = runDtype(profile.dtype, flag);
  return { ...profile, dtype: d.name, dtypeBytes: d.bytes };
}

/** config.json fields neither read nor listed as ignored (for the startup log: nothing is hidden) */
export function unreadConfigFields(raw: Record<string, unknown>): string[] {
  const text =
    raw.text_config && typeof raw.text_config === "object"
      ? { ...raw, ...(raw.text_config as Record<string, unknown>) }
      : raw;
  return Object.keys(text).filter((k) => !KNOWN.has(k) && !(k in IGNORED_NOTES));
}

/**
 * The profile of the model folder `dir`, served as `id`; its tokenizer is the folder's own unless
 * `tokenizerDir` names another folder (vLLM's --tokenizer).
 */
export function loadModelFolder(
  dir: string,
  id: string,
  opts: { dtype?: string; tokenizerDir?: string } = {},
): FolderProfile & { unread: string[] } {
  const path = join(dir, "config.json");
  let raw: Record<string, unknown>;
  try {
    raw = JSON.parse(readFileSync(path, "utf8")) as Record<string, unknown>;
  } catch (err) {
    throw new InputFileError(`cannot read ${path}: ${(err as Error).message}`);
  }
  if (!raw || typeof raw !== "object" || Array.isArray(raw))
    throw new InputFileError(`${path}: expected an object`);
  const tokenizer = `hf:${resolve(opts.tokenizerDir ?? dir)}`;
  const r = profileFromConfig(raw, id, tokenizer, { dtype: opts.dtype, source: `${id}/config.json` });
  return { ...r, unread: unreadConfigFields(raw) };
}
