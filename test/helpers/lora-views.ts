// Adapter books and views for the LoRA tests: an engine with 2 LoRA slots and a 4-adapter host cache
// serving BASE, and a request for adapter `name` (50 MB) on it.
import { LruMap } from "../../src/collections/lru-map.js";
import {
  idleEngineView,
  type EngineLoraView,
  type EngineView,
  type RequestView,
} from "../../src/routing/policy/views.js";

export const BASE = "base-model";

export function loraView(
  o: Partial<Omit<EngineLoraView, "loaded">> & { loaded?: string[] } = {},
): EngineLoraView {
  const loaded = new LruMap<string, true>();
  for (const n of o.loaded ?? []) loaded.set(n, true);
  return {
    maxLoras: 2,
    maxCpuLoras: 4,
    running: new Set(),
    waiting: new Set(),
    loading: new Set(),
    inFlight: new Map(),
    diskBps: 1e9,
    linkBps: 25e9,
    loadOverheadS: 0.05,
    ...o,
    loaded,
  };
}

export function loraEngine(id: string, lora: EngineLoraView, over: Partial<EngineView> = {}): EngineView {
  const models = new Set([BASE, ...[...lora.loaded.oldestFirst()].map((e) => e.key)]);
  return idleEngineView(id, models, { lora, ...over });
}

export function loraReq(name: string, seq = 0): RequestView {
  return { model: name, seq, lora: { name, path: `/a/${name}`, base: BASE, bytes: 50e6 } };
}
