// The routing policy's interface in the Gateway API Inference Extension's shape: filters, scorers and a
// picker, one method each, make the pure decision; what a policy that keeps state is told about the
// request's life (picked, admitted, first token, done) are hooks kept apart from it, each group optional.
import type { EngineView, FleetSnapshot, RequestView } from "./views.js";

/** Narrows the candidate set. Must return a subset of its input (may be the input itself). */
export interface Filter {
  (req: RequestView, engines: readonly EngineView[], fleet: FleetSnapshot): readonly EngineView[];
  /**
   * a set this filter empties waits for room (`decide` says "saturated": the caller queues the request)
   * rather than having no usable engine ("unavailable")
   */
  waitsForRoom?: boolean;
}

/** Scores candidates in [0, 1], higher is better; `out[i]` belongs to `engines[i]`. */
export interface Scorer {
  name: string;
  weight: number;
  score(req: RequestView, engines: readonly EngineView[], out: Float64Array, fleet: FleetSnapshot): void;
}

/** Picks one candidate given the weighted score sum per candidate. */
export type Picker = (
  req: RequestView,
  engines: readonly EngineView[],
  scores: Float64Array,
  fleet: FleetSnapshot,
) => EngineView | undefined;

/** The pure part of a policy: filters → scorers → picker over a fleet snapshot. */
export interface ScoringPolicy {
  name: string;
  filters: readonly Filter[];
  scorers: readonly Scorer[];
  picker: Picker;
  /**
   * More load on an engine it did not pick never changes the pick (each engine is priced by its own
   * view and the best wins; ties may rotate): a router group confirms such a pick by the counts on its
   * own engine alone. Unset: the pick may depend on every engine's counts (session's bounded load reads
   * the fleet's total).
   */
  loadElsewhereKeepsPick?: boolean | undefined;
}

/** Told of each pick, and of a pick taken back, so caller-owned state (a prefix index) can learn. */
export interface PickHooks {
  /** told of every pick, so caller-owned state (an approximate prefix index) can learn from it */
  onPicked?: ((req: RequestView, engine: EngineView) => void) | undefined;
  /**
   * told when a pick did not stand after all (a router group's claim answered with newer counts; the
   * request is decided again): what onPicked counted is taken back
   */
  onUnpicked?: ((req: RequestView, engine: EngineView) => void) | undefined;
}

/** Admission: a picked engine refused or the request held, and when callers look at held ones again. */
export interface AdmissionHooks {
  /** may refuse the picked engine (an SLO no engine meets) or hold the request ("saturated"); undefined admits it */
  admit?: ((req: RequestView, engine: EngineView, fleet: FleetSnapshot) => Decision | undefined) | undefined;
  /**
   * a policy that keeps requests waiting for room that time frees, not only a request's end (a program's
   * KV hold running out): its callers decide waiting requests again at least this often, ms
   */
  recheckMs?: number | undefined;
  /**
   * a policy that holds requests until an engine's queued prompts get their first tokens (late binding):
   * its callers decide waiting requests again when a first token comes, not only when a request ends
   */
  roomAtFirstToken?: boolean | undefined;
  /**
   * told when a request the policy held ("saturated") leaves the caller's queue without an engine (timed
   * out, refused, its client gone), so it no longer ranks among the waiting
   */
  onLeftQueue?: ((req: RequestView) => void) | undefined;
}

/** How a routed request came out: its first token, its end, or an attempt abandoned. */
export interface OutcomeHooks {
  /** told when a routed request's first token came back, `ttftMs` after it arrived (calibration) */
  onFirstToken?: ((req: RequestView, engine: EngineView, ttftMs: number) => void) | undefined;
  /**
   * told when a routed request finished, `elapsedMs` after it arrived: its session (if it has one) is
   * paused from then until its next turn (the predictive policy prices evicting paused sessions' KV)
   */
  onDone?: ((req: RequestView, engine: EngineView, elapsedMs: number) => void) | undefined;
  /**
   * told when a routed request's attempt on `engine` ended without its answer (failed, moved to another
   * engine mid-answer, its client left), `elapsedMs` after it arrived: its turn is no longer in flight
   * there, so what the policy counted as running there is let go (callers that report completions)
   */
  onAbandoned?: ((req: RequestView, engine: EngineView, elapsedMs: number) => void) | undefined;
}

/** What a policy's state says to others: a router group's queue share, the decision log. */
export interface PolicyReadouts {
  /**
   * the prefill tokens this router's own requests awaiting a first token still need on `engine` (its
   * share of a router group's queue, reported to the others); undefined for policies that keep none
   */
  queuedPrefillTokens?: ((engine: EngineView) => number) | undefined;
  /**
   * diagnostics (the fleet simulator's decision log): what the policy predicted for each candidate when it
   * last scored `req`; undefined for policies that predict nothing
   */
  explain?: ((req: RequestView) => PolicyExplanation | undefined) | undefined;
}

/** Every lifecycle hook a policy may have; a stateless policy has none. */
export type PolicyHooks = PickHooks & AdmissionHooks & OutcomeHooks & PolicyReadouts;

/** A routing policy: the pure scoring, and the lifecycle hooks of a policy that keeps state. */
export interface Policy extends ScoringPolicy, PolicyHooks {}

/** What a cost-based policy predicted for each candidate of one decision (Policy.explain). */
export interface PolicyExplanation {
  engines: readonly EngineView[];
  /** per candidate: prompt tokens predicted cached there (what the cost credited) */
  cachedTokens: Float64Array;
  /** per candidate: predicted TTFT, ms (seconds-based cost only) */
  ttftMs: Float64Array | null;
  /** per candidate: the cost the pick minimised (seconds, or load units) */
  cost: Float64Array;
  promptTokens: number;
}

export type Decision =
  | { kind: "picked"; engine: EngineView }
  /** engines serve the model but none is healthy */
  | { kind: "unavailable" }
  /** healthy engines serve the model but all are at their in-flight cap */
  | { kind: "saturated" }
  /** no engine serves the model */
  | { kind: "unknown-model" }
  /** the request's TTFT SLO: no engine is predicted to meet it (the best one's prediction, how far over) */
  | { kind: "over-slo"; predictedTtftMs: number; sloTtftMs: number; retryAfterMs: number };
