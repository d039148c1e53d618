// The routing-cost benchmark's rows (bench/router/overhead-at-rate.ts, `router/overhead --json F`) and its
// knee rule, here so that a test can hold the rule without importing a benchmark script.

/** p50, p95, p99 in ms */
export interface Pct {
  p50: number;
  p95: number;
  p99: number;
}

export interface Run {
  policy: string;
  rate: number;
  prompt_tokens: number;
  /**
   * what the router adds: the percentiles of each request's time outside the engine (end to end less
   * the time the engine itself stamps it held the request) through the router, less the same
   * percentiles sent straight to the engines
   */
  added_ms: Pct;
  router_cores: number | null;
  /** the router's CPU per request completed in the measured window: what a rate costs it, rate × this */
  router_cpu_ms_per_req: number | null;
  /** CPU per request completed, µs: the router (its workers included), the load client, the engines */
  cpu_us_per_req: { router: number | null; client: number; engines: number | null };
  /** the same of the direct run (no router) */
  direct_cpu_us_per_req: { client: number; engines: number | null };
  /** end-to-end percentiles through the router less those straight to the engines (engine time included) */
  added_e2e_ms: Pct;
  router_ms: Pct;
  direct_ms: Pct;
  /** time outside the engine, through the router and straight to the engines */
  router_outside_ms: Pct;
  direct_outside_ms: Pct;
  /** the client's send → the engine has the request: through the router (its decision lies here) and straight */
  router_inbound_ms: Pct;
  direct_inbound_ms: Pct;
  achieved_rps: number;
  errors: number;
  client_lag_p99_ms: number;
  /** the share of prompt tokens the router predicted its picks hold (null: no cache-aware decision) */
  predicted_cached_share: number | null;
  /** the share of long prompts the router's event loop worked out itself, not its prompt thread (null: none) */
  long_prompts_on_loop_share: number | null;
  /** completions per second of the same workload sent straight to the engines */
  direct_achieved_rps: number;
  /** that direct run fell behind the rate (the client or the engines were the limit) */
  harness_bound: boolean;
}

export interface Knee {
  policy: string;
  prompt_tokens: number;
  /** the first rate at which the router broke away; null: none up to the highest rate run */
  rate: number | null;
  reason: string;
}

/**
 * Where the router stops keeping up, per policy and prompt size: the first rate at which it uses 90% of
 * the machine's cores, completes under 95% of the rate, fails a request, or adds a p95 above twice the
 * lowest rate's plus 5 ms; not looked for at or past a rate where the direct run fell behind.
 */
export function knees(runs: Run[], cores: number): Knee[] {
  const groups = new Map<string, Run[]>();
  for (const r of runs) {
    const k = `${r.policy}\u0000${r.prompt_tokens}`;
    (groups.get(k) ?? groups.set(k, []).get(k)!).push(r);
  }
  return [...groups.values()].map((rs) => {
    rs.sort((a, b) => a.rate - b.rate);
    const base = Math.max(0, rs[0]!.added_ms.p95);
    const knee: Knee = { policy: rs[0]!.policy, prompt_tokens: rs[0]!.prompt_tokens, rate: null, reason: "" };
    for (const r of rs) {
      if (r.harness_bound)
        return {
          ...knee,
          reason: `none below ${r.rate} req/s, where the load client or the engines fell behind`,
        };
      const why =
        r.router_cores !== null && r.router_cores >= 0.9 * cores
          ? `router CPU ${r.router_cores.toFixed(2)} of ${cores} cores`
          : r.achieved_rps < 0.95 * r.rate
            ? `completes ${r.achieved_rps.toFixed(0)} of ${r.rate} req/s`
            : r.errors > 0
              ? `${r.errors} errors`
              : r.added_ms.p95 > 2 * base + 5
                ? `added p95 ${r.added_ms.p95.toFixed(1)} ms vs ${base.toFixed(1)} ms at ${rs[0]!.rate} req/s`
                : null;
      if (why) return { ...knee, rate: r.rate, reason: why };
    }
    return { ...knee, reason: `none up to ${rs[rs.length - 1]!.rate} req/s` };
  });
}
