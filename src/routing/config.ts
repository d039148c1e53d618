// The policies' configuration: the predictive slice (the router's `predictive:` and `slo:` sections:
// which GPU and model profile times each engine, the TTFT SLOs requests are admitted by) and the
// `scorers` list, owned here so the router's schema only names them; and the one function that turns
// the router's configured settings into a policy's options, which the live router and the fleet
// simulator both call, so that a simulated fleet routes as the configured router would.
import { z } from "zod";
import { defaultEngineConfig } from "../engine/index.js";
import { GPU_IDS_TEXT, resolveGpu, resolveModel } from "../models/index.js";
import { LearnedTiming, rooflineTiming, type EngineTiming, type PrefillCounters } from "./cost/timing.js";
import type { EngineView } from "./policy/views.js";
import type { PredictiveOptions } from "./cost/ttft-model.js";
import {
  CACHE_AWARE_DEFAULTS,
  SESSION_LOAD_FACTOR_DEFAULT,
  type CacheAwareOptions,
  type PolicyOptions,
} from "./plugins/index.js";
import type { CacheOracle } from "./policy/cache-oracle.js";
import { LATE_BINDING_DEFAULTS } from "./cost/late-binding.js";
import { scorerNames } from "./plugins/index.js";

const gpuId = z.string().refine(
  (gpu) => {
    try {
      resolveGpu(gpu);
      return true;
    } catch {
      return false;
    }
  },
  { message: `expected a GPU profile: ${GPU_IDS_TEXT}` },
);

const engineProfile = z.strictObject({
  gpu: gpuId.optional(),
  tensorParallelSize: z.number().int().min(1).max(8).optional(),
});

export const predictiveConfigSchema = z
  .strictObject({
    /** the engines' GPU (a profile of the engine model); none: each engine's speed is learned from its metrics */
    gpu: gpuId.optional(),
    tensorParallelSize: z.number().int().min(1).max(8).default(1),
    /** engines that are `switchyard sim --time-scale S` run S times slower than the GPU they model */
    timeScale: z.number().positive().default(1),
    /** per engine URL: another GPU or tensor-parallel size than the fleet's */
    engines: z.record(z.string(), engineProfile).default({}),
    /** the extra fleet work a miss costs, as a fraction of its prefill time */
    missWeight: z.number().min(0).default(1),
    /**
     * late binding: this router's streamed prompts that may await a first token on an engine before the
     * next request picked for it waits in the router instead, cheapest first; 0 binds every request at
     * once (docs/routing.md, "Late binding")
     */
    queuedPrompts: z.number().int().min(0).max(1024).default(LATE_BINDING_DEFAULTS.queuedPrompts),
    /** late binding: a request held this long (ms) is bound at once, room or not (keep it under admission.queueTimeout) */
    maxHoldMs: z.number().min(0).max(600_000).default(LATE_BINDING_DEFAULTS.maxHoldMs),
    /**
     * late binding: hold only while the router's picks find at least this share of their prompts cached
     * (a moving mean over picks); where prompts miss, reordering their prefill gains nothing
     */
    minCachedShare: z.number().min(0).max(1).default(LATE_BINDING_DEFAULTS.minCachedShare),
  })
  .prefault({});
export type PredictiveConfig = z.output<typeof predictiveConfigSchema>;

/** scorers added to the policy's own (weight 1), by name (plugins/registry.ts); at most 16 */
export const scorersConfigSchema = z
  .array(
    z.strictObject({
      name: z.string().refine((n) => scorerNames().includes(n), {
        message: `expected a scorer: ${scorerNames().join(", ")}`,
      }),
      weight: z.number().min(0).max(1000).default(1),
    }),
  )
  .max(16)
  .default([]);
export type ScorersConfig = z.output<typeof scorersConfigSchema>;

export const sloConfigSchema = z
  .strictObject({
    /** default TTFT SLO in ms for every model; none: only requests with x-slo-ttft-ms have one */
    ttftMs: z.number().positive().optional(),
    /** per served model name, ms */
    models: z.record(z.string(), z.number().positive()).default({}),
    /** a request no engine is predicted to serve within its SLO: 429 with Retry-After, or wait in the queue */
    onMiss: z.enum(["reject", "queue"]).default("reject"),
  })
  .prefault({});
export type SloConfig = z.output<typeof sloConfigSchema>;

/** The counters LearnedTiming reads, as the router's scrape leaves them on the view. */
export interface ViewWithCounters extends EngineView {
  prefillCounters?: PrefillCounters | undefined;
}

/**
 * The predictive policy's options from the configuration: each engine timed by the engine model for its
 * GPU (fleet-wide or its own) and the request's model, when both profiles are known; otherwise learned
 * from the engine's scraped counters. Profiles are built once per (engine, model) and kept (bounded).
 */
export function predictiveOptions(config: PredictiveConfig, slo: SloConfig): PredictiveOptions {
  const learned = new LearnedTiming((e) => (e as ViewWithCounters).prefillCounters);
  // per model, per engine id: asked for every candidate of every pick, and again when an attempt is
  // picked and when it ends, so the lookup allocates nothing (a joined key string did, each time)
  const built = new Map<string, Map<string, EngineTiming | null>>();
  let builtCount = 0;
  const profiled = (engine: EngineView, model: string): EngineTiming | null => {
    let byEngine = built.get(model);
    let timing = byEngine?.get(engine.id);
    if (timing !== undefined) return timing;
    const own = config.engines[engine.id];
    const gpu = own?.gpu ?? config.gpu;
    timing = null;
    if (gpu !== undefined) {
      try {
        const cfg = defaultEngineConfig(resolveModel(model), resolveGpu(gpu), {
          tensorParallelSize: own?.tensorParallelSize ?? config.tensorParallelSize,
        });
        timing = rooflineTiming(cfg, config.timeScale);
      } catch {
        timing = null; // a model the engine model has no profile of (an adapter, a private model): learned
      }
    }
    // bounded: the oldest model's profiles go first
    while (builtCount >= 4096) {
      const [oldest, engines] = built.entries().next().value!;
      builtCount -= engines.size;
      built.delete(oldest);
      if (oldest === model) byEngine = undefined;
    }
    if (byEngine === undefined) built.set(model, (byEngine = new Map()));
    byEngine.set(engine.id, timing);
    builtCount++;
    return timing;
  };
  return {
    timing: (e, model) => profiled(e, model) ?? learned.timing(e),
    missWeight: config.missWeight,
    slo: { defaultTtftMs: slo.ttftMs, models: slo.models },
    // the router's proxy reports every attempt's end (Policy.onDone, onAbandoned)
    reportsCompletions: true,
    lateBinding: {
      queuedPrompts: config.queuedPrompts,
      maxHoldMs: config.maxHoldMs,
      minCachedShare: config.minCachedShare,
    },
  };
}

/** The router config's settings a policy is built from, parsed (src/router/config/config.ts holds them). */
export interface PolicySettings {
  /** `session.loadFactor` */
  sessionLoadFactor: number;
  /** `routing.cost`: the cache-aware cost's constants */
  cost: CacheAwareOptions;
  predictive: PredictiveConfig;
  slo: SloConfig;
  scorers: ScorersConfig;
}

/** The settings of a router configured with nothing for them: the config schemas' defaults. */
export function defaultPolicySettings(): PolicySettings {
  return {
    sessionLoadFactor: SESSION_LOAD_FACTOR_DEFAULT,
    cost: { ...CACHE_AWARE_DEFAULTS },
    predictive: predictiveConfigSchema.parse(undefined),
    slo: sloConfigSchema.parse(undefined),
    scorers: [],
  };
}

/**
 * A policy's options from the router's settings: what each engine holds (`cache`), and the predictive
 * policy's engine timing in place of the configured profiles when `timing` is given (the fleet
 * simulator's engines are the engine model's own).
 */
export function policyOptions(
  settings: PolicySettings,
  given: { cache?: CacheOracle | undefined; timing?: PredictiveOptions["timing"] } = {},
): PolicyOptions {
  const predictive = predictiveOptions(settings.predictive, settings.slo);
  if (given.timing) predictive.timing = given.timing;
  return {
    sessionLoadFactor: settings.sessionLoadFactor,
    ...(given.cache ? { cache: given.cache } : {}),
    cacheAware: settings.cost,
    predictive,
    scorers: settings.scorers,
  };
}
