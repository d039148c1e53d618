// The LoRA benchmark's shape in virtual time, run through the fleet simulator's one loop
// (`simulateFleet`): N engines with adapter slots and host caches, a Poisson stream of single-turn
// requests over many adapters with Zipf popularity, a few shared system prompts, one placement policy.
// What is LoRA's own (the catalog, the router's load books) is lora.ts; this file only builds the
// workload (arrivals and adapter draws from one seeded stream, as the live benchmark sends them) and reads
// the run's records back as TTFTs. Used by routing/lora (bench) and `plan` (src/planner/lora.ts).
import type { EngineConfig } from "../engine/index.js";
import { makeRng } from "../random/rng.js";
import type { Policy } from "../routing/index.js";
import { randomText } from "../workload/text.js";
import type { Session, Workload } from "../workload/types.js";
import { simulateFleet } from "./fleet.js";
import { drawRank, zipfCdf, type LoraWorkload } from "./lora.js";

export interface LoraFleetOptions {
  engines: number;
  /** each engine's config; its `lora` sets slots and host cache */
  engine: EngineConfig;
  workload: LoraWorkload;
  /** the routing policy, or clairvoyant: ours on exact state */
  policy: Policy;
  /** decide on the engines' exact adapter state (scraped at every decision) */
  clairvoyant?: boolean;
  /** requests per second */
  rate: number;
  /** seconds of arrivals; requests in the first `warmupS` are not measured */
  durationS: number;
  warmupS: number;
  seed: number;
  /** how often the router scrapes lora_requests_info and the queue gauges, ms; default 100 */
  scrapeMs?: number;
  /** the load API's round trip beside the engine's own load time, seconds; default 0.01 */
  loadRttS?: number;
  /**
   * the engines' ids (default engine-0, engine-1, ...): a policy that hashes them (a static placement)
   * places as a live stack does only under the live engines' ids
   */
  engineIds?: readonly string[];
}

export interface LoraFleetResult {
  /** TTFT of every measured request, ms (Infinity: not answered by the end of the drain) */
  ttfts: number[];
  /** TPOT of every measured request that finished with more than one output token, ms */
  tpots: number[];
  /** adapter loads the router made, unloads (host-cache evictions it asked for), and their engine seconds */
  loads: number;
  unloads: number;
  loadSecondsTotal: number;
  /** the engines' own counters summed: slot loads and evictions, steps that passed a request over */
  gpuLoads: number;
  gpuEvictions: number;
  batchSkips: number;
  /** the most adapters the router ever held loaded on one engine (never over max_cpu_loras) */
  maxLoaded: number;
  /** loads that waited for room on their engine (every adapter there busy or loading) */
  roomWaits: number;
  /** the engines' prefix cache, summed over the run: tokens looked up and found */
  prefixQueries: number;
  prefixHits: number;
}

/**
 * Each request's system prompt, one draw per request in order from its own seeded stream (the live
 * benchmark draws the same). Not the request's index mod the prompts: a round-robin router's counter
 * runs in step with the index, so on a fleet of 4 (or any multiple of the prompts) round-robin sent
 * each system prompt to one engine, a prefix affinity no client's traffic gives it (vLLM's prefix cache
 * is per engine). At 50 adapters, Zipf 1.6, 32 slots, a 10 GB/s disk (routing/lora --sweep's corner,
 * seeds 1–4) round-robin's TTFT p90 was 41 ms at 233 req/s and 233 ms at 333 with the prompts in step,
 * 56 and 1,399 ms drawn (prefix hits 64% → 60% of prompt tokens); GIE's and ours barely moved.
 */
export function loraSystemPrompts(seed: number, prompts: number): () => number {
  const rng = makeRng(seed, "lora-system");
  return () => Math.min(prompts - 1, Math.floor(rng.next() * prompts));
}

/** the benchmark's requests: arrival times and popularity ranks from one seeded stream */
function loraArrivals(o: LoraFleetOptions): { times: number[]; ranks: number[] } {
  const cdf = zipfCdf(o.workload.adapters, o.workload.zipf);
  const rng = makeRng(o.seed, "lora-arrivals");
  const times: number[] = [];
  const ranks: number[] = [];
  for (let t = 0; t < o.durationS; t += rng.exp(1 / o.rate)) {
    ranks.push(drawRank(cdf, rng.next()));
    times.push(t);
  }
  return { times, ranks };
}

/**
 * The benchmark's shape as a fleet workload: one single-turn session per request, its system prompt
 * drawn from its own seeded stream (`loraSystemPrompt`).
 */
function loraSessions(o: LoraFleetOptions, count: number): Session[] {
  const w = o.workload;
  const rng = makeRng(o.seed, "lora-prompts");
  const systems = Array.from({ length: w.systemPrompts }, () => randomText(w.systemPromptTokens, rng));
  const pick = loraSystemPrompts(o.seed, w.systemPrompts);
  return Array.from({ length: count }, (_, i) => ({
    id: `lora-${i}`,
    index: i,
    system: systems[pick()]!,
    systemTokens: w.systemPromptTokens,
    turns: [{ text: randomText(w.userTokens, rng), tokens: w.userTokens, maxTokens: w.outputTokens }],
    carriesHistory: false,
  }));
}

export function simulateLoraFleet(o: LoraFleetOptions): LoraFleetResult {
  const { times, ranks } = loraArrivals(o);
  const workload: Workload = {
    name: "lora",
    sessions: loraSessions(o, times.length),
    naturalRequests: times.length,
    defaultEndpoint: "completions",
    sessionHeader: false,
    arrivalGapsS: times.map((t, i) => (i === 0 ? 0 : t - times[i - 1]!)),
  };
  const r = simulateFleet({
    engine: o.engine,
    engines: o.engines,
    // the placement is the policy object below; the name only keeps the router from building oracles
    policy: "round-robin",
    sessionKey: "none",
    scrapeIntervalS: (o.scrapeMs ?? 100) / 1000,
    sharedServer: null,
    workload,
    qps: o.rate,
    arrival: "poisson",
    concurrency: Infinity,
    maxRequests: times.length,
    durationS: o.durationS,
    seed: o.seed,
    recordItl: false,
    lora: {
      mix: o.workload,
      rankOf: (s) => ranks[s.index]!,
      policy: () => o.policy,
      clairvoyant: o.clairvoyant,
      loadRttS: o.loadRttS,
      // the benchmark's engines are engine-0, engine-1, ... unless named as a live stack's
      engineIds: o.engineIds ?? Array.from({ length: o.engines }, (_, i) => `engine-${i}`),
    },
  });
  const ttfts: number[] = [];
  const tpots: number[] = [];
  for (const rec of r.records) {
    if (times[rec.index]! < o.warmupS) continue;
    ttfts.push(rec.ok ? rec.ttft : Infinity);
    if (rec.ok && rec.outputTokens > 1) tpots.push((rec.e2el - rec.ttft) / (rec.outputTokens - 1));
  }
  const books = r.lora!;
  const sum = (
    k: "loraGpuLoads" | "loraGpuEvictions" | "loraBatchSkips" | "prefixCacheQueries" | "prefixCacheHits",
  ) => r.counters.reduce((acc, c) => acc + c[k], 0);
  return {
    ttfts,
    tpots,
    loads: books.loads,
    unloads: books.unloads,
    loadSecondsTotal: books.loadSecondsTotal,
    gpuLoads: sum("loraGpuLoads"),
    gpuEvictions: sum("loraGpuEvictions"),
    batchSkips: sum("loraBatchSkips"),
    maxLoaded: books.maxLoaded,
    roomWaits: books.roomWaits,
    prefixQueries: sum("prefixCacheQueries"),
    prefixHits: sum("prefixCacheHits"),
  };
}
