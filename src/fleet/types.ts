// What a fleet run is given and gives back, shared by the aggregated fleet (fleet.ts) and the
// disaggregated one (pd.ts).
import type { ArrivalKind } from "../workload/arrivals.js";
import type { RequestRecord } from "../workload/record.js";
import type { Workload } from "../workload/types.js";
import type { EngineConfig, EngineCounters } from "../engine/index.js";
import type { LateBindingOptions, PolicyName, ScorersConfig } from "../routing/index.js";
import type { FleetHooks } from "./load.js";
import type { AutoscaleReport, FleetAutoscaleOptions } from "./autoscale.js";
import type { SharedServerOptions } from "./remote.js";
import type { FleetDecision, SessionKeyMode } from "./router-view.js";
import type { FleetLoraOptions, LoraReport } from "./lora.js";

/** the reference placement no router can make: each request where its TTFT is lowest (clairvoyant.ts) */
export const CLAIRVOYANT = "clairvoyant";
export type FleetPolicy = PolicyName | typeof CLAIRVOYANT;

export interface FleetOptions {
  engine: EngineConfig;
  engines: number;
  /** disaggregated prefill and decode pools (pd.ts) instead of `engines` copies of `engine` */
  pd?: PdOptions | null;
  /** a routing policy, or `clairvoyant`: the reference placement from every engine's exact state */
  policy: FleetPolicy;
  /**
   * where requests' session keys come from (router-view.ts): by default (`router`) as the live router
   * keys them, from the header the bench sends where the workload sends one, else inferred from prompts
   */
  sessionKey?: SessionKeyMode;
  /** the live router scrapes vllm:num_requests_running/waiting and kv_cache_usage_perc this often */
  scrapeIntervalS: number;
  sharedServer: SharedServerOptions | null;
  workload: Workload;
  /** requests/s; Infinity = as fast as the concurrency cap allows */
  qps: number;
  arrival: ArrivalKind;
  /** sessions active at once; Infinity = no cap */
  concurrency: number;
  maxRequests: number;
  /** stop starting requests after this many virtual seconds */
  durationS: number;
  seed: number;
  /** keep every inter-token gap for ITL percentiles (memory grows with output tokens) */
  recordItl: boolean;
  /** predictive policy: every request's TTFT SLO, ms; a request no engine can meet it for is refused (429) */
  sloTtftMs?: number | undefined;
  /** router processes sharing the group's counts, each with its own policy state (default 1) */
  routers?: number;
  /** scorers added to the policy's own, as the router's config `scorers` */
  scorers?: ScorersConfig;
  /** predictive: late binding's settings (the router's `predictive.queuedPrompts` and the rest) */
  lateBinding?: Partial<LateBindingOptions> | undefined;
  /** hooks for callers that run many simulations of one workload (the planner); none changes a run */
  hooks?: FleetHooks;
  /** the decision log: every routing decision with what the policy predicted per engine */
  onDecision?: (d: FleetDecision) => void;
  /**
   * the router reads the shared server's tier index (what it stores and evicts): a cache-aware policy
   * prices what it holds of a prompt at its load time; false: the router sees the engines' GPUs only
   */
  tierAware?: boolean | undefined;
  /**
   * an autoscaled fleet (autoscale.ts): `engines` is ignored; the fleet starts at `initial` engines and
   * the policy in the loop starts (after start-up) and drains engines up to `maxEngines`
   */
  autoscale?: FleetAutoscaleOptions | undefined;
  /**
   * a LoRA fleet (lora.ts): each session's requests name one adapter of the mix, loaded on demand
   * through the engines' host caches by the router's load books; `engine.lora` sets slots and cache
   */
  lora?: FleetLoraOptions | undefined;
}

export interface FleetResult {
  records: RequestRecord[];
  /** seconds from the first send to the last completion */
  durationS: number;
  /** every engine's scraped kv_cache_usage_perc samples, 0..1 */
  kvSamples: Float64Array;
  counters: EngineCounters[];
  numGpuBlocks: number;
  numCpuBlocks: number;
  remote: { lookups: number; hitTokens: number; storedChunks: number; evictedChunks: number } | null;
  /** events the virtual clock ran (a measure of simulation work) */
  events: number;
  /** the engine (index) each request went to, by request index */
  routedTo: number[];
  /** prompt tokens each request found cached at its first schedule, by request index */
  cachedTokens: number[];
  /** the run was ended by FleetHooks.onRecord before its load was done */
  stoppedEarly: boolean;
  /** an autoscaled run's GPU-seconds, scale events and drains */
  autoscale?: AutoscaleReport;
  /** a LoRA fleet's loads and unloads, as its router made them */
  lora?: LoraReport;
}

/** a disaggregated fleet (pd.ts): its prefill and decode pools */
export interface PdOptions {
  prefill: { engine: EngineConfig; count: number };
  decode: { engine: EngineConfig; count: number };
  /** bytes/s each of the decode engine's TP ranks pulls KV at */
  bandwidthPerRank: number;
}
