// The basic policies (round-robin, least-load, session affinity) and the names of every policy. Each is
// a Policy value (filters → scorers → picker); the cache-aware ones (cache-aware.ts) are extra scorers
// over the same views. The name lists live here so every caller agrees on what a policy is called.
import type { CacheOracle } from "./policy/cache-oracle.js";
import type { Policy, Scorer } from "./policy/policy.js";
import type { PredictiveOptions } from "./cost/ttft-model.js";
import {
  createCacheAwarePolicy,
  createScorer,
  createVllmRouterProgramPolicy,
  NO_CACHE,
  type CacheAwareOptions,
  kvFreeScorer,
  loadScorer,
  type VllmRouterProgramOptions,
  createLlmdStickyPolicy,
  maxScorePicker,
  roundRobinPicker,
  sessionPicker,
  standardFilters,
  createVllmRouterCacheAwarePolicy,
  type LlmdStickyOptions,
  type VllmRouterCacheAwareOptions,
} from "./plugins/index.js";
import { LATE_BINDING_DEFAULTS } from "./cost/late-binding.js";
import { InvalidConfigError } from "../errors/index.js";

/** Policies needing nothing but the fleet snapshot (the fleet simulator runs these). */
export type BasicPolicyName = "round-robin" | "least-load" | "session";
export const POLICY_NAMES: readonly BasicPolicyName[] = ["round-robin", "least-load", "session"];
/** Cache-aware policies: their CacheOracle (prefix index, KV-event index) is the caller's state. */
export type CachePolicyName = "prefix" | "kv" | "hybrid" | "predictive";
export const CACHE_POLICY_NAMES: readonly CachePolicyName[] = ["prefix", "kv", "hybrid", "predictive"];
/** Peers' designs, faithful to their published descriptions (plugins/): comparisons, not defaults. */
export type BaselinePolicyName = "vllm-router-cache-aware" | "llm-d-sticky" | "vllm-router-program";
export const BASELINE_POLICY_NAMES: readonly BaselinePolicyName[] = [
  "vllm-router-cache-aware",
  "llm-d-sticky",
  "vllm-router-program",
];
export type PolicyName = BasicPolicyName | CachePolicyName | BaselinePolicyName;
/** The policy a router routes by unless its config or `--policy` names another (docs/routing.md). */
export const DEFAULT_POLICY: PolicyName = "predictive";

/**
 * Every policy the live router accepts: the one list the router's config, the fleet scenario, the
 * planner and the Helm chart's values.schema.json (static JSON, held to it by a test) take names from.
 */
export const ROUTER_POLICY_NAMES: readonly PolicyName[] = [
  ...POLICY_NAMES,
  ...CACHE_POLICY_NAMES,
  ...BASELINE_POLICY_NAMES,
];
/** the policies whose oracle is the approximate prefix index alone (they never read KV events) */
export function policyReadsPrefixOnly(name: string): boolean {
  return (
    name === "prefix" || ((BASELINE_POLICY_NAMES as readonly string[]).includes(name) && !policyReadsKv(name))
  );
}
/**
 * The cache-aware policies that read the engines' KV events where they flow (`prefix` never does), so
 * their engines need the KV-event channel and one block-hash seed.
 */
export const KV_EVENT_POLICY_NAMES: readonly PolicyName[] = [
  "kv",
  "hybrid",
  "predictive",
  "llm-d-sticky",
  "vllm-router-program",
];
export function policyReadsKv(name: string): boolean {
  return (KV_EVENT_POLICY_NAMES as readonly string[]).includes(name);
}
/**
 * The policies that read a request's session key (`RequestView.sessionKey`): `session` hashes it,
 * `vllm-router-program` takes it for the program, and the cost-based ones (`prefix`, `kv`, `hybrid`,
 * `predictive`: cache-aware.ts's time model) price the paused sessions' contexts a placement evicts and
 * a session's decode by it. For the others (`round-robin`, `least-load`, `vllm-router-cache-aware`,
 * `llm-d-sticky`, whose affinity is the cache's) the router's edge does not track sessions
 * (sessions/session-identity.ts: no prompt hashed, no session recorded), so that a policy that never reads the
 * key does not pay for working it out; `least-load` reads only a key the request names (a header, a
 * body field), which the edge passes on without tracking.
 */
export const SESSION_POLICY_NAMES: readonly PolicyName[] = [
  "session",
  "prefix",
  "kv",
  "hybrid",
  "predictive",
  "vllm-router-program",
];
export function policyReadsSessions(name: string): boolean {
  return (SESSION_POLICY_NAMES as readonly string[]).includes(name);
}
/**
 * `--policy`'s help, one line for `switchyard router` and `switchyard up`: keyed by PolicyName, so a new
 * policy cannot be left out
 */
const POLICY_SUMMARIES: Record<PolicyName, string> = {
  predictive: "hybrid's cache knowledge, lowest predicted TTFT, SLO admission",
  hybrid: "KV events where they flow, prefix elsewhere",
  kv: "",
  prefix: "",
  "least-load": "",
  "round-robin": "",
  session: "",
  "vllm-router-cache-aware": "vllm-router's default cache_aware, as a baseline",
  "llm-d-sticky": "llm-d's sticky-until-saturated token-aware routing, as a baseline",
  "vllm-router-program":
    "vllm-router's program scheduling (a request pool with KV-token admission), as a baseline",
};
export const POLICY_HELP: string = Object.entries(POLICY_SUMMARIES)
  .map(([name, summary]) => (summary === "" ? name : `${name} (${summary})`))
  .join(", ");

/** session: how far above the average in-flight an engine may go before a session spills, by default */
export const SESSION_LOAD_FACTOR_DEFAULT = 1.25;

export interface PolicyOptions {
  /** session: how far above the average in-flight an engine may go before a session spills (≥ 1) */
  sessionLoadFactor?: number;
  /** cache-aware policies: what each engine holds (none given: they route by load alone) */
  cache?: CacheOracle;
  /** cache-aware policies: the cost function's constants */
  cacheAware?: CacheAwareOptions;
  /** predictive: engine timing, cost constants, TTFT SLOs */
  predictive?: PredictiveOptions;
  /** vllm-router-cache-aware: its thresholds */
  vllmRouterCacheAware?: VllmRouterCacheAwareOptions;
  /** llm-d-sticky: its affinity threshold and saturation override (τ) */
  llmdSticky?: LlmdStickyOptions;
  /**
   * vllm-router-program: its settings; each engine's token capacity defaults to the KV capacity of
   * `predictive.timing` (what an operator would set `token_capacity_per_target` to)
   */
  vllmRouterProgram?: VllmRouterProgramOptions;
  /**
   * scorers added to the policy's own (weight 1): the config's `scorers` by name (plugins/registry.ts),
   * or made already; every policy but round-robin picks by the weighted sum
   */
  scorers?: readonly ({ name: string; weight: number } | Scorer)[];
}

export function createPolicy(name: PolicyName, opts: PolicyOptions = {}): Policy {
  const policy = basePolicy(name, opts);
  const extra = (opts.scorers ?? []).map((s) => ("score" in s ? s : createScorer(s.name, s.weight)));
  if (extra.length === 0) return policy;
  if (policy.picker === roundRobinPicker)
    throw new InvalidConfigError(`policy '${name}' does not pick by score: scorers cannot be added to it`);
  // an added scorer may compare each engine with the others (decode-batch does)
  return { ...policy, scorers: [...policy.scorers, ...extra], loadElsewhereKeepsPick: false };
}

function basePolicy(name: PolicyName, opts: PolicyOptions): Policy {
  switch (name) {
    case "round-robin":
      return { name, filters: standardFilters, scorers: [], picker: roundRobinPicker };
    case "least-load":
      return {
        name,
        filters: standardFilters,
        scorers: [loadScorer, kvFreeScorer],
        picker: maxScorePicker,
        // a rise elsewhere leaves the least queued as they were, and only narrows the tie-break's range
        loadElsewhereKeepsPick: true,
      };
    case "session":
      return {
        name,
        filters: standardFilters,
        scorers: [loadScorer, kvFreeScorer],
        picker: sessionPicker(opts.sessionLoadFactor ?? SESSION_LOAD_FACTOR_DEFAULT),
      };
    case "prefix":
    case "kv":
    case "hybrid":
    case "predictive":
      return createCacheAwarePolicy(name, opts.cache ?? NO_CACHE, standardFilters, maxScorePicker, {
        cacheAware: opts.cacheAware,
        predictive: opts.predictive,
        admitBySlo: name === "predictive",
        lateBinding:
          name === "predictive" ? { ...LATE_BINDING_DEFAULTS, ...opts.predictive?.lateBinding } : undefined,
      });
    case "vllm-router-cache-aware":
      return createVllmRouterCacheAwarePolicy(name, opts.cache ?? NO_CACHE, opts.vllmRouterCacheAware);
    case "llm-d-sticky":
      return createLlmdStickyPolicy(name, opts.cache ?? NO_CACHE, maxScorePicker, opts.llmdSticky);
    case "vllm-router-program": {
      const timing = opts.predictive?.timing;
      return createVllmRouterProgramPolicy(name, opts.cache ?? NO_CACHE, {
        tokenCapacity: timing
          ? (engine) => {
              const model = engine.models.values().next().value;
              return model === undefined ? undefined : timing(engine, model)?.kvCapacityTokens;
            }
          : undefined,
        ...opts.vllmRouterProgram,
      });
    }
  }
}

/**
 * How many requests a caller keeps waiting for room (`decide` said "saturated") and for how long: the
 * live router's admission queue defaults (`admission.queueSize`, `admission.queueTimeout`), which the
 * fleet simulator's waiting queue keeps too, so both refuse (429) where the other would.
 */
export const WAITING_ROOM_DEFAULTS = { size: 1024, timeoutMs: 30_000 } as const;
