// One replica's latency at an arrival rate, from the engine model's roofline step time (src/engine's
// StepTimer, the one the sim and the fleet simulator run): the steady state of vLLM's chunked-prefill
// scheduler (decodes first, prompt chunks fill the token budget) solved as a fixed point of the batch
// over the engine's time: prompt chunks in compute-bound steps, decode-only steps between them; TPOT
// p90 from the p90 count of chunk steps in a request's life, TTFT as the prompt's own chunks plus a
// queue's p90 wait; KV capacity bounds the batch.
// The sustainable rate at an SLO is searched once per request shape and cached: the planner's
// "engines at the SLO" question asked of one engine, cheap enough to ask every decision.
import { kvCapacity } from "../engine/capacity.js";
import { StepTimer } from "../engine/timing.js";
import type { EngineConfig } from "../engine/types.js";
import type { CapacityModel, PoolRole, ReplicaLatency, RequestShape } from "./types.js";

/** z of the normal's 90th percentile: a Poisson count's p90 is about mean + z·√mean */
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
    const decodes = role === "prefill" ? 1 : output;
    const ctx = prompt + output / 2;
    const prefillCtx = prompt - uncached / 2;
    const lambda = Math.max(0, ratePerS);
    // the fixed point over the batch B (Little: λ × a request's time in the engine): a prompt's chunks
    // run in steps of their own (compute-bound), decode-only steps between them (memory-bound)
    let batch = 0;
    let tpot = 0;
    let tpot90 = 0;
    let ttft = 0;
    for (let i = 0; i < 50; i++) {
      const b = Math.min(this.maxSeqs, batch);
      const room = Math.max(1, this.budget - Math.ceil(b));
      const chunks = uncached > 0 ? Math.ceil(uncached / room) : 0;
      const chunkStep = chunks > 0 ? this.step(b, ctx, Math.min(uncached, room), prefillCtx) : 0;
      const decodeStep = this.step(Math.max(1, b), ctx, 0, prefillCtx);
      // share of the engine's time spent in steps carrying a prompt chunk
      const busy = lambda * chunks * chunkStep;
      if (busy >= 1) return UNSTABLE;
      tpot = 1 / (lambda * chunks + (1 - busy) / decodeStep);
      // a request's own TPOT: its life holds a Poisson number of chunk steps; the p90 count of them
      const life = decodes * tpot;
      const m = lambda * chunks * life;
      const n90 = Math.min(decodes, m + Z90 * Math.sqrt(m));
      tpot90 = (n90 * chunkStep + (decodes - n90) * decodeStep) / decodes;
      // TTFT: the prompt's own chunks, a p90 wait behind other prompts (M/M/1 with the chunk steps as
      // service: P(W > t) = ρ·e^(−(1−ρ)t/x)), half a decode step to the next step's start
      const x = chunks * chunkStep;
      const wait = busy <= 0.1 ? 0 : (x / (1 - busy)) * Math.log(busy / 0.1);
      ttft = x + wait + decodeStep / 2;
      const next = lambda * (ttft + life);
      if (Math.abs(next - batch) < 1e-3) {
        batch = next;
        break;
      }
      batch = next;
    }
    if (batch > this.maxSeqs || batch * (prompt + output) > this.kvTokens) return UNSTABLE;
    if (role === "prefill") return { ttftP90Ms: ttft * 1000, tpotP90Ms: 0, stable: true };
    return { ttftP90Ms: ttft * 1000, tpotP90Ms: tpot90 * 1000, stable: true };
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
