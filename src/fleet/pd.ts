// A disaggregated fleet in virtual time: a prefill pool and a decode pool of the one engine model, as
// the router's P/D mode runs them (docs/disaggregated.md). Each turn is routed over the prefill pool
// and runs there with max_tokens 1; its KV then moves to a decode engine picked over the decode pool,
// taking bytes ÷ (RDMA bandwidth per rank × the decode engine's ranks), as the sim's NixlConnector
// consumer waits; the decode engine starts with the prompt as an external prefix already in place
// (computing only its last partial block) and produces the answer. TTFT runs from the arrival at the
// router to the decode engine's first token, as the live router measures it.
import { kvCapacity, VirtualDriver, type EngineConfig } from "../engine/index.js";
import { FleetEngines, type Flight } from "./engines.js";
import { answeredRecord, refusedRecord } from "./records.js";
import { CLAIRVOYANT, type FleetOptions, type FleetResult, type PdOptions } from "./types.js";
import { LoadDriver, type Turn } from "./load.js";
import { cacheServersFor, cacheServersStats } from "./remote.js";
import {
  QUEUE_FULL_REFUSAL,
  ROUTE_QUEUE_FULL,
  ROUTE_WAITING,
  RouterView,
  SLO_REFUSAL,
} from "./router-view.js";
import { UnsupportedError } from "../errors/index.js";

/** vLLM NixlConnector over GPUDirect RDMA, bytes/s per TP rank (the sim's default, docs/disaggregated.md) */
export const PD_TRANSFER_BPS_PER_RANK = 40e9;

/** seconds to move `tokens` of KV to a decode engine of this config */
export function transferSeconds(decode: EngineConfig, tokens: number, bandwidthPerRank: number): number {
  // every rank holds its share of the KV heads and pulls it over its own NIC, in parallel
  return (tokens * kvCapacity(decode).kvBytesPerToken) / bandwidthPerRank;
}

export function simulatePdFleet(o: FleetOptions, pd: PdOptions): FleetResult {
  const policy = o.policy;
  // the reference placement reads one pool of engines' exact state; two pools have no such reference
  if (policy === CLAIRVOYANT)
    throw new UnsupportedError("the clairvoyant placement is for aggregated fleets only");
  const driver = new VirtualDriver();
  const P = pd.prefill.count;
  const shared = o.sharedServer ? cacheServersFor(o.sharedServer, pd.prefill.engine.model, P) : null;
  /** when each turn in flight reached the router (s), by request index: its TTFT and E2E run from there */
  const arrived = new Map<number, number>();
  const routedTo: number[] = [];
  const cachedTokens: number[] = [];
  const secondsPerToken = transferSeconds(pd.decode.engine, 1, pd.bandwidthPerRank);

  const prefill: FleetEngines = new FleetEngines(
    pd.prefill.engine,
    P,
    driver,
    shared,
    false,
    (f: Flight) => {
      pRouter.firstToken(f.engine, f.turn.index);
      if (pRouter.waitsOnFirstTokens) driver.at(driver.now, retryPrefill);
    },
    (f, t) => {
      pRouter.done(f.engine, f.turn.index, f.firstTokenAt >= 0);
      if (pRouter.hasWaiting) driver.at(driver.now, retryPrefill);
      cachedTokens[f.turn.index] = t.cachedTokens;
      const turn = f.turn;
      driver.at(driver.now + turn.prompt.length * secondsPerToken, () => routeDecode(turn));
    },
  );
  const decode: FleetEngines = new FleetEngines(
    pd.decode.engine,
    pd.decode.count,
    driver,
    null,
    o.recordItl,
    (f: Flight) => {
      dRouter.firstToken(f.engine, f.turn.index);
      if (dRouter.waitsOnFirstTokens) driver.at(driver.now, retryDecode);
    },
    (f, t) => {
      dRouter.done(f.engine, f.turn.index, f.firstTokenAt >= 0);
      if (dRouter.hasWaiting) driver.at(driver.now, retryDecode);
      arrived.delete(f.turn.index);
      load.lastEnd = t.finishedTime;
      const record = answeredRecord(f, t);
      load.answered(f.turn, record.ok, record, f);
    },
  );
  const view = (engines: FleetEngines, seed: number) =>
    new RouterView(
      {
        policy,
        sessionKey: o.sessionKey ?? "router",
        sessionHeader: o.workload.sessionHeader,
        scrapeIntervalS: o.scrapeIntervalS,
        chat: o.workload.defaultEndpoint === "chat",
        sloTtftMs: o.sloTtftMs,
        routers: o.routers,
        seed,
        scorers: o.scorers,
        lateBinding: o.lateBinding,
      },
      o.engine.model.id,
      engines.engines,
      driver,
      () => load.done,
    );
  const pRouter = view(prefill, o.seed);
  const dRouter = view(decode, o.seed + 1);

  const refuse = (turn: Turn, arrivedAt: number, why: string) => {
    routedTo[turn.index] = -1;
    arrived.delete(turn.index);
    const record = refusedRecord(turn, arrivedAt, driver.now, why);
    const start = record.start;
    driver.at(driver.now, () => load.answered(turn, false, record, { start, itl: [], answer: [] }));
  };
  const sendPrefill = (turn: Turn, e: number, at: number) => {
    pRouter.sent(e, turn.index);
    prefill.start(turn, e, at, { maxTokens: 1 });
  };
  const sendDecode = (turn: Turn, e: number) => {
    routedTo[turn.index] = P + e;
    dRouter.sent(e, turn.index);
    decode.start(turn, e, arrived.get(turn.index) ?? driver.now, { transferredTokens: turn.prompt.length });
  };
  const decided = (e: number, turn: Turn, at: number, send: (t: Turn, e: number, at: number) => void) => {
    if (e === ROUTE_WAITING) return;
    if (e < 0) return refuse(turn, at, e === ROUTE_QUEUE_FULL ? QUEUE_FULL_REFUSAL : SLO_REFUSAL);
    send(turn, e, at);
  };
  const routeDecode = (turn: Turn) =>
    decided(dRouter.route(turn), turn, arrived.get(turn.index) ?? driver.now, sendDecode);
  const retryPrefill = () => pRouter.retryWaiting(sendPrefill, refuse);
  const retryDecode = () =>
    dRouter.retryWaiting(sendDecode, (turn, _at, why) => refuse(turn, arrived.get(turn.index) ?? _at, why));
  pRouter.onRecheck = retryPrefill;
  dRouter.onRecheck = retryDecode;

  const load = new LoadDriver(o, driver, (turn) => {
    arrived.set(turn.index, driver.now);
    decided(pRouter.route(turn), turn, driver.now, sendPrefill);
  });
  load.start();
  pRouter.start();
  dRouter.start();
  const events = driver.run();

  const records = load.records;
  records.sort((x, y) => x.index - y.index);
  const first = records.length ? records[0]!.start / 1000 : 0;
  const all = [...prefill.engines, ...decode.engines];
  return {
    records,
    durationS: Math.max(0, load.lastEnd - first),
    kvSamples: Float64Array.from([...pRouter.kvSamples, ...dRouter.kvSamples]),
    counters: all.map((e) => ({ ...e.snapshot().counters })),
    numGpuBlocks: decode.engines[0]?.capacity.numGpuBlocks ?? 0,
    numCpuBlocks: decode.engines[0]?.capacity.numCpuBlocks ?? 0,
    remote: shared ? cacheServersStats(shared) : null,
    events,
    routedTo,
    cachedTokens,
    stoppedEarly: load.stoppedEarly,
  };
}
