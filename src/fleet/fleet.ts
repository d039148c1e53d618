// The fleet simulator: N engines of the one engine model (src/engine) on one virtual clock, a router
// that decides with the routing library's policies (src/routing) over the view the live router would
// have, and a load driver that replays a bench workload (src/workload) the way `switchyard
// bench` sends it: an arrival schedule, a cap on active sessions, follow-up turns after their answers.
import type { RequestRecord } from "../workload/record.js";
import { arrivalGaps, type ArrivalKind } from "../workload/arrivals.js";
import type { Session, Workload } from "../workload/types.js";
import {
  Engine,
  VirtualDriver,
  type EngineConfig,
  type EngineCounters,
  type RequestTimings,
} from "../engine/index.js";
import {
  idleEngineView,
  createPolicy,
  decide,
  PrefixOracle,
  type CacheOracle,
  type EngineView,
  type PolicyName,
  type RequestView,
} from "../routing/index.js";
import { chatMessages, completionPrompt } from "../workload/types.js";
import { EngineProbeOracle } from "./oracle.js";
import { RemoteStore } from "./remote.js";
import { chunkKeys, VirtualTokenizer } from "./tokens.js";
import { SessionScheduler } from "../workload/sessions.js";

export interface SharedServerOptions {
  /** memory of the shared cache server, bytes */
  bytes: number;
  /** bytes/s an engine gets from it */
  bandwidth: number;
  /** LMCache chunk_size, tokens */
  chunkTokens: number;
}

export interface FleetOptions {
  engine: EngineConfig;
  engines: number;
  policy: PolicyName;
  /** what the router's session-affinity key carries: none, the session id, or the workload group */
  sessionKey: "none" | "session" | "group";
  /** the live router scrapes vllm:num_requests_running/waiting and kv_cache_usage_perc this often */
  scrapeIntervalS: number;
  sharedServer: SharedServerOptions | null;
  workload: Workload;
  /** requests/s; Infinity = as fast as the concurrency cap allows */
  qps: number;
  arrival: ArrivalKind;
  /** sessions active at once; Infinity = no cap */
  concurrency: number;
  maxRequests: number;
  /** stop starting requests after this many virtual seconds */
  durationS: number;
  seed: number;
  /** keep every inter-token gap for ITL percentiles (memory grows with output tokens) */
  recordItl: boolean;
  /** hooks for callers that run many simulations of one workload (the planner); none changes a run */
  hooks?: FleetHooks;
}

export interface FleetHooks {
  /** the tokenizer to use, so that its cache of prompt ids outlives one run */
  tokenizer?: VirtualTokenizer;
  /** sees each finished request; returning true ends the run there (FleetResult.stoppedEarly) */
  onRecord?: (record: RequestRecord) => boolean;
}

export interface FleetResult {
  records: RequestRecord[];
  /** seconds from the first send to the last completion */
  durationS: number;
  /** every engine's scraped kv_cache_usage_perc samples, 0..1 */
  kvSamples: Float64Array;
  counters: EngineCounters[];
  numGpuBlocks: number;
  numCpuBlocks: number;
  remote: { lookups: number; hitTokens: number; storedChunks: number; evictedChunks: number } | null;
  /** events the virtual clock ran (a measure of simulation work) */
  events: number;
  /** the run was ended by FleetHooks.onRecord before its load was done */
  stoppedEarly: boolean;
}

interface Active {
  session: Session;
  round: number;
  /** prompt ids of the last turn plus its answer: the history the next turn carries */
  history: readonly number[];
}

interface InFlight {
  index: number;
  active: Active;
  engine: number;
  start: number;
  promptTokens: number;
  lastTokenAt: number;
  firstTokenAt: number;
  itl: number[];
  answer: number[];
  keys: number[] | null;
}

/** distinct shared prefixes the fleet names to its engines; later ones are hashed per request */
const MAX_PREFIX_KEYS = 4096;

/** the group part of a workload's session id (`g12-q3` → `g12`, `user-4` → `user-4`) */
function groupOf(id: string): string {
  const dash = id.indexOf("-");
  return /^[gp]\d+-/.test(id) ? id.slice(0, dash) : id;
}

export function simulateFleet(o: FleetOptions): FleetResult {
  const driver = new VirtualDriver();
  const tok = o.hooks?.tokenizer ?? new VirtualTokenizer();
  const onRecord = o.hooks?.onRecord;
  let stoppedEarly = false;
  const model = o.engine.model.id;
  const remote = o.sharedServer
    ? new RemoteStore(
        o.sharedServer.bytes,
        o.sharedServer.chunkTokens *
          2 *
          o.engine.model.layers *
          o.engine.model.kvHeads *
          o.engine.model.headDim *
          o.engine.model.dtypeBytes,
        o.sharedServer.bandwidth,
      )
    : null;
  const chunk = o.sharedServer?.chunkTokens ?? 256;
  const flights = new Map<string, InFlight>();
  const records: RequestRecord[] = [];
  const kv: number[] = [];
  const views: (EngineView & { models: Set<string> })[] = [];
  const engines: Engine[] = [];
  const engineCfg: EngineConfig = o.sharedServer ? { ...o.engine, externalChunkTokens: chunk } : o.engine;

  for (let e = 0; e < o.engines; e++) {
    const id = `http://engine-${e}`;
    views.push(idleEngineView(id, new Set([model]), { blockSize: o.engine.blockSize }));
    const engine: Engine = new Engine(engineCfg, {
      onTokens: (rid, ids, time) => {
        const f = flights.get(rid)!;
        if (f.firstTokenAt < 0) f.firstTokenAt = time;
        else if (o.recordItl) f.itl.push((time - f.lastTokenAt) * 1000);
        f.lastTokenAt = time;
        // only a multi-round session's next turn needs the answer's ids
        if (f.active.session.carriesHistory) for (let i = 0; i < ids.length; i++) f.answer.push(ids[i]!);
      },
      onFinished: (rid, _reason, t) => finished(rid, t),
      onChunksComputed: remote
        ? (rid, from, to) => {
            const f = flights.get(rid);
            if (f?.keys) remote.put(f.keys, from, to);
          }
        : undefined,
    });
    engines.push(engine);
    driver.attach(engine);
  }

  // cache-aware policies get the oracle the live router would have (src/fleet/oracle.ts)
  const probe =
    o.policy === "kv" || o.policy === "hybrid"
      ? new EngineProbeOracle(
          engines,
          views.map((v) => v.id),
        )
      : null;
  const prefixOracle = o.policy === "prefix" ? new PrefixOracle() : null;
  const cache: CacheOracle | undefined = probe ?? prefixOracle ?? undefined;
  const policy = createPolicy(o.policy, cache ? { cache } : {});
  const chat = o.workload.defaultEndpoint === "chat";

  // ---- the router's view: its own in-flight counts now, engine metrics as of the last scrape ----
  let outstanding = 0;
  let loadDone = false;
  const scrape = () => {
    for (let e = 0; e < engines.length; e++) {
      const s = engines[e]!.snapshot();
      const v = views[e]!;
      v.running = s.numRunning;
      v.waiting = s.numWaiting;
      v.kvUsage = s.kvCacheUsage;
      kv.push(s.kvCacheUsage);
    }
    if (!loadDone || outstanding > 0) driver.after(o.scrapeIntervalS, scrape);
  };

  // ---- load: arrival schedule, session cap, follow-ups first (SessionScheduler, as src/bench/load.ts) ----
  let dispatched = 0;
  let lastEnd = 0;
  let waitingForSlot = false;
  const gaps = arrivalGaps(o.qps, o.arrival, o.seed);

  const sessionsToSend = new SessionScheduler<Active>(o.workload.sessions, o.concurrency, (session) => ({
    session,
    round: 0,
    history: [],
  }));
  const take = () => sessionsToSend.take();

  // the system text of a session names its shared prefix to the engine (EngineRequest.sharedPrefix)
  const prefixKeys = new Map<string, string>();
  const prefixKeyOf = (system: string): string | undefined => {
    let k = prefixKeys.get(system);
    if (k === undefined && prefixKeys.size < MAX_PREFIX_KEYS) {
      k = `s${prefixKeys.size}`;
      prefixKeys.set(system, k);
    }
    return k;
  };

  const promptOf = (a: Active): number[] => {
    const s = a.session;
    const turn = tok.encode(s.turns[a.round]!.text);
    if (a.round === 0 || !s.carriesHistory)
      return s.system !== null ? tok.encode(s.system).concat(turn) : turn.slice();
    return a.history.concat(turn);
  };

  const dispatch = (a: Active) => {
    const index = dispatched++;
    const now = driver.now;
    const prompt = promptOf(a);
    const turn = a.session.turns[a.round]!;
    const rid = `r${index}`;
    const sessionKey =
      o.sessionKey === "none" ? undefined : o.sessionKey === "group" ? groupOf(a.session.id) : a.session.id;
    const system = a.session.system;
    const prefixKey = system !== null ? prefixKeyOf(system) : undefined;
    const sharedPrefix =
      prefixKey !== undefined ? { key: prefixKey, tokens: tok.encode(system!).length } : undefined;
    const req: RequestView = { model, seq: index, sessionKey };
    if (prefixOracle) {
      // the text the live router renders: chat messages or the completions prompt (earlier answers are
      // not kept as text here, so a multi-round history matches up to its first answer)
      const answers: string[] = [];
      if (chat) req.messages = chatMessages(a.session, a.round, answers);
      else req.prompt = completionPrompt(a.session, a.round, answers);
    }
    if (probe) probe.current = { tokens: prompt, sharedPrefix };
    const d = decide(policy, req, { engines: views });
    if (probe) probe.current = null;
    if (d.kind !== "picked") throw new Error(`routing failed: ${d.kind}`);
    const e = views.indexOf(d.engine as EngineView & { models: Set<string> });
    const engine = engines[e]!;
    const maxTokens = Math.min(turn.maxTokens, engine.config.maxModelLen - prompt.length);
    let keys: number[] | null = null;
    let ext = 0;
    if (remote) {
      keys = chunkKeys(prompt, chunk);
      ext = remote.matchPrefix(keys) * chunk;
    }
    const f: InFlight = {
      index,
      active: a,
      engine: e,
      start: now,
      promptTokens: prompt.length,
      lastTokenAt: now,
      firstTokenAt: -1,
      itl: [],
      answer: [],
      keys,
    };
    flights.set(rid, f);
    views[e]!.inFlight++;
    outstanding++;
    const salt = index * 2654435761;
    engine.add({
      requestId: rid,
      promptTokenIds: prompt,
      maxTokens: Math.max(1, maxTokens),
      stopAfter: Math.max(1, maxTokens),
      ignoreEos: true,
      minTokens: 0,
      priority: 0,
      cacheSalt: null,
      loraName: null,
      arrivalTime: now,
      sampleToken: (i) => 1000 + (((salt + i * 40503) >>> 0) % 50000),
      externalCachedTokens: ext > 0 ? ext : undefined,
      externalLoadBandwidth: ext > 0 ? remote!.bandwidth : undefined,
      sharedPrefix,
    });
    driver.wake(engine);
  };

  const finished = (rid: string, t: RequestTimings) => {
    const f = flights.get(rid)!;
    flights.delete(rid);
    views[f.engine]!.inFlight--;
    outstanding--;
    lastEnd = t.finishedTime;
    const ok = t.outputTokens > 0;
    const rec: RequestRecord = {
      index: f.index,
      sessionId: f.active.session.id,
      round: f.active.round,
      start: f.start * 1000,
      ok,
      ttft: ok ? (t.firstTokenTime - f.start) * 1000 : NaN,
      itl: f.itl,
      e2el: (t.finishedTime - f.start) * 1000,
      promptTokens: t.promptTokens,
      outputTokens: t.outputTokens,
      usageReported: true,
      httpStatus: 200,
      errorKind: ok ? null : "no_output",
      error: "",
    };
    records.push(rec);
    if (onRecord && !stoppedEarly && onRecord(rec)) {
      stoppedEarly = true;
      driver.stop();
    }
    const a = f.active;
    a.round++;
    if (ok && a.round < a.session.turns.length) {
      // the next turn carries this turn's prompt and its answer
      if (a.session.carriesHistory) a.history = promptOfDone(f).concat(f.answer);
      sessionsToSend.followUp(a);
    } else sessionsToSend.finish();
    if (waitingForSlot) {
      waitingForSlot = false;
      driver.at(driver.now, next);
    }
  };

  // the prompt of a finished turn is rebuilt rather than kept per request (prompts can be large)
  const promptOfDone = (f: InFlight): number[] => promptOf({ ...f.active, round: f.active.round - 1 });

  let nextAt = 0;
  const next = () => {
    if (loadDone) return;
    if (dispatched >= o.maxRequests || driver.now > o.durationS) {
      loadDone = true;
      return;
    }
    const item = take();
    if (item === null) {
      if (sessionsToSend.exhausted) {
        loadDone = true;
        return;
      }
      // held by the session cap or by sessions awaiting answers: resume when a request finishes
      waitingForSlot = true;
      nextAt = Math.max(nextAt, driver.now);
      return;
    }
    dispatch(item);
    nextAt = Math.max(nextAt, driver.now) + gaps.next().value!;
    if (Number.isFinite(nextAt)) driver.at(nextAt, next);
    else driver.at(driver.now, next);
  };

  gaps.next(); // the first gap is 0
  driver.at(0, next);
  driver.at(0, scrape);
  const events = driver.run();

  records.sort((x, y) => x.index - y.index);
  const first = records.length ? records[0]!.start / 1000 : 0;
  const cpuBlocks = engines[0]?.capacity.numCpuBlocks ?? 0;
  return {
    records,
    durationS: Math.max(0, lastEnd - first),
    kvSamples: Float64Array.from(kv),
    counters: engines.map((e) => ({ ...e.snapshot().counters })),
    numGpuBlocks: engines[0]?.capacity.numGpuBlocks ?? 0,
    numCpuBlocks: cpuBlocks,
    remote: remote
      ? {
          lookups: remote.lookups,
          hitTokens: remote.hitChunks * chunk,
          storedChunks: remote.storedChunks,
          evictedChunks: remote.evictedChunks,
        }
      : null,
    events,
    stoppedEarly,
  };
}
