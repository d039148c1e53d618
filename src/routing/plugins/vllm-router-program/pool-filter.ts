// `vllm-router-program`'s pool: the filter that holds requests. A program (one agent's loop of model
// turns and tool calls) is admitted to an engine only while the engine has logical KV-token capacity
// for it, and otherwise waits in the router's pool: the filter empties the candidates, `decide` says
// "saturated", and both callers keep the request waiting and decide again when requests finish and
// every `recheckMs`. The document's rules as modelled: docs/routing.md#agent-aware-baselines.
import { unitHash } from "../../policy/hash.js";
import { agenticContextOf, type AgenticContext } from "../../sessions/session-identity.js";
import type { EngineView, FleetSnapshot, RequestView } from "../../policy/views.js";
import type { Filter } from "../../policy/policy.js";
import type { Pending, Program, ProgramBook } from "./programs.js";

/** the most output a request may ask capacity for (a client's `expected_output_length` is a hint) */
const MAX_OUTPUT_ALLOWANCE = 131_072;

/**
 * The output tokens a request's demand counts: its `expected_output_length`, held to its own
 * `max_tokens` and a cap, else `decode_buffer_tokens`.
 */
function outputAllowance(req: RequestView, agentic: AgenticContext | undefined, fallback: number): number {
  const asked = agentic?.expectedOutputLength;
  if (asked === undefined || !(asked >= 0)) return fallback;
  const body = req.body;
  const cap = body ? (body.max_tokens ?? body.max_completion_tokens ?? body.max_output_tokens) : undefined;
  return Math.min(asked, typeof cap === "number" && cap >= 0 ? cap : Infinity, MAX_OUTPUT_ALLOWANCE);
}

/**
 * The request's shared state, made at its first decision; predicted at every decision: a request that
 * waited finds the caches as they are now, and the oracle's onPicked checks what it is told against
 * what the engine then reports
 */
function noteDecision(
  book: ProgramBook,
  req: RequestView,
  engines: readonly EngineView[],
  now: number,
): Pending {
  const pred = book.oracle.predict(req, engines);
  let entry = book.pending.get(req);
  if (!entry) {
    const agentic = req.body ? agenticContextOf(req.body) : undefined;
    entry = {
      firstSeen: now,
      waitFrom: now,
      demand: pred.promptTokens + outputAllowance(req, agentic, book.settings.decodeBufferTokens),
      agentic,
      reason: "",
      engines,
      cached: pred.cachedTokens,
      source: pred.source,
      sampled: false,
    };
    book.pending.set(req, entry);
  } else {
    entry.engines = engines;
    entry.cached = pred.cachedTokens;
    entry.source = pred.source;
    if (entry.waitFrom < 0) entry.waitFrom = now;
  }
  return entry;
}

/** a new program's home by consistent hashing (weighted rendezvous) */
function hashedHome(key: string, engines: readonly EngineView[]): EngineView | undefined {
  let bound: EngineView | undefined;
  let best = -Infinity;
  for (const engine of engines) {
    const rank = -engine.weight / Math.log(unitHash(key, engine.id));
    if (rank > best) {
      best = rank;
      bound = engine;
    }
  }
  return bound;
}

/**
 * cross-engine: room for the program and more than its own engine has, by the headroom ratio (its
 * engine's free room counts even when its in-flight cap took the engine out, not when it is down or
 * already tried)
 */
function crossEngine(
  book: ProgramBook,
  req: RequestView,
  engines: readonly EngineView[],
  fleet: FleetSnapshot,
  entry: Pending,
  bound: EngineView | undefined,
  program: Program | undefined,
): EngineView[] {
  const now = fleet.now ?? 0;
  const own =
    bound ??
    (program
      ? fleet.engines.find((e) => e.id === program.engine && e.healthy && !req.exclude?.has(e.id))
      : undefined);
  const floor = (own ? book.freeOf(own, now, program) : 0) + book.settings.crossRankHeadroom * entry.demand;
  let out: EngineView[] | undefined;
  for (const candidate of engines) {
    if (candidate === bound) continue;
    const free = book.admissible(candidate, entry.demand, now, program);
    if (Number.isNaN(free) || free < floor) continue;
    (out ??= []).push(candidate);
  }
  entry.reason = out ? "cross-engine" : "pool";
  return out ?? [];
}

/** the pool filter over `book`: the policy's last filter (it waits for room) */
export function programPoolFilter(book: ProgramBook): Filter {
  const pool: Filter = (req: RequestView, engines: readonly EngineView[], fleet: FleetSnapshot) => {
    const now = fleet.now ?? 0;
    const entry = noteDecision(book, req, engines, now);
    const key = req.sessionKey;
    if (key === undefined) {
      entry.reason = "no-program";
      return engines;
    }
    book.forget(now);
    const program = book.programs.get(key);
    const home = program ? engines.find((e) => e.id === program.engine) : undefined;
    // an ACTIVE program is not reclaimed by admission: its request goes straight to its engine, or
    // waits for it while only its in-flight cap keeps it out (its other requests run there)
    if (program && book.isActive(program, now)) {
      if (home) {
        entry.reason = "acting";
        return [home];
      }
      const there = fleet.engines.find((e) => e.id === program.engine);
      if (there && there.healthy && !req.exclude?.has(there.id)) {
        entry.reason = "acting-full";
        return [];
      }
    }
    // a known program's home is where it was
    const bound = home ?? (!program ? hashedHome(key, engines) : undefined);
    if (bound && now - entry.waitFrom >= book.settings.forceResumeMs) {
      entry.reason = "force-resume";
      return [bound];
    }
    if (bound && !Number.isNaN(book.admissible(bound, entry.demand, now, program))) {
      entry.reason = program ? "resume" : "admit";
      return [bound];
    }
    if (!book.settings.globalQueue && bound) {
      entry.reason = "pool";
      return [];
    }
    return crossEngine(book, req, engines, fleet, entry, bound, program);
  };
  pool.waitsForRoom = true;
  return pool;
}
