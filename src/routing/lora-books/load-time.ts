// What making an adapter usable on an engine takes, in seconds, from its books: the load API's
// overhead, the read from disk and the copy into a slot, and the wait for a slot while every slot
// serves another adapter. The LoRA placement prices candidates by these; callers read them too.
import type { EngineLoraView, LoraRequestView } from "../policy/views.js";

/** seconds a load of `bytes` takes on an engine: the load API's overhead, the read and the copy */
export function loadSeconds(adapters: EngineLoraView, bytes: number): number {
  return adapters.loadOverheadS + bytes / adapters.diskBps + bytes / adapters.linkBps;
}

/** whether the adapter is usable on the engine without a load: loaded there, or requests of it in flight */
function usable(adapters: EngineLoraView, name: string): boolean {
  return adapters.loaded.has(name) || (adapters.inFlight.get(name) ?? 0) > 0;
}

/** whether a request of the adapter sent to the engine now starts a load there (none under way) */
export function startsLoad(adapters: EngineLoraView, name: string): boolean {
  return !usable(adapters, name) && !adapters.loading.has(name);
}

/** seconds to make `a` usable on an engine: nothing when loaded or in flight there, else a read and a copy */
export function coldLoadSeconds(adapters: EngineLoraView, adapter: LoraRequestView): number {
  if (usable(adapters, adapter.name)) return 0;
  if (adapters.loading.has(adapter.name))
    return (adapters.loadOverheadS + adapter.bytes / adapters.diskBps) / 2;
  return loadSeconds(adapters, adapter.bytes);
}

/** the least share of a request's time an adapter in flight still holds its slot (one past the mean
 * time has most often waited, for a slot or a load, and has its decode still to run) */
export const DRAIN_FLOOR_SHARE = 0.25;

/**
 * Seconds until `over` of an engine's active adapters have drained: each drains about one request's
 * time (`service`) after the router last sent it one there, and not before a quarter of that from now
 * (DRAIN_FLOOR_SHARE); one the router did not send (another client's, or queued) is taken at half of it.
 */
export function slotWaitSeconds(
  adapters: EngineLoraView,
  over: number,
  service: number,
  now: number,
): number {
  const drains: number[] = [];
  const seen = new Set<string>();
  const floor = DRAIN_FLOOR_SHARE * service;
  for (const [name, k] of adapters.inFlight) {
    if (k <= 0) continue;
    seen.add(name);
    const sent = adapters.lastSentAt?.get(name);
    drains.push(sent === undefined ? service / 2 : Math.max(floor, (sent - now) / 1000 + service));
  }
  for (const set of [adapters.running, adapters.waiting])
    for (const name of set) {
      if (seen.has(name)) continue;
      seen.add(name);
      drains.push(service / 2);
    }
  drains.sort((a, b) => a - b);
  return drains[Math.min(drains.length, over) - 1] ?? 0;
}
