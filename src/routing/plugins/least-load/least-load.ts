// least-load's two scorers (the `load` and `kv-free` of a config's `scorers`): the load order that
// least-load and keyless `session` picks rank by, and free KV cache as a tie-break.
import { busyOf, othersQueuedOf, waitingOf } from "../../cost/engine-load.js";
import type { EngineView } from "../../policy/views.js";
import type { Scorer } from "../../policy/policy.js";

/**
 * least-load's order. First, requests with no first token yet, per unit of weight: a new prompt waits for
 * all of them. Among the engines with the fewest, when none of them has one queued (a router alone, equal
 * weights):
 *   1. for a request that names a session, the engine whose request ended within SESSION_END_MS with no
 *      send there since: in a closed loop the next turn follows its answer at once, and goes back to the
 *      engine holding its context;
 *   2. the engines within BAND requests of the least busy, the one sent to longest ago first (then the
 *      one with fewer requests). Ranking them by load alone picks the engine whose request just ended:
 *      under a client's in-flight cap every send follows an end, so the sends repeat the ends' bunching
 *      on each engine, and prompts wait behind each other's prefill;
 *   3. the rest by requests on them.
 * All with a prompt queued: the one sent to longest ago (its newest prompt is nearest its first token).
 * A router of a group, whose sends and ends are only its own part of the group's, and unequal weights
 * (a canary's share): by requests on them alone.
 * Scores: the session's end 1, the band [0.75, 0.95], the rest [0.5, 0.7], the more queued [0, 0.4].
 */
export const loadScorer: Scorer = {
  name: "load",
  weight: 1,
  score(req, engines, out, fleet) {
    const now = fleet.now;
    let minQ = Infinity;
    let maxQ = -Infinity;
    let spread = true;
    for (let i = 0; i < engines.length; i++) {
      const engine = engines[i]!;
      const queued = (out[i] = queuedOf(engine, now));
      if (queued < minQ) minQ = queued;
      if (queued > maxQ) maxQ = queued;
      if (engine.peerAwaitingFirstToken !== undefined || engine.weight !== engines[0]!.weight) spread = false;
    }
    let minBusy = Infinity;
    for (let i = 0; i < engines.length; i++)
      if (out[i]! <= minQ + 1e-9) minBusy = Math.min(minBusy, busyOf(engines[i]!, now) / engines[i]!.weight);
    // how far above the least busy an engine still ranks by its last send (-1: none does)
    const band = minQ > 0 ? Infinity : spread ? BAND : -1;
    const named = spread && minQ <= 0 && now !== undefined && !!req.sessionKey;
    let end = -Infinity;
    let kLo = Infinity;
    let kHi = -Infinity;
    let bLo = Infinity;
    let bHi = -Infinity;
    for (let i = 0; i < engines.length; i++) {
      if (out[i]! > minQ + 1e-9) continue;
      const candidate = engines[i]!;
      const busyPerWeight = busyOf(candidate, now) / candidate.weight;
      if (named) end = Math.max(end, sessionEndOf(candidate, now));
      if (busyPerWeight > minBusy + band) {
        bLo = Math.min(bLo, busyPerWeight);
        bHi = Math.max(bHi, busyPerWeight);
      } else {
        kLo = Math.min(kLo, sentKey(candidate, busyPerWeight));
        kHi = Math.max(kHi, sentKey(candidate, busyPerWeight));
      }
    }
    for (let i = 0; i < engines.length; i++) {
      const candidate = engines[i]!;
      const queued = out[i]!;
      const busyPerWeight = busyOf(candidate, now) / candidate.weight;
      if (queued > minQ + 1e-9) out[i] = (0.4 * (maxQ - queued)) / (maxQ - minQ);
      else if (named && end > -Infinity && sessionEndOf(candidate, now) === end) out[i] = 1;
      else if (busyPerWeight > minBusy + band)
        out[i] = bHi > bLo ? 0.5 + (0.2 * (bHi - busyPerWeight)) / (bHi - bLo) : 0.7;
      else out[i] = kHi > kLo ? 0.75 + (0.2 * (kHi - sentKey(candidate, busyPerWeight))) / (kHi - kLo) : 0.95;
    }
  },
};

/**
 * How many requests above the least busy an engine may be and still rank by the age of its last send.
 * On the multi-tenant shape at a 120-request cap (bench/routing/range.ts --open-cap 120), 3 left TTFT p90
 * 8% over round-robin's at 25 req/s; 5 and 8 held it, and 8 kept the closed loops' p50 nearer.
 */
const BAND = 8;
/** how soon after a request's end a session's next turn counts as following it, ms */
const SESSION_END_MS = 50;

/** lower goes first: the older last send, then fewer requests (an engine never sent to: sent at 0) */
function sentKey(engine: EngineView, busy: number): number {
  return (engine.lastSentAt ?? 0) + busy * 1e-6;
}

/** when a request on the engine ended, if within SESSION_END_MS of `now` with no send there since */
function sessionEndOf(engine: EngineView, now: number | undefined): number {
  const lastDoneAt = engine.lastDoneAt;
  if (now === undefined || lastDoneAt === undefined || now - lastDoneAt > SESSION_END_MS) return -Infinity;
  return engine.lastSentAt !== undefined && engine.lastSentAt > lastDoneAt ? -Infinity : lastDoneAt;
}

/**
 * requests on the engine with no first token yet, per unit of weight: the router's own plus other clients'
 * queued ones (cost/engine-load.ts), or the engine's queue as estimated from the scrape when the caller counts none
 */
function queuedOf(engine: EngineView, now: number | undefined): number {
  const own = engine.awaitingFirstToken;
  return (own !== undefined ? own + othersQueuedOf(engine, now) : waitingOf(engine, now)) / engine.weight;
}

/** Free KV cache scores higher; a small weight makes it a tie-break between equally loaded engines. */
export const kvFreeScorer: Scorer = {
  name: "kv-free",
  weight: 0.01,
  score(_req, engines, out) {
    for (let i = 0; i < engines.length; i++) out[i] = 1 - Math.min(1, Math.max(0, engines[i]!.kvUsage));
  },
};
