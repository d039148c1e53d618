// Shared helpers for engine tests: small configs, request builders and a recording observer.
import { Engine } from "../../src/engine/engine.js";
import { defaultEngineConfig } from "../../src/engine/config.js";
import { resolveGpu, resolveModel } from "../../src/models/profiles.js";
import { VirtualDriver } from "../../src/engine/drivers.js";
import type { EngineConfig, EngineRequest, FinishReason, RequestTimings } from "../../src/engine/types.js";
import type { KvEvent } from "../../src/kvevents/events.js";

export function config(
  overrides: Partial<EngineConfig> = {},
  model = "meta-llama/Llama-3.1-8B-Instruct",
  gpu = "h100",
) {
  return defaultEngineConfig(resolveModel(model), resolveGpu(gpu), overrides);
}

export function request(id: string, prompt: number[], opts: Partial<EngineRequest> = {}): EngineRequest {
  return {
    requestId: id,
    promptTokenIds: prompt,
    maxTokens: 8,
    stopAfter: 1_000_000,
    ignoreEos: false,
    minTokens: 0,
    priority: 0,
    cacheSalt: null,
    loraName: null,
    arrivalTime: 0,
    sampleToken: (i) => 1000 + i,
    ...opts,
  };
}

export function tokens(n: number, salt = 0): number[] {
  return Array.from({ length: n }, (_, i) => ((i + 1) * 7919 + salt * 104729) % 128000);
}

export interface Finished {
  reason: FinishReason;
  timings: RequestTimings;
  tokens: number[];
}

export class Recorder {
  readonly finished = new Map<string, Finished>();
  readonly tokens = new Map<string, { ids: number[]; times: number[] }>();
  readonly events: KvEvent[] = [];
  readonly order: string[] = [];
  onTokens(id: string, ids: readonly number[], time: number) {
    let t = this.tokens.get(id);
    if (!t) this.tokens.set(id, (t = { ids: [], times: [] }));
    t.ids.push(...ids);
    for (let i = 0; i < ids.length; i++) t.times.push(time);
  }
  onFinished(id: string, reason: FinishReason, timings: RequestTimings) {
    this.finished.set(id, { reason, timings, tokens: this.tokens.get(id)?.ids ?? [] });
    this.order.push(id);
  }
  onKvEvents(events: KvEvent[]) {
    this.events.push(...events);
  }
}

/** runs an engine on virtual time until idle; returns the recorder and the final virtual time */
export function runToIdle(engine: Engine, driver: VirtualDriver): number {
  driver.wake(engine);
  driver.run();
  return driver.now;
}

export function makeEngine(overrides: Partial<EngineConfig> = {}, model?: string, gpu?: string) {
  const rec = new Recorder();
  const engine = new Engine(config(overrides, model, gpu), rec);
  const driver = new VirtualDriver();
  driver.attach(engine);
  return { engine, rec, driver };
}
