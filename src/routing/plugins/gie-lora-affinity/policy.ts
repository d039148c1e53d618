// `gie-lora-affinity` (a baseline): the Gateway API Inference Extension's first scheduler (pkg/epp/
// scheduling filter.go and scheduler.go, v0.2–v0.3) as its source reads: a low-queue filter (waiting ≤
// 128), then its LoRA soft-affinity filter (engines running or queueing the adapter, else engines with
// running + waiting adapters under max_lora; the affinity set taken with probability 0.999), then least
// queueing and least KV-cache filters (each keeps the lowest (max − min)/n band), then a random pick. A
// queue over the threshold runs least queueing first, then affinity, then least KV.
import { hash32 } from "../../policy/hash.js";
import { standardFilters } from "../standard-filters/filters.js";
import type { Filter, Picker, Policy } from "../../policy/policy.js";
import type { EngineView, RequestView } from "../../policy/views.js";

/** GIE's config.QueueingThresholdLoRA and LoraAffinityThreshold defaults */
export const GIE_QUEUEING_THRESHOLD_LORA = 128;
export const GIE_LORA_AFFINITY_THRESHOLD = 0.999;

/** a deterministic draw in [0, 1) per request and stage (the decision stays a pure function) */
function draw(req: RequestView, stage: number): number {
  return hash32(`${req.seq}`, 0x9e3779b9 ^ stage) / 4294967296;
}

/** the engines whose `value` lies in the lowest (max − min)/n band */
function band(engines: readonly EngineView[], value: (engine: EngineView) => number): EngineView[] {
  let min = Infinity;
  let max = -Infinity;
  for (const candidate of engines) {
    const engineValue = value(candidate);
    if (engineValue < min) min = engineValue;
    if (engineValue > max) max = engineValue;
  }
  const top = min + (max - min) / engines.length;
  return engines.filter((e) => value(e) >= min && value(e) <= top);
}

const queueOf = (e: EngineView) => e.waiting;

/** GIE's LoRA soft affinity: engines with the adapter active, else those with room under max_lora */
function loraAffinity(req: RequestView, engines: readonly EngineView[]): EngineView[] {
  const name = req.lora?.name ?? req.model;
  const affinity: EngineView[] = [];
  const available: EngineView[] = [];
  for (const engine of engines) {
    const adapters = (engine as EngineView).lora;
    if (!adapters) {
      available.push(engine);
      continue;
    }
    if (adapters.running.has(name) || adapters.waiting.has(name)) affinity.push(engine);
    else if (adapters.running.size + adapters.waiting.size < adapters.maxLoras) available.push(engine);
  }
  if (affinity.length > 0 && available.length > 0)
    return draw(req, 1) < GIE_LORA_AFFINITY_THRESHOLD ? affinity : available;
  return affinity.length > 0 ? affinity : available;
}

/** GIE's decision tree: each stage narrows the set, a stage that empties it hands its input on */
export const gieTree: Filter = (req, engines) => {
  const step = (set: readonly EngineView[], narrow: (s: readonly EngineView[]) => EngineView[]) => {
    const out = narrow(set);
    return out.length > 0 ? out : set;
  };
  const affinity = (s: readonly EngineView[]) => loraAffinity(req, s);
  const leastQueue = (s: readonly EngineView[]) => band(s, queueOf);
  const leastKv = (s: readonly EngineView[]) => band(s, (e) => e.kvUsage);
  const low = engines.filter((e) => e.waiting <= GIE_QUEUEING_THRESHOLD_LORA);
  if (low.length > 0) return step(step(step(low, affinity), leastQueue), leastKv);
  return step(step(step(engines, leastQueue), affinity), leastKv);
};

/** GIE picks at random among what the filters leave */
export const gieRandomPicker: Picker = (req, engines) => engines[Math.floor(draw(req, 2) * engines.length)];

export function createGieLoraAffinityPolicy(): Policy {
  return {
    name: "gie-lora-affinity",
    filters: [...standardFilters, gieTree],
    scorers: [],
    picker: gieRandomPicker,
  };
}
