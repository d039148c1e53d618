// LoRA placement as pure policies over a fleet snapshot, shared by the live router and the fleet
// simulator. An engine holds adapters in max_loras GPU slots and a max_cpu_loras host cache, and runs at
// most max_loras distinct adapters in one batch (vLLM's scheduler passes a request for another over);
// a request for an adapter the engine has not loaded waits for the router to load it (the engine's load
// API: a read from disk, a copy into a slot). Three policies and the bookkeeping their callers keep:
//
// - `lora` (ours): each candidate priced in seconds: the load the request finds there, the cold load
//   (nothing when the adapter is in flight or loaded there; the read and copy at the engine's rates
//   otherwise), the wait for a slot when every slot serves another adapter, and the price of the adapter
//   a load would evict from the host cache (its recent traffic × its own cold load), less the prefill its
//   cached prefix of the prompt saves where the caller gives a cache oracle. The cheapest wins,
//   so hot adapters stay where they run and replicate when their engine is loaded, cold ones go where
//   slots are free. (Holding a request at the router while its cheapest engine has no free slot, to
//   take the first slot that frees anywhere, measured worse in virtual time: the scraped adapter sets
//   lag, and the engine's own queue admits it in the step its adapter's slot frees.)
// - `gie-lora-affinity`: the Gateway API Inference Extension's first scheduler (pkg/epp/scheduling
//   filter.go and scheduler.go, v0.2–v0.3) as its source reads: a low-queue filter (waiting ≤ 128), then
//   its LoRA soft-affinity filter (engines running or queueing the adapter, else engines with
//   running + waiting adapters under max_lora; the affinity set taken with probability 0.999), then
//   least queueing and least KV-cache filters (each keeps the lowest (max − min)/n band), then a random
//   pick. A queue over the threshold runs least queueing first, then affinity, then least KV.
// - `lora-static`: an operator's static placement: each adapter pinned to `replicas` engines by
//   rendezvous hashing, the least loaded of them picked.
import { LruMap } from "../collections/lru-map.js";
import { hash32, unitHash } from "./policy/hash.js";
import { busyOf } from "./cost/engine-load.js";
import { healthyOnly, hasCapacity, notExcluded, standardFilters } from "./policy/filters.js";
import { RequestMemo } from "./policy/memo.js";
import type { CacheOracle, CacheSource } from "./policy/cache-oracle.js";
import type {
  AdapterUse,
  EngineLoraView,
  EngineView,
  FleetSnapshot,
  LoraRequestView,
  RequestView,
} from "./policy/views.js";
import type { Filter, Policy, Scorer } from "./policy/policy.js";

/** seconds a load of `bytes` takes on an engine: the load API's overhead, the read and the copy */
function loadSeconds(adapters: EngineLoraView, bytes: number): number {
  return adapters.loadOverheadS + bytes / adapters.diskBps + bytes / adapters.linkBps;
}

/**
 * A new engine's adapter books as the live router and the fleet simulator keep them: its slots and
 * rates, nothing loaded, nothing in flight (the view the policies read, with mutable collections)
 */
export function emptyLoraBooks(p: {
  maxLoras: number;
  maxCpuLoras: number;
  diskBps: number;
  linkBps: number;
  loadOverheadS: number;
}) {
  return {
    ...p,
    running: new Set<string>(),
    waiting: new Set<string>(),
    loaded: new LruMap<string, true>(),
    loading: new Set<string>(),
    inFlight: new Map<string, number>(),
    lastSentAt: new Map<string, number>(),
    uses: new Map<string, AdapterUse>(),
  };
}

/** seconds to make `a` usable on an engine: nothing when loaded or in flight there, else a read and a copy */
export function coldLoadSeconds(adapters: EngineLoraView, adapter: LoraRequestView): number {
  if (adapters.loaded.has(adapter.name) || (adapters.inFlight.get(adapter.name) ?? 0) > 0) return 0;
  if (adapters.loading.has(adapter.name))
    return (adapters.loadOverheadS + adapter.bytes / adapters.diskBps) / 2;
  return loadSeconds(adapters, adapter.bytes);
}

/** the distinct adapters an engine is running or holding queued, by the scrape and the router's own counts */
export function activeAdapters(adapters: EngineLoraView): number {
  let active = adapters.running.size;
  for (const waiting of adapters.waiting) if (!adapters.running.has(waiting)) active++;
  for (const [name, k] of adapters.inFlight)
    if (k > 0 && !adapters.running.has(name) && !adapters.waiting.has(name)) active++;
  return active;
}

function isActive(adapters: EngineLoraView, name: string): boolean {
  return adapters.running.has(name) || adapters.waiting.has(name) || (adapters.inFlight.get(name) ?? 0) > 0;
}

/** half-life of an adapter's use on an engine, ms: what the host-cache eviction weighs */
export const ADAPTER_USE_HALF_LIFE_MS = 60_000;

/** The router sent `name` a request on an engine at `now` ms: its use there (`uses`) grows by one. */
export function noteAdapterUse(uses: Map<string, AdapterUse>, name: string, now: number): void {
  const use = uses.get(name);
  if (use) {
    use.n = use.n * Math.pow(0.5, Math.max(0, now - use.at) / ADAPTER_USE_HALF_LIFE_MS) + 1;
    use.at = Math.max(use.at, now);
  } else uses.set(name, { n: 1, at: now });
}

/** an adapter's decayed use on the engine at `now` (0: never used there, or no books kept) */
export function adapterUseAt(adapters: EngineLoraView, name: string, now: number): number {
  const use = adapters.uses?.get(name);
  return use ? use.n * Math.pow(0.5, Math.max(0, now - use.at) / ADAPTER_USE_HALF_LIFE_MS) : 0;
}

/**
 * The adapter a load of `name` would push out of the engine's host cache (`evictionVictim`), or null
 * while there is room. What the caller unloads first, so that the engine never holds more than
 * max_cpu_loras (loads in flight counted).
 */
export function evictionFor(adapters: EngineLoraView, name: string, now = 0): string | null {
  if (adapters.loaded.has(name) || adapters.loaded.size + adapters.loading.size < adapters.maxCpuLoras)
    return null;
  return evictionVictim(adapters, now);
}

/**
 * The loaded adapter to unload first: the least used one with nothing in flight (the oldest among
 * equals, and the oldest when the caller keeps no use counts), else the oldest. Least used, not least
 * recent: adapter popularity is heavy-tailed, and a recency order lets a run of rare adapters push out
 * popular ones. `skip`: adapters the caller cannot unload now (its loads in flight).
 */
export function evictionVictim(
  adapters: EngineLoraView,
  now: number,
  skip?: (name: string) => boolean,
): string | null {
  let victim: string | null = null;
  let least = Infinity;
  for (const entry of adapters.loaded.oldestFirst()) {
    if (isActive(adapters, entry.key) || skip?.(entry.key)) continue;
    const use = adapterUseAt(adapters, entry.key, now);
    if (use < least) {
      least = use;
      victim = entry.key;
    }
  }
  if (victim !== null) return victim;
  // every loaded adapter has requests: the oldest goes all the same (vLLM keeps the adapter of a request
  // it holds, and reads it again from disk if its batch needs it; new requests are not sent it there)
  for (const entry of adapters.loaded.oldestFirst()) if (!skip?.(entry.key)) return entry.key;
  return null;
}

/**
 * Seconds until `over` of an engine's active adapters have drained: each drains about one request's
 * time (`service`) after the router last sent it one there; one the router did not send (another
 * client's, or queued) is taken at half of that.
 */
export function slotWaitSeconds(
  adapters: EngineLoraView,
  over: number,
  service: number,
  now: number,
): number {
  const drains: number[] = [];
  const seen = new Set<string>();
  for (const [name, k] of adapters.inFlight) {
    if (k <= 0) continue;
    seen.add(name);
    const sent = adapters.lastSentAt?.get(name);
    drains.push(sent === undefined ? service / 2 : Math.max(0, (sent - now) / 1000 + service));
  }
  for (const set of [adapters.running, adapters.waiting])
    for (const name of set) {
      if (seen.has(name)) continue;
      seen.add(name);
      drains.push(service / 2);
    }
  drains.sort((a, b) => a - b);
  return drains[Math.min(drains.length, over) - 1] ?? 0;
}

// ---- ours ---------------------------------------------------------------------------------------

export interface LoraPolicyOptions {
  /** seconds one request takes on an engine, before it learns them from completions; default 2 */
  serviceSeconds?: number;
  /**
   * the queue's price: each request in flight on an engine costs service / (2 × batchSize) seconds;
   * default 256. vLLM runs 256 to 1,024 sequences at once (max_num_seqs), so a request in flight
   * delays a new one's first token little; at 32 an engine with 4 more in flight looked twice a cold
   * load slower, and ours loaded adapters to avoid it (routing/lora: TTFT p90 99 → 86 ms at 70%)
   */
  batchSize?: number;
  /** half-life of the per-adapter traffic rates, ms; default 60 s */
  rateHalfLifeMs?: number;
  /**
   * the router's cache oracle: a candidate's cached prefix of the request (vLLM hashes the adapter
   * into its blocks, so only that adapter's earlier prompts count) is taken off its cost at the
   * prefill time it saves; the decision is told to it (the route note). Absent: no prefix is priced.
   */
  cache?: CacheOracle | undefined;
  /** seconds of prefill one cached prompt token saves; default 50 µs (20,000 tokens/s) */
  prefillSecondsPerToken?: number;
}

/** a request's candidates and cached tokens, from its decision to its pick */
interface LoraScored {
  engines: readonly EngineView[];
  cached: Float64Array;
  source: CacheSource[];
}

/** per-adapter request rates (decayed counts), bounded: what an eviction's price reads */
class AdapterRates {
  private readonly rates = new LruMap<string, { n: number; at: number }>();
  constructor(
    private readonly halfLifeMs: number,
    private readonly cap = 16_384,
  ) {}
  note(name: string, now: number): void {
    const rate = this.rates.use(name);
    if (rate) {
      rate.n = rate.n * Math.pow(0.5, (now - rate.at) / this.halfLifeMs) + 1;
      rate.at = now;
    } else {
      this.rates.set(name, { n: 1, at: now });
      while (this.rates.size > this.cap) this.rates.shift();
    }
  }
  /** requests per second, decayed to `now` */
  perSecond(name: string, now: number): number {
    const rate = this.rates.get(name);
    if (!rate) return 0;
    const decayed = rate.n * Math.pow(0.5, (now - rate.at) / this.halfLifeMs);
    return (decayed * Math.LN2) / (this.halfLifeMs / 1000);
  }
}

/** ours: the cheapest engine by queue, cold load, slot wait and the eviction's price, in seconds */
export function createLoraPolicy(opts: LoraPolicyOptions = {}): Policy {
  const batch = opts.batchSize ?? 256;
  let service = opts.serviceSeconds ?? 2;
  const rates = new AdapterRates(opts.rateHalfLifeMs ?? 60_000);
  const costs: number[] = [];
  const cache = opts.cache;
  const perToken = opts.prefillSecondsPerToken ?? 50e-6;
  const scored = new RequestMemo<LoraScored>("lora.scored");
  /** the time of the latest decision (the caller's clock), for the rates onPicked notes */
  let lastNow = 0;
  const scorer: Scorer = {
    name: "lora-cost",
    weight: 1,
    score(req, engines, out, fleet) {
      const request = req as RequestView;
      const now = fleet.now ?? 0;
      lastNow = now;
      let best = Infinity;
      costs.length = engines.length;
      const prediction = cache && request.lora ? cache.predict(request, engines) : undefined;
      if (prediction)
        scored.set(request, { engines, cached: prediction.cachedTokens, source: prediction.source });
      for (let i = 0; i < engines.length; i++) {
        const engine = engines[i] as EngineView;
        const busy = busyOf(engine, fleet.now);
        // the requests in flight there, each delaying this one's first step a little (see batchSize)
        let cost = (busy / batch) * service * 0.5;
        const adapters = engine.lora;
        if (request.lora && adapters) {
          cost += coldLoadSeconds(adapters, request.lora);
          if (!isActive(adapters, request.lora.name)) {
            // every slot serves another adapter: it waits until enough of them drain
            const over = activeAdapters(adapters) + 1 - adapters.maxLoras;
            if (over > 0) cost += slotWaitSeconds(adapters, over, service, now);
            const victim = evictionFor(adapters, request.lora.name, now);
            if (victim !== null) {
              // the victim comes back at its rate, each time at a cold load
              const reload = loadSeconds(adapters, request.lora.bytes);
              cost += Math.min(1, rates.perSecond(victim, now) * service) * reload;
            }
          }
        }
        if (prediction) cost -= prediction.cachedTokens[i]! * perToken;
        costs[i] = cost;
        if (cost < best) best = cost;
      }
      // higher is better: the cheapest scores 1
      for (let i = 0; i < engines.length; i++) out[i] = 1 / (1 + costs[i]! - best);
    },
  };
  return {
    name: "lora",
    filters: standardFilters,
    scorers: [scorer],
    picker: (req, engines, scores) => {
      let best: EngineView | undefined;
      let bestScore = -Infinity;
      // exact ties rotate by the request's seq
      const count = engines.length;
      for (let k = 0; k < count; k++) {
        const i = (k + req.seq) % count;
        if (scores[i]! > bestScore) {
          bestScore = scores[i]!;
          best = engines[i];
        }
      }
      return best;
    },
    loadElsewhereKeepsPick: true,
    onPicked: (req, engine) => {
      const request = req as RequestView;
      if (request.lora) rates.note(request.lora.name, lastNow);
      const picked = scored.get(request);
      const i = picked ? picked.engines.indexOf(engine) : -1;
      if (!picked || i < 0 || !cache?.onPicked) return;
      const cached = picked.cached[i]!;
      const source = picked.source[i]!;
      cache.onPicked(request, engine, cached, source, cached > 0 ? `${source}-hit` : "lora-cost");
    },
    onDone: (_req, _e, elapsedMs) => {
      // a moving mean of how long a request holds its engine
      service = 0.95 * service + 0.05 * (elapsedMs / 1000);
    },
  };
}

// ---- the Gateway API Inference Extension's scheduler (baseline) ------------------------------------

/** GIE's config.QueueingThresholdLoRA and LoraAffinityThreshold defaults */
export const GIE_QUEUEING_THRESHOLD_LORA = 128;
export const GIE_LORA_AFFINITY_THRESHOLD = 0.999;

/** a deterministic draw in [0, 1) per request and stage (the decision stays a pure function) */
function draw(req: RequestView, stage: number): number {
  return hash32(`${req.seq}`, 0x9e3779b9 ^ stage) / 4294967296;
}

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
const gieTree: Filter = (req, engines) => {
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

export function createGieLoraAffinityPolicy(): Policy {
  return {
    name: "gie-lora-affinity",
    filters: [...standardFilters, gieTree],
    scorers: [],
    // GIE picks at random among what the filters leave
    picker: (req, engines) => engines[Math.floor(draw(req, 2) * engines.length)],
  };
}

// ---- static placement (baseline) ----------------------------------------------------------------

/** each adapter pinned to `replicas` engines (rendezvous hashing), the least busy of them picked */
export function createStaticLoraPolicy(replicas = 2): Policy {
  const pinned: Filter = (req, engines) => {
    const request = req as RequestView;
    if (!request.lora || engines.length <= replicas) return engines;
    const ranked = [...engines].sort(
      (a, b) => unitHash(request.lora!.name, b.id) - unitHash(request.lora!.name, a.id),
    );
    return ranked.slice(0, replicas);
  };
  return {
    name: "lora-static",
    // pinned before the health and capacity stages: an adapter's engines are its engines
    filters: [standardFilters[0]!, pinned, healthyOnly, notExcluded, hasCapacity],
    scorers: [],
    picker: (req, engines, _s, fleet) => {
      let best: EngineView | undefined;
      let least = Infinity;
      for (let k = 0; k < engines.length; k++) {
        const engine = engines[(k + req.seq) % engines.length]!;
        const busy = busyOf(engine, fleet.now);
        if (busy < least) {
          least = busy;
          best = engine;
        }
      }
      return best;
    },
  };
}

export type LoraPolicyName = "lora" | "gie-lora-affinity" | "lora-static";
export const LORA_POLICY_NAMES: readonly LoraPolicyName[] = ["lora", "gie-lora-affinity", "lora-static"];

export function createLoraPolicyByName(name: LoraPolicyName): Policy {
  if (name === "lora") return createLoraPolicy();
  if (name === "gie-lora-affinity") return createGieLoraAffinityPolicy();
  return createStaticLoraPolicy();
}

/** an engine's adapters as the fleet snapshot carries them, for callers that keep the books */
export function loraSnapshotOf(fleet: FleetSnapshot, id: string): EngineLoraView | undefined {
  return (fleet.engines.find((e) => e.id === id) as EngineView | undefined)?.lora;
}
