// The routing note of one decision, kept as figures when the policy picks and written out only when
// asked for: the `x-switchyard-route` debug header and the debug log line.
import type { CacheSource } from "../../routing/index.js";

/** A decision as the policy made it */
export interface RouteNote {
  engine: string;
  policy: string;
  source: CacheSource;
  reason: string;
  cachedTokens: number;
  promptTokens: number;
  ttftMs: number | undefined;
  bestOtherTtftMs: number | undefined;
  /** prompt tokens beyond the GPU hit priced at a tier's load time, and that time */
  tierTokens: number;
  tierLoadMs: number;
  /** the picked engine as the policy saw it */
  kvUsage: number;
  inFlight: number;
  awaitingFirstToken: number | undefined;
}

/** The note as the `x-switchyard-route` header carries it: `key=value` pairs joined by `; `. */
export function formatRouteNote(n: RouteNote): string {
  let note = `engine=${n.engine}; policy=${n.policy}; source=${n.source}; reason=${n.reason}; predicted_cached_tokens=${Math.round(n.cachedTokens)}; prompt_tokens=${Math.round(n.promptTokens)}`;
  // the seconds-based cost's view: what it predicted here, and the best it saw elsewhere
  if (n.ttftMs !== undefined) note += `; predicted_ttft_ms=${Math.round(n.ttftMs)}`;
  if (n.bestOtherTtftMs !== undefined && Number.isFinite(n.bestOtherTtftMs))
    note += `; next_best_ttft_ms=${Math.round(n.bestOtherTtftMs)}`;
  // a prefix beyond the GPU hit that a tier (the engine's offload, a shared cache server) loads
  if (n.tierTokens > 0)
    note += `; tier_tokens=${Math.round(n.tierTokens)}; tier_load_ms=${n.tierLoadMs.toFixed(1)}`;
  // the engine as the policy saw it: a prediction read beside the TTFT that came is judged by these
  // (a full KV cache admits a prompt only as running requests finish)
  note += `; kv_usage=${n.kvUsage.toFixed(3)}; in_flight=${n.inFlight}`;
  if (n.awaitingFirstToken !== undefined) note += `; awaiting_first_token=${n.awaitingFirstToken}`;
  return note;
}
