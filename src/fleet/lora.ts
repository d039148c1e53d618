// A LoRA fleet in virtual time, inside the fleet simulator's one loop (fleet.ts): what is LoRA's own
// lives here. The adapter catalog of a scenario (many adapters of one rank, Zipf popularity, each
// session naming one), the router-side books the live router keeps (src/router/engines/adapters.ts:
// each engine's loaded adapters from its own loads, its requests in flight per adapter,
// vllm:lora_requests_info as of the last scrape) that the routing policies read (src/routing/lora.ts),
// and loads through the engine model's adapter cache (src/engine/lora.ts): one load per adapter and
// engine at a time, requests for it waiting on that load, after unloading what would push the host cache
// over max_cpu_loras; where nothing there can go (every adapter loaded has requests in flight, or is
// loading) the load waits until a request there ends or a load settles, as the live router's does.
// The LoRA benchmark's shape through `simulateFleet` is lora-run.ts.
import {
  loraAdapterBytes,
  type Engine,
  type EngineConfig,
  type EngineLora,
  type VirtualDriver,
} from "../engine/index.js";
import { LruMap } from "../collections/lru-map.js";
import { makeRng, shuffle } from "../random/rng.js";
import { emptyLoraBooks, evictionFor, noteAdapterUse } from "../routing/lora.js";
import type { AdapterUse, EngineLoraView, EngineView, Policy, RequestView } from "../routing/index.js";
import { InvalidArgumentError } from "../errors/index.js";
import type { Session } from "../workload/types.js";
import type { Turn } from "./load.js";
import type { RouterLoraHooks } from "./router-view.js";

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

/** a LoRA fleet (FleetOptions.lora): its adapters, which one each session names, who places them */
export interface FleetLoraOptions {
  mix: LoraAdapterMix;
  /**
   * the popularity rank (0: the most popular) of the adapter a session's requests name; default a seeded
   * Zipf draw per session (a sub-agent names its parent's)
   */
  rankOf?: ((session: Session) => number) | undefined;
  /** the placement (one per router process), e.g. src/routing/lora.ts's; default the fleet's named policy */
  policy?: (() => Policy) | undefined;
  /** decide on the engines' exact state (scraped at every decision): an oracle heuristic */
  clairvoyant?: boolean | undefined;
  /** the load API's round trip beside the engine's own load time, seconds; default 0.01 */
  loadRttS?: number | undefined;
  /**
   * the engines' ids (default http://engine-0, ...): a policy that hashes them (a static placement)
   * places as a live stack does only under the live engines' ids
   */
  engineIds?: readonly string[] | undefined;
}

/** what a LoRA fleet's router did to the engines' adapter caches */
export interface LoraReport {
  /** adapter loads the router made, unloads (host-cache evictions it asked for), and their engine seconds */
  loads: number;
  unloads: number;
  loadSecondsTotal: number;
  /** the most adapters the router ever held loaded on one engine (never over max_cpu_loras) */
  maxLoaded: number;
  /** loads that waited for room (every adapter loaded there busy or loading) */
  roomWaits: number;
}

interface Books {
  engine: Engine;
  lora: EngineLoraView & {
    loaded: LruMap<string, true>;
    loading: Set<string>;
    inFlight: Map<string, number>;
    lastSentAt: Map<string, number>;
    uses: Map<string, AdapterUse>;
  };
  /** requests waiting on a load in flight, per adapter */
  waitingOnLoad: Map<string, ((a: EngineLora) => void)[]>;
  /** loads waiting for room: woken when a request there ends or a load settles */
  roomWaiters: (() => void)[];
}

/**
 * The router-side books of a LoRA fleet, in the fleet loop (fleet.ts): the catalog, which adapter each
 * request names, each engine's loaded adapters and loads, and the lora view the policies read.
 */
export class LoraBooks implements RouterLoraHooks {
  private readonly names: string[];
  private readonly cdf: Float64Array;
  private readonly adapters: Map<string, EngineLora>;
  private readonly base: string;
  private readonly rtt: number;
  private readonly books: Books[] = [];
  private views: readonly EngineView[] = [];
  /** the adapter of each request in flight, by request index */
  private readonly sentAdapter = new Map<number, string>();
  private readonly counts: LoraReport = {
    loads: 0,
    unloads: 0,
    loadSecondsTotal: 0,
    maxLoaded: 0,
    roomWaits: 0,
  };

  constructor(
    private readonly o: FleetLoraOptions,
    cfg: EngineConfig,
    engines: readonly Engine[],
    private readonly driver: VirtualDriver,
    private readonly seed: number,
  ) {
    if (!cfg.lora)
      throw new InvalidArgumentError("lora: the engine config needs lora (slots and host cache)");
    const w = o.mix;
    this.base = cfg.model.id;
    this.names = adapterNames(w.adapters, seed);
    const bytes = loraAdapterBytes(cfg.model, w.rank, w.modules);
    this.adapters = new Map(this.names.map((n) => [n, { name: n, path: `/adapters/${n}`, bytes }]));
    this.cdf = zipfCdf(w.adapters, w.zipf);
    this.rtt = o.loadRttS ?? 0.01;
    for (const engine of engines)
      this.books.push({
        engine,
        lora: emptyLoraBooks({
          maxLoras: cfg.lora.maxLoras,
          maxCpuLoras: cfg.lora.maxCpuLoras,
          diskBps: cfg.lora.diskBandwidth ?? 1e9,
          linkBps: cfg.gpu.hostLinkBandwidth,
          loadOverheadS: this.rtt + 0.005,
        }),
        waitingOnLoad: new Map(),
        roomWaiters: [],
      });
  }

  /** the router's engine views carry each engine's books (what the policies read) */
  attach(views: readonly EngineView[]): void {
    this.views = views;
    for (let e = 0; e < views.length; e++) views[e]!.lora = this.books[e]!.lora;
  }

  /** the adapter a session's requests name */
  adapterOf(session: Session): string {
    const rank = this.o.rankOf
      ? this.o.rankOf(session)
      : drawRank(this.cdf, makeRng(this.seed, `lora-${session.parentId ?? session.id}`).next());
    return this.names[rank]!;
  }

  request(turn: Turn, req: RequestView): void {
    const a = this.adapters.get(this.adapterOf(turn.active.session))!;
    req.model = a.name;
    req.lora = { name: a.name, path: a.path, base: this.base, bytes: a.bytes };
  }

  beforeDecide(): void {
    if (!this.o.clairvoyant) return;
    const now = this.driver.now * 1000;
    for (let e = 0; e < this.books.length; e++) {
      const v = this.views[e]!;
      const snap = this.books[e]!.engine.snapshot();
      v.running = snap.numRunning;
      v.waiting = snap.numWaiting;
      v.kvUsage = snap.kvCacheUsage;
      v.scrapedAt = now;
      v.inFlightAtScrape = v.inFlight;
      this.scraped(e);
    }
  }

  scraped(e: number): void {
    const b = this.books[e]!;
    const st = b.engine.loraState()!;
    b.lora.running = new Set(st.running);
    b.lora.waiting = new Set(st.waiting);
  }

  /** request `index` was sent to engine `e`: counted there, started once its adapter is loaded */
  send(turn: Turn, e: number, start: (adapter: EngineLora) => void): void {
    const name = this.adapterOf(turn.active.session);
    const l = this.books[e]!.lora;
    const now = this.driver.now * 1000;
    this.sentAdapter.set(turn.index, name);
    l.inFlight.set(name, (l.inFlight.get(name) ?? 0) + 1);
    l.lastSentAt.set(name, now);
    noteAdapterUse(l.uses, name, now);
    this.ensure(e, name, start);
  }

  /** request `index` on engine `e` ended */
  done(e: number, index: number): void {
    const name = this.sentAdapter.get(index);
    if (name === undefined) return;
    this.sentAdapter.delete(index);
    const b = this.books[e]!;
    const k = (b.lora.inFlight.get(name) ?? 1) - 1;
    if (k > 0) b.lora.inFlight.set(name, k);
    else {
      b.lora.inFlight.delete(name);
      b.lora.lastSentAt.delete(name);
      this.wake(b);
    }
  }

  report(): LoraReport {
    return { ...this.counts };
  }

  /** the adapter usable on engine `e` now, or after its load (started here when none is in flight) */
  private ensure(e: number, name: string, then: (a: EngineLora) => void): void {
    const b = this.books[e]!;
    const l = b.lora;
    const adapter = this.adapters.get(name)!;
    if (l.loaded.has(name)) {
      l.loaded.touch(name);
      then(adapter);
      return;
    }
    const queue = b.waitingOnLoad.get(name);
    if (queue) {
      queue.push(then);
      return;
    }
    // no room without pushing out an adapter that is loading or has requests in flight: as the live
    // router's, the load waits for a request there to end or a load to settle
    if (l.loaded.size + l.loading.size + 1 > l.maxCpuLoras && !this.hasIdle(b)) {
      this.counts.roomWaits++;
      b.roomWaiters.push(() => this.ensure(e, name, then));
      return;
    }
    // room first: the router unloads the least used idle adapter, so the engine never holds more than max_cpu_loras
    const victim = evictionFor(l, name, this.driver.now * 1000);
    if (victim !== null) {
      l.loaded.delete(victim);
      l.uses.delete(victim);
      b.engine.unloadLora(victim);
      this.counts.unloads++;
    }
    b.waitingOnLoad.set(name, [then]);
    l.loading.add(name);
    this.counts.loads++;
    const d = this.driver;
    d.after(this.rtt / 2, () => {
      const s = b.engine.loadLora(adapter, d.now);
      this.counts.loadSecondsTotal += s;
      d.after(s + this.rtt / 2, () => {
        l.loading.delete(name);
        l.loaded.set(name, true);
        this.counts.maxLoaded = Math.max(this.counts.maxLoaded, l.loaded.size);
        const waiters = b.waitingOnLoad.get(name)!;
        b.waitingOnLoad.delete(name);
        for (const f of waiters) f(adapter);
        this.wake(b);
      });
    });
  }

  /** whether an adapter loaded there has no request in flight and no load pending */
  private hasIdle(b: Books): boolean {
    for (const x of b.lora.loaded.oldestFirst())
      if (!b.lora.loading.has(x.key) && (b.lora.inFlight.get(x.key) ?? 0) === 0) return true;
    return false;
  }

  /** the loads waiting for room there look again (after the event that made room) */
  private wake(b: Books): void {
    if (b.roomWaiters.length === 0) return;
    const waiters = b.roomWaiters.splice(0);
    this.driver.at(this.driver.now, () => {
      for (const f of waiters) f();
    });
  }
}
