// The names of every policy, and `createPolicy`, which makes one by name: each policy is a plugin of its
// own (plugins/<folder>/, a Policy value: filters → scorers → picker) that plugins/index.ts registers
// by name, so adding a policy is adding its folder and its line there (and its name in a list below).
// The name lists live here so every caller agrees on what a policy is called.
import type { Policy } from "./policy/policy.js";
import {
  createRegisteredPolicy,
  createScorer,
  roundRobinPicker,
  type PolicyOptions,
} from "./plugins/index.js";
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
 * `predictive`: plugins/cache-aware/'s time model) price the paused sessions' contexts a placement evicts and
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

/**
 * The policy `name`, made by its plugin's factory (plugins/index.ts registers each by name), with the
 * config's scorers added to its own.
 */
export function createPolicy(name: PolicyName, opts: PolicyOptions = {}): Policy {
  const policy = createRegisteredPolicy(name, opts);
  const extra = (opts.scorers ?? []).map((s) => ("score" in s ? s : createScorer(s.name, s.weight)));
  if (extra.length === 0) return policy;
  if (policy.picker === roundRobinPicker)
    throw new InvalidConfigError(`policy '${name}' does not pick by score: scorers cannot be added to it`);
  // an added scorer may compare each engine with the others (decode-batch does)
  return { ...policy, scorers: [...policy.scorers, ...extra], loadElsewhereKeepsPick: false };
}

/**
 * How many requests a caller keeps waiting for room (`decide` said "saturated") and for how long: the
 * live router's admission queue defaults (`admission.queueSize`, `admission.queueTimeout`), which the
 * fleet simulator's waiting queue keeps too, so both refuse (429) where the other would.
 */
export const WAITING_ROOM_DEFAULTS = { size: 1024, timeoutMs: 30_000 } as const;
