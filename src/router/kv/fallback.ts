// Why an engine is routed by the approximate prefix index instead of its KV events (no source, a hash
// the router cannot reproduce, a vLLM too old, no events yet, events held until the publisher confirms
// them), and what the operator is told when that changes or an engine's silence lasts.
import { versionAtLeast } from "../../kvevents/versions.js";
import { logger } from "../../obs/log.js";
import type { EngineRecord } from "../engines/engine-record.js";
import type { EngineKv } from "./kv-source.js";

const log = logger("router.cache");

/** scrapes in a row with computed prompts and no KV event before an engine's silence is warned of */
const QUIET_SCRAPES = 3;

/** reasons that come and go as an engine starts or its events settle: not warned of */
const QUIET_REASONS = [
  "starting",
  "no-events-yet",
  "no-cache-config",
  "version-unknown",
  "not-subscribed",
  "events-unconfirmed",
];

/** What the judgement reads besides the engine: the policy's mode and the oldest vLLM trusted. */
export interface FallbackRules {
  mode: "prefix" | "kv" | "hybrid";
  minVllmVersion: string;
}

/** Why this engine cannot be routed by its KV events right now (null: it can). */
export function kvBlocker(st: EngineKv, e: EngineRecord, rules: FallbackRules): string | null {
  if (rules.mode === "prefix") return "policy-prefix";
  if (!st.source) return "no-kv-events-endpoint";
  const cc = e.load.cacheConfig;
  if (!cc) return "no-cache-config";
  const algo = cc.prefix_caching_hash_algo;
  if (algo !== "sha256_cbor") return `hash-algo-${algo ?? "unknown"}`;
  if (cc.enable_prefix_caching === "False") return "prefix-caching-off";
  if (!e.view.blockSize) return "no-block-size";
  if (st.version === undefined) return "version-unknown";
  if (!versionAtLeast(st.version, rules.minVllmVersion)) return `version-${st.version}`;
  if (!st.sub && !st.collecting) return "not-subscribed";
  // Silence from a publisher whose handshake failed is not an empty cache: nothing it sends is taken
  if (!st.flowing && st.refused) return "handshake-refused";
  // An engine that has computed no prompt has published no event: its silence is an empty cache, and
  // its empty index says so exactly. Counted as unknown, its room did not count and a miss sent there
  // was priced as pushing out its own size, so a fresh engine (started, scaled up, or passed over by
  // the first prompts) drew no new prefix while the others held one (live, 4 engines, agent sessions
  // sharing a 2,000-token prompt at 1.2 req/s: one engine got no prompt for 20 s). Once its own
  // counters show a prompt (vllm:prefix_cache_queries, as last scraped) and no event has come, it is
  // routed by the approximate index.
  if (!st.flowing && e.load.prefixCacheQueries !== 0) return "no-events-yet";
  if (st.unconfirmed > 0) return "events-unconfirmed";
  return null;
}

/** Judges the engine again and says a change that the operator should hear of. */
export function updateFallback(st: EngineKv, e: EngineRecord, rules: FallbackRules): void {
  const why = kvBlocker(st, e, rules);
  if (why === st.fallback) return;
  const was = st.fallback;
  st.fallback = why;
  if (why === null)
    log.info(
      { engine: st.url },
      st.flowing
        ? "engine routed by its KV events"
        : "engine routed by its KV events: none yet, it has computed no prompt (an empty cache)",
    );
  else if (
    // an engine routed while it had computed nothing falls back quietly while its first batch is on
    // its way (its counters may show the prompt a moment before its events come); noteScrape warns if
    // the silence lasts
    (was === null && why !== "no-events-yet") ||
    (st.source && !QUIET_REASONS.includes(why))
  )
    log.warn({ engine: st.url, reason: why }, "engine routed by the approximate prefix index, not KV events");
}

/**
 * After a scrape: its first events may come a moment after its counters show the prompt, so silence is
 * a fault only once it lasts; then the operator hears of it once (a publisher not configured, a port
 * not reached).
 */
export function noteScrape(st: EngineKv): void {
  if (st.fallback !== "no-events-yet") st.quietScrapes = 0;
  else if (++st.quietScrapes === QUIET_SCRAPES)
    log.warn(
      { engine: st.url, reason: st.fallback, scrapes: QUIET_SCRAPES },
      "engine has computed prompts but published no KV event: routed by the approximate prefix index",
    );
}
