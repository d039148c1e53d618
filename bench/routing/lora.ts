// routing/lora: a LoRA fleet, many adapters on a few engines. 4 engines (--max-loras 8,
// --max-cpu-loras 32), 500 adapters with Zipf(1.0) popularity, a few shared system prompts, each policy
// loading cold adapters on demand through the engines' load API. Policies: ours (`lora`), the Gateway API
// Inference Extension's LoRA affinity + least queue/KV (`gie-lora-affinity`), round-robin with loading
// everywhere, a static placement (each adapter on 2 engines), and clairvoyant (ours on exact engine
// state, scraped at every decision: an oracle heuristic, the load unit; no bound, since a policy can beat
// it on some fleets, so no target is excused by it). Figures: TTFT p50/p90 at 70% of the fleet's capacity,
// adapter loads per minute, and each policy's capacity within the TTFT p90 SLO, as routing/agentic
// measures it: the highest request rate held (doubling from 16 req/s, then bisection to --resolution),
// seeds pooled, reported as a fraction of the clairvoyant heuristic's capacity. Virtual time
// (the fleet simulator: src/fleet/lora-run.ts through simulateFleet).
// Without --virtual, live (bench/routing/lora-live.ts): each policy but the clairvoyant heuristic on a fresh
// stack of sims behind a real router (`--lora-policy`) at each of --rates (modelled req/s) for each seed,
// the engines at --time-scale; capacity is the highest of those rates held within the SLO, and the fleet
// simulator runs the same grid (same seeds, duration and arrivals, engines named as the live ones)
// beside it for the comparison.
//
// With --sweep (virtual time), the grid of adapter mixes in bench/routing/lora-sweep.ts instead.
//
//   npm run bench -- routing/lora --virtual [--json FILE] [--seeds 1,2] [--duration 60]
//   npm run bench -- routing/lora --virtual --sweep [--json FILE] [--workers 2] [--points "default;zipf=0.6"]
//   npm run bench -- routing/lora [--rates 24,30,36] [--live-duration 24] [--time-scale 4] [--json FILE]
import { writeFileSync } from "node:fs";
import type { FlagSpecs } from "../../src/config/args.js";
import { benchFlags } from "../support/flags.js";
import { defaultEngineConfig, type EngineConfig } from "../../src/engine/index.js";
import { resolveGpu, resolveModel } from "../../src/models/index.js";
import { createPolicy } from "../../src/routing/policies.js";
import {
  createGieLoraAffinityPolicy,
  createLoraPolicy,
  createStaticLoraPolicy,
} from "../../src/routing/lora.js";
import type { Policy } from "../../src/routing/index.js";
import type { LoraWorkload } from "../../src/fleet/lora.js";
import { simulateLoraFleet } from "../../src/fleet/lora-run.js";
import { percentile } from "../../src/workload/stats.js";
import { highestLoadHeld } from "../support/capacity.js";
import { makeAdapters, removeAdapters, runLiveLora } from "./lora-live.js";
import { runSweep } from "./lora-sweep.js";

const specs: FlagSpecs = {
  virtual: { type: "boolean", default: false, help: "virtual time (the fleet simulator); else live" },
  rates: { type: "string", default: "24,30,36", help: "live: request rates tried, modelled req/s" },
  "live-duration": { type: "number", default: 24, help: "live: seconds of arrivals per run, modelled" },
  "time-scale": { type: "number", default: 4, help: "live: the sims' --time-scale (wall s per modelled s)" },
  engines: { type: "int", default: 4, min: 1, help: "engines" },
  "max-loras": { type: "int", default: 8, min: 1, help: "GPU slots per engine" },
  "max-cpu-loras": { type: "int", default: 32, min: 1, help: "host-cache adapters per engine" },
  adapters: { type: "int", default: 500, min: 1, help: "adapters in the registry" },
  zipf: { type: "number", default: 1.0, help: "Zipf exponent of adapter popularity" },
  rank: { type: "int", default: 16, min: 1, help: "adapter rank" },
  model: { type: "string", default: "meta-llama/Llama-3.1-8B-Instruct", help: "base model" },
  gpu: { type: "string", default: "h100", help: "GPU profile" },
  "disk-gbps": { type: "number", default: 1, help: "adapter reads from disk, GB/s" },
  duration: { type: "number", default: 40, help: "seconds of arrivals per run (the first 10 not measured)" },
  seeds: { type: "string", default: "1,2", help: "seeds, comma-separated, pooled per load" },
  "slo-ttft-p90": { type: "number", default: 1000, help: "capacity SLO: TTFT p90, ms" },
  resolution: {
    type: "number",
    default: 1,
    help: "capacity search: stop when held and missed are this close, req/s",
  },
  "max-rate": { type: "number", default: 256, help: "capacity search: the highest rate tried, req/s" },
  "at-load": {
    type: "number",
    default: 0.7,
    help: "the load of the TTFT table, a fraction of the fleet's capacity",
  },
  json: { type: "string", help: "write {policies:[{policy,baseline,ttft_p90_ms,capacity}]} here" },
  sweep: {
    type: "boolean",
    default: false,
    help: "virtual: the grid of adapter mixes (bench/routing/lora-sweep.ts); the shape flags are the grid's",
  },
  points: { type: "string", help: "sweep: only the points whose name contains one of these, separated by ;" },
  "max-seeds": { type: "int", default: 8, min: 3, help: "sweep: at most this many seeds per point" },
  workers: { type: "int", default: 1, min: 1, help: "sweep: points run in this many processes at once" },
  "point-index": { type: "string", help: "sweep (internal): a worker's points, by grid index" },
  "cap-seeds": {
    type: "int",
    default: 4,
    min: 1,
    help: "sweep: seeds pooled per rate of the capacity search",
  },
  policies: {
    type: "string",
    help: "run only these policies (and the clairvoyant heuristic, the load unit), comma-separated (default: all)",
  },
};

const { flags } = benchFlags(specs);
const seeds = String(flags.seeds)
  .split(",")
  .map((s) => Number(s.trim()))
  .filter((s) => Number.isFinite(s));
const duration = flags.duration as number;
const warmup = Math.min(10, duration / 4);
const slo = flags["slo-ttft-p90"] as number;

const engineConfig: EngineConfig = defaultEngineConfig(
  resolveModel(String(flags.model)),
  resolveGpu(String(flags.gpu)),
  {
    lora: {
      maxLoras: flags["max-loras"] as number,
      maxCpuLoras: flags["max-cpu-loras"] as number,
      maxLoraRank: Math.max(16, flags.rank as number),
      diskBandwidth: (flags["disk-gbps"] as number) * 1e9,
    },
  },
);
const workload: LoraWorkload = {
  adapters: flags.adapters as number,
  zipf: flags.zipf as number,
  rank: flags.rank as number,
  systemPrompts: 4,
  systemPromptTokens: 512,
  userTokens: 256,
  outputTokens: 128,
};

interface Entry {
  policy: string;
  baseline: boolean;
  make: () => Policy;
  clairvoyant?: boolean;
  /** the load unit (an oracle heuristic, not a router and not a bound): left out of "best baseline" */
  reference?: boolean;
}
const allEntries: Entry[] = [
  { policy: "lora", baseline: false, make: () => createLoraPolicy() },
  { policy: "gie-lora-affinity", baseline: true, make: () => createGieLoraAffinityPolicy() },
  { policy: "round-robin", baseline: true, make: () => createPolicy("round-robin") },
  { policy: "lora-static", baseline: true, make: () => createStaticLoraPolicy(2) },
  {
    policy: "clairvoyant",
    baseline: false,
    make: () => createLoraPolicy(),
    clairvoyant: true,
    reference: true,
  },
];
const only = flags.policies
  ? new Set(
      String(flags.policies)
        .split(",")
        .map((p) => p.trim()),
    )
  : null;
for (const p of only ?? [])
  if (!allEntries.some((e) => e.policy === p)) throw new Error(`--policies: no policy ${p}`);
// the reference stays: the virtual figures are fractions of its capacity (live runs skip it)
const entries = only ? allEntries.filter((e) => only.has(e.policy) || e.reference) : allEntries;

if (flags.sweep) {
  if (!flags.virtual) throw new Error("--sweep runs in virtual time: add --virtual");
  const pass = await runSweep(
    {
      model: String(flags.model),
      gpu: String(flags.gpu),
      sloMs: slo,
      atLoad: flags["at-load"] as number,
      minSeeds: 3,
      maxSeeds: flags["max-seeds"] as number,
      capSeeds: flags["cap-seeds"] as number,
      only: flags.points ? String(flags.points).split(";") : undefined,
      indices: flags["point-index"] ? String(flags["point-index"]).split(",").map(Number) : undefined,
      workers: flags.workers as number,
      json: flags.json ? String(flags.json) : undefined,
    },
    // the clairvoyant heuristic decides on exact state: no router's placement, left out of the grid
    entries.filter((e) => !e.reference),
  );
  process.exit(pass ? 0 : 1);
}

interface Point {
  ttfts: number[];
  loads: number;
  unloads: number;
  batchSkips: number;
  maxLoaded: number;
}

function run(e: Entry, rate: number): Point {
  const p: Point = { ttfts: [], loads: 0, unloads: 0, batchSkips: 0, maxLoaded: 0 };
  for (const seed of seeds) {
    const r = simulateLoraFleet({
      engines: flags.engines as number,
      engine: engineConfig,
      workload,
      policy: e.make(),
      clairvoyant: e.clairvoyant ?? false,
      rate,
      durationS: duration,
      warmupS: warmup,
      seed,
    });
    p.ttfts.push(...r.ttfts);
    p.loads += r.loads;
    p.unloads += r.unloads;
    p.batchSkips += r.batchSkips;
    p.maxLoaded = Math.max(p.maxLoaded, r.maxLoaded);
  }
  return p;
}

const p90 = (xs: number[]) => {
  const v = percentile(xs, 90);
  return Number.isNaN(v) ? Infinity : v;
};
const pct = (part: number, whole: number) => (whole > 0 ? `${((100 * part) / whole).toFixed(1)}%` : "n/a");
const held = (p: Point) => p90(p.ttfts) <= slo;
/** a policy's capacity in requests per second: the capacity search over rates (a unit of 1 req/s) */
const capacityRps = (e: Entry) =>
  highestLoadHeld((rate) => held(run(e, rate)), {
    start: 16,
    min: 1,
    max: flags["max-rate"] as number,
    resolution: flags.resolution as number,
  }).load;

if (!flags.virtual) {
  await runLive();
  process.exit(0);
}

console.log(
  `routing/lora (virtual): ${flags.engines} engines (${flags.model} on ${flags.gpu}, --max-loras ${flags["max-loras"]}, ` +
    `--max-cpu-loras ${flags["max-cpu-loras"]}), ${workload.adapters} adapters Zipf(${workload.zipf}) rank ${workload.rank}, ` +
    `${duration} s per run, seeds ${seeds.join(",")} pooled; SLO TTFT p90 ≤ ${slo} ms`,
);
// the load unit: what the fleet holds within the SLO under the clairvoyant heuristic (ours on exact
// state; not a bound); every load below is a fraction of it
const caps = new Map<string, number>();
for (const e of entries) caps.set(e.policy, capacityRps(e));
const refRate = caps.get("clairvoyant")!;
console.log(
  `the load unit: the clairvoyant heuristic's capacity, ${refRate.toFixed(1)} req/s (an oracle heuristic, not a bound)`,
);
const at = flags["at-load"] as number;
const rows: {
  policy: string;
  baseline: boolean;
  ttft_p50_ms: number;
  ttft_p90_ms: number;
  loads_per_min: number;
  capacity: number;
}[] = [];
for (const e of entries) {
  const p = run(e, at * refRate);
  const cap = caps.get(e.policy)! / refRate;
  const minutes = (duration * seeds.length) / 60;
  const row = {
    policy: e.policy,
    baseline: e.baseline,
    ttft_p50_ms: Math.round(percentile(p.ttfts, 50)),
    ttft_p90_ms: Math.round(p90(p.ttfts)),
    loads_per_min: Math.round(p.loads / minutes),
    capacity: Math.round(cap * 1000) / 1000,
  };
  rows.push(row);
  console.log(
    `${e.policy.padEnd(18)} at ${Math.round(at * 100)}%: TTFT p50 ${row.ttft_p50_ms} ms, p90 ${row.ttft_p90_ms} ms, ` +
      `${row.loads_per_min} loads/min, ${p.batchSkips} steps passed a request over, at most ${p.maxLoaded} loaded per engine; ` +
      `capacity ${cap.toFixed(3)} (${caps.get(e.policy)!.toFixed(1)} req/s)`,
  );
}
const ours = rows.find((r) => r.policy === "lora")!;
const baselines = rows.filter((r) => r.baseline);
const bestP90 = Math.min(...baselines.map((r) => r.ttft_p90_ms));
const bestCap = Math.max(...baselines.map((r) => r.capacity));
console.log(
  `ours vs the best baseline: TTFT p90 ${(bestP90 / ours.ttft_p90_ms).toFixed(2)}× lower at ${Math.round(at * 100)}%, capacity ${(ours.capacity / bestCap).toFixed(2)}×`,
);
if (flags.json)
  writeFileSync(
    String(flags.json),
    JSON.stringify({
      policies: rows.map((r) => ({
        policy: r.policy,
        baseline: r.baseline,
        ttft_p90_ms: Number.isFinite(r.ttft_p90_ms) ? r.ttft_p90_ms : null,
        ttft_p50_ms: Number.isFinite(r.ttft_p50_ms) ? r.ttft_p50_ms : null,
        loads_per_min: r.loads_per_min,
        capacity: r.capacity,
      })),
      load_unit_rps: refRate,
      at_load: at,
    }),
  );

/** Live: each policy at each rate on a fresh stack, the fleet simulator on the same grid beside it. */
async function runLive(): Promise<void> {
  const rates = String(flags.rates)
    .split(",")
    .map(Number)
    .filter((r) => r > 0);
  const liveS = flags["live-duration"] as number;
  const liveWarm = Math.min(5, liveS / 4);
  const timeScale = flags["time-scale"] as number;
  console.log(
    `routing/lora (live): ${flags.engines} sims (${flags.model} on ${flags.gpu}, --max-loras ${flags["max-loras"]}, ` +
      `--max-cpu-loras ${flags["max-cpu-loras"]}, --time-scale ${timeScale}) behind a router per run, ` +
      `${workload.adapters} adapters Zipf(${workload.zipf}) rank ${workload.rank}, ${liveS} s per run ` +
      `(the first ${liveWarm} not measured), seeds ${seeds.join(",")} pooled, rates ${rates.join(", ")} req/s; SLO TTFT p90 ≤ ${slo} ms`,
  );
  // the adapters' names are the same for every seed (only their popularity order differs)
  const dir = makeAdapters(engineConfig, workload, seeds[0] ?? 1);
  const out: Record<string, unknown>[] = [];
  try {
    for (const e of entries) {
      if (e.reference) continue;
      let liveCap = 0;
      let virtualCap = 0;
      const points: Record<string, unknown>[] = [];
      for (const rate of rates) {
        // each seed on a fresh stack, then the same run in virtual time with its engines named as the
        // live ones (a static placement hashes them); seeds pooled
        const l = { ttfts: [] as number[], loads: 0, errors: 0, queries: 0, hits: 0 };
        const v = { ttfts: [] as number[], loads: 0, queries: 0, hits: 0 };
        for (const seed of seeds) {
          const live = await runLiveLora(e.policy, rate, {
            engines: flags.engines as number,
            engine: engineConfig,
            gpu: String(flags.gpu),
            workload,
            timeScale,
            durationS: liveS,
            warmupS: liveWarm,
            seed,
            dir,
          });
          const virtual = simulateLoraFleet({
            engines: flags.engines as number,
            engine: engineConfig,
            workload,
            policy: e.make(),
            rate,
            durationS: liveS,
            warmupS: liveWarm,
            seed,
            engineIds: live.engineIds,
          });
          l.ttfts.push(...live.ttfts);
          l.loads += live.loads;
          l.errors += live.errors;
          l.queries += live.prefixQueries;
          l.hits += live.prefixHits;
          v.queries += virtual.prefixQueries;
          v.hits += virtual.prefixHits;
          v.ttfts.push(...virtual.ttfts);
          v.loads += virtual.loads;
        }
        const [lp, vp] = [p90(l.ttfts), p90(v.ttfts)];
        if (lp <= slo) liveCap = Math.max(liveCap, rate);
        if (vp <= slo) virtualCap = Math.max(virtualCap, rate);
        const perMin = 60 / (liveS * seeds.length);
        console.log(
          `${e.policy.padEnd(18)} ${String(rate).padStart(4)} req/s: TTFT p50 live ${Math.round(percentile(l.ttfts, 50))} ms, ` +
            `virtual ${Math.round(percentile(v.ttfts, 50))} ms; p90 live ${Math.round(lp)} ms, virtual ${Math.round(vp)} ms ` +
            `(${((vp / lp - 1) * 100).toFixed(1)}%); loads/min live ${Math.round(l.loads * perMin)}, virtual ${Math.round(v.loads * perMin)}; ` +
            `prefix cache hits live ${pct(l.hits, l.queries)}, virtual ${pct(v.hits, v.queries)}; ` +
            `${l.ttfts.length} measured live, ${l.errors} errors`,
        );
        points.push({
          rate,
          live_ttft_p50_ms: Math.round(percentile(l.ttfts, 50)),
          live_ttft_p90_ms: Number.isFinite(lp) ? Math.round(lp) : null,
          virtual_ttft_p50_ms: Math.round(percentile(v.ttfts, 50)),
          virtual_ttft_p90_ms: Number.isFinite(vp) ? Math.round(vp) : null,
          live_loads_per_min: Math.round(l.loads * perMin),
          virtual_loads_per_min: Math.round(v.loads * perMin),
          live_errors: l.errors,
        });
      }
      console.log(
        `${e.policy.padEnd(18)} capacity (highest rate held of ${rates.join(", ")}): live ${liveCap} req/s, virtual ${virtualCap} req/s`,
      );
      const first = points[0]!;
      out.push({
        policy: e.policy,
        baseline: e.baseline,
        ttft_p90_ms: first.live_ttft_p90_ms,
        capacity: liveCap,
        virtual_ttft_p90_ms: first.virtual_ttft_p90_ms,
        virtual_capacity: virtualCap,
        points,
      });
    }
  } finally {
    removeAdapters(dir);
  }
  if (flags.json)
    writeFileSync(
      String(flags.json),
      JSON.stringify({ policies: out, at_rate_rps: rates[0], capacity_unit: "req/s", time_scale: timeScale }),
    );
}
