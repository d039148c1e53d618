// The `lora-cost` scorer: each candidate priced in seconds (the requests in flight there and the prompts
// queued there for prefill, the cold load, the adapter loads queued there ahead of it, the wait for a
// slot when every slot serves another adapter, the slot a replica of an adapter active elsewhere or a
// new adapter takes, the price of the adapter a load would evict from the host cache, the load's wait for
// the prompts waiting there and the requests waiting on its loads, less the prefill its cached prefix
// saves), the cheapest scoring 1.
import { busyOf, waitingOf } from "../../cost/engine-load.js";
import { activeAdapters, evictionFor, isActive } from "../../lora-books/books.js";
import { coldLoadSeconds, loadSeconds, slotWaitSeconds, startsLoad } from "../../lora-books/load-time.js";
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
 * The share of a request's time a replica's slot is priced at when every slot there is taken: a replica
 * of an adapter active on another engine holds its slot about a request's time (longer while its traffic
 * keeps it busy there), and the adapters that need a slot there wait for it. Where 8 slots serve 50
 * adapters at 88 req/s (routing/lora --sweep, virtual time, seeds 1–3) the policy without it had TTFT
 * p90 429–497 ms against GIE's 96–262; priced at 0.1 of a request's time (growing linearly as the
 * slots fill) 109–193 ms, at 0.3 103–167 ms. Over more seeds (92 req/s, seeds 1–24, with the new
 * slot's price, the loads' waiters and the drain floor) 0.3 gave 0.97× GIE's pooled p90 and 0.6 0.90×
 * (seeds 25–48: 0.88× and 0.85×).
 */
const REPLICA_SLOT_SHARE = 0.6;

/**
 * The share of a request's time a new slot is priced at on an engine whose slots it fills, for an
 * adapter active nowhere (it needs a slot somewhere whatever the pick, so only the difference between
 * engines counts): the slot it takes is one the next adapter sent there may wait for. It grows as the
 * replica's does, so an engine with slots free costs little and the last free slot costs most: the
 * cold adapters go where slots stay open, as joining the shortest queue does. Where 2 slots serve
 * 8,000 rank-128 adapters (the sweep's flat corner, seeds 17–40, with the loads' waiters, the drain
 * floor and the replica at 0.6) TTFT p90 1.00× round-robin's with it, 1.10× without; alone, 0.1 made 50
 * adapters on 8 slots worse than 0.05 (seeds 1–24: 1.17× GIE's p90 against 1.09×).
 */
const NEW_SLOT_SHARE = 0.05;

/**
 * How the replica's price grows as the engine's slots fill: (taken / slots)^4, little until most are
 * taken. Linear, it priced replicas where slots are plentiful (32 slots, 50 adapters, a 10 GB/s disk: TTFT
 * p90 97–278 ms against 87–115); to the 8th (were each slot busy alone, the chance that all 8 are) it
 * let hot adapters spread where 8 slots serve 50 adapters (91–354 ms against 103–163).
 */
const REPLICA_FULLNESS_POWER = 4;

/** the request's adapter is active (running, queued or in flight) on some candidate */
function activeSomewhere(engines: readonly EngineView[], lora: LoraRequestView | undefined): boolean {
  if (!lora) return false;
  for (const engine of engines) if (engine.lora && isActive(engine.lora, lora.name)) return true;
  return false;
}

/**
 * `cost` plus what the adapter costs on an engine beyond its queue: the cold load, the slot wait, a
 * replica's slot, the eviction (added one by one, in this order)
 */
function withAdapterSeconds(
  book: LoraPlacementBook,
  engine: EngineView,
  lora: LoraRequestView,
  now: number,
  queued: number,
  /** prompts queued there that a load here would hold up (not yet scheduled: see loadStallSeconds) */
  stalled: number,
  /** the adapter is active on some candidate: a load here would be a replica */
  replicating: boolean,
): number {
  const adapters = engine.lora!;
  let cost = queued + coldLoadSeconds(adapters, lora) + loadBacklogSeconds(adapters, lora);
  cost += loadStallSeconds(adapters, lora, stalled);
  if (!isActive(adapters, lora.name)) {
    const active = activeAdapters(adapters);
    // every slot serves another adapter: it waits until enough of them drain (each at least a quarter
    // of a request's time from now: at nothing, an engine of overdue adapters looked as free as one with
    // a slot open; the sweep's flat corner, seeds 17–40: 1.06× round-robin's p90 without it, 1.00× with)
    const over = active + 1 - adapters.maxLoras;
    if (over > 0) cost += slotWaitSeconds(adapters, over, book.service, now);
    // a replica takes a slot that the adapters without one may need; an adapter active nowhere needs
    // one somewhere whatever the pick, and the fuller engine's is the one the next adapter may wait for
    const fullness = Math.min(1, (active + 1) / adapters.maxLoras);
    const share = replicating ? REPLICA_SLOT_SHARE : NEW_SLOT_SHARE;
    cost += share * book.service * Math.pow(fullness, REPLICA_FULLNESS_POWER);
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

/**
 * What a load this request would start costs the prompts waiting there: vLLM's engine core runs the
 * load between steps, so each prompt not yet scheduled waits its time too (the request's own wait is
 * the cold load; a prompt in the step under way does not wait). Nothing when the adapter is loaded,
 * loading or in flight there (no new load). Near capacity, where the queues are long, this keeps
 * adapters on the engines that hold them rather than loading them where the send count is lowest.
 * Measured (routing/lora --sweep shapes, virtual time, seeds 1–4): at 50 adapters, Zipf 1.6, 32 slots,
 * a 10 GB/s disk, 333 req/s, TTFT p90 1,171 → 830 ms (GIE 890), loads 362 → 277; on 32 engines at
 * 956 req/s 988 ms (GIE 1,155; 1,083 before, against GIE's 1,016, with the system prompts in step with
 * round-robin); 74 ms either way at 70% load on the default shape. Counting every prompt awaiting its
 * first token (those in the step under way too) did more near capacity (616 and 919 ms) but cost the
 * flat corner on a 0.1 GB/s disk (2,000 adapters, a load for nearly every request) 327 → 337 ms at
 * 5.4 req/s against round-robin's 319; counting those only where another engine held the adapter cost
 * 50 adapters on 8 slots its lead (capacity 145 → 125 req/s, GIE 132). Counting the engine's waiting
 * queue, as here: 328 ms on that corner, 138 req/s on 50 adapters.
 */
function loadStallSeconds(adapters: EngineLoraView, lora: LoraRequestView, waiting: number): number {
  return waiting > 0 && startsLoad(adapters, lora.name) ? waiting * loadSeconds(adapters, lora.bytes) : 0;
}

/**
 * The router's requests waiting on its loads in flight on an engine: the engine runs the loads it is
 * asked for one after another, and a request's first step waits for all of them, so a new load there
 * holds these up by its own time too. Where a load is near certain wherever a request goes (2 slots,
 * 8,000 rank-128 adapters, a flat popularity: the sweep's corner) TTFT p90 292 → 282 ms against
 * round-robin's 268 alone (seeds 1–8); with the other terms of this change 1.07× round-robin's without
 * it and 1.00× with it (seeds 17–40).
 */
function waitingOnLoads(engine: EngineView): number {
  const adapters = engine.lora;
  if (!adapters || adapters.loading.size === 0) return 0;
  let waiting = 0;
  for (const name of adapters.loading) waiting += adapters.inFlight.get(name) ?? 0;
  return waiting;
}

/**
 * Prompts queued on an engine for prefill: those awaiting a first token there (the router's own count,
 * else the scraped queue), less `onLoads`, those waiting on a load of their adapter there (their wait is
 * the load, priced as the load backlog). The engine prefills them before a prompt sent now.
 */
function queuedPrompts(engine: EngineView, now: number | undefined, onLoads: number): number {
  const queued = (engine.awaitingFirstToken ?? waitingOf(engine, now)) - onLoads;
  return queued > 0 ? queued : 0;
}

/**
 * Requests on the engine now (busyOf), the router's own counted by when it sent them rather than as in
 * flight (OwnRequests: an engine whose requests just finished their step is not the least loaded)
 */
function busySeconds(book: LoraPlacementBook, engine: EngineView, now: number | undefined): number {
  const [ownInFlight, ownSent] = book.own.on(engine.id, now ?? 0, book.service);
  const busy = busyOf(engine, now) - Math.min(ownInFlight, engine.inFlight) + ownSent;
  return (busy / book.batch) * book.service * 0.5;
}

/** one candidate's cost in seconds */
function engineSeconds(
  book: LoraPlacementBook,
  request: RequestView,
  engine: EngineView,
  fleet: FleetSnapshot,
  cached: number | undefined,
  replicating: boolean,
): number {
  // the requests in flight there, each delaying this one's first step a little (see batchSize), and the
  // prompts queued there for prefill, each its own prefill ahead of this one
  let cost = busySeconds(book, engine, fleet.now);
  const onLoads = waitingOnLoads(engine);
  const prompts = queuedPrompts(engine, fleet.now, onLoads);
  cost += prompts * book.queuedPromptSeconds;
  // of those, the ones the engine has not scheduled yet: a load runs before their step, not before the
  // step under way; and the requests waiting on the router's loads in flight there, whose first step
  // comes after every load queued before it
  const stalled = Math.min(prompts, waitingOf(engine, fleet.now)) + onLoads;
  if (request.lora && engine.lora)
    cost = withAdapterSeconds(book, engine, request.lora, fleet.now ?? 0, cost, stalled, replicating);
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
      const replicating = activeSomewhere(engines as readonly EngineView[], request.lora);
      for (let i = 0; i < engines.length; i++) {
        const cached = prediction ? prediction.cachedTokens[i]! : undefined;
        const cost = engineSeconds(book, request, engines[i] as EngineView, fleet, cached, replicating);
        costs[i] = cost;
        if (cost < best) best = cost;
      }
      // higher is better: the cheapest scores 1
      for (let i = 0; i < engines.length; i++) out[i] = 1 / (1 + costs[i]! - best);
    },
  };
}
