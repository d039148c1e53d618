// GPU and model profiles: the figures the capacity and timing models need, each with its source.
// Users add more with a YAML file (loadProfilesFile); lookups are case-insensitive and accept both the
// base and the -Instruct names of a model. A room of their own, under the engine model: the router,
// routing, the sim, the fleet simulator and the planner look models up without importing the engine,
// and the engine stays free of file reads.
import { readFileSync } from "node:fs";
import { parse as parseYaml } from "yaml";
import { z } from "zod";
import type { GpuProfile, ModelProfile } from "./types.js";
import { InputFileError, InvalidConfigError } from "../errors/index.js";

const MiB = 2 ** 20;

export const GPUS: GpuProfile[] = [
  {
    id: "h100",
    name: "NVIDIA H100 SXM5 80GB",
    hbmBytes: 81559 * MiB,
    bf16Flops: 989.4e12,
    hbmBandwidth: 3.35e12,
    hostLinkBandwidth: 50e9,
    interconnectBandwidth: 450e9,
    source:
      "NVIDIA H100 datasheet (SXM5: 989.4 TFLOP/s dense BF16, 3.35 TB/s HBM3); memory.total 81559 MiB as nvidia-smi reports it; " +
      "host link PCIe Gen5 x16, ~50 GB/s one way measured by the vLLM KV offloading blog (Jan 2026); NVLink4 900 GB/s bidirectional = 450 one way",
  },
  {
    id: "h200",
    name: "NVIDIA H200 SXM 141GB",
    hbmBytes: 143771 * MiB,
    bf16Flops: 989.4e12,
    hbmBandwidth: 4.8e12,
    hostLinkBandwidth: 50e9,
    interconnectBandwidth: 450e9,
    source:
      "NVIDIA H200 datasheet (989 TFLOP/s dense BF16, 141 GB HBM3e at 4.8 TB/s); memory.total 143771 MiB (nvidia-smi); host link PCIe Gen5 x16 ~50 GB/s; NVLink4 450 GB/s one way",
  },
  {
    id: "a100",
    name: "NVIDIA A100 SXM4 80GB",
    hbmBytes: 81920 * MiB,
    bf16Flops: 312e12,
    hbmBandwidth: 2.039e12,
    hostLinkBandwidth: 25e9,
    interconnectBandwidth: 300e9,
    source:
      "NVIDIA A100 datasheet (80GB SXM: 312 TFLOP/s dense BF16, 2,039 GB/s HBM2e); memory.total 81920 MiB; host link PCIe Gen4 x16 (32 GB/s theoretical, ~25 GB/s practical); NVLink3 600 GB/s bidirectional = 300 one way",
  },
  {
    id: "l40s",
    name: "NVIDIA L40S 48GB",
    hbmBytes: 46068 * MiB,
    bf16Flops: 362.05e12,
    hbmBandwidth: 864e9,
    hostLinkBandwidth: 25e9,
    source:
      "NVIDIA L40S datasheet (362.05 TFLOP/s BF16 dense, 733 with sparsity; 48 GB GDDR6 at 864 GB/s); memory.total 46068 MiB; PCIe Gen4 x16 ~25 GB/s practical",
  },
  {
    id: "l4",
    name: "NVIDIA L4 24GB",
    hbmBytes: 23034 * MiB,
    bf16Flops: 121e12,
    hbmBandwidth: 300e9,
    hostLinkBandwidth: 25e9,
    source:
      "NVIDIA L4 datasheet (121 TFLOP/s BF16 dense, 242 with sparsity; 24 GB GDDR6 at 300 GB/s); memory.total 23034 MiB; PCIe Gen4 x16 ~25 GB/s practical",
  },
];

/** The built-in GPU profiles' ids as every `--gpu` help lists them: `h100, h200, a100, l40s, l4`. */
export const GPU_IDS_TEXT: string = GPUS.map((g) => g.id).join(", ");

const hfConfig = (id: string) => `https://huggingface.co/${id}/blob/main/config.json`;

export const MODELS: ModelProfile[] = [
  {
    id: "meta-llama/Llama-3.1-8B-Instruct",
    aliases: [
      "meta-llama/Llama-3.1-8B",
      "meta-llama/Meta-Llama-3.1-8B-Instruct",
      "meta-llama/Meta-Llama-3.1-8B",
    ],
    params: 8_030_261_248,
    layers: 32,
    hiddenSize: 4096,
    numHeads: 32,
    kvHeads: 8,
    headDim: 128,
    dtypeBytes: 2,
    dtype: "bfloat16",
    maxContext: 131072,
    vocabSize: 128256,
    tokenizer: "llama3",
    source: `${hfConfig("meta-llama/Llama-3.1-8B-Instruct")} (hidden 4096, 32 layers, 32 heads, 8 KV heads, max_position_embeddings 131072, vocab 128256); params from the safetensors index`,
  },
  {
    id: "meta-llama/Llama-3.1-70B-Instruct",
    aliases: [
      "meta-llama/Llama-3.1-70B",
      "meta-llama/Meta-Llama-3.1-70B-Instruct",
      "meta-llama/Meta-Llama-3.1-70B",
    ],
    params: 70_553_706_496,
    layers: 80,
    hiddenSize: 8192,
    numHeads: 64,
    kvHeads: 8,
    headDim: 128,
    dtypeBytes: 2,
    dtype: "bfloat16",
    maxContext: 131072,
    vocabSize: 128256,
    tokenizer: "llama3",
    source: `${hfConfig("meta-llama/Llama-3.1-70B-Instruct")} (hidden 8192, 80 layers, 64 heads, 8 KV heads, max_position_embeddings 131072, vocab 128256)`,
  },
  {
    id: "Qwen/Qwen3-32B",
    aliases: [],
    params: 32_762_123_264,
    layers: 64,
    hiddenSize: 5120,
    numHeads: 64,
    kvHeads: 8,
    headDim: 128,
    dtypeBytes: 2,
    dtype: "bfloat16",
    maxContext: 40960,
    vocabSize: 151936,
    tokenizer: "qwen",
    source: `${hfConfig("Qwen/Qwen3-32B")} (hidden 5120, 64 layers, 64 heads, 8 KV heads, head_dim 128, max_position_embeddings 40960, vocab 151936); 32.8B params (model card)`,
  },
  {
    id: "Qwen/Qwen2.5-0.5B-Instruct",
    aliases: ["Qwen/Qwen2.5-0.5B"],
    params: 494_032_768,
    layers: 24,
    hiddenSize: 896,
    numHeads: 14,
    kvHeads: 2,
    headDim: 64,
    dtypeBytes: 2,
    dtype: "bfloat16",
    maxContext: 32768,
    vocabSize: 151936,
    tokenizer: "qwen",
    source: `${hfConfig("Qwen/Qwen2.5-0.5B-Instruct")} (hidden 896, 24 layers, 14 heads, 2 KV heads, max_position_embeddings 32768, vocab 151936); 0.49B params (model card)`,
  },
  {
    id: "facebook/opt-125m",
    aliases: [],
    params: 125_239_296,
    layers: 12,
    hiddenSize: 768,
    numHeads: 12,
    kvHeads: 12,
    headDim: 64,
    dtypeBytes: 2,
    dtype: "float16",
    maxContext: 2048,
    vocabSize: 50272,
    tokenizer: "opt",
    source: `${hfConfig("facebook/opt-125m")} (hidden 768, 12 layers, 12 heads (MHA), max_position_embeddings 2048, vocab 50272, torch_dtype float16)`,
  },
];

export function resolveGpu(id: string): GpuProfile {
  const key = id.trim().toLowerCase();
  const gpu = GPUS.find((g) => g.id === key);
  if (!gpu) {
    throw new InvalidConfigError(
      `unknown GPU "${id}"; known: ${GPUS.map((g) => g.id).join(", ")}. Add one with a profiles YAML file (gpus: [...]), see profiles/example.yaml`,
    );
  }
  return gpu;
}

function baseName(id: string): string {
  return id
    .trim()
    .toLowerCase()
    .replace(/-instruct$/, "");
}

export function resolveModel(hfId: string): ModelProfile {
  const key = hfId.trim().toLowerCase();
  const base = baseName(hfId);
  const exact = MODELS.find(
    (m) => m.id.toLowerCase() === key || m.aliases.some((a) => a.toLowerCase() === key),
  );
  if (exact) return exact;
  const loose = MODELS.find((m) => baseName(m.id) === base || m.aliases.some((a) => baseName(a) === base));
  if (loose) return loose;
  throw new InvalidConfigError(
    `unknown model "${hfId}"; known: ${MODELS.map((m) => m.id).join(", ")}. Add one with a profiles YAML file (models: [...]), see profiles/example.yaml`,
  );
}

const positive = z.number().positive();
const posInt = z.number().int().positive();

const GpuSchema = z.object({
  id: z.string().min(1),
  name: z.string().min(1),
  hbmBytes: positive,
  bf16Flops: positive,
  hbmBandwidth: positive,
  hostLinkBandwidth: positive,
  interconnectBandwidth: positive.optional(),
  stepOverheadS: positive.optional(),
  seqOverheadS: z.number().nonnegative().optional(),
  prefillAttentionCostFactor: positive.optional(),
  prefillSeqOverheadS: z.number().nonnegative().optional(),
  source: z.string().min(1),
});

const ModelSchema = z.object({
  id: z.string().min(1),
  aliases: z.array(z.string()).default([]),
  params: positive,
  activeParams: positive.optional(),
  layers: posInt,
  hiddenSize: posInt,
  numHeads: posInt,
  kvHeads: posInt,
  headDim: posInt,
  dtypeBytes: positive,
  dtype: z.string().min(1),
  maxContext: posInt,
  vocabSize: posInt,
  tokenizer: z.string().min(1),
  source: z.string().min(1),
});

const ProfilesFileSchema = z.object({
  gpus: z.array(GpuSchema).default([]),
  models: z.array(ModelSchema).default([]),
});

/** Adds (or replaces, by id) GPUs and models from a YAML file; returns what it added. */
export function loadProfilesFile(path: string): { gpus: GpuProfile[]; models: ModelProfile[] } {
  let doc: unknown;
  try {
    doc = parseYaml(readFileSync(path, "utf8"));
  } catch (e) {
    throw new InputFileError(`cannot read profiles file ${path}: ${(e as Error).message}`);
  }
  const parsed = ProfilesFileSchema.safeParse(doc ?? {});
  if (!parsed.success) {
    const issues = parsed.error.issues.map((i) => `${i.path.join(".")}: ${i.message}`).join("; ");
    throw new InputFileError(`invalid profiles file ${path}: ${issues}`);
  }
  const gpus = parsed.data.gpus.map((g) => ({ ...g, id: g.id.toLowerCase() }));
  const models = parsed.data.models;
  for (const g of gpus) {
    const i = GPUS.findIndex((x) => x.id === g.id);
    if (i >= 0) GPUS[i] = g;
    else GPUS.push(g);
  }
  for (const m of models) {
    const i = MODELS.findIndex((x) => x.id.toLowerCase() === m.id.toLowerCase());
    if (i >= 0) MODELS[i] = m;
    else MODELS.push(m);
  }
  return { gpus, models };
}
