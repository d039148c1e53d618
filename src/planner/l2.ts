// The shared KV tier's store (LMCache's L2): the project's cache server, one process on one node, or a
// Valkey Cluster sharded by hash slot over several, each primary with a replica. Chosen from the
// working set (the reused prefix bytes the workload keeps live) against the memory one node gives
// the tier, and from an HA requirement: one server's loss empties the tier, a cluster's replica takes
// over. The cluster is sized here (shards, memory per shard) and the simulator models it as the shared
// tier it already models, at the cluster's total size (replicas are copies, not capacity).
import { kvBytesPerToken } from "../models/index.js";
import type { ResolvedScenario } from "../fleet/scenario.js";

const GiB = 1024 ** 3;
/** the tier holds the working set with this much room: LRU keeps the live set only with slack */
export const L2_HEADROOM = 0.25;
/** Valkey Cluster's smallest sensible layout (`--cluster create` wants at least 3 primaries) */
export const MIN_SHARDS = 3;

export interface L2Cluster {
  shards: number;
  replicas_per_shard: number;
  memory_per_shard_gib: number;
  /** pods: shards × (1 + replicas) */
  nodes: number;
}

export interface L2Plan {
  choice: "cache-server" | "cluster";
  rule: string;
  reason: string;
  /** the reused prefix bytes the workload keeps live, GiB */
  working_set_gib: number;
  /** how the working set was found: the scenario's figure, or the estimate's terms */
  working_set_source: string;
  /** what the tier must hold: the larger of the scenario's size and the working set with headroom */
  needed_gib: number;
  node_memory_gib: number;
  ha: boolean;
  /** the tier's capacity as simulated: the server's size, or shards × memory per shard */
  size_gib: number;
  cluster: L2Cluster | null;
}

/** generators whose sessions keep their own growing history (each live session's prompt is reused) */
const SESSION_GENERATORS = new Set(["multi-round-qa", "agentic", "conversation-replay"]);

/**
 * The prefix tokens the workload keeps live: every distinct shared prefix (one per tenant, group or
 * prefix of the generator) and, where sessions reuse their own history, each session in flight's
 * prompt at p90.
 */
export function workingSetTokens(r: ResolvedScenario): { tokens: number; terms: string } {
  const w = r.scenario.workload;
  const g = r.scenario.simulation.generator;
  const prefixes = Math.max(
    w.shared_prefix_tokens * w.tenants,
    (g?.system_prompt_len ?? 0) * (g?.num_groups ?? 1),
    (g?.prefix_len ?? 0) * (g?.num_prefixes ?? 1),
    g?.shared_system_prompt ?? 0,
  );
  const sessionsReuse =
    w.prefix_reuse === "multi-round" || (g !== undefined && SESSION_GENERATORS.has(g.name));
  const sessions = sessionsReuse ? (g?.num_users ?? g?.sessions ?? w.concurrency ?? 0) : 0;
  const histories = sessions * r.promptP90;
  const terms = [
    `${prefixes} shared prefix tokens`,
    ...(histories > 0 ? [`${sessions} live sessions × ${r.promptP90} prompt tokens (p90)`] : []),
  ].join(" + ");
  return { tokens: prefixes + histories, terms };
}

/** the L2 for a scenario with a shared tier (`offload.shared_server`); null without one */
export function planL2(r: ResolvedScenario): L2Plan | null {
  const srv = r.scenario.simulation.offload.shared_server;
  if (!srv) return null;
  const perToken = kvBytesPerToken(r.model);
  let workingSet: number;
  let source: string;
  if (srv.working_set_gib !== undefined) {
    workingSet = srv.working_set_gib;
    source = "offload.shared_server.working_set_gib";
  } else {
    const { tokens, terms } = workingSetTokens(r);
    workingSet = (tokens * perToken) / GiB;
    source = `${terms}, at ${(perToken / 1024).toFixed(0)} KiB of KV per token (${r.model.id})`;
  }
  const needed = Math.max(srv.size_gib, Math.ceil(workingSet * (1 + L2_HEADROOM)));
  const node = srv.node_memory_gib;
  const base = {
    working_set_gib: round1(workingSet),
    working_set_source: source,
    needed_gib: needed,
    node_memory_gib: node,
    ha: srv.ha,
  };
  if (!srv.ha && needed <= node)
    return {
      ...base,
      choice: "cache-server",
      rule: "l2.cache-server.fits-one-node",
      reason: `the tier needs ${needed} GiB (working set ${round1(workingSet)} GiB + ${L2_HEADROOM * 100}%, or the scenario's size), within one node's ${node} GiB, and no HA is required: the single cache server`,
      size_gib: srv.size_gib,
      cluster: null,
    };
  const shards = Math.max(MIN_SHARDS, Math.ceil(needed / node));
  const perShard = Math.ceil(needed / shards);
  const cluster: L2Cluster = {
    shards,
    replicas_per_shard: 1,
    memory_per_shard_gib: perShard,
    nodes: shards * 2,
  };
  const why =
    needed > node
      ? `the tier needs ${needed} GiB (working set ${round1(workingSet)} GiB + ${L2_HEADROOM * 100}%, or the scenario's size), more than one node's ${node} GiB`
      : `HA is required (one cache server's loss empties the tier; a replica takes over a failed primary)`;
  return {
    ...base,
    choice: "cluster",
    rule: needed > node ? "l2.cluster.exceeds-one-node" : "l2.cluster.ha",
    reason: `${why}: a Valkey Cluster of ${shards} primaries × ${perShard} GiB, each with a replica (${cluster.nodes} nodes, ${shards * perShard} GiB shared)`,
    size_gib: shards * perShard,
    cluster,
  };
}

/**
 * The scenario the simulator runs for this L2: a cluster is one shared tier of its total size, read
 * by every engine (no server per node), and the router is blind to it: LMCache's valkey adapter
 * announces nothing, and a tier every engine reads equally tells engines apart by nothing, so
 * `predictive` credits no engine with it (docs/routing.md).
 */
export function withL2(r: ResolvedScenario, l2: L2Plan): ResolvedScenario {
  const off = r.scenario.simulation.offload;
  if (l2.choice !== "cluster" || !off.shared_server) return r;
  const shared = { ...off.shared_server, size_gib: l2.size_gib };
  delete shared.engines_per_server;
  return {
    ...r,
    scenario: {
      ...r.scenario,
      simulation: { ...r.scenario.simulation, tier_aware: false, offload: { ...off, shared_server: shared } },
    },
  };
}

const round1 = (x: number) => Math.round(x * 10) / 10;
