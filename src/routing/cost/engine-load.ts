// How loaded an engine is right now, from what the router knows: its own in-flight count (exact and
// current) and the engine's gauges as of the last scrape (exact then, stale now). Not the larger of the
// two, which makes an engine that drained since its scrape look busy for a whole interval: the scrape
// says only what the router cannot know itself (other clients' work), aged out as it gets older, and
// the router's own count is added exactly. The formula: docs/routing.md#the-load-signal-between-scrapes.
// A view with no scrape time takes the larger of the two.
import type { EngineView } from "../policy/views.js";

/** how fast the other clients' share of a scraped count ages out (ms) */
export const OTHERS_HALF_LIFE_MS = 2000;

/** Other clients' requests on the engine now (those the scrape saw beyond the router's own), aged. */
export function othersOf(engine: EngineView, now: number | undefined): number {
  const at = engine.scrapedAt;
  const others = engine.running + engine.waiting - (engine.inFlightAtScrape ?? 0);
  if (others <= 0) return 0;
  const age = now !== undefined && at !== undefined && now > at ? now - at : 0;
  return age > 0 ? others * Math.pow(2, -age / OTHERS_HALF_LIFE_MS) : others;
}

/** Requests on the engine now (running or queued), estimated. */
export function busyOf(engine: EngineView, now: number | undefined): number {
  if (engine.scrapedAt === undefined) {
    const scraped = engine.running + engine.waiting;
    return engine.inFlight > scraped ? engine.inFlight : scraped;
  }
  return engine.inFlight + othersOf(engine, now);
}

/**
 * Other clients' requests queued on the engine now: their share of the scrape, in the proportion the
 * engine was queueing then. (The router's own queued requests it counts itself, as awaiting a first token.)
 */
export function othersQueuedOf(engine: EngineView, now: number | undefined): number {
  const total = engine.running + engine.waiting;
  if (engine.scrapedAt === undefined || engine.waiting <= 0 || total <= 0) return 0;
  return (othersOf(engine, now) * engine.waiting) / total;
}

/** Requests queued on the engine now (not yet running), estimated. */
export function waitingOf(engine: EngineView, now: number | undefined): number {
  if (engine.scrapedAt === undefined || engine.waiting <= 0)
    return engine.scrapedAt === undefined ? engine.waiting : 0;
  const queued = busyOf(engine, now) - engine.running;
  return queued > 0 ? queued : 0;
}

// The bookkeeping behind these estimates, one place for both callers (the live router's registry and
// proxy, the fleet simulator's router): what the router sent, what answered, what a scrape said.

/** A request was just sent to the engine (`now`: ms on the snapshot's clock). */
export function noteSent(engine: EngineView, now: number): void {
  engine.inFlight++;
  engine.awaitingFirstToken = (engine.awaitingFirstToken ?? 0) + 1;
  engine.lastSentAt = now;
}

/** The first token (a streamed answer's first byte) of a request on the engine came back at `now`. */
export function noteFirstToken(engine: EngineView, now: number): void {
  if (engine.awaitingFirstToken) engine.awaitingFirstToken--;
  engine.lastEventAt = now;
}

/** A request on the engine ended at `now`; `answered`: its first token had come back (noteFirstToken). */
export function noteDone(engine: EngineView, answered: boolean, now: number): void {
  engine.lastEventAt = now;
  engine.lastDoneAt = now;
  engine.inFlight--;
  if (!answered && engine.awaitingFirstToken) engine.awaitingFirstToken--;
}

/** The engine's gauges were just scraped (the caller sets running, waiting, kvUsage). */
export function noteScraped(engine: EngineView, now: number): void {
  engine.scrapedAt = now;
  engine.inFlightAtScrape = engine.inFlight;
}

/**
 * How long a prompt sent now waits for the engine's current step to end, ms, for steps of `stepMs`: an idle
 * engine starts at once; one that answered `Δ` ms ago (a step ended then) finishes its step in stepMs − Δ;
 * otherwise the phase is unknown, half a step on average. The router's own events mark the step starts,
 * which is why an engine that just answered is a worse pick than it looks: its new step has just begun.
 */
export function stepResidualMs(engine: EngineView, now: number | undefined, stepMs: number): number {
  if (engine.inFlight <= 0 && engine.running + engine.waiting <= 0) return 0;
  const last = engine.lastEventAt;
  if (now !== undefined && last !== undefined && now >= last && now - last < stepMs)
    return stepMs - (now - last);
  return stepMs / 2;
}
