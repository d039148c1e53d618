// The LoRA part of a plan: where the scenario's requests name adapters (workload.lora), the planned
// fleet is run through the fleet simulator's one loop with its LoRA books (src/fleet/lora.ts and
// lora-run.ts: the engine model's slots, host cache, load time and max_loras-per-batch rule, the
// router's LoRA placement) over max_loras / max_cpu_loras candidates, and the cheapest pair that meets
// the SLO is chosen: the fewest GPU slots (their memory comes out of the KV cache), then the smallest
// host cache. With that pair the fleet is tried on more adapters than the workload names, to say how
// many it holds at the SLO.
import { engineConfigFor } from "../fleet/build.js";
import type { LoraAdapterMix, LoraWorkload } from "../fleet/lora.js";
import { simulateLoraFleet } from "../fleet/lora-run.js";
import type { ResolvedScenario } from "../fleet/scenario.js";
import { loraAdapterBytes, loraSlotBytes, type EngineConfig } from "../engine/index.js";
import { createLoraPolicy } from "../routing/lora.js";
import { percentile } from "../workload/stats.js";
import type { routerSection } from "./sections.js";
import { secs, type SloTargets } from "./slo.js";
import { InvalidArgumentError, InvalidConfigError } from "../errors/index.js";

/** GPU slots per engine tried, fewest first (and the adapter count, where fewer adapters than 32 fall between) */
export const MAX_LORAS_CANDIDATES: readonly number[] = [1, 2, 4, 8, 16, 32];
/** host-cache sizes tried for each max_loras, as multiples of it (vLLM's default is 1×) */
export const CPU_CACHE_FACTORS: readonly number[] = [1, 2, 4, 8];
/** adapter counts tried beyond the workload's with the chosen flags, as multiples of it */
export const HOLD_FACTORS: readonly number[] = [2, 4, 8];
/** the ranks vLLM's --max-lora-rank accepts (vllm/config/lora.py, MaxLoRARanks) */
export const VLLM_LORA_RANKS: readonly number[] = [1, 8, 16, 32, 64, 128, 256, 320, 512];
/** a run's arrivals at most, seconds (the rest of the plan's request count is not needed to rank flags) */
const MAX_DURATION_S = 60;
const GiB = 1024 ** 3;

/** one LoRA fleet simulation: the flags, the adapters, what it predicts */
export interface LoraRun {
  max_loras: number;
  max_cpu_loras: number;
  adapters: number;
  /** Infinity (null in JSON) when over a tenth of the requests were not answered by the end of the run */
  ttft_p90_ms: number;
  tpot_p90_ms: number;
  /** adapter loads the router made per minute of arrivals, fleet-wide */
  loads_per_minute: number;
  slo_met: boolean;
}

export interface LoraPlan {
  /** the workload's adapters: count, Zipf exponent of their popularity, rank */
  mix: LoraAdapterMix;
  engines: number;
  /** the flags chosen (the cheapest pair that meets the SLO), else the best pair tried */
  max_loras: number;
  max_cpu_loras: number;
  max_lora_rank: number;
  slo_met: boolean;
  /** adapters the fleet keeps loaded at once: in GPU slots, in host memory (engines × each flag) */
  resident: { gpu_slots: number; host_cache: number };
  /** the most adapters tried that the fleet serves within the SLO with these flags; null: not even the workload's */
  adapters_at_slo: number | null;
  /** the fewest adapters tried that miss it (null: every count tried met it) */
  adapters_missed: number | null;
  /** memory per engine: the slots' share of the GPU (out of the KV cache) and the host cache's */
  gpu_gib_per_engine: number;
  host_gib_per_engine: number;
  engine_flags: string[];
  engine_env: Record<string, string>;
  runs: LoraRun[];
  /** why these flags, in a sentence */
  reason: string;
}

/** vLLM's smallest --max-lora-rank that serves adapters of this rank */
export function maxLoraRankFor(rank: number): number {
  const r = VLLM_LORA_RANKS.find((x) => x >= rank);
  if (r === undefined)
    throw new InvalidConfigError(
      `workload.lora.rank: vLLM serves ranks up to ${VLLM_LORA_RANKS.at(-1)}, got ${rank}`,
    );
  return r;
}

/** the (max_loras, max_cpu_loras) pairs for `adapters` adapters, in the order they are tried */
export function loraCandidates(adapters: number): { maxLoras: number; cpu: number[] }[] {
  // the listed slot counts up to the adapters, and one slot per adapter where that falls between them
  const slots = MAX_LORAS_CANDIDATES.filter((m) => m <= adapters);
  if (slots.length === 0 || (adapters < MAX_LORAS_CANDIDATES.at(-1)! && !slots.includes(adapters)))
    slots.push(adapters);
  return slots.map((maxLoras) => ({
    maxLoras,
    cpu: [...new Set(CPU_CACHE_FACTORS.map((k) => Math.min(maxLoras * k, Math.max(adapters, maxLoras))))],
  }));
}

interface LoraContext {
  r: ResolvedScenario;
  engines: number;
  mix: LoraAdapterMix;
  targets: SloTargets;
  maxLoraRank: number;
  runs: LoraRun[];
}

function engineWith(c: LoraContext, maxLoras: number, maxCpuLoras: number): EngineConfig {
  const cfg = engineConfigFor(c.r, "none");
  return { ...cfg, lora: { maxLoras, maxCpuLoras, maxLoraRank: c.maxLoraRank } };
}

function workloadOf(r: ResolvedScenario, mix: LoraAdapterMix): LoraWorkload {
  const w = r.scenario.workload;
  const shared = w.shared_prefix_tokens;
  return {
    ...mix,
    systemPrompts: shared > 0 ? w.tenants : 1,
    systemPromptTokens: shared,
    userTokens: Math.max(1, r.promptTokens - shared),
    outputTokens: w.output_tokens,
  };
}

function runOnce(c: LoraContext, maxLoras: number, maxCpuLoras: number, adapters: number): LoraRun {
  const w = c.r.scenario.workload;
  const rate = w.qps!;
  const sim = c.r.scenario.simulation;
  const requests = sim.requests ?? 1000;
  const durationS = Math.min(MAX_DURATION_S, sim.duration_s ?? requests / rate);
  const res = simulateLoraFleet({
    engines: c.engines,
    engine: engineWith(c, maxLoras, maxCpuLoras),
    workload: workloadOf(c.r, { ...c.mix, adapters }),
    policy: createLoraPolicy(),
    rate,
    durationS,
    warmupS: durationS / 5,
    seed: sim.seed,
  });
  // unanswered requests count as Infinity: a p90 among them (Infinity − Infinity) is NaN, and missed
  const p90 = (xs: number[]) => {
    const v = xs.length ? percentile(xs, 90) : Infinity;
    return Number.isNaN(v) ? Infinity : v;
  };
  const ttft = p90(res.ttfts);
  const tpot = p90(res.tpots);
  const run: LoraRun = {
    max_loras: maxLoras,
    max_cpu_loras: maxCpuLoras,
    adapters,
    ttft_p90_ms: ttft,
    tpot_p90_ms: tpot,
    loads_per_minute: (res.loads * 60) / durationS,
    slo_met: ttft <= c.targets.ttft && tpot <= c.targets.tpot,
  };
  c.runs.push(run);
  return run;
}

/** a run's figures in words: "TTFT p90 420 ms, TPOT p90 31 ms" */
const figures = (x: LoraRun) => `TTFT p90 ${secs(x.ttft_p90_ms)}, TPOT p90 ${secs(x.tpot_p90_ms)}`;

/**
 * Chooses max_loras and max_cpu_loras for the planned fleet (`r` carries it: GPU, TP, engines). The
 * check is TTFT and TPOT p90 against the plan's targets (the SLO less its headroom).
 */
export function planLora(r: ResolvedScenario, engines: number, targets: SloTargets): LoraPlan {
  const lora = r.scenario.workload.lora;
  if (!lora) throw new InvalidArgumentError("planLora: the scenario has no workload.lora");
  const mix: LoraAdapterMix = {
    adapters: lora.adapters,
    zipf: lora.zipf,
    rank: lora.rank,
    modules: lora.modules,
  };
  const c: LoraContext = { r, engines, mix, targets, maxLoraRank: maxLoraRankFor(lora.rank), runs: [] };
  let chosen: LoraRun | null = null;
  let best: LoraRun | null = null;
  for (const { maxLoras, cpu } of loraCandidates(mix.adapters)) {
    // the largest host cache first: if even that misses, this many slots cannot meet the SLO
    const widest = runOnce(c, maxLoras, cpu.at(-1)!, mix.adapters);
    if (!best || widest.ttft_p90_ms < best.ttft_p90_ms) best = widest;
    if (!widest.slo_met) continue;
    // the smallest host cache that still meets it (more cache never costs the GPU anything)
    chosen = widest;
    let lo = 0;
    let hi = cpu.length - 1;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      const x = runOnce(c, maxLoras, cpu[mid]!, mix.adapters);
      if (x.slo_met) {
        chosen = x;
        hi = mid;
      } else lo = mid + 1;
    }
    break;
  }
  const pick = chosen ?? best!;
  // how many adapters the fleet holds at the SLO with these flags: the workload's, then more
  let atSlo: number | null = chosen ? mix.adapters : null;
  let missed: number | null = chosen ? null : mix.adapters;
  if (chosen)
    for (const k of HOLD_FACTORS) {
      const n = mix.adapters * k;
      if (runOnce(c, pick.max_loras, pick.max_cpu_loras, n).slo_met) atSlo = n;
      else {
        missed = n;
        break;
      }
    }
  const adapterBytes = loraAdapterBytes(r.model, mix.rank, mix.modules);
  // the slots' memory on each of the engine's GPUs (vLLM shards them over TP), times its GPUs
  const tp = r.scenario.fleet.tensor_parallel_size;
  const slotBytes =
    loraSlotBytes(
      r.model,
      { maxLoras: pick.max_loras, maxCpuLoras: pick.max_cpu_loras, maxLoraRank: c.maxLoraRank },
      tp,
    ) * tp;
  const resident = {
    gpu_slots: engines * pick.max_loras,
    host_cache: Math.min(mix.adapters, engines * pick.max_cpu_loras),
  };
  return {
    mix,
    engines,
    max_loras: pick.max_loras,
    max_cpu_loras: pick.max_cpu_loras,
    max_lora_rank: c.maxLoraRank,
    slo_met: chosen !== null,
    resident,
    adapters_at_slo: atSlo,
    adapters_missed: missed,
    gpu_gib_per_engine: slotBytes / GiB,
    host_gib_per_engine: (pick.max_cpu_loras * adapterBytes) / GiB,
    engine_flags: [
      "--enable-lora",
      `--max-loras ${pick.max_loras}`,
      `--max-cpu-loras ${pick.max_cpu_loras}`,
      `--max-lora-rank ${c.maxLoraRank}`,
    ],
    // the router loads adapters on demand through the engines' own API
    engine_env: { VLLM_ALLOW_RUNTIME_LORA_UPDATING: "True" },
    runs: c.runs,
    reason: chosen
      ? `the fewest GPU slots, then the smallest host cache, that meet the SLO for ${mix.adapters} adapters (Zipf ${mix.zipf}, rank ${mix.rank}) on ${engines} engines: ${figures(pick)}, ${Math.round(pick.loads_per_minute)} adapter loads/min`
      : `no max_loras up to ${c.runs.reduce((m, x) => Math.max(m, x.max_loras), 0)} meets the SLO for ${mix.adapters} adapters on ${engines} engines; the best pair tried gives ${figures(pick)}: add engines or serve fewer adapters`,
  };
}

/** the plan's LoRA lines, for its summary */
export function loraSummary(p: LoraPlan): string {
  const held =
    p.adapters_at_slo === null
      ? `misses the SLO with ${p.mix.adapters} adapters`
      : `holds ${p.adapters_at_slo} adapters at the SLO${p.adapters_missed !== null ? ` (${p.adapters_missed} miss it)` : ` (the most tried)`}`;
  return `LoRA: --max-loras ${p.max_loras} --max-cpu-loras ${p.max_cpu_loras} --max-lora-rank ${p.max_lora_rank}; the fleet ${held}, ${p.resident.gpu_slots} resident in GPU slots and ${p.resident.host_cache} in host memory at once.`;
}

/** the router section with the engines' LoRA flags and environment added (as they go into the chart) */
export function withLoraFlags(
  router: ReturnType<typeof routerSection>,
  p: LoraPlan | null,
): ReturnType<typeof routerSection> {
  if (!p) return router;
  return {
    ...router,
    engine_flags: [...router.engine_flags, ...p.engine_flags],
    engine_env: { ...router.engine_env, ...p.engine_env },
  };
}

/** the plan's LoRA section, as Markdown lines */
export function loraSection(p: LoraPlan): string[] {
  const m = p.mix;
  const cell = (ms: number) => (Number.isFinite(ms) ? secs(ms) : "not answered");
  const out = [
    "## LoRA adapters",
    "",
    `- workload: ${m.adapters} adapters of rank ${m.rank}, Zipf(${m.zipf}) popularity, on ${p.engines} engines`,
    `- chosen: \`${p.engine_flags.join(" ")}\` (\`${Object.entries(p.engine_env)
      .map(([k, v]) => `${k}=${v}`)
      .join(" ")}\`): ${p.reason}`,
    `- held at the SLO: ${p.adapters_at_slo === null ? `none (${m.adapters} adapters miss it)` : `${p.adapters_at_slo} adapters${p.adapters_missed !== null ? `; ${p.adapters_missed} miss it` : " (the most tried)"}`}; resident at once: ${p.resident.gpu_slots} in GPU slots, ${p.resident.host_cache} in host memory`,
    `- memory per engine: ${p.gpu_gib_per_engine.toFixed(2)} GiB of GPU for the slots (taken from the KV cache), ${p.host_gib_per_engine.toFixed(2)} GiB of host memory for the cache`,
    "",
    "| max_loras | max_cpu_loras | adapters | TTFT p90 | TPOT p90 | loads/min | SLO |",
    "| --------: | ------------: | -------: | -------: | -------: | --------: | --- |",
  ];
  for (const x of p.runs)
    out.push(
      `| ${x.max_loras} | ${x.max_cpu_loras} | ${x.adapters} | ${cell(x.ttft_p90_ms)} | ${cell(x.tpot_p90_ms)} | ${Math.round(x.loads_per_minute)} | ${x.slo_met ? "met" : "missed"} |`,
    );
  return out;
}
