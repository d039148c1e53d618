// One replica's latency at an arrival rate, from the engine model's roofline step time (src/engine's
// StepTimer, the one the sim and the fleet simulator run): the steady state of vLLM's chunked-prefill
// scheduler (decodes first, prompt chunks fill the token budget) solved as a fixed point of the step
// time, TPOT as the step time at the p90 batch, TTFT as the prompt's own chunks plus a queue's p90 wait.
// The sustainable rate at an SLO is searched once per request shape and cached: the planner's
// "engines at the SLO" question asked of one engine, cheap enough to ask every decision.
import { kvCapacity } from "../engine/capacity.js";
import { StepTimer } from "../engine/timing.js";
import type { EngineConfig } from "../engine/types.js";
import type { CapacityModel, PoolRole, ReplicaLatency, RequestShape } from "./types.js";

/** z of the normal's 90th percentile: the p90 batch of a Poisson-fed decode pool */
const Z90 = 1.2816;
/** shapes cached (bounded: a coarse key, and the oldest dropped past this) */
const CACHE_LIMIT = 4096;

const UNSTABLE: ReplicaLatency = { ttftP90Ms: Infinity, tpotP90Ms: Infinity, stable: false };

export class EngineCapacity implements CapacityModel {
  private readonly timer: StepTimer;
  private readonly budget: number;
  private readonly maxSeqs: number;
  private readonly kvTokens: number;
  private readonly cache = new Map<string, number>();

  constructor(readonly config: EngineConfig) {
    this.timer = new StepTimer(config);
    this.budget = config.maxNumBatchedTokens;
    this.maxSeqs = config.maxNumSeqs;
    const kv = kvCapacity(config);
    this.kvTokens = kv.numGpuBlocks * config.blockSize;
  }

  /** one step's seconds with `decode` sequences at `ctx` tokens of context and `prefill` prompt tokens */
  private step(decode: number, ctx: number, prefill: number, prefillCtx: number): number {
    const seqs = decode + (prefill > 0 ? 1 : 0);
    return this.timer.time({
      prefillTokens: prefill,
      decodeSeqs: decode,
      attentionContext: decode * ctx + prefill * prefillCtx,
      prefillAttentionContext: prefill * prefillCtx,
      kvReadTokens: decode * ctx + (prefill > 0 ? prefillCtx : 0),
      loadBytesPerGpu: 0,
      seqs,
    }).duration;
  }

  latency(role: PoolRole, shape: RequestShape, ratePerS: number): ReplicaLatency {
    const prompt = Math.max(1, shape.promptTokens);
    const output = Math.max(1, shape.outputTokens);
    const hit = Math.min(0.99, Math.max(0, shape.prefixHitRate));
    const uncached = role === "decode" ? 0 : Math.max(1, prompt * (1 - hit));
    const decodes = role === "prefill" ? 0 : output;
    const ctx = prompt + output / 2;
    const prefillCtx = prompt - uncached / 2;
    const lambda = Math.max(0, ratePerS);
    // the fixed point: the step time s carries λ·O·s decoding sequences and λ·Pu·s prompt tokens
    let s = this.step(0, ctx, 0, prefillCtx);
    for (let i = 0; i < 60; i++) {
      const b = lambda * decodes * s;
      const p = lambda * uncached * s;
      if (b > this.maxSeqs || p + b > this.budget) return UNSTABLE;
      const next = this.step(b, ctx, p, prefillCtx);
      if (Math.abs(next - s) < 1e-7) {
        s = next;
        break;
      }
      s = next;
    }
    const batch = lambda * decodes * s;
    if (batch * (prompt + output) > this.kvTokens) return UNSTABLE;
    const prefillRate = lambda * uncached * s;
    // TPOT: the step at the p90 batch (Poisson arrivals make the batch's spread about √B)
    const b90 = Math.min(this.maxSeqs, batch + Z90 * Math.sqrt(batch));
    const tpot = decodes > 0 ? this.step(b90, ctx, prefillRate, prefillCtx) : 0;
    // TTFT: the prompt's own chunks beside the decodes, a queue's p90 wait for the prompts ahead
    // (M/M/1: P(W > t) = ρ·e^(−(1−ρ)t/x)), and half a step to the next step's start
    const room = Math.max(1, this.budget - Math.ceil(batch));
    const fullStep = this.step(batch, ctx, room, prefillCtx);
    const serviceRate = room / fullStep; // prompt tokens per second the replica prefills at most
    const rho = (lambda * uncached) / serviceRate;
    if (rho >= 1) return UNSTABLE;
    const chunks = Math.ceil(uncached / room);
    const chunk = Math.min(uncached, room);
    const own = role === "decode" ? s : chunks * this.step(batch, ctx, chunk, prefillCtx);
    const x = uncached / serviceRate;
    const wait = role === "decode" || rho <= 0.1 ? 0 : (x / (1 - rho)) * Math.log(rho / 0.1);
    const ttft = own + wait + s / 2;
    return { ttftP90Ms: ttft * 1000, tpotP90Ms: tpot * 1000, stable: true };
  }

  sustainableRate(role: PoolRole, shape: RequestShape, ttftP90Ms: number, tpotP90Ms: number): number {
    const key = [
      role,
      bucket(shape.promptTokens),
      bucket(shape.outputTokens),
      Math.round(shape.prefixHitRate * 20),
      ttftP90Ms,
      tpotP90Ms,
    ].join("|");
    const hit = this.cache.get(key);
    if (hit !== undefined) return hit;
    const meets = (rate: number) => {
      const l = this.latency(role, shape, rate);
      return l.stable && l.ttftP90Ms <= ttftP90Ms && (role === "prefill" || l.tpotP90Ms <= tpotP90Ms);
    };
    let lo = 0;
    let hi = 0.01;
    for (let i = 0; i < 40 && meets(hi); i++) {
      lo = hi;
      hi *= 2;
    }
    for (let i = 0; i < 40; i++) {
      const mid = (lo + hi) / 2;
      if (meets(mid)) lo = mid;
      else hi = mid;
    }
    if (this.cache.size >= CACHE_LIMIT) {
      const oldest = this.cache.keys().next().value;
      if (oldest !== undefined) this.cache.delete(oldest);
    }
    this.cache.set(key, lo);
    return lo;
  }

  /**
   * A pre-deployment profile's readings (as Dynamo's profiler sweeps them) from the engine model: a lone
   * prefill of `uncached` prompt tokens, and the decode batch at context prompt + output/2 that keeps
   * the step within `itlMs`.
   */
  profile(prompt: number, output: number, uncached: number, itlMs: number, concurrency = 0): EngineProfile {
    const ctx = prompt + output / 2;
    const prefillCtx = prompt - uncached / 2;
    let t = 0;
    for (let left = uncached; left > 0; left -= this.budget)
      t += this.step(0, ctx, Math.min(left, this.budget), prefillCtx);
    let lo = 0;
    let hi = this.maxSeqs;
    while (lo < hi) {
      const mid = Math.ceil((lo + hi) / 2);
      if (this.step(mid, ctx, 0, prefillCtx) * 1000 <= itlMs && mid * (prompt + output) <= this.kvTokens)
        lo = mid;
      else hi = mid - 1;
    }
    const decodeStep = this.step(Math.max(1, lo), ctx, 0, prefillCtx);
    return {
      prefillTokensPerS: uncached / Math.max(1e-9, t),
      expectedTtftMs: t * 1000,
      decodeTokensPerS: lo > 0 ? lo / decodeStep : 0,
      expectedItlMs: this.step(Math.max(1, concurrency), ctx, 0, prefillCtx) * 1000,
    };
  }
}

export interface EngineProfile {
  /** prompt tokens per second one engine prefills a lone prompt of the shape at */
  prefillTokensPerS: number;
  /** that prefill's time: the TTFT the profile expects, ms */
  expectedTtftMs: number;
  /** output tokens per second one engine decodes at the largest batch whose step is within the ITL */
  decodeTokensPerS: number;
  /** the step time at `concurrency` decoding sequences: the ITL the profile expects there, ms */
  expectedItlMs: number;
}

/** a coarse bucket (about 6% wide) of a token count, so nearby shapes share a cached answer */
function bucket(n: number): number {
  return Math.round(Math.log(Math.max(1, n)) * 16);
}
