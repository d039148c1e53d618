// The decider's rules and refusals, each with a stable id, the decider's own words, and a predicate
// over the scenario (and, for the selection rules, the simulator's view of the baseline). A finding's
// reason says which conditions fired, with the numbers that fired them. Tests trigger and miss each.
import type { ResolvedScenario } from "../fleet/scenario.js";
import type { PolicyName } from "../routing/index.js";

export interface Finding {
  rule: string;
  reason: string;
}

export interface Rule {
  id: string;
  /** the decider's words, quoted in the plan */
  quote: string;
}

export const REFUSALS = {
  noHbmMonitoring: {
    id: "refuse.plan.no-hbm-monitoring",
    quote: "Running vLLM without HBM-pressure monitoring. Refuse — first preemption will be a surprise.",
  },
  noKubernetes: {
    id: "refuse.chart.no-kubernetes",
    quote:
      "If the team doesn't have K8s capability, refuse production-stack — start with a single-engine vLLM + simple proxy.",
  },
  handRolled: {
    id: "refuse.stack.hand-rolled",
    quote: "Hand-rolling production-stack when the Helm chart covers the use case. Refuse — reinvent cost.",
  },
  shortPromptsLowConcurrency: {
    id: "refuse.offload.short-prompts-low-concurrency",
    quote:
      "If the workload has prompts < 1K tokens and < 100 concurrency, refuse offload of any kind — HBM headroom suffices.",
  },
  lmcacheSingleEngine: {
    id: "refuse.lmcache.single-engine",
    quote:
      "If the fleet has <2 engines, refuse LMCache — cross-engine reuse is the point; single-engine use native.",
  },
  lmcacheNoReuse: {
    id: "refuse.lmcache.no-shared-prefix-no-preemption",
    quote: "Deploying LMCache without shared prefixes or preemption. Refuse — overhead, no benefit.",
  },
} as const satisfies Record<string, Rule>;

export const SELECTIONS = {
  none: {
    id: "select.offload.none",
    quote: "None (short prompts, low concurrency — overhead exceeds benefit).",
  },
  native: {
    id: "select.offload.native",
    quote: "Native vLLM CPU offload (single-engine HBM pressure, simple).",
  },
  lmcache: {
    id: "select.offload.lmcache",
    quote: "LMCache connector (multi-engine prefix reuse, preemption-heavy, or multi-tenant shared prompts).",
  },
} as const satisfies Record<string, Rule>;

/** the KV usage the decider calls the pre-preemption signal */
export const KV_ALERT_THRESHOLD = 0.92;
/** the decider's short-prompt and low-concurrency bounds */
export const SHORT_PROMPT_TOKENS = 1000;
export const LOW_CONCURRENCY = 100;

const refusal = (r: Rule, detail: string): Finding => ({ rule: r.id, reason: `${r.quote} (${detail})` });

/** planning itself is refused: exit 2 */
export function planRefusal(r: ResolvedScenario): Finding | null {
  if (!r.scenario.ops.hbm_monitoring) return refusal(REFUSALS.noHbmMonitoring, "ops.hbm_monitoring is false");
  return null;
}

export function stackRefusals(r: ResolvedScenario): Finding[] {
  const out: Finding[] = [];
  const ops = r.scenario.ops;
  if (!ops.kubernetes) out.push(refusal(REFUSALS.noKubernetes, "ops.kubernetes is false"));
  else if (ops.hand_rolled_stack)
    out.push(
      refusal(REFUSALS.handRolled, "ops.hand_rolled_stack is true and the chart covers this workload"),
    );
  return out;
}

/** whether the workload shares prefixes across requests (the reuse LMCache exists for) */
export function hasSharedPrefixes(r: ResolvedScenario): boolean {
  const w = r.scenario.workload;
  return w.shared_prefix_tokens > 0 || w.prefix_reuse !== "none";
}

/** evidence of preemption: declared by the team, or seen by the simulator in the baseline */
export function preemptionSeen(r: ResolvedScenario, simulatedPreemptions: number): boolean {
  return r.scenario.workload.preemption_heavy || simulatedPreemptions > 0;
}

/** the requests in flight the rules reason about: the scenario's, or an estimate for an open loop */
export interface Concurrency {
  value: number;
  /** how it was obtained, when not given (e.g. "6 QPS × 7.50 s mean E2E, Little's law") */
  basis: string | null;
}

export function offloadRefusals(
  r: ResolvedScenario,
  simulatedPreemptions: number,
  concurrency: Concurrency = { value: r.scenario.workload.concurrency ?? 0, basis: null },
): Finding[] {
  const out: Finding[] = [];
  if (r.promptTokens < SHORT_PROMPT_TOKENS && concurrency.value < LOW_CONCURRENCY) {
    const c = concurrency.basis
      ? `concurrency ≈ ${Math.round(concurrency.value)} (${concurrency.basis})`
      : `concurrency ${concurrency.value}`;
    out.push(
      refusal(
        REFUSALS.shortPromptsLowConcurrency,
        `prompts of ${r.promptTokens} tokens < ${SHORT_PROMPT_TOKENS} and ${c} < ${LOW_CONCURRENCY}`,
      ),
    );
  }
  if (r.scenario.fleet.engines < 2) {
    out.push(refusal(REFUSALS.lmcacheSingleEngine, `fleet.engines is ${r.scenario.fleet.engines}`));
  }
  if (!hasSharedPrefixes(r) && !preemptionSeen(r, simulatedPreemptions)) {
    out.push(
      refusal(
        REFUSALS.lmcacheNoReuse,
        "workload.shared_prefix_tokens is 0, prefix_reuse is none, and neither the team nor the simulator sees preemptions",
      ),
    );
  }
  return out;
}

export interface SelectionInput {
  refusals: readonly Finding[];
  /** the simulated baseline's KV usage P99 (0..1) and preemptions */
  baselineKvP99: number;
  baselinePreemptions: number;
  /** simulated throughput gain of offload over none (the better of native and LMCache), e.g. 0.21 */
  offloadGain: number;
}

/**
 * a simulated gain below this is not counted as HBM pressure: the published cost of offload when KV fits
 * is 1.5–2.6% (docs/planner.md), so smaller gains are within what the option costs elsewhere
 */
export const OFFLOAD_PAYS_GAIN = 0.03;

const pct = (x: number) => `${(x * 100).toFixed(1)}%`;
const signed = (x: number) => `${x >= 0 ? "+" : "−"}${Math.abs(x * 100).toFixed(1)}%`;

/** the decider's selection: LMCache for cross-engine reuse or preemption, native for HBM pressure, else none */
export function selectOffload(
  r: ResolvedScenario,
  s: SelectionInput,
): { choice: "none" | "native" | "lmcache"; finding: Finding } {
  const refused = new Set(s.refusals.map((f) => f.rule));
  const w = r.scenario.workload;
  const engines = r.scenario.fleet.engines;
  const anyOffloadRefused = refused.has(REFUSALS.shortPromptsLowConcurrency.id);
  const lmcacheRefusedBy = [
    REFUSALS.shortPromptsLowConcurrency.id,
    REFUSALS.lmcacheSingleEngine.id,
    REFUSALS.lmcacheNoReuse.id,
  ].filter((id) => refused.has(id));
  // KV usage counts blocks in use; a prefix cache that spills (evicted prefixes re-prefilled) shows up
  // as an offload gain in the simulator instead. Each condition that fires is named with its number.
  const pressure: string[] = [];
  if (s.baselineKvP99 >= KV_ALERT_THRESHOLD)
    pressure.push(`KV usage P99 ${pct(s.baselineKvP99)} ≥ ${pct(KV_ALERT_THRESHOLD)}`);
  if (s.baselinePreemptions > 0)
    pressure.push(`${s.baselinePreemptions} preemptions in the simulated baseline`);
  if (w.preemption_heavy) pressure.push("workload.preemption_heavy is declared");
  if (s.offloadGain >= OFFLOAD_PAYS_GAIN)
    pressure.push(`offload gains ${signed(s.offloadGain)} ≥ ${signed(OFFLOAD_PAYS_GAIN)} in simulation`);
  const crossEngineReuse =
    engines >= 2 &&
    (w.prefix_reuse === "multi-tenant" ||
      w.prefix_reuse === "rag" ||
      w.prefix_reuse === "multi-round" ||
      w.shared_prefix_tokens > 0);
  const reuse = crossEngineReuse
    ? `cross-engine reuse: ${engines} engines, prefix_reuse ${w.prefix_reuse}, ${w.shared_prefix_tokens} shared prefix tokens`
    : w.preemption_heavy && engines >= 2
      ? `${engines} engines with declared preemption`
      : null;
  if (lmcacheRefusedBy.length === 0 && reuse !== null && pressure.length > 0) {
    return {
      choice: "lmcache",
      finding: {
        rule: SELECTIONS.lmcache.id,
        reason: `${SELECTIONS.lmcache.quote} Fired by ${reuse}; HBM pressure: ${pressure.join("; ")}.`,
      },
    };
  }
  if (!anyOffloadRefused && pressure.length > 0) {
    const why =
      lmcacheRefusedBy.length > 0
        ? `LMCache refused (${lmcacheRefusedBy.join(", ")})`
        : `no cross-engine reuse (${engines} engine${engines === 1 ? "" : "s"}, prefix_reuse ${w.prefix_reuse}, ${w.shared_prefix_tokens} shared prefix tokens)`;
    return {
      choice: "native",
      finding: {
        rule: SELECTIONS.native.id,
        reason: `${SELECTIONS.native.quote} Fired by HBM pressure: ${pressure.join("; ")}; ${why}.`,
      },
    };
  }
  if (anyOffloadRefused) {
    const f = s.refusals.find((x) => x.rule === REFUSALS.shortPromptsLowConcurrency.id)!;
    const detail = f.reason.slice(REFUSALS.shortPromptsLowConcurrency.quote.length).trim();
    return {
      choice: "none",
      finding: {
        rule: SELECTIONS.none.id,
        reason: `${SELECTIONS.none.quote} Fired: offload refused by ${f.rule} ${detail}.`,
      },
    };
  }
  return {
    choice: "none",
    finding: {
      rule: SELECTIONS.none.id,
      reason: `No offload: no HBM pressure in the simulated baseline (KV usage P99 ${pct(s.baselineKvP99)} < ${pct(KV_ALERT_THRESHOLD)}, ${s.baselinePreemptions} preemptions, best offload gain ${signed(s.offloadGain)} < ${signed(OFFLOAD_PAYS_GAIN)}): the offload copies would cost more than they save.`,
    },
  };
}

export const ROUTER_SELECTIONS = {
  hybrid: {
    id: "select.router.hybrid",
    quote:
      "Cache-aware routing (hybrid: exact KV-event routing where engines publish, the approximate prefix index elsewhere, weighed against load) — prefix reuse across ≥ 2 engines is only cached where the request lands.",
  },
  leastLoad: {
    id: "select.router.least-load",
    quote:
      "Least-load routing — with one engine or no prefix reuse there is no cache to route to, only load.",
  },
  pinned: {
    id: "select.router.pinned",
    quote: "The scenario pins the router policy (simulation.policy): planned and simulated as pinned.",
  },
} as const satisfies Record<string, Rule>;

/**
 * the router policy the plan recommends and simulates: hybrid where a cache can be routed to (≥ 2 engines
 * and prefix reuse), least-load otherwise; a policy the scenario names wins (the published-shape
 * scenarios pin the stand-in they were measured with, docs/planner.md)
 */
export function selectRouterPolicy(r: ResolvedScenario): { policy: PolicyName; finding: Finding } {
  const pinned = r.scenario.simulation.policy as PolicyName | undefined;
  // without Kubernetes the plan deploys one engine behind a proxy (refuse.chart.no-kubernetes)
  const engines = r.scenario.ops.kubernetes ? r.scenario.fleet.engines : 1;
  const w = r.scenario.workload;
  const reuse = `prefix_reuse ${w.prefix_reuse}, ${w.shared_prefix_tokens} shared tokens, ${engines} engine${engines === 1 ? "" : "s"} deployed`;
  if (pinned)
    return {
      policy: pinned,
      finding: { rule: ROUTER_SELECTIONS.pinned.id, reason: `${ROUTER_SELECTIONS.pinned.quote} (${pinned})` },
    };
  if (engines >= 2 && hasSharedPrefixes(r))
    return {
      policy: "hybrid",
      finding: { rule: ROUTER_SELECTIONS.hybrid.id, reason: `${ROUTER_SELECTIONS.hybrid.quote} (${reuse})` },
    };
  return {
    policy: "least-load",
    finding: {
      rule: ROUTER_SELECTIONS.leastLoad.id,
      reason: `${ROUTER_SELECTIONS.leastLoad.quote} (${reuse})`,
    },
  };
}
