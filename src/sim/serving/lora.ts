// LoRA adapters as vLLM's API server knows them (vllm/entrypoints/openai/serving_models.py): static
// --lora-modules and runtime loads (POST /v1/load_lora_adapter with VLLM_ALLOW_RUNTIME_LORA_UPDATING),
// each a PEFT folder (adapter_config.json + adapter_model.safetensors) read for its rank and size, with
// vLLM's answers when it is missing or too large. The registry is the API server's list; where the
// adapter's weights sit (slots, host cache) is the engine model's (src/engine/lora.ts).
import { readFile, stat } from "node:fs/promises";
import { join } from "node:path";
import { HttpError } from "../../http/errors.js";
import type { EngineLora } from "../../engine/types.js";

export interface LoraAdapter extends EngineLora {
  /** registration order, from 1, like vLLM's lora_int_id */
  id: number;
  created: number;
  rank: number;
  /** adapter_config.json's base_model_name_or_path, when it names one */
  baseModel: string | null;
}

/** Adapters registered at once: vLLM's list is unbounded, the sim's is not. */
export const MAX_LORA_ADAPTERS = 4096;

/** the weight files vLLM's LoRAModel.from_local_checkpoint reads, in its order */
const WEIGHT_FILES = ["adapter_model.safetensors", "adapter_model.bin", "adapter_model.pt"];

/** the PEFT folder's config as far as serving needs it */
export interface PeftAdapter {
  rank: number;
  bytes: number;
  targetModules: string[];
  baseModel: string | null;
}

/** vLLM's 400 for a name already registered */
function alreadyLoaded(name: string): HttpError {
  return new HttpError(
    400,
    `The lora adapter '${name}' has already been loaded. If you want to load the adapter in place, set 'load_inplace' to True.`,
    null,
    {},
    "InvalidUserInput",
  );
}

/** the engine's refusal of an adapter, which vLLM 0.32's load API answers as a 500 with its text */
function engineRefused(message: string): HttpError {
  return new HttpError(500, message, null, {}, "InternalServerError");
}

/** vLLM's LoRAAdapterNotFoundError, answered as a 404 by the load API (vllm/exceptions.py) */
function notFound(name: string, path: string): HttpError {
  return new HttpError(404, `Loading lora ${name} failed: No adapter found for ${path}`);
}

/**
 * Reads a PEFT adapter folder: adapter_config.json's rank and targets, and the size of its weights.
 * Errors are vLLM 0.32's (vllm/entrypoints/openai/models/serving.py): no folder or config is its 404
 * (LoRAAdapterNotFoundError); what the engine refuses (a rank over max_lora_rank, no weights) a 500
 * carrying the engine's text.
 */
export async function readPeftAdapter(name: string, path: string, maxLoraRank: number): Promise<PeftAdapter> {
  let configText: string;
  try {
    configText = await readFile(join(path, "adapter_config.json"), "utf8");
  } catch {
    throw notFound(name, path);
  }
  let cfg: Record<string, unknown>;
  try {
    cfg = JSON.parse(configText) as Record<string, unknown>;
  } catch (err) {
    throw engineRefused(`Loading lora ${name} failed: adapter_config.json: ${(err as Error).message}`);
  }
  const rank = Number(cfg.r);
  if (!Number.isInteger(rank) || rank < 1)
    throw engineRefused(`Loading lora ${name} failed: adapter_config.json has no rank 'r'`);
  if (rank > maxLoraRank)
    throw engineRefused(`LoRA rank ${rank} is greater than max_lora_rank ${maxLoraRank}.`);
  let bytes = 0;
  for (const f of WEIGHT_FILES) {
    const s = await stat(join(path, f)).catch(() => null);
    if (s?.isFile()) {
      bytes = s.size;
      break;
    }
  }
  if (bytes === 0) throw engineRefused(`${path} doesn't contain tensors`);
  const tm = cfg.target_modules;
  const targetModules = Array.isArray(tm) ? tm.map(String) : typeof tm === "string" ? [tm] : [];
  const base = cfg.base_model_name_or_path;
  return { rank, bytes, targetModules, baseModel: typeof base === "string" && base ? base : null };
}

export class LoraRegistry {
  private readonly adapters = new Map<string, LoraAdapter>();
  private nextId = 1;

  /**
   * Registers an adapter read from its folder; a name already there is vLLM's 400 unless `inplace`
   * (load_inplace: the name is re-pointed, keeping its id)
   */
  add(name: string, path: string, peft: PeftAdapter, inplace = false): LoraAdapter {
    const held = this.adapters.get(name);
    if (held && !inplace) throw alreadyLoaded(name);
    if (!held && this.adapters.size >= MAX_LORA_ADAPTERS) {
      throw new HttpError(400, `at most ${MAX_LORA_ADAPTERS} LoRA adapters can be loaded; unload one first`);
    }
    const a: LoraAdapter = {
      name,
      path,
      bytes: peft.bytes,
      rank: peft.rank,
      baseModel: peft.baseModel,
      id: held?.id ?? this.nextId++,
      created: Math.floor(Date.now() / 1000),
    };
    this.adapters.set(name, a);
    return a;
  }

  unload(name: string): void {
    if (!this.adapters.delete(name)) {
      throw new HttpError(404, `The lora adapter '${name}' cannot be found.`, "lora_name");
    }
  }

  has(name: string): boolean {
    return this.adapters.has(name);
  }

  get(name: string): LoraAdapter | undefined {
    return this.adapters.get(name);
  }

  list(): LoraAdapter[] {
    return [...this.adapters.values()];
  }
}

/** what loading an adapter needs of the engine: its add_lora, in modelled seconds */
export interface AdapterLoader {
  loadLora(a: EngineLora): number;
}

/**
 * vLLM's load_lora_adapter: the name checked first (already loaded: 400 unless in place), then the
 * folder read, registered and handed to the engine (add_lora). Without LoRA on, vLLM's engine refuses.
 * Returns the adapter and the modelled seconds the engine spends loading it.
 */
export async function loadAdapter(
  loras: LoraRegistry,
  maxLoraRank: number | null,
  engine: AdapterLoader,
  name: string,
  path: string,
  inplace = false,
  baseNames: readonly string[] = [],
): Promise<{ adapter: LoraAdapter; seconds: number }> {
  if (baseNames.includes(name))
    throw new HttpError(
      400,
      `The lora adapter '${name}' conflicts with a served base model.`,
      null,
      {},
      "InvalidUserInput",
    );
  if (loras.has(name) && !inplace) throw alreadyLoaded(name);
  if (maxLoraRank === null) throw engineRefused("LoRA is not enabled. Use --enable-lora to enable LoRA.");
  const peft = await readPeftAdapter(name, path, maxLoraRank);
  const adapter = loras.add(name, path, peft, inplace);
  return { adapter, seconds: engine.loadLora(adapter) };
}
