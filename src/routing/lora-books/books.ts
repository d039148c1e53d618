// The adapter books the LoRA policies read and their callers (the live router, the fleet simulator)
// keep per engine: its slots and rates, what it has loaded, loading and in flight, and each adapter's
// decayed use there, which the host cache's eviction weighs. Shared by every LoRA plugin
// (plugins/lora-placement, plugins/gie-lora-affinity, plugins/lora-static) and their callers.
import { LruMap } from "../../collections/lru-map.js";
import type { AdapterUse, EngineLoraView, EngineView, FleetSnapshot } from "../policy/views.js";

/**
 * A new engine's adapter books as the live router and the fleet simulator keep them: its slots and
 * rates, nothing loaded, nothing in flight (the view the policies read, with mutable collections)
 */
export function emptyLoraBooks(p: {
  maxLoras: number;
  maxCpuLoras: number;
  diskBps: number;
  linkBps: number;
  loadOverheadS: number;
}) {
  return {
    ...p,
    running: new Set<string>(),
    waiting: new Set<string>(),
    loaded: new LruMap<string, true>(),
    loading: new Set<string>(),
    inFlight: new Map<string, number>(),
    lastSentAt: new Map<string, number>(),
    uses: new Map<string, AdapterUse>(),
  };
}

/** the distinct adapters an engine is running or holding queued, by the scrape and the router's own counts */
export function activeAdapters(adapters: EngineLoraView): number {
  let active = adapters.running.size;
  for (const waiting of adapters.waiting) if (!adapters.running.has(waiting)) active++;
  for (const [name, k] of adapters.inFlight)
    if (k > 0 && !adapters.running.has(name) && !adapters.waiting.has(name)) active++;
  return active;
}

/** whether the engine runs, queues or has in flight requests for adapter `name` */
export function isActive(adapters: EngineLoraView, name: string): boolean {
  return adapters.running.has(name) || adapters.waiting.has(name) || (adapters.inFlight.get(name) ?? 0) > 0;
}

/** half-life of an adapter's use on an engine, ms: what the host-cache eviction weighs */
export const ADAPTER_USE_HALF_LIFE_MS = 60_000;

/** The router sent `name` a request on an engine at `now` ms: its use there (`uses`) grows by one. */
export function noteAdapterUse(uses: Map<string, AdapterUse>, name: string, now: number): void {
  const use = uses.get(name);
  if (use) {
    use.n = use.n * Math.pow(0.5, Math.max(0, now - use.at) / ADAPTER_USE_HALF_LIFE_MS) + 1;
    use.at = Math.max(use.at, now);
  } else uses.set(name, { n: 1, at: now });
}

/** an adapter's decayed use on the engine at `now` (0: never used there, or no books kept) */
export function adapterUseAt(adapters: EngineLoraView, name: string, now: number): number {
  const use = adapters.uses?.get(name);
  return use ? use.n * Math.pow(0.5, Math.max(0, now - use.at) / ADAPTER_USE_HALF_LIFE_MS) : 0;
}

/**
 * The adapter a load of `name` would push out of the engine's host cache (`evictionVictim`), or null
 * while there is room. What the caller unloads first, so that the engine never holds more than
 * max_cpu_loras (loads in flight counted).
 */
export function evictionFor(adapters: EngineLoraView, name: string, now = 0): string | null {
  if (adapters.loaded.has(name) || adapters.loaded.size + adapters.loading.size < adapters.maxCpuLoras)
    return null;
  return evictionVictim(adapters, now);
}

/**
 * The loaded adapter to unload first: the least used one with nothing in flight (the oldest among
 * equals, and the oldest when the caller keeps no use counts), else the oldest. Least used, not least
 * recent: adapter popularity is heavy-tailed, and a recency order lets a run of rare adapters push out
 * popular ones. `skip`: adapters the caller cannot unload now (its loads in flight).
 */
export function evictionVictim(
  adapters: EngineLoraView,
  now: number,
  skip?: (name: string) => boolean,
): string | null {
  let victim: string | null = null;
  let least = Infinity;
  for (const entry of adapters.loaded.oldestFirst()) {
    if (isActive(adapters, entry.key) || skip?.(entry.key)) continue;
    const use = adapterUseAt(adapters, entry.key, now);
    if (use < least) {
      least = use;
      victim = entry.key;
    }
  }
  if (victim !== null) return victim;
  // every loaded adapter has requests: the oldest goes all the same (vLLM keeps the adapter of a request
  // it holds, and reads it again from disk if its batch needs it; new requests are not sent it there)
  for (const entry of adapters.loaded.oldestFirst()) if (!skip?.(entry.key)) return entry.key;
  return null;
}

/** an engine's adapters as the fleet snapshot carries them, for callers that keep the books */
export function loraSnapshotOf(fleet: FleetSnapshot, id: string): EngineLoraView | undefined {
  return (fleet.engines.find((e) => e.id === id) as EngineView | undefined)?.lora;
}
