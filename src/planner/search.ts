// The fleet search: for each shape (GPU × TP) the model fits on, the fewest engines whose simulated
// p90s meet the SLO with its headroom; then the cheapest shape. Every point is the fleet simulator
// (the one engine model and the real routing code); what keeps it quick:
// - a lower bound on engines from the engine's own step-time model at full batch (a fleet below it
//   cannot keep up with the offered QPS), so the search starts near the answer;
// - single-request floors (one engine, one request, no queue): a shape slower than the SLO with no
//   load at all is skipped without a fleet run;
// - runs that miss end as soon as their p90 is certain to miss (slo.ts), so a failing point costs a
//   fraction of a run;
// - growth ×1.5 then bisection (k points at once on k workers), and shapes that cannot beat the
//   cheapest fleet found so far (or the budget) are dropped before they run.
import { type OffloadMode, engineConfigFor } from "../fleet/build.js";
import type { FleetReport } from "../fleet/report.js";
import type { ResolvedScenario } from "../fleet/scenario.js";
import { Engine, StepTimer, VirtualDriver } from "../engine/index.js";
import { fleetOf, withFleet, type FleetChoice, type Shape } from "./input.js";
import type { SimPool } from "./pool.js";
import { fleetCost, type PriceTable } from "./prices.js";
import { selectRouterPolicy, type Finding } from "./rules.js";
import { checkSlo, predictedOf, secs, type Predicted, type SloCheck, type SloTargets } from "./slo.js";

/** engines per shape the search will go to */
export const MAX_ENGINES = 128;

export interface Evaluated {
  fleet: FleetChoice;
  mode: OffloadMode;
  policy: string;
  report: FleetReport;
  stoppedEarly: boolean;
  predicted: Predicted;
  check: SloCheck | null;
}

export const label = (f: FleetChoice) =>
  f.pd
    ? `${f.pd.prefill}P${f.pd.prefillTp > 1 ? ` (TP ${f.pd.prefillTp})` : ""} + ${f.pd.decode}D${f.pd.decodeTp > 1 ? ` (TP ${f.pd.decodeTp})` : ""} × ${f.gpu.toUpperCase()}`
    : `${f.engines} × ${f.gpu.toUpperCase()}${f.tp > 1 ? ` (TP ${f.tp})` : ""}`;

/** runs fleets of the scenario through the pool, each with the router policy the rules pick for it */
export class Evaluator {
  /** every complete run at the workload's full size, by layout and offload option (the plan's front) */
  readonly tried = new Map<string, Evaluated>();
  constructor(
    readonly base: ResolvedScenario,
    readonly pool: SimPool,
    readonly targets: SloTargets | null,
    /** a profiles YAML every run loads (the GPUs and models it adds may be named) */
    readonly profiles?: string,
  ) {}

  scenario(f: FleetChoice): { r: ResolvedScenario; routing: { policy: string; finding: Finding } } {
    const routing = selectRouterPolicy(withFleet(this.base, f));
    return { r: withFleet(this.base, f, routing.policy), routing };
  }

  async run(
    f: FleetChoice,
    mode: OffloadMode,
    opts: { stop?: boolean; kvScale?: number; maxRequests?: number; targets?: SloTargets } = {},
  ): Promise<Evaluated> {
    const { r, routing } = this.scenario(f);
    const targets = opts.targets ?? this.targets;
    const res = await this.pool.run({
      raw: r.scenario,
      mode,
      ...(opts.kvScale !== undefined && opts.kvScale !== 1 ? { kvScale: opts.kvScale } : {}),
      ...(opts.maxRequests !== undefined ? { maxRequests: opts.maxRequests } : {}),
      ...(opts.stop && targets ? { stopAt: targets } : {}),
      ...(this.profiles !== undefined ? { profiles: this.profiles } : {}),
    });
    const predicted = predictedOf(res.report);
    const e: Evaluated = {
      fleet: f,
      mode,
      policy: routing.policy,
      report: res.report,
      stoppedEarly: res.stoppedEarly,
      predicted,
      // against `opts.targets` where given (a phase of the P/D search checks some bounds only)
      check: targets ? checkSlo(predicted, targets, res.stoppedEarly) : null,
    };
    if (!res.stoppedEarly && (opts.kvScale ?? 1) === 1 && opts.maxRequests === undefined)
      this.tried.set(`${label(f)} ${mode}`, {
        ...e,
        check: this.targets ? checkSlo(predicted, this.targets, false) : null,
      });
    return e;
  }
}

/** prompt tokens a request must compute at best: what no cache (shared prefix, history) can serve */
export function uncachedPromptTokens(r: ResolvedScenario): number {
  const w = r.scenario.workload;
  const g = r.scenario.simulation.generator;
  if (w.prefix_reuse === "multi-round") return Math.max(1, Math.min(r.promptTokens, 64));
  const shared = Math.max(w.shared_prefix_tokens, g?.system_prompt_len ?? 0, g?.prefix_len ?? 0);
  return Math.max(1, r.promptTokens - shared);
}

/** TTFT and TPOT of one request alone on one engine of this fleet: no engine count does better */
export function singleRequestFloors(r: ResolvedScenario): { ttftMs: number; tpotMs: number } {
  const cfg = engineConfigFor(r, "none");
  const n = Math.min(uncachedPromptTokens(r), cfg.maxModelLen - 8);
  const out = Math.max(2, Math.min(8, r.scenario.workload.output_tokens));
  let ttft = 0;
  let end = 0;
  const engine: Engine = new Engine(cfg, {
    onTokens: (_id, _t, time) => {
      if (ttft === 0) ttft = time;
    },
    onFinished: (_id, _reason, t) => {
      end = t.finishedTime;
    },
  });
  const driver = new VirtualDriver();
  driver.attach(engine);
  engine.add({
    requestId: "floor",
    promptTokenIds: Array.from({ length: n }, (_, i) => 1000 + (i % 50000)),
    maxTokens: out,
    stopAfter: out,
    ignoreEos: true,
    minTokens: 0,
    priority: 0,
    cacheSalt: null,
    loraName: null,
    arrivalTime: 0,
    sampleToken: (i) => 1000 + i,
  });
  driver.wake(engine);
  driver.run();
  return { ttftMs: ttft * 1000, tpotMs: ((end - ttft) / (out - 1)) * 1000 };
}

/**
 * The engine seconds one request costs at best on this fleet's engine, split by phase: its uncached
 * prompt at the full-batch prefill rate and its output at the full-batch decode rate (no attention
 * beyond the token itself).
 */
export function busyPerRequest(r: ResolvedScenario): { prefill: number; decode: number } {
  const cfg = engineConfigFor(r, "none");
  const timer = new StepTimer(cfg);
  const b = cfg.maxNumBatchedTokens;
  const prefill = timer.time({
    prefillTokens: b,
    decodeSeqs: 0,
    attentionContext: 0,
    kvReadTokens: 0,
    loadBytesPerGpu: 0,
  });
  const s = Math.min(cfg.maxNumSeqs, b);
  const decode = timer.time({
    prefillTokens: 0,
    decodeSeqs: s,
    attentionContext: s,
    kvReadTokens: 0,
    loadBytesPerGpu: 0,
  });
  return {
    prefill: uncachedPromptTokens(r) * (prefill.duration / b),
    decode: r.scenario.workload.output_tokens * (decode.duration / s),
  };
}

/**
 * Engines below which the fleet cannot keep up with `workload.qps`: each request costs at least
 * `busyPerRequest`, and an engine is busy at most all of the time. 1 for a closed loop.
 */
export function enginesLowerBound(r: ResolvedScenario): number {
  const qps = r.scenario.workload.qps;
  if (qps === undefined) return 1;
  const busy = busyPerRequest(r);
  return Math.max(1, Math.ceil(qps * (busy.prefill + busy.decode)));
}

const grow = (n: number) => Math.max(n + 1, Math.ceil(n * 1.5));

/** k distinct integers evenly spaced strictly between a and b */
function between(a: number, b: number, k: number): number[] {
  const out: number[] = [];
  for (let i = 1; i <= k; i++) {
    const x = Math.round(a + (i * (b - a)) / (k + 1));
    if (x > a && x < b && !out.includes(x)) out.push(x);
  }
  if (out.length === 0 && b - a > 1) out.push(Math.floor((a + b) / 2));
  return out;
}

export interface EngineSearch {
  engines: number | null;
  at: Evaluated | null;
  /** the run one engine below, when there is one: the evidence that `engines` is the fewest */
  below: Evaluated | null;
  note: string;
}

/**
 * The fewest engines in [1, cap()] that meet the SLO, assuming more engines never do worse: grows
 * from `start` by ×1.5, then bisects, `width` points at a time. `knownMiss`: a count already known to
 * miss (0: none). The count just below the answer is always run, so its miss is on record.
 */
export async function minEngines(
  evalAt: (n: number) => Promise<Evaluated>,
  start: number,
  cap: () => number,
  width: number,
  knownMiss = 0,
): Promise<EngineSearch> {
  const seen = new Map<number, Evaluated>();
  const evalMany = async (ns: number[]) => {
    const rs = await Promise.all(ns.map((n) => evalAt(n)));
    ns.forEach((n, i) => seen.set(n, rs[i]!));
  };
  const met = (n: number) => seen.get(n)?.check?.met === true;
  let miss = knownMiss;
  let pass = -1;
  let n = Math.max(start, miss + 1);
  while (pass < 0) {
    const c = cap();
    if (n > c)
      return {
        engines: null,
        at: null,
        below: seen.get(miss) ?? null,
        note:
          miss > 0
            ? `${miss} engines miss the SLO, and more would cost more than allowed`
            : "over the cost cap",
      };
    const pts = [n];
    while (pts.length < width && grow(pts[pts.length - 1]!) <= c) pts.push(grow(pts[pts.length - 1]!));
    await evalMany(pts);
    for (const p of pts) {
      if (met(p)) {
        pass = p;
        break;
      }
      miss = p;
    }
    if (pass < 0) n = grow(pts[pts.length - 1]!);
  }
  while (pass - miss > 1) {
    // the lower bound makes start − 1 the likely miss: confirm it first, bisect on the other workers
    const pts =
      pass === start && !seen.has(pass - 1)
        ? [pass - 1, ...between(miss, pass - 1, width - 1)]
        : between(miss, pass, width);
    await evalMany(pts);
    for (const p of pts) if (met(p) && p < pass) pass = p;
    for (const p of pts) if (!met(p) && p > miss && p < pass) miss = p;
  }
  return { engines: pass, at: seen.get(pass) ?? null, below: seen.get(pass - 1) ?? null, note: "" };
}

export interface ShapeOutcome {
  shape: Shape;
  engines: number | null;
  cost: number | null;
  note: string;
}

export interface Found {
  fleet: FleetChoice;
  cost: number;
  at: Evaluated;
  below: Evaluated | null;
}

export interface FleetSearchOptions {
  prices: PriceTable;
  /** USD per hour a fleet may cost at most */
  budget: number | null;
  /** a fixed engine count (fleet.engines given), or null to search it */
  engines: number | null;
  /** the most engines to consider (1 without Kubernetes: one engine behind a proxy) */
  maxEngines: number;
  mode: OffloadMode;
  /** how a cost of `prices` reads in notes (default USD per hour) */
  money?: (x: number) => string;
}

/** the cheapest fleet over `shapes` that meets the SLO, and what became of each shape */
export async function searchFleet(
  ev: Evaluator,
  shapes: readonly Shape[],
  o: FleetSearchOptions,
): Promise<{ found: Found | null; shapes: ShapeOutcome[] }> {
  const targets = ev.targets!;
  const outcomes: ShapeOutcome[] = [];
  const todo: { shape: Shape; lo: number; price: number }[] = [];
  for (const shape of shapes) {
    const price = o.prices[shape.gpu];
    if (price === undefined) {
      outcomes.push({ shape, engines: null, cost: null, note: "no price for this GPU" });
      continue;
    }
    const r = withFleet(ev.base, { ...shape, engines: 1 });
    const floor = singleRequestFloors(r);
    const w = r.scenario.workload;
    const e2eFloor = floor.ttftMs + (w.output_tokens - 1) * floor.tpotMs;
    const slow =
      floor.ttftMs > targets.ttft
        ? `one request alone already takes TTFT ${secs(floor.ttftMs)} > ${secs(targets.ttft)}`
        : floor.tpotMs > targets.tpot
          ? `one request alone already takes TPOT ${secs(floor.tpotMs)} > ${secs(targets.tpot)}`
          : targets.e2e !== null && e2eFloor > targets.e2e
            ? `one request alone already takes E2E ${secs(e2eFloor)} > ${secs(targets.e2e)}`
            : null;
    if (slow) {
      outcomes.push({ shape, engines: null, cost: null, note: slow });
      continue;
    }
    const lo = o.engines ?? Math.min(enginesLowerBound(r), o.maxEngines + 1);
    todo.push({ shape, lo, price });
  }
  todo.sort((a, b) => a.lo * a.shape.tp * a.price - b.lo * b.shape.tp * b.price);
  // shapes run in waves of one per worker; the cheapest found so far caps the next wave (ties allowed,
  // so that the order runs finish in never changes what is found: the output is the same every time)
  let best: Found | null = null;
  const found: (Found & { order: number })[] = [];
  const waveSize = Math.min(ev.pool.size, Math.max(1, todo.length));
  const width = Math.max(1, Math.floor(ev.pool.size / waveSize));
  const money = o.money ?? usdh;
  for (let w = 0; w < todo.length; w += waveSize) {
    const cap0 = best ? (best as Found).cost : Infinity;
    const wave = todo.slice(w, w + waveSize);
    const results = await Promise.all(
      wave.map(async (t) => {
        const perEngine = t.shape.tp * t.price;
        let c = o.maxEngines;
        if (o.budget !== null) c = Math.min(c, Math.floor((o.budget + 1e-9) / perEngine));
        if (cap0 < Infinity) c = Math.min(c, Math.floor(cap0 / perEngine + 1e-9));
        if (t.lo > c) {
          const note =
            t.lo > o.maxEngines
              ? `needs more than ${o.maxEngines} engines to keep up with the load`
              : `needs at least ${t.lo} engine${t.lo === 1 ? "" : "s"} (${money(t.lo * perEngine)}) to keep up with the load: ${cap0 < Infinity ? `cannot beat the ${money(cap0)} found` : "over the budget"}`;
          return { t, s: { engines: null, at: null, below: null, note } as EngineSearch };
        }
        const evalAt = (n: number) => ev.run({ ...t.shape, engines: n }, o.mode, { stop: true });
        const s =
          o.engines !== null
            ? await fixedCount(evalAt, o.engines)
            : await minEngines(evalAt, t.lo, () => c, width);
        return { t, s };
      }),
    );
    for (const { t, s } of results) {
      const cost = s.engines === null ? null : fleetCost(o.prices, t.shape.gpu, s.engines, t.shape.tp);
      outcomes.push({ shape: t.shape, engines: s.engines, cost, note: s.note });
      if (s.engines !== null && s.at && cost !== null)
        found.push({
          fleet: { ...t.shape, engines: s.engines },
          cost,
          at: s.at,
          below: s.below,
          order: found.length,
        });
    }
    // the cheapest; then fewer GPUs; then the lower TTFT p90; then search order
    found.sort(
      (x, y) =>
        x.cost - y.cost ||
        x.fleet.engines * x.fleet.tp - y.fleet.engines * y.fleet.tp ||
        x.at.predicted.ttft_p90_ms - y.at.predicted.ttft_p90_ms ||
        x.order - y.order,
    );
    best = found[0] ?? null;
  }
  return { found: best, shapes: outcomes };
}

async function fixedCount(evalAt: (n: number) => Promise<Evaluated>, n: number): Promise<EngineSearch> {
  const at = await evalAt(n);
  return at.check?.met
    ? { engines: n, at, below: null, note: "" }
    : { engines: null, at: null, below: at, note: `${n} engines miss: ${at.check?.misses.join(", ")}` };
}

export const usdh = (x: number) => `$${x.toFixed(2)}/h`;

/**
 * Prices that make the search minimise GPUs, then cost (`--target-rps`): one unit per GPU plus a
 * ten-thousandth of its price, which breaks ties between equal GPU counts and never outweighs a GPU.
 */
export function gpuCountPrices(prices: PriceTable): PriceTable {
  const out: Record<string, number> = {};
  for (const [k, v] of Object.entries(prices)) out[k] = 1 + v * 1e-4;
  return out;
}

/** a cost of `gpuCountPrices` in words: its GPU count */
export const gpuCount = (x: number) => `${Math.floor(x + 1e-9)} GPUs`;

/** the fleet a fixed scenario runs (with the context sized to the workload where the model's would not fit) */
export function fixedFleet(r: ResolvedScenario, shape: Shape): FleetChoice {
  return { ...fleetOf(r), ...shape };
}
