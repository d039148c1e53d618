// LoRA adapters in one engine, as vLLM's LRU adapter managers keep them (vllm/lora/worker_manager.py,
// LRUCacheWorkerLoRAManager; vllm/lora/model_manager.py, LRUCacheLoRAModelManager): a host-memory cache
// of `max_cpu_loras` adapters read from disk, and `max_loras` GPU slots the batch's adapters must sit
// in, each least-recently-used. An adapter a batch needs that is in neither is read from disk into the
// host cache (evicting its oldest) and copied into a slot (evicting the oldest slot the batch does not
// use); the seconds those copies take are on the step's critical path, because vLLM applies the batch's
// adapters before the forward pass. Clock-free like the rest of the engine: it returns seconds.
import { LruMap } from "../collections/lru-map.js";
import type { ModelProfile } from "../models/types.js";
import type { EngineCounters, EngineLora, LoraConfig } from "./types.js";
import { CapacityError, InvariantError } from "../errors/index.js";

/**
 * bytes/s an adapter's files are read at when no rate is configured: a local NVMe SSD's sequential
 * read (about 2-3 GB/s on PCIe Gen4 drives) derated for safetensors parsing; a network volume is slower
 */
export const LORA_DISK_BPS = 1e9;
/**
 * fixed seconds of one load from disk beside the bytes: opening the folder, reading adapter_config.json,
 * building the tensors (vLLM's LoRAModel.from_local_checkpoint). A modelled constant: calibrate it
 */
export const LORA_LOAD_OVERHEAD_S = 0.005;
/**
 * LoRA's compute in a step, per layer: the shrink and expand kernels vLLM's Punica wrapper launches over
 * the batch (Punica, Chen et al., MLSys 2024: SGMV computes every adapter's addon in one launch, each
 * adapter a segment), and a segment's cost per distinct adapter beside its weight reads. Modelled
 * constants (docs/engine-model.md says how they compare with the published kernel figures)
 */
export const LORA_LAYER_OVERHEAD_S = 10e-6;
export const LORA_SEGMENT_S = 1e-6;
/** the projections an adapter targets when nothing says (the attention projections, PEFT's common choice) */
export const DEFAULT_LORA_MODULES = ["q_proj", "k_proj", "v_proj", "o_proj"] as const;

/** the MLP's width relative to hidden when the profile does not carry it (Llama's 3.5×) */
const MLP_RATIO = 3.5;

/**
 * Bytes of one adapter's weights: for every targeted projection of every layer, A (rank × in) and
 * B (out × rank), at the adapter's dtype. The sum of in + out over the projections is what a rank adds.
 */
export function loraAdapterBytes(
  model: ModelProfile,
  rank: number,
  modules: readonly string[] = DEFAULT_LORA_MODULES,
  dtypeBytes = model.dtypeBytes,
): number {
  const h = model.hiddenSize;
  const q = model.numHeads * model.headDim;
  const kv = model.kvHeads * model.headDim;
  const mlp = Math.round(h * MLP_RATIO);
  let dims = 0;
  for (const m of modules) {
    if (m === "q_proj") dims += h + q;
    else if (m === "k_proj" || m === "v_proj") dims += h + kv;
    else if (m === "o_proj") dims += q + h;
    else if (m === "gate_proj" || m === "up_proj" || m === "down_proj") dims += h + mlp;
    else dims += 2 * h;
  }
  return rank * model.layers * dims * dtypeBytes;
}

/**
 * GPU bytes vLLM sets aside for the LoRA slots at start-up: max_loras adapters of max_lora_rank over
 * every projection it can adapt (it allocates the stacked buffers for all of them), taken from the KV
 * cache's share
 */
export function loraSlotBytes(model: ModelProfile, lora: LoraConfig, tp: number): number {
  const all = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"];
  return Math.ceil((lora.maxLoras * loraAdapterBytes(model, lora.maxLoraRank, all)) / tp);
}

/** what the engine's adapter caches hold, most recently used last */
export interface LoraResidency {
  maxLoras: number;
  maxCpuLoras: number;
  /** adapters in GPU slots */
  gpu: string[];
  /** adapters in the host cache (a superset of gpu's, unless a slot's adapter was dropped by unload) */
  cpu: string[];
}

export class LoraCache {
  private readonly gpu: LruMap<string, EngineLora>;
  private readonly cpu: LruMap<string, EngineLora>;
  private readonly diskBps: number;

  constructor(
    private readonly config: LoraConfig,
    private readonly hostLinkBps: number,
    private readonly counters: EngineCounters,
  ) {
    this.gpu = new LruMap();
    this.cpu = new LruMap();
    this.diskBps = config.diskBandwidth ?? LORA_DISK_BPS;
  }

  /** seconds to read an adapter from disk into the host cache */
  diskSeconds(a: EngineLora): number {
    return LORA_LOAD_OVERHEAD_S + a.bytes / this.diskBps;
  }

  /** seconds to copy an adapter from the host cache into a GPU slot */
  slotSeconds(a: EngineLora): number {
    return a.bytes / this.hostLinkBps;
  }

  /**
   * Seconds a request for `a` would wait for its adapter here now (0 when it is in a slot): what a
   * router prices a cold load at. No side effects.
   */
  coldSeconds(a: EngineLora): number {
    if (this.gpu.has(a.name)) return 0;
    return (this.cpu.has(a.name) ? 0 : this.diskSeconds(a)) + this.slotSeconds(a);
  }

  onGpu(name: string): boolean {
    return this.gpu.has(name);
  }

  inCpu(name: string): boolean {
    return this.cpu.has(name);
  }

  /** into the host cache (a path re-pointed at another folder is read again); seconds */
  private toCpu(a: EngineLora): number {
    const held = this.cpu.use(a.name);
    if (held && held.path === a.path) return 0;
    if (held) this.drop(a.name);
    while (this.cpu.size >= this.config.maxCpuLoras) {
      const old = this.cpu.shift()!;
      this.counters.loraCpuEvictions++;
      if (this.gpu.delete(old.key)) this.counters.loraGpuEvictions++;
    }
    this.cpu.set(a.name, a);
    this.counters.loraDiskLoads++;
    return this.diskSeconds(a);
  }

  /** into the host cache alone, when every slot serves a running request; seconds */
  loadToCpu(a: EngineLora): number {
    const s = this.toCpu(a);
    this.counters.loraLoadSeconds += s;
    return s;
  }

  /**
   * vLLM's add_lora (the load API, and a static --lora-modules entry): read into the host cache and
   * activated in a slot, evicting the oldest of each. Seconds the engine spends on it.
   */
  load(a: EngineLora, busy: { has(name: string): boolean } | null = null): number {
    const s = this.toCpu(a) + this.activate(a, busy);
    this.counters.loraLoadSeconds += s;
    return s;
  }

  /** into a GPU slot, evicting the oldest slot not in `busy`; seconds */
  private activate(a: EngineLora, busy: { has(name: string): boolean } | null): number {
    if (this.gpu.use(a.name)) return 0;
    if (this.gpu.size >= this.config.maxLoras) {
      let victim: string | null = null;
      for (const e of this.gpu.oldestFirst()) {
        if (!busy || !busy.has(e.key)) {
          victim = e.key;
          break;
        }
      }
      if (victim === null)
        throw new CapacityError(`LoRA: every one of ${this.config.maxLoras} slots is in use`);
      this.gpu.delete(victim);
      this.counters.loraGpuEvictions++;
    }
    this.gpu.set(a.name, a);
    this.counters.loraGpuLoads++;
    return this.slotSeconds(a);
  }

  /**
   * Makes every adapter of a batch resident before its forward pass (vLLM's set_active_loras): those
   * already in slots are touched first so that none of them is the victim of another's load. Seconds.
   */
  prepareBatch(batch: ReadonlyMap<string, EngineLora>): number {
    if (batch.size === 0) return 0;
    if (batch.size > this.config.maxLoras)
      throw new InvariantError(
        `scheduler invariant: ${batch.size} adapters in one batch over max_loras ${this.config.maxLoras}`,
      );
    for (const name of batch.keys()) {
      this.cpu.touch(name);
      this.gpu.touch(name);
    }
    let s = 0;
    for (const a of batch.values()) {
      if (this.gpu.has(a.name) && this.gpu.get(a.name)!.path === a.path) continue;
      s += this.toCpu(a) + this.activate(a, batch);
    }
    this.counters.loraLoadSeconds += s;
    return s;
  }

  /** vLLM's remove_lora (the unload API): out of both caches; false when it held neither */
  drop(name: string): boolean {
    const g = this.gpu.delete(name);
    const c = this.cpu.delete(name);
    return g || c;
  }

  residency(): LoraResidency {
    return {
      maxLoras: this.config.maxLoras,
      maxCpuLoras: this.config.maxCpuLoras,
      gpu: [...this.gpu.oldestFirst()].map((e) => e.key),
      cpu: [...this.cpu.oldestFirst()].map((e) => e.key),
    };
  }
}
