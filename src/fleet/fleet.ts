// The fleet simulator: N engines of the one engine model (src/engine) on one virtual clock, a router
// that decides with the routing library's policies (src/routing) over the view the live router would
// have, and a load driver that replays a bench workload (src/workload) the way `switchyard bench` sends
// it. Each part is its own module; this file wires them together:
//   load.ts (turns) → router-view.ts (which engine) → engines.ts (the engines, and the shared LMCache
//   server of remote.ts) → back to load.ts (the answer, then the session's next turn).
//   A disaggregated fleet (prefill and decode pools) runs in pd.ts.
import { VirtualDriver } from "../engine/index.js";
import { FleetEngines, type Flight } from "./engines.js";
import { FleetScaler } from "./autoscale.js";
import { answeredRecord, refusedRecord } from "./records.js";
import { LoadDriver, type Turn } from "./load.js";
import { simulatePdFleet } from "./pd.js";
import type { FleetOptions, FleetResult } from "./types.js";
import { cacheServersFor, cacheServersStats } from "./remote.js";
import { ClairvoyantPlacer } from "./clairvoyant.js";
import { LoraBooks } from "./lora.js";
import { CLAIRVOYANT } from "./types.js";
import {
  ROUTE_WAITING,
  RouterView,
  SLO_REFUSAL,
  QUEUE_FULL_REFUSAL,
  ROUTE_QUEUE_FULL,
} from "./router-view.js";
import { UnsupportedError } from "../errors/index.js";

export type { SharedServerOptions } from "./remote.js";
export type { AutoscaleReport, DrainRecord, EngineState, FleetAutoscaleOptions } from "./autoscale.js";
export type { FleetHooks } from "./load.js";
export type { FleetOptions, FleetPolicy, FleetResult, PdOptions } from "./types.js";
export { CLAIRVOYANT } from "./types.js";
export type { FleetDecision, SessionKeyMode } from "./router-view.js";

export function simulateFleet(o: FleetOptions): FleetResult {
  if (o.pd && o.autoscale)
    throw new UnsupportedError("autoscale: a disaggregated fleet is not autoscaled in the simulator yet");
  if (o.pd && o.lora) throw new UnsupportedError("lora: a disaggregated LoRA fleet is not simulated yet");
  if (o.pd) return simulatePdFleet(o, o.pd);
  const driver = new VirtualDriver();
  // an autoscaled fleet holds its most engines from the start, each off until the autoscaler starts it
  const count = o.autoscale ? o.autoscale.maxEngines : o.engines;
  const servers = o.sharedServer ? cacheServersFor(o.sharedServer, o.engine.model, count) : null;
  const onFirstToken = (f: Flight) => {
    router.firstToken(f.engine, f.turn.index);
    if (router.waitsOnFirstTokens) driver.at(driver.now, retry);
  };
  const fleet = new FleetEngines(o.engine, count, driver, servers, o.recordItl, onFirstToken, (f, t) => {
    lora?.done(f.engine, f.turn.index);
    router.done(f.engine, f.turn.index, f.firstTokenAt >= 0);
    if (router.hasWaiting) driver.at(driver.now, retry);
    cachedTokens[f.turn.index] = t.cachedTokens;
    load.lastEnd = t.finishedTime;
    const record = answeredRecord(f, t);
    scaler?.finishedOn(f.engine, record);
    load.answered(f.turn, record.ok, record, f);
  });
  const lora = o.lora ? new LoraBooks(o.lora, o.engine, fleet.engines, driver, o.seed) : null;
  const clairvoyant = o.policy === CLAIRVOYANT ? new ClairvoyantPlacer(fleet.engines, servers) : null;
  const router = new RouterView(
    {
      // the clairvoyant placement bypasses the router's policy; the view still counts what it sends
      policy: o.policy === CLAIRVOYANT ? "round-robin" : o.policy,
      sessionKey: o.sessionKey ?? "router",
      sessionHeader: o.workload.sessionHeader,
      scrapeIntervalS: o.scrapeIntervalS,
      chat: o.workload.defaultEndpoint === "chat",
      sloTtftMs: o.sloTtftMs,
      routers: o.routers,
      seed: o.seed,
      scorers: o.scorers,
      lateBinding: o.lateBinding,
      onDecision: o.onDecision,
      tier: o.tierAware ? servers : null,
      engineIds: o.lora?.engineIds,
      makePolicy: o.lora?.policy,
      lora: lora ?? undefined,
    },
    o.engine.model.id,
    fleet.engines,
    driver,
    () => load.done,
  );
  const scaler = o.autoscale ? new FleetScaler(o.autoscale, fleet.engines, driver, () => load.done) : null;
  if (scaler) router.routable = scaler.routable;
  lora?.attach(router.views);
  const routedTo: number[] = [];
  const cachedTokens: number[] = [];
  const send = (turn: Turn, e: number, arrivedAt: number) => {
    routedTo[turn.index] = e;
    router.sent(e, turn.index);
    scaler?.sent(e);
    // a LoRA request waits on its adapter's load there (started now when none is in flight)
    if (lora) lora.send(turn, e, (adapter) => fleet.start(turn, e, arrivedAt, { lora: adapter }));
    else fleet.start(turn, e, arrivedAt);
  };
  const load = new LoadDriver(o, driver, (turn) => {
    scaler?.arrived(turn.prompt.length, turn.maxTokens);
    const e = clairvoyant
      ? clairvoyant.place(turn.prompt, turn.maxTokens, turn.sharedPrefix)
      : router.route(turn);
    if (e === ROUTE_WAITING) return;
    if (e < 0) {
      routedTo[turn.index] = -1;
      return refuse(turn, driver.now, e === ROUTE_QUEUE_FULL ? QUEUE_FULL_REFUSAL : SLO_REFUSAL);
    }
    send(turn, e, driver.now);
  });
  // turns the policy holds are decided again as requests finish and on the policy's recheck interval
  const retry = () =>
    router.retryWaiting(send, (turn, arrivedAt, why) => {
      routedTo[turn.index] = -1;
      refuse(turn, arrivedAt, why);
    });
  router.onRecheck = retry;

  // a refusal is answered at once, as the router's 429 is: the session ends there
  const refuse = (turn: Turn, arrivedAt: number, why: string) => {
    const record = refusedRecord(turn, arrivedAt, driver.now, why);
    const start = record.start;
    driver.at(driver.now, () => load.answered(turn, false, record, { start, itl: [], answer: [] }));
  };

  load.start();
  router.start();
  scaler?.start();
  const events = driver.run();

  const records = load.records;
  records.sort((x, y) => x.index - y.index);
  const first = records.length ? records[0]!.start / 1000 : 0;
  const engines = fleet.engines;
  return {
    records,
    durationS: Math.max(0, load.lastEnd - first),
    kvSamples: Float64Array.from(router.kvSamples),
    counters: engines.map((e) => ({ ...e.snapshot().counters })),
    numGpuBlocks: engines[0]?.capacity.numGpuBlocks ?? 0,
    numCpuBlocks: engines[0]?.capacity.numCpuBlocks ?? 0,
    remote: servers ? cacheServersStats(servers) : null,
    events,
    routedTo,
    cachedTokens,
    stoppedEarly: load.stoppedEarly,
    ...(scaler ? { autoscale: scaler.close(Math.max(driver.now, load.lastEnd)) } : {}),
    ...(lora ? { lora: lora.report() } : {}),
  };
}
