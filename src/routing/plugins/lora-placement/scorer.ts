// The `lora-cost` scorer: each candidate priced in seconds (the load the request finds there, the cold
// load, the adapter loads queued there ahead of it, the wait for a slot when every slot serves another adapter, the price of the adapter a load
// would evict from the host cache, less the prefill its cached prefix saves), the cheapest scoring 1.
import { busyOf } from "../../cost/engine-load.js";
import { activeAdapters, evictionFor, isActive } from "../../lora-books/books.js";
import { coldLoadSeconds, loadSeconds, slotWaitSeconds } from "../../lora-books/load-time.js";
import type { CachePrediction } from "../../policy/cache-oracle.js";
import type { Scorer } from "../../policy/policy.js";
import type {
  EngineLoraView,
  EngineView,
  FleetSnapshot,
  LoraRequestView,
  RequestView,
} from "../../policy/views.js";
import type { LoraPlacementBook } from "./book.js";

/**
 * `cost` plus what the adapter costs on an engine beyond its queue: the cold load, the slot wait, the
 * eviction (added one by one, in this order)
 */
function withAdapterSeconds(
  book: LoraPlacementBook,
  engine: EngineView,
  lora: LoraRequestView,
  now: number,
  queued: number,
): number {
  const adapters = engine.lora!;
  let cost = queued + coldLoadSeconds(adapters, lora) + loadBacklogSeconds(adapters, lora);
  if (!isActive(adapters, lora.name)) {
    // every slot serves another adapter: it waits until enough of them drain
    const over = activeAdapters(adapters) + 1 - adapters.maxLoras;
    if (over > 0) cost += slotWaitSeconds(adapters, over, book.service, now);
    const victim = evictionFor(adapters, lora.name, now);
    if (victim !== null) {
      // the victim comes back at its rate, each time at a cold load
      const reload = loadSeconds(adapters, lora.bytes);
      cost += Math.min(1, book.rates.perSecond(victim, now) * book.service) * reload;
    }
  }
  return cost;
}

/**
 * Seconds of adapter loads queued on an engine ahead of a request sent there now: the router's own loads
 * in flight there (its books), each taken half done, at this adapter's size (the books keep no other).
 * vLLM's engine core runs a load between steps, so every request there waits for them, whatever its
 * adapter. Where the working set outgrows the host caches a load is near certain wherever a request
 * goes, and this queue is what sets TTFT: the loads spread over the engines as round-robin's do.
 * Where hot adapters stay loaded, few loads are in flight and the term is small beside the cold load.
 */
function loadBacklogSeconds(adapters: EngineLoraView, lora: LoraRequestView): number {
  return adapters.loading.size === 0 ? 0 : (adapters.loading.size * loadSeconds(adapters, lora.bytes)) / 2;
}

/** one candidate's cost in seconds */
function engineSeconds(
  book: LoraPlacementBook,
  request: RequestView,
  engine: EngineView,
  fleet: FleetSnapshot,
  cached: number | undefined,
): number {
  const busy = busyOf(engine, fleet.now);
  // the requests in flight there, each delaying this one's first step a little (see batchSize)
  let cost = (busy / book.batch) * book.service * 0.5;
  if (request.lora && engine.lora)
    cost = withAdapterSeconds(book, engine, request.lora, fleet.now ?? 0, cost);
  if (cached !== undefined) cost -= cached * book.perToken;
  return cost;
}

/** ours: the cheapest engine by queue, cold load, slot wait and the eviction's price, in seconds */
export function loraCostScorer(book: LoraPlacementBook): Scorer {
  return {
    name: "lora-cost",
    weight: 1,
    score(req, engines, out, fleet) {
      const request = req as RequestView;
      book.lastNow = fleet.now ?? 0;
      let best = Infinity;
      const costs = book.costs;
      costs.length = engines.length;
      const prediction: CachePrediction | undefined =
        book.cache && request.lora ? book.cache.predict(request, engines) : undefined;
      if (prediction)
        book.scored.set(request, { engines, cached: prediction.cachedTokens, source: prediction.source });
      for (let i = 0; i < engines.length; i++) {
        const cached = prediction ? prediction.cachedTokens[i]! : undefined;
        const cost = engineSeconds(book, request, engines[i] as EngineView, fleet, cached);
        costs[i] = cost;
        if (cost < best) best = cost;
      }
      // higher is better: the cheapest scores 1
      for (let i = 0; i < engines.length; i++) out[i] = 1 / (1 + costs[i]! - best);
    },
  };
}
