// A LoRA fleet in virtual time: N engines of the engine model with adapter slots and host caches
// (src/engine/lora.ts), a router that keeps the books the live router keeps (each engine's loaded
// adapters from its own loads, its requests in flight per adapter, vllm:lora_requests_info as of the last
// scrape), places each request with a routing policy (src/routing/lora.ts or any other), loads a cold
// adapter through the engine's load API (one load per adapter and engine at a time; requests for it wait
// on that load) after unloading what would push the host cache over max_cpu_loras, and a Poisson stream of
// requests over many adapters with Zipf popularity. `clairvoyant` runs ours on exact engine state (the
// scrape taken at every decision) as the bound of what fresher knowledge buys.
import {
  Engine,
  VirtualDriver,
  loraAdapterBytes,
  type EngineConfig,
  type EngineLora,
} from "../engine/index.js";
import { LruMap } from "../collections/lru-map.js";
import { makeRng, shuffle } from "../random/rng.js";
import { evictionFor, noteAdapterUse } from "../routing/lora.js";
import {
  decide,
  idleEngineView,
  noteDone,
  noteFirstToken,
  noteSent,
  type AdapterUse,
  type EngineLoraView,
  type EngineView,
  type Policy,
  type RequestView,
} from "../routing/index.js";
import { InvalidArgumentError } from "../errors/index.js";

/** requests the router holds for a slot at most (its admission queue's default size) */
const MAX_HELD = 1024;

/** the adapters of a LoRA workload (a scenario's `workload.lora`): how many, how popular, how large */
export interface LoraAdapterMix {
  adapters: number;
  /** Zipf exponent of adapter popularity (1.0: the k-th most popular gets 1/k of the first's share) */
  zipf: number;
  rank: number;
  /** projections each adapter targets; the attention projections by default */
  modules?: string[] | undefined;
}

/** a LoRA workload: many adapters of one rank, popularity Zipf(s), a few shared system prompts */
export interface LoraWorkload extends LoraAdapterMix {
  /** shared system prompts and their length, tokens */
  systemPrompts: number;
  systemPromptTokens: number;
  /** each request's own prompt part and its output, tokens */
  userTokens: number;
  outputTokens: number;
}

export interface LoraFleetOptions {
  engines: number;
  /** each engine's config; its `lora` sets slots and host cache */
  engine: EngineConfig;
  workload: LoraWorkload;
  /** the routing policy, or clairvoyant: ours on exact state */
  policy: Policy;
  /** decide on the engines' exact adapter state (scraped at every decision) */
  clairvoyant?: boolean;
  /** requests per second */
  rate: number;
  /** seconds of arrivals; requests in the first `warmupS` are not measured */
  durationS: number;
  warmupS: number;
  seed: number;
  /** how often the router scrapes lora_requests_info and the queue gauges, ms; default 100 */
  scrapeMs?: number;
  /** the load API's round trip beside the engine's own load time, seconds; default 0.01 */
  loadRttS?: number;
  /**
   * the engines' ids (default engine-0, engine-1, ...): a policy that hashes them (a static placement)
   * places as a live stack does only under the live engines' ids
   */
  engineIds?: readonly string[];
}

export interface LoraFleetResult {
  /** TTFT of every measured request, ms (Infinity: not answered by the end of the drain) */
  ttfts: number[];
  /** TPOT of every measured request that finished with more than one output token, ms */
  tpots: number[];
  /** adapter loads the router made, unloads (host-cache evictions it asked for), and their engine seconds */
  loads: number;
  unloads: number;
  loadSecondsTotal: number;
  /** the engines' own counters summed: slot loads and evictions, steps that passed a request over */
  gpuLoads: number;
  gpuEvictions: number;
  batchSkips: number;
  /** the most adapters the router ever held loaded on one engine (never over max_cpu_loras) */
  maxLoaded: number;
  /** the engines' prefix cache, summed over the run: tokens looked up and found */
  prefixQueries: number;
  prefixHits: number;
}

/** adapter names by popularity rank (a seeded shuffle, so that rank and name hash do not correlate) */
export function adapterNames(n: number, seed: number): string[] {
  const names = Array.from({ length: n }, (_, i) => `lora-${String(i).padStart(4, "0")}`);
  return shuffle(names, makeRng(seed, "lora-names"));
}

/** the cumulative Zipf(s) distribution over n ranks */
export function zipfCdf(n: number, s: number): Float64Array {
  const cdf = new Float64Array(n);
  let sum = 0;
  for (let k = 1; k <= n; k++) sum += 1 / Math.pow(k, s);
  let acc = 0;
  for (let k = 1; k <= n; k++) {
    acc += 1 / Math.pow(k, s) / sum;
    cdf[k - 1] = acc;
  }
  return cdf;
}

export function drawRank(cdf: Float64Array, u: number): number {
  let lo = 0;
  let hi = cdf.length - 1;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (cdf[mid]! < u) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

interface Node {
  engine: Engine;
  view: EngineView;
  lora: EngineLoraView & {
    loaded: LruMap<string, true>;
    loading: Set<string>;
    inFlight: Map<string, number>;
    lastSentAt: Map<string, number>;
    uses: Map<string, AdapterUse>;
  };
  /** requests waiting on a load in flight, per adapter */
  waitingOnLoad: Map<string, (() => void)[]>;
}

export function simulateLoraFleet(o: LoraFleetOptions): LoraFleetResult {
  const cfg = o.engine;
  if (!cfg.lora) throw new InvalidArgumentError("simulateLoraFleet: the engine config needs lora");
  const w = o.workload;
  const driver = new VirtualDriver();
  const base = cfg.model.id;
  const names = adapterNames(w.adapters, o.seed);
  const bytes = loraAdapterBytes(cfg.model, w.rank, w.modules);
  const adapters = new Map<string, EngineLora>(
    names.map((n) => [n, { name: n, path: `/adapters/${n}`, bytes }]),
  );
  const cdf = zipfCdf(w.adapters, w.zipf);
  const rng = makeRng(o.seed, "lora-arrivals");
  const rtt = o.loadRttS ?? 0.01;
  const scrapeMs = o.scrapeMs ?? 100;
  const result: LoraFleetResult = {
    ttfts: [],
    tpots: [],
    loads: 0,
    unloads: 0,
    loadSecondsTotal: 0,
    gpuLoads: 0,
    gpuEvictions: 0,
    batchSkips: 0,
    maxLoaded: 0,
    prefixQueries: 0,
    prefixHits: 0,
  };
  const arrivals = new Map<
    string,
    { t: number; measured: boolean; node: Node; adapter: string; req: RequestView }
  >();
  const nodes: Node[] = [];
  let retryHeld = (): void => {};
  let retryQueued = false;
  for (let i = 0; i < o.engines; i++) {
    const node = {} as Node;
    node.engine = new Engine(cfg, {
      onTokens: (id, _ids, time) => {
        const a = arrivals.get(id);
        if (!a || a.t < 0) return;
        if (a.measured) result.ttfts.push((time - a.t) * 1000);
        a.t = -1;
        noteFirstToken(node.view, time * 1000);
      },
      onFinished: (id, _reason, timings) => {
        const a = arrivals.get(id);
        arrivals.delete(id);
        if (!a) return;
        if (a.measured && timings.outputTokens > 1)
          result.tpots.push(
            ((timings.finishedTime - timings.firstTokenTime) * 1000) / (timings.outputTokens - 1),
          );
        const k = (node.lora.inFlight.get(a.adapter) ?? 1) - 1;
        if (k > 0) node.lora.inFlight.set(a.adapter, k);
        else {
          node.lora.inFlight.delete(a.adapter);
          node.lora.lastSentAt.delete(a.adapter);
        }
        noteDone(node.view, true, timings.finishedTime * 1000);
        o.policy.onDone?.(a.req, node.view, (timings.finishedTime - timings.arrivalTime) * 1000);
        // a slot may have freed: the held requests are decided again (after this step's other ends)
        if (!retryQueued) {
          retryQueued = true;
          driver.after(0, () => {
            retryQueued = false;
            retryHeld();
          });
        }
      },
    });
    node.lora = {
      maxLoras: cfg.lora.maxLoras,
      maxCpuLoras: cfg.lora.maxCpuLoras,
      running: new Set(),
      waiting: new Set(),
      loaded: new LruMap(),
      loading: new Set(),
      inFlight: new Map(),
      lastSentAt: new Map(),
      uses: new Map(),
      diskBps: cfg.lora.diskBandwidth ?? 1e9,
      linkBps: cfg.gpu.hostLinkBandwidth,
      loadOverheadS: rtt + 0.005,
    };
    node.view = idleEngineView(o.engineIds?.[i] ?? `engine-${i}`, new Set([base]), {
      lora: node.lora,
      scrapedAt: 0,
      inFlightAtScrape: 0,
    });
    node.waitingOnLoad = new Map();
    driver.attach(node.engine);
    nodes.push(node);
  }

  const scrape = (n: Node, nowMs: number) => {
    const st = n.engine.loraState()!;
    n.lora.running = new Set(st.running);
    n.lora.waiting = new Set(st.waiting);
    const snap = n.engine.snapshot();
    n.view.running = snap.numRunning;
    n.view.waiting = snap.numWaiting;
    n.view.kvUsage = snap.kvCacheUsage;
    n.view.scrapedAt = nowMs;
    n.view.inFlightAtScrape = n.view.inFlight;
  };
  const scrapeAll = () => {
    for (const n of nodes) scrape(n, driver.now * 1000);
    if (driver.now < o.durationS + 120) driver.after(scrapeMs / 1000, scrapeAll);
  };
  driver.at(0, scrapeAll);

  /** the adapter usable on the node now, or after its load (started here when none is in flight) */
  const ensureLoaded = (n: Node, name: string, then: () => void) => {
    if (n.lora.loaded.has(name)) {
      n.lora.loaded.touch(name);
      then();
      return;
    }
    const queue = n.waitingOnLoad.get(name);
    if (queue) {
      queue.push(then);
      return;
    }
    // room first: the router unloads the oldest idle adapter, so the engine never holds more than max_cpu_loras
    const victim = evictionFor(n.lora, name, driver.now * 1000);
    if (victim !== null) {
      n.lora.loaded.delete(victim);
      n.lora.uses.delete(victim);
      n.engine.unloadLora(victim);
      result.unloads++;
    }
    n.waitingOnLoad.set(name, [then]);
    n.lora.loading.add(name);
    result.loads++;
    driver.after(rtt / 2, () => {
      const s = n.engine.loadLora(adapters.get(name)!, driver.now);
      result.loadSecondsTotal += s;
      driver.after(s + rtt / 2, () => {
        n.lora.loading.delete(name);
        n.lora.loaded.set(name, true);
        result.maxLoaded = Math.max(result.maxLoaded, n.lora.loaded.size);
        const waiters = n.waitingOnLoad.get(name)!;
        n.waitingOnLoad.delete(name);
        for (const f of waiters) f();
      });
    });
  };

  // the shared system prompts and a per-request tail
  const sys = Array.from({ length: w.systemPrompts }, (_, p) =>
    Array.from({ length: w.systemPromptTokens }, (_, i) => 1000 + ((p * 7919 + i * 104729) % 100000)),
  );
  let seq = 0;
  const views = nodes.map((n) => n.view);
  /** requests the policy held ("saturated"), in arrival order; tried again whenever a request ends */
  const held: { id: string; name: string; req: RequestView; t: number }[] = [];
  /** places one request; false: the policy holds it */
  const place = (id: string, name: string, req: RequestView, arrivedAt: number): boolean => {
    const now = driver.now;
    const a = adapters.get(name)!;
    if (o.clairvoyant) for (const n of nodes) scrape(n, now * 1000);
    const d = decide(o.policy, req, { engines: views, now: now * 1000 });
    if (d.kind === "saturated") return false;
    if (d.kind === "picked") {
      const n = nodes[views.indexOf(d.engine)]!;
      const prompt = [...sys[req.seq % w.systemPrompts]!];
      for (let i = 0; i < w.userTokens; i++) prompt.push(200_000 + ((req.seq * 131 + i * 31) % 20_000));
      const measured = arrivedAt >= o.warmupS;
      arrivals.set(id, { t: arrivedAt, measured, node: n, adapter: name, req });
      n.lora.inFlight.set(name, (n.lora.inFlight.get(name) ?? 0) + 1);
      n.lora.lastSentAt.set(name, now * 1000);
      noteAdapterUse(n.lora.uses, name, now * 1000);
      noteSent(n.view, now * 1000);
      ensureLoaded(n, name, () => {
        n.engine.add({
          requestId: id,
          promptTokenIds: prompt,
          maxTokens: w.outputTokens,
          stopAfter: w.outputTokens,
          ignoreEos: true,
          minTokens: 0,
          priority: 0,
          cacheSalt: null,
          loraName: name,
          lora: a,
          arrivalTime: driver.now,
          sharedPrefix: { key: `sys-${req.seq % w.systemPrompts}`, tokens: w.systemPromptTokens },
          sampleToken: (i) => 500 + (i % 1000),
        });
        driver.wake(n.engine);
      });
    } else if (arrivedAt >= o.warmupS) result.ttfts.push(Infinity);
    return true;
  };
  retryHeld = () => {
    for (let i = 0; i < held.length;) {
      const h = held[i]!;
      if (place(h.id, h.name, h.req, h.t)) held.splice(i, 1);
      else i++;
    }
  };
  const arrive = () => {
    const now = driver.now;
    if (now >= o.durationS) return;
    const id = `r${seq}`;
    const name = names[drawRank(cdf, rng.next())]!;
    const a = adapters.get(name)!;
    const req: RequestView = { model: name, seq: seq++, lora: { name, path: a.path, base, bytes: a.bytes } };
    if (!place(id, name, req, now)) {
      if (held.length >= MAX_HELD) {
        if (now >= o.warmupS) result.ttfts.push(Infinity);
      } else held.push({ id, name, req, t: now });
    }
    driver.after(rng.exp(1 / o.rate), arrive);
  };
  driver.at(0, arrive);
  // arrivals end at durationS; what is still unanswered two minutes later counts as missed
  driver.run(o.durationS + 120);
  for (const a of arrivals.values()) if (a.measured && a.t >= 0) result.ttfts.push(Infinity);
  for (const h of held) if (h.t >= o.warmupS) result.ttfts.push(Infinity);
  for (const n of nodes) {
    const c = n.engine.snapshot().counters;
    result.gpuLoads += c.loraGpuLoads;
    result.gpuEvictions += c.loraGpuEvictions;
    result.batchSkips += c.loraBatchSkips;
    result.prefixQueries += c.prefixCacheQueries;
    result.prefixHits += c.prefixCacheHits;
  }
  return result;
}
