// What a fleet run reports: vllm bench's metric fields (computed by src/workload/metrics.ts from the
// simulated per-request timings) plus the engine side: KV (HBM) usage percentiles, preemptions,
// prefills avoided by offload, and hit rates per cache tier.
import { summarize, type MetricFields } from "../workload/metrics.js";
import { percentileSorted } from "../workload/stats.js";
import type { EngineCounters } from "../engine/index.js";
import { kvBytesPerToken } from "../models/index.js";
import type { FleetOptions, FleetResult } from "./fleet.js";

export interface FleetReport {
  offload: string;
  policy: string;
  engines: number;
  /** disaggregated: the pools, e.g. "2 prefill (TP 1) + 3 decode (TP 2) engines" */
  pd?: string;
  generator: string;
  requests: number;
  bench: MetricFields;
  kv_usage: { mean: number; p50: number; p90: number; p99: number; max: number; samples: number };
  preemptions: number;
  recomputed_tokens: number;
  /** disaggregated: prompt tokens whose KV moved from a prefill to a decode engine */
  kv_transferred_tokens?: number;
  /** prompt tokens loaded from an offload tier or the shared server instead of being computed again */
  reprefill_avoided_tokens: number;
  hit_rates: { gpu: number; cpu: number; remote: number };
  capacity: {
    gpu_blocks_per_engine: number;
    kv_tokens_per_engine: number;
    kv_gb_per_engine: number;
    cpu_blocks_per_engine: number;
  };
  offload_transfer_s: number;
  offload_store_s: number;
  remote: FleetResult["remote"];
  sim: { virtual_s: number; wall_s: number; speedup: number; events: number };
}

export function sumCounters(all: readonly EngineCounters[]): EngineCounters {
  const out = { ...all[0]! };
  for (let i = 1; i < all.length; i++) {
    const c = all[i]!;
    for (const k of Object.keys(out) as (keyof EngineCounters)[]) out[k] += c[k];
  }
  return out;
}

export function fleetReport(
  o: FleetOptions & { generator: string },
  r: FleetResult,
  wallS: number,
): FleetReport {
  // disaggregated: prompts are computed (and looked up in the tiers) on the prefill engines; what the
  // decode engines find as an external prefix is the KV moved to them, reported on its own
  const P = o.pd ? o.pd.prefill.count : 0;
  const c = sumCounters(o.pd ? r.counters.slice(0, P) : r.counters);
  const moved = o.pd ? sumCounters(r.counters.slice(P)) : null;
  const kv = r.kvSamples.slice().sort();
  let sum = 0;
  for (const x of kv) sum += x;
  const queries = c.prefixCacheQueries || c.promptTokens || 1;
  const kvBytesAllHeads = kvBytesPerToken(o.engine.model);
  const virtualS = r.records.length ? r.durationS + r.records[0]!.start / 1000 : 0;
  return {
    offload: o.engine.offload?.backend ?? "none",
    policy: o.policy,
    engines: o.engines,
    ...(o.pd
      ? {
          pd: `${o.pd.prefill.count} prefill (TP ${o.pd.prefill.engine.tensorParallelSize}) + ${o.pd.decode.count} decode (TP ${o.pd.decode.engine.tensorParallelSize}) engines`,
        }
      : {}),
    generator: o.generator,
    requests: r.records.length,
    bench: summarize(r.records, r.durationS, null),
    kv_usage: {
      mean: kv.length ? sum / kv.length : 0,
      // a fleet that never sampled its KV writes 0s, as its mean and max do
      p50: kv.length ? percentileSorted(kv, 50) : 0,
      p90: kv.length ? percentileSorted(kv, 90) : 0,
      p99: kv.length ? percentileSorted(kv, 99) : 0,
      max: kv.length ? kv[kv.length - 1]! : 0,
      samples: kv.length,
    },
    preemptions: c.numPreemptions + (moved?.numPreemptions ?? 0),
    recomputed_tokens: c.recomputedTokens + (moved?.recomputedTokens ?? 0),
    ...(moved ? { kv_transferred_tokens: moved.externalHitTokens } : {}),
    reprefill_avoided_tokens: c.offloadHitTokens + c.externalHitTokens,
    hit_rates: {
      gpu: c.prefixCacheHits / queries,
      cpu: c.offloadHitTokens / queries,
      remote: c.externalHitTokens / queries,
    },
    capacity: {
      gpu_blocks_per_engine: r.numGpuBlocks,
      kv_tokens_per_engine: r.numGpuBlocks * o.engine.blockSize,
      kv_gb_per_engine: (r.numGpuBlocks * o.engine.blockSize * kvBytesAllHeads) / 1e9,
      cpu_blocks_per_engine: r.numCpuBlocks,
    },
    offload_transfer_s: c.offloadTransferSeconds + c.externalTransferSeconds,
    offload_store_s: c.offloadStoreSeconds,
    remote: r.remote,
    sim: { virtual_s: virtualS, wall_s: wallS, speedup: wallS > 0 ? virtualS / wallS : 0, events: r.events },
  };
}

const f1 = (x: number) => x.toFixed(1);
const f2 = (x: number) => x.toFixed(2);
const pct = (x: number) => `${(x * 100).toFixed(1)}%`;
const num = (v: unknown) => (typeof v === "number" ? v : 0);

/** a short human-readable report */
export function formatReport(rep: FleetReport): string {
  const b = rep.bench;
  return [
    `offload ${rep.offload} · policy ${rep.policy} · ${rep.pd ?? `${rep.engines} engines`} · workload ${rep.generator} · ${rep.requests} requests`,
    `throughput        ${Math.round(num(b.total_token_throughput))} tok/s total, ${Math.round(num(b.output_throughput))} tok/s output, ${f2(num(b.request_throughput))} req/s`,
    `TTFT              mean ${f1(num(b.mean_ttft_ms))} ms · p50 ${f1(num(b.median_ttft_ms))} · p90 ${f1(num(b.p90_ttft_ms))} · p99 ${f1(num(b.p99_ttft_ms))}`,
    `TPOT / E2E        mean TPOT ${f2(num(b.mean_tpot_ms))} ms · mean E2E ${f1(num(b.mean_e2el_ms))} ms`,
    `KV (HBM) usage    p50 ${pct(rep.kv_usage.p50)} · p90 ${pct(rep.kv_usage.p90)} · p99 ${pct(rep.kv_usage.p99)} · max ${pct(rep.kv_usage.max)}`,
    `KV capacity       ${rep.capacity.gpu_blocks_per_engine} blocks = ${rep.capacity.kv_tokens_per_engine} tokens = ${f1(rep.capacity.kv_gb_per_engine)} GB per engine`,
    `preemptions       ${rep.preemptions} (${rep.recomputed_tokens} tokens recomputed)`,
    ...(rep.kv_transferred_tokens !== undefined
      ? [`KV transferred    ${rep.kv_transferred_tokens} prompt tokens, prefill to decode engines`]
      : []),
    `re-prefill avoided ${rep.reprefill_avoided_tokens} tokens (loaded from an offload tier)`,
    `hit rates         GPU ${pct(rep.hit_rates.gpu)} · CPU ${pct(rep.hit_rates.cpu)} · remote ${pct(rep.hit_rates.remote)}`,
    `simulated         ${f1(rep.sim.virtual_s)} s in ${f2(rep.sim.wall_s)} s wall (${f1(rep.sim.speedup)}× real time, ${rep.sim.events} events)`,
  ].join("\n");
}
