// The engine model: vLLM V1's scheduler over a paged KV cache with prefix caching, an optional CPU
// offload tier and a roofline step time. No I/O and no clock: a driver calls beginStep(now) to schedule
// a batch and learn how long it takes, then completeStep(now) when that time has passed.
import { validateEngineConfig } from "./config.js";
import type { KvCapacity } from "./capacity.js";
import { KvCacheManager } from "./kv-cache-manager.js";
import { LoraCache, type LoraResidency } from "./lora.js";
import { Req, Status } from "./request.js";
import { StepTimer, type StepWork } from "./timing.js";
import type {
  EngineConfig,
  EngineCounters,
  EngineLora,
  EngineObserver,
  EngineRequest,
  EngineSnapshot,
  FinishReason,
  PrefixProbe,
  ProbeOptions,
  RequestTimings,
  StepPlan,
} from "./types.js";
import { LMCACHE_CHUNK_TOKENS } from "../config/vllm-defaults.js";
import { InvalidArgumentError, InvariantError, UnsupportedError } from "../errors/index.js";

/** every counter at zero */
export function newCounters(): EngineCounters {
  return {
    numPreemptions: 0,
    prefixCacheQueries: 0,
    prefixCacheHits: 0,
    promptTokens: 0,
    generationTokens: 0,
    recomputedTokens: 0,
    offloadStoredBlocks: 0,
    offloadLoadedBlocks: 0,
    offloadHitTokens: 0,
    offloadBytesToCpu: 0,
    offloadBytesToGpu: 0,
    offloadTransferSeconds: 0,
    offloadStoreSeconds: 0,
    externalHitTokens: 0,
    externalBytesLoaded: 0,
    externalTransferSeconds: 0,
    steps: 0,
    busySeconds: 0,
    loraDiskLoads: 0,
    loraGpuLoads: 0,
    loraGpuEvictions: 0,
    loraCpuEvictions: 0,
    loraLoadSeconds: 0,
    loraBatchSkips: 0,
  };
}

/** one request in an engine's queues (Engine.queueState) */
export interface QueuedRequest {
  /** tokens to compute before its next output token: the prompt's uncached rest, or 1 when decoding */
  toCompute: number;
  /** tokens of context it has (computed, or cached for a waiting one) */
  context: number;
  outputsLeft: number;
  /** in the running batch (else waiting for admission) */
  running: boolean;
  /** KV tokens it holds that no cache hit gave it (what its finish frees) */
  ownTokens: number;
}

export class Engine {
  readonly config: EngineConfig;
  readonly capacity: KvCapacity;
  private readonly observer: EngineObserver;
  private readonly kv: KvCacheManager;
  private readonly announceTokens: number;
  private readonly timer: StepTimer;
  private readonly requests = new Map<string, Req>();
  private readonly running: Req[] = [];
  private waiting: Req[] = [];
  private readonly scheduled: Req[] = [];
  /** requests added since the last step began: taken in (queuedTime) when the next one begins */
  private readonly arrived: Req[] = [];
  private readonly finishedScratch: Req[] = [];
  private readonly counters = newCounters();
  private readonly work: StepWork = {
    prefillTokens: 0,
    decodeSeqs: 0,
    attentionContext: 0,
    prefillAttentionContext: 0,
    kvReadTokens: 0,
    loadBytesPerGpu: 0,
    extraTransferSeconds: 0,
    seqs: 0,
  };
  /** the array onTokens receives, reused (valid during the call only) */
  private readonly oneToken: number[] = [0];
  private nextSeq = 0;
  private inFlight = false;
  private stepDuration = 0;
  /** the step in flight's transfer seconds by kind, for the counters at completion */
  private stepLoadSeconds = 0;
  private stepStoreSeconds = 0;
  private stepExternalSeconds = 0;
  /** the latest time a driver passed in (aborts carry no time of their own) */
  private lastNow = 0;
  /** adapter slots and host cache (null without LoRA) */
  private readonly lora: LoraCache | null;
  /** the adapters of the batch being scheduled, by name (vLLM's scheduled_loras), reused */
  private readonly batchLoras = new Map<string, EngineLora>();
  /** when the adapter loads the load API asked for are done (the engine core runs them between steps) */
  private loraBusyUntil = 0;
  /** the driver's clock seconds per modelled second (the sim's --time-scale; 1 in virtual time) */
  private readonly clockScale: number;

  constructor(config: EngineConfig, observer: EngineObserver, opts: { clockScale?: number } = {}) {
    validateEngineConfig(config);
    this.config = config;
    this.clockScale = opts.clockScale ?? 1;
    if (!(this.clockScale > 0)) throw new RangeError(`clockScale must be > 0, got ${this.clockScale}`);
    this.observer = observer;
    // KV events are built only for an observer that takes them (a fleet in virtual time does not)
    this.kv = new KvCacheManager(config, this.counters, observer.onKvEvents !== undefined);
    this.capacity = this.kv.capacity;
    this.announceTokens = config.externalChunkTokens ?? LMCACHE_CHUNK_TOKENS;
    this.timer = new StepTimer(config);
    this.lora = config.lora ? new LoraCache(config.lora, config.gpu.hostLinkBandwidth, this.counters) : null;
  }

  /** vLLM's 400 message when prompt + max_tokens does not fit max_model_len, else null */
  validateRequest(promptLen: number, maxTokens: number): string | null {
    const max = this.config.maxModelLen;
    if (promptLen >= max) {
      return `This model's maximum context length is ${max} tokens. However, your request has ${promptLen} input tokens. Please reduce the length of the input messages.`;
    }
    if (promptLen + maxTokens > max) {
      return `'max_tokens' or 'max_completion_tokens' is too large: ${maxTokens}. This model's maximum context length is ${max} tokens and your request has ${promptLen} input tokens (${maxTokens} > ${max} - ${promptLen}).`;
    }
    return null;
  }

  add(req: EngineRequest): void {
    const id = req.requestId;
    const Bad = InvalidArgumentError;
    if (this.requests.has(id)) throw new Bad(`duplicate request id ${id}`);
    if (req.promptTokenIds.length === 0) throw new Bad(`request ${id}: empty prompt`);
    const err = this.validateRequest(req.promptTokenIds.length, req.maxTokens);
    if (err) throw new Bad(err);
    if (!(req.maxTokens >= 1)) throw new Bad(`request ${id}: max_tokens must be >= 1`);
    if (req.lora && req.lora.name !== req.loraName)
      throw new Bad(`request ${id}: lora.name '${req.lora.name}' is not loraName '${req.loraName}'`);
    if ((req.externalCachedTokens ?? 0) > 0 && !((req.externalLoadBandwidth ?? 0) > 0))
      throw new Bad(`request ${id}: externalCachedTokens needs externalLoadBandwidth > 0`);
    const r = new Req(req, this.nextSeq++);
    if (req.sharedPrefix) this.kv.attachSharedPrefix(r, req.sharedPrefix);
    this.requests.set(req.requestId, r);
    this.counters.promptTokens += r.promptLen;
    this.enqueueWaiting(r, false);
    this.arrived.push(r);
  }

  private before(a: Req, b: Req): boolean {
    if (this.config.schedulingPolicy === "priority" && a.r.priority !== b.r.priority)
      return a.r.priority < b.r.priority;
    return a.r.arrivalTime !== b.r.arrivalTime ? a.r.arrivalTime < b.r.arrivalTime : a.seq < b.seq;
  }

  private enqueueWaiting(r: Req, front: boolean): void {
    r.status = Status.Waiting;
    if (this.config.schedulingPolicy === "priority") {
      // sorted by (priority, arrival): binary search for the insertion point
      let lo = 0;
      let hi = this.waiting.length;
      while (lo < hi) {
        const mid = (lo + hi) >>> 1;
        if (this.before(this.waiting[mid]!, r)) lo = mid + 1;
        else hi = mid;
      }
      this.waiting.splice(lo, 0, r);
    } else if (front) {
      this.waiting.unshift(r);
    } else {
      this.waiting.push(r);
    }
  }

  abort(requestId: string): boolean {
    const r = this.requests.get(requestId);
    if (!r || r.status === Status.Done) return false;
    if (r.status === Status.Waiting) {
      const i = this.waiting.indexOf(r);
      if (i >= 0) this.waiting.splice(i, 1);
    } else {
      const i = this.running.indexOf(r);
      if (i >= 0) this.running.splice(i, 1);
    }
    this.finish(r, "abort", this.lastNow);
    return true;
  }

  hasWork(): boolean {
    return this.running.length > 0 || this.waiting.length > 0;
  }

  /**
   * Prompt tokens the GPU prefix cache would serve this prompt now: what a router's KV-event index
   * predicts for this engine. No side effects (KvCacheManager.probeCachedTokens).
   */
  probeCachedTokens(promptTokenIds: readonly number[], opts: ProbeOptions = {}): number {
    return this.kv.probeCachedTokens(promptTokenIds, opts);
  }

  /**
   * Prompt tokens beyond a GPU hit of `gpuTokens` that the engine's own CPU tier (native offload or
   * LMCache's local CPU) would load, and the seconds the load adds to its step. No side effects
   * (KvCacheManager.probeTierTokens).
   */
  probeTierTokens(
    promptTokenIds: readonly number[],
    gpuTokens: number,
    opts: ProbeOptions = {},
  ): { tokens: number; seconds: number } {
    return this.kv.probeTierTokens(promptTokenIds, gpuTokens, opts);
  }

  /**
   * probeCachedTokens and probeTierTokens of one prompt at once, each of its blocks hashed once (what
   * a router's price of every tier reads per engine). No side effects; the result is a scratch value
   * (KvCacheManager.probePrefix).
   */
  probePrefix(promptTokenIds: readonly number[], opts: ProbeOptions = {}): PrefixProbe {
    return this.kv.probePrefix(promptTokenIds, opts);
  }

  // ---- scheduling -------------------------------------------------------------------------------

  private pickVictim(): Req {
    if (this.config.schedulingPolicy !== "priority") return this.running[this.running.length - 1]!;
    let v = this.running[0]!;
    for (const r of this.running) if (this.before(v, r)) v = r;
    return v;
  }

  private preempt(v: Req): void {
    const i = this.running.indexOf(v);
    if (i >= 0) this.running.splice(i, 1);
    if (v.stepTokens > 0) {
      const j = this.scheduled.indexOf(v);
      if (j >= 0) this.scheduled.splice(j, 1);
      v.stepTokens = 0;
    }
    this.kv.free(v);
    v.recomputeLeft = Math.max(v.recomputeLeft, v.numComputed);
    v.numComputed = 0;
    v.preemptions++;
    this.counters.numPreemptions++;
    this.enqueueWaiting(v, true);
  }

  private noteComputed(r: Req, numNew: number): void {
    if (r.recomputeLeft > 0) {
      const n = Math.min(numNew, r.recomputeLeft);
      this.counters.recomputedTokens += n;
      r.recomputeLeft -= n;
    }
  }

  beginStep(now: number): StepPlan | null {
    if (this.inFlight) throw new InvariantError("beginStep called while a step is in flight");
    this.lastNow = Math.max(this.lastNow, now);
    // the engine core takes in what arrived since the last step before it schedules this one
    for (const r of this.arrived) r.queuedTime = now;
    this.arrived.length = 0;
    const cfg = this.config;
    const kv = this.kv;
    let budget = cfg.maxNumBatchedTokens;
    let preempted = false;
    kv.beginStep();
    this.scheduled.length = 0;
    const batch = this.lora ? this.batchLoras : null;
    batch?.clear();
    const maxLoras = cfg.lora?.maxLoras ?? 0;

    // running requests first, in order
    let i = 0;
    while (i < this.running.length && budget > 0) {
      const r = this.running[i]!;
      const numNew = Math.min(r.numTokens - r.numComputed, budget);
      if (numNew <= 0) {
        i++;
        continue;
      }
      let selfPreempted = false;
      while (!kv.allocateSlots(r, numNew)) {
        const v = this.pickVictim();
        const vi = this.running.indexOf(v);
        if (v.stepTokens > 0) budget += v.stepTokens;
        this.preempt(v);
        preempted = true;
        if (v === r) {
          selfPreempted = true;
          break;
        }
        if (vi < i) i--;
      }
      if (selfPreempted) continue;
      this.schedule(r, numNew, now);
      if (batch && r.r.lora) batch.set(r.r.lora.name, r.r.lora);
      budget -= numNew;
      i++;
    }

    // then waiting requests, unless this step had to preempt (vLLM skips admissions then); a request
    // whose adapter would be one more than max_loras in this batch is passed over and keeps its place
    // (vllm/v1/core/sched/scheduler.py: "Scheduling would exceed max_loras, skip")
    let w = 0;
    let skipped = false;
    while (!preempted && budget > 0 && w < this.waiting.length && this.running.length < cfg.maxNumSeqs) {
      const r = this.waiting[w]!;
      const a = batch ? r.r.lora : null;
      if (a && batch!.size >= maxLoras && !batch!.has(a.name)) {
        skipped = true;
        w++;
        continue;
      }
      const hit = kv.findCached(r);
      const hitTokens = (hit.gpu + hit.cpu + hit.lmcache + hit.external) * cfg.blockSize;
      const numNew = Math.min(r.numTokens - hitTokens, budget);
      // admission stops at the first request whose blocks do not fit (FCFS, as vLLM)
      if (!kv.admit(r, hit, numNew)) break;
      if (w === 0) this.waiting.shift();
      else this.waiting.splice(w, 1);
      if (a) batch!.set(a.name, a);
      r.numComputed = hitTokens;
      r.announcedChunks = Math.max(r.announcedChunks, Math.floor(hitTokens / this.announceTokens));
      r.recomputeLeft = Math.max(0, r.recomputeLeft - hitTokens);
      if (r.cachedTokens < 0) r.cachedTokens = hitTokens;
      r.status = Status.Running;
      this.running.push(r);
      this.schedule(r, numNew, now);
      budget -= numNew;
    }

    if (skipped) this.counters.loraBatchSkips++;
    if (this.scheduled.length === 0) return null;
    // the engine core finishes the load API's adapter loads before it runs this step
    const loadWait = Math.max(0, this.loraBusyUntil - now) / this.clockScale;
    return this.planStep(budget, loadWait);
  }

  /** the step's work and duration from what was scheduled, after checking the scheduler's invariants */
  private planStep(budget: number, loadWait: number): StepPlan {
    const cfg = this.config;
    const kv = this.kv;
    // vLLM's scheduler asserts these at the end of schedule(): the token budget held, the batch fits
    // max_num_seqs, every scheduled request is running with tokens scheduled and blocks for them
    if (budget < 0 || this.running.length > cfg.maxNumSeqs || this.scheduled.length > this.running.length)
      throw new InvariantError(
        `scheduler invariant: budget ${budget}, ${this.running.length} running of ${cfg.maxNumSeqs}, ${this.scheduled.length} scheduled`,
      );
    const st = kv.step;
    // one StepWork per engine, reused: a fleet in virtual time runs millions of steps
    const work = this.work;
    work.prefillTokens = 0;
    work.decodeSeqs = 0;
    work.attentionContext = 0;
    work.prefillAttentionContext = 0;
    work.kvReadTokens = 0;
    work.seqs = this.scheduled.length;
    work.loadBytesPerGpu = st.loadBytesPerGpu;
    work.extraTransferSeconds = st.lmcacheLoadSeconds + st.storeSeconds + st.externalSeconds;
    // the batch's adapters go into slots (from disk when the host cache lacks them) before the forward pass
    let loraSeconds = loadWait;
    work.loraAdapters = 0;
    work.loraWeightBytes = 0;
    if (this.lora && this.batchLoras.size > 0) {
      loraSeconds += this.lora.prepareBatch(this.batchLoras);
      work.loraAdapters = this.batchLoras.size;
      for (const a of this.batchLoras.values()) work.loraWeightBytes += a.bytes;
    }
    work.extraTransferSeconds += loraSeconds;
    for (const r of this.scheduled) {
      const n = r.stepTokens;
      const c = r.numComputed;
      if (n <= 0 || r.status !== Status.Running)
        throw new InvariantError(`scheduler invariant: request ${r.r.requestId} scheduled with ${n} tokens`);
      kv.assertCovers(r);
      const ctx = n * c + (n * (n + 1)) / 2;
      if (n === 1 && r.outputs > 0 && c + 1 === r.numTokens) work.decodeSeqs++;
      else {
        work.prefillTokens += n;
        work.prefillAttentionContext! += ctx;
      }
      work.attentionContext += ctx;
      work.kvReadTokens += c;
    }
    if (work.prefillTokens + work.decodeSeqs > cfg.maxNumBatchedTokens)
      throw new InvariantError(
        `scheduler invariant: ${work.prefillTokens + work.decodeSeqs} tokens scheduled over max_num_batched_tokens ${cfg.maxNumBatchedTokens}`,
      );
    const t = this.timer.time(work);
    this.stepLoadSeconds = t.transfer - st.storeSeconds - st.externalSeconds - loraSeconds;
    this.stepStoreSeconds = st.storeSeconds;
    this.stepExternalSeconds = st.externalSeconds;
    this.inFlight = true;
    this.stepDuration = t.duration;
    return { duration: t.duration, prefillTokens: work.prefillTokens, decodeSeqs: work.decodeSeqs };
  }

  private schedule(r: Req, numNew: number, now: number): void {
    r.stepTokens = numNew;
    if (r.firstScheduledTime < 0) r.firstScheduledTime = now;
    this.noteComputed(r, numNew);
    this.kv.cacheBlocks(r, r.numComputed + numNew);
    this.scheduled.push(r);
  }

  completeStep(now: number): void {
    if (!this.inFlight) throw new InvariantError("completeStep called with no step in flight");
    this.inFlight = false;
    this.lastNow = Math.max(this.lastNow, now);
    this.counters.steps++;
    this.counters.busySeconds += this.stepDuration;
    this.counters.offloadTransferSeconds += this.stepLoadSeconds;
    this.counters.offloadStoreSeconds += this.stepStoreSeconds;
    this.counters.externalTransferSeconds += this.stepExternalSeconds;
    const announce = this.observer.onChunksComputed;
    const done = this.finishedScratch;
    done.length = 0;
    for (const r of this.scheduled) {
      if (r.status !== Status.Running || r.stepTokens === 0) continue;
      r.numComputed += r.stepTokens;
      r.stepTokens = 0;
      if (announce && r.announcedChunks * this.announceTokens < r.promptLen) {
        const full = Math.floor(Math.min(r.numComputed, r.promptLen) / this.announceTokens);
        if (full > r.announcedChunks) {
          const from = r.announcedChunks;
          r.announcedChunks = full;
          // announced chunks are prompt chunks: the caller's prompt array holds them
          announce.call(this.observer, r.r.requestId, from, full, r.r.promptTokenIds, now);
        }
      }
      if (r.numComputed < r.numTokens) continue; // a prefill chunk: no token yet
      const tok = r.r.sampleToken(r.outputs);
      r.tokens[r.numTokens++] = tok;
      r.outputs++;
      this.counters.generationTokens++;
      if (r.firstTokenTime < 0) r.firstTokenTime = now;
      const one = this.oneToken;
      one[0] = tok;
      this.observer.onTokens(r.r.requestId, one, now);
      // the modelled EOS wins over the length limit when both land on the same token, as in vLLM
      if (!r.r.ignoreEos && r.outputs >= r.r.stopAfter && r.outputs >= r.r.minTokens) r.finishReason = "stop";
      else if (r.outputs >= r.r.maxTokens || r.numTokens >= this.config.maxModelLen)
        r.finishReason = "length";
      else continue;
      done.push(r);
    }
    this.scheduled.length = 0;
    for (const r of done) {
      const reason = r.finishReason!;
      const i = this.running.indexOf(r);
      if (i >= 0) this.running.splice(i, 1);
      this.finish(r, reason, now);
    }
    this.flushEvents(now);
  }

  private finish(r: Req, reason: FinishReason, now: number): void {
    r.status = Status.Done;
    this.kv.free(r);
    this.requests.delete(r.r.requestId);
    const timings: RequestTimings = {
      arrivalTime: r.r.arrivalTime,
      queuedTime: r.queuedTime >= 0 ? r.queuedTime : r.r.arrivalTime,
      firstScheduledTime: r.firstScheduledTime,
      firstTokenTime: r.firstTokenTime,
      finishedTime: now,
      promptTokens: r.promptLen,
      outputTokens: r.outputs,
      cachedTokens: Math.max(0, r.cachedTokens),
      externalTokens: r.externalTokens,
      preemptions: r.preemptions,
    };
    this.observer.onFinished(r.r.requestId, reason, timings);
  }

  private flushEvents(now: number): void {
    const events = this.kv.events;
    if (events.length === 0) return;
    const batch = events.splice(0, events.length);
    this.observer.onKvEvents?.(batch, now);
  }

  // ---- LoRA -------------------------------------------------------------------------------------

  /**
   * vLLM's add_lora (POST /v1/load_lora_adapter, a static --lora-modules entry): the adapter is read
   * into the host cache and activated in a slot now; the engine core spends the seconds returned on it,
   * so a step that begins before they have passed waits for the rest. Throws without LoRA.
   */
  loadLora(a: EngineLora, now: number): number {
    if (!this.lora) throw new UnsupportedError("LoRA is not enabled on this engine");
    this.lastNow = Math.max(this.lastNow, now);
    // adapters of requests running now keep their slots
    const busy = new Set<string>();
    for (const r of this.running) if (r.r.loraName) busy.add(r.r.loraName);
    // when every slot serves a running request the adapter waits in the host cache for a batch to need it
    const slotsBusy = busy.size >= this.config.lora!.maxLoras && !this.lora.onGpu(a.name);
    const s = slotsBusy ? this.lora.loadToCpu(a) : this.lora.load(a, busy);
    // the driver's clock may run slower than the model's (a scaled sim): the window is in its seconds
    this.loraBusyUntil = Math.max(this.loraBusyUntil, now) + s * this.clockScale;
    return s;
  }

  /** vLLM's remove_lora (POST /v1/unload_lora_adapter): out of the slots and the host cache */
  unloadLora(name: string): boolean {
    return this.lora?.drop(name) ?? false;
  }

  /**
   * Seconds a request for `a` would spend waiting for its adapter here now: 0 in a slot, the copy from
   * host memory, or the read from disk and the copy. No side effects (what a router prices a cold load at).
   */
  loraColdSeconds(a: EngineLora): number {
    return this.lora ? this.lora.coldSeconds(a) : 0;
  }

  /**
   * The adapters the scheduler holds: slots and host cache (most recent last), and the adapters of
   * its running and waiting requests, as vllm:lora_requests_info reports them. Null without LoRA.
   */
  loraState(): (LoraResidency & { running: string[]; waiting: string[] }) | null {
    if (!this.lora) return null;
    const running = new Set<string>();
    const waiting = new Set<string>();
    for (const r of this.running) if (r.r.loraName) running.add(r.r.loraName);
    for (const r of this.waiting) if (r.r.loraName) waiting.add(r.r.loraName);
    return { ...this.lora.residency(), running: [...running], waiting: [...waiting] };
  }

  snapshot(): EngineSnapshot {
    return {
      numRunning: this.running.length,
      numWaiting: this.waiting.length,
      kvCacheUsage: this.kv.usage(),
      numGpuBlocks: this.capacity.numGpuBlocks,
      numCpuBlocks: this.capacity.numCpuBlocks,
      counters: this.counters,
    };
  }

  /**
   * tokens the GPU cache holds (blocks with a hash, in use or free): what a router counts from this
   * engine's KV events (stored less removed)
   */
  heldTokens(): number {
    return this.kv.numCachedBlocks * this.config.blockSize;
  }

  /**
   * The scheduler's queues as they stand, running then waiting, in the order the next step serves them:
   * per request the tokens it computes before its next token (1 once decoding), its context so far and
   * the output tokens still to come. A waiting request's context is what the GPU cache would serve it
   * now. Read-only: what a placement that knows every engine's exact state reads (src/fleet).
   */
  queueState(): QueuedRequest[] {
    // (the KV tokens in use: EngineSnapshot.kvCacheUsage × numGpuBlocks × blockSize)
    const out: QueuedRequest[] = [];
    for (const r of this.running)
      out.push({
        toCompute: Math.max(1, r.numTokens - r.numComputed),
        context: r.numComputed,
        outputsLeft: Math.max(0, r.r.maxTokens - r.outputs),
        running: true,
        ownTokens: r.numComputed - Math.max(0, r.cachedTokens),
      });
    for (const r of this.waiting) {
      const cached = Math.min(r.promptLen - 1, this.kv.probeCachedTokens(r.r.promptTokenIds));
      out.push({
        toCompute: r.numTokens - cached,
        context: cached,
        outputsLeft: Math.max(0, r.r.maxTokens - r.outputs),
        running: false,
        ownTokens: 0,
      });
    }
    return out;
  }

  /** drops the GPU prefix cache (and the CPU tier); false while blocks are in use, like vLLM */
  resetPrefixCache(): boolean {
    if (!this.kv.reset()) return false;
    this.flushEvents(this.lastNow);
    return true;
  }

  /** free-queue order and cached-block count, for tests and debugging */
  debugState(): { freeQueue: number[]; cachedBlocks: number; cpuBlocks: number } {
    return this.kv.debugState();
  }
}
