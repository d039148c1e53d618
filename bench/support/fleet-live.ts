// The same scenario in virtual time and against a live stack (`switchyard up`): the live side sends the
// scenario's workload (the same generator and seed) with the bench's load driver and client, and both
// sides are summarised by the bench's metric code. A live stack whose engines run with --time-scale s
// spends s wall seconds per modelled second, so its timings are divided by s before the comparison.
// It lives with the benchmarks, not in src/fleet: `switchyard simulate` never runs it, and only here
// may the fleet simulator and the bench, two programs, meet.
import { BenchClient } from "../../src/bench/client.js";
import { LoadRun, type TurnToSend } from "../../src/bench/load.js";
import { summarize, type MetricFields } from "../../src/workload/metrics.js";
import type { RequestRecord } from "../../src/workload/record.js";
import { completionPrompt, intendedPromptTokens } from "../../src/workload/types.js";
import { fleetOptionsFor, type OffloadMode } from "../../src/fleet/build.js";
import { simulateFleet } from "../../src/fleet/fleet.js";
import type { ResolvedScenario } from "../../src/fleet/scenario.js";

export interface SideResult {
  records: RequestRecord[];
  durationS: number;
  fields: MetricFields;
}

export function runVirtual(r: ResolvedScenario, mode: OffloadMode = "none"): SideResult {
  const res = simulateFleet(fleetOptionsFor(r, mode, { recordItl: true }));
  return {
    records: res.records,
    durationS: res.durationS,
    fields: summarize(res.records, res.durationS, null),
  };
}

/** a live record in modelled time: wall milliseconds divided by the engines' time scale */
function toModelled(rec: RequestRecord, timeScale: number): RequestRecord {
  return {
    ...rec,
    start: rec.start / timeScale,
    ttft: rec.ttft / timeScale,
    e2el: rec.e2el / timeScale,
    itl: rec.itl.map((g) => g / timeScale),
  };
}

export interface LiveOptions {
  /** the router of a running stack, e.g. http://127.0.0.1:8080 */
  baseUrl: string;
  /** the --time-scale its engines run with */
  timeScale: number;
  timeoutMs?: number;
}

/**
 * Sends the scenario's workload to a live stack as `switchyard bench` would (completions endpoint, so
 * no chat template adds tokens; ignore_eos so outputs run to max_tokens as in the simulator) and
 * returns the records in modelled time.
 */
export async function runLive(r: ResolvedScenario, o: LiveOptions): Promise<SideResult> {
  const opts = fleetOptionsFor(r, "none");
  const concurrency = Number.isFinite(opts.concurrency) ? opts.concurrency : 256;
  const client = new BenchClient({
    baseUrl: o.baseUrl,
    model: r.model.id,
    endpoint: "completions",
    apiKey: null,
    connections: Math.min(concurrency, 1024),
    timeoutMs: o.timeoutMs ?? 120_000,
    extraHeaders: {},
    extraBody: { ignore_eos: true, temperature: 0 },
  });
  try {
    const send = (t: TurnToSend) =>
      client.send({
        index: t.index,
        sessionId: t.session.id,
        round: t.round,
        prompt: completionPrompt(t.session, t.round, t.answers),
        messages: null,
        maxTokens: t.session.turns[t.round]!.maxTokens,
        intendedPromptTokens: intendedPromptTokens(t.session, t.round),
        sessionHeader: opts.workload.sessionHeader,
        keepText: t.session.carriesHistory,
      });
    const run = new LoadRun(
      {
        // the arrival rate is modelled requests/s: the live stack runs 1/timeScale times faster
        qps: opts.qps / o.timeScale,
        arrival: opts.arrival,
        concurrency: opts.concurrency,
        maxRequests: opts.maxRequests,
        durationS: opts.durationS * o.timeScale,
        seed: opts.seed,
      },
      send,
    );
    const res = await run.run(opts.workload.sessions);
    const records = res.records.map((rec) => toModelled(rec, o.timeScale));
    const durationS = res.durationS / o.timeScale;
    return { records, durationS, fields: summarize(records, durationS, null) };
  } finally {
    await client.close();
  }
}

export interface Agreement {
  metric: string;
  virtual: number;
  live: number;
  /** (live − virtual) / virtual */
  relDiff: number;
}

/** the figures acceptance compares: TTFT (mean, p50) and throughput (output and total tokens/s) */
export const COMPARED = ["mean_ttft_ms", "median_ttft_ms", "output_throughput", "total_token_throughput"];

export function compare(v: MetricFields, l: MetricFields, metrics = COMPARED): Agreement[] {
  return metrics.map((m) => {
    const a = v[m] as number;
    const b = l[m] as number;
    return { metric: m, virtual: a, live: b, relDiff: (b - a) / a };
  });
}
