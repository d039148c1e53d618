// The clairvoyant reference placement: each request goes where its time to first token is lowest given
// every engine's exact state at its arrival — its GPU prefix cache and CPU tier (Engine.probePrefix) and its
// queues (Engine.queueState: what each running and waiting request still computes, its context, its
// answer still to come) — found by stepping each engine's scheduler forward with the request added last,
// as the engine model steps it (vLLM's chunked prefill: decodes first, one token each, then prompt tokens
// in queue order up to max_num_batched_tokens, admissions up to max_num_seqs), each step timed by the
// engine's own roofline. No router can know this much: it bounds what placement alone can do for the same
// requests. KV admission is counted in tokens (in use now, plus what each step computes, less what a
// finished sequence computed). The tiers count as the engine counts them: what the engine's own CPU tier
// and then the fleet's shared cache server hold beyond the GPU hit is not computed but loaded, its load time added to the step that admits the request. What it leaves out, and
// so what it can still be beaten by: later arrivals (they queue behind under FCFS, but share steps),
// preemption, what a placement evicts for later requests, the loads of requests already queued, and the
// step in flight at arrival.
import { StepTimer, type Engine, type QueuedRequest, type StepWork } from "../engine/index.js";
import type { SharedCacheServer } from "./remote.js";

/** steps simulated at most per engine and decision: past this the engine is taken as hopeless */
const MAX_STEPS = 20_000;

interface Shadow extends QueuedRequest {
  candidate: boolean;
}

export class ClairvoyantPlacer {
  private readonly timers: StepTimer[];
  private readonly work: StepWork = {
    prefillTokens: 0,
    decodeSeqs: 0,
    attentionContext: 0,
    prefillAttentionContext: 0,
    kvReadTokens: 0,
    loadBytesPerGpu: 0,
    extraTransferSeconds: 0,
  };

  /** `servers`: the shared cache server each engine loads from, by engine index, when they load from one */
  constructor(
    private readonly engines: readonly Engine[],
    private readonly servers: readonly SharedCacheServer[] | null = null,
  ) {
    this.timers = engines.map((e) => new StepTimer(e.config));
  }

  /** the engine (by index) where a prompt of these ids gets its first token soonest; ties: the lower index */
  place(
    prompt: readonly number[],
    maxTokens: number,
    sharedPrefix?: { key: string; tokens: number },
  ): number {
    let best = 0;
    let bestS = Infinity;
    for (let e = 0; e < this.engines.length; e++) {
      const s = this.ttftSeconds(e, prompt, maxTokens, sharedPrefix);
      if (s < bestS) {
        bestS = s;
        best = e;
      }
    }
    return best;
  }

  /** seconds to the first token of this prompt sent to engine `e` now */
  ttftSeconds(
    e: number,
    prompt: readonly number[],
    maxTokens: number,
    sharedPrefix?: { key: string; tokens: number },
  ): number {
    const engine = this.engines[e]!;
    const cfg = engine.config;
    const last = prompt.length - 1;
    // the GPU hit, then beyond it the engine's own CPU tier and the shared server, loaded, not computed
    const probe = engine.probePrefix(prompt, { sharedPrefix });
    const gpu = Math.min(last, probe.gpuTokens);
    const server = this.servers?.[e];
    const held = server ? Math.min(last, server.held(prompt)) : 0;
    const extra = Math.max(0, held - gpu - probe.tierTokens);
    const cached = Math.min(last, gpu + probe.tierTokens + extra);
    const loadSeconds = probe.tierSeconds + (extra > 0 ? server!.loadSeconds(extra) : 0);
    const q: Shadow[] = engine.queueState().map((r: QueuedRequest) => ({ ...r, candidate: false }));
    q.push({
      toCompute: prompt.length - cached,
      context: cached,
      outputsLeft: maxTokens,
      running: false,
      ownTokens: 0,
      candidate: true,
    });
    // KV in use now, in tokens; computed tokens add to it, finished sequences free what they computed
    const capacity = engine.capacity.numGpuBlocks * cfg.blockSize;
    let used = engine.snapshot().kvCacheUsage * capacity;
    const timer = this.timers[e]!;
    const w = this.work;
    let t = 0;
    for (let step = 0; step < MAX_STEPS; step++) {
      let budget = cfg.maxNumBatchedTokens;
      let running = 0;
      w.prefillTokens = 0;
      w.decodeSeqs = 0;
      w.attentionContext = 0;
      w.prefillAttentionContext = 0;
      w.kvReadTokens = 0;
      w.extraTransferSeconds = 0;
      // running first, in order; then admissions while the batch has room
      let candidateDone = false;
      for (const r of q) {
        if (budget <= 0) break;
        const n = Math.min(r.toCompute, budget);
        if (!r.running) {
          // admission stops at the first request whose new tokens do not fit (FCFS)
          const loaded = r.candidate ? cached - gpu : 0;
          if (running >= cfg.maxNumSeqs || used + loaded + n > capacity) break;
          r.running = true;
          if (r.candidate) {
            // the step that admits it loads its tier hit (into blocks of its own) before the forward pass
            used += loaded;
            r.ownTokens += loaded;
            w.extraTransferSeconds += loadSeconds;
          }
        }
        running++;
        used += n;
        r.ownTokens += n;
        budget -= n;
        const ctx = n * r.context + (n * (n + 1)) / 2;
        if (n === 1 && r.toCompute === 1 && r.context > 0 && !r.candidate && r.outputsLeft > 0)
          w.decodeSeqs++;
        else {
          w.prefillTokens += n;
          w.prefillAttentionContext! += ctx;
        }
        w.attentionContext += ctx;
        w.kvReadTokens += r.context;
        r.context += n;
        r.toCompute -= n;
        if (r.toCompute === 0) {
          // the step that computes a sequence's last pending token samples its next one
          if (r.candidate) candidateDone = true;
          r.outputsLeft--;
          r.toCompute = r.outputsLeft > 0 ? 1 : 0;
        }
      }
      t += timer.time(w).duration;
      if (candidateDone) return t;
      // finished sequences leave the batch
      for (let i = q.length - 1; i >= 0; i--)
        if (q[i]!.running && q[i]!.toCompute === 0) {
          used -= q[i]!.ownTokens;
          q.splice(i, 1);
        }
    }
    return Infinity;
  }
}
