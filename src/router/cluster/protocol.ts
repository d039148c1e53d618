// What the primary of a router process group and its workers say to each other over node:cluster's
// IPC channel (V8 structured clone: `serialization: "advanced"`). Typed here once; both ends are this
// package's own code, so the shapes are trusted (peers over the network are validated in peers.ts).
import type { EngineSpec } from "../../discovery/types.js";
import type { HealthState } from "../engines/health.js";
import type { ModelCard } from "../engines/engine-record.js";
import type { EngineLoad } from "../engines/scrape.js";
import type { LimitAnswer, LimitRequest } from "./limits.js";
import type { ResponseLink } from "../dataplane/response-affinity.js";

/** What the primary's registry says of one engine (its health, scraped load, counters). */
export interface EngineStatus {
  spec: EngineSpec;
  state: HealthState;
  healthFailures: number;
  healthSuccesses: number;
  passiveFailures: number;
  lastError: string;
  load: EngineLoad;
  lastScrapeMs: number;
  /** vllm:prefix_cache_hits at that scrape, when the page had it (each worker's silent-miss watchdog) */
  prefixCacheHits?: number;
  lastModelsMs: number;
}

/** Per engine URL, a source's counts of the fields in SHARED_FIELDS (shared-load.ts), in that order. */
export type LoadCounts = [url: string, ...counts: number[]];

/**
 * A routing decision others learn from: the engine, the prefix index's block ids of the request
 * (empty when it had none) and the KV-event prediction the watchdog compares (0 when none).
 */
export type Pick = [engine: string, prefixIds: readonly number[], kvPredictedTokens: number];

/**
 * One pick to confirm: the engine, and the others' counts the decision read on each engine it
 * depends on (its own alone for a policy whose picks load elsewhere cannot change).
 */
export interface ClaimItem {
  id: number;
  pick: string;
  seen: LoadCounts[];
}

/** A worker's report of what it changed since its last one. */
export interface SyncBatch {
  /**
   * the last claim whose answer the worker had heard when it wrote this (ledger.ts); sent with every
   * `load`, and alone once answers came in that changed no count
   */
  acked?: number;
  /** this source's absolute counts, for engines whose counts changed */
  load?: LoadCounts[];
  picks?: Pick[];
  /** stored responses' ids this worker learned, with their engines (../dataplane/response-affinity.ts) */
  responses?: ResponseLink[];
  /** engines that sent bytes on this source's requests (a timed-out probe is excused: engines/health.ts) */
  progress?: string[];
}

/** primary → worker */
export type ToWorker =
  | {
      t: "start";
      slot: number;
      workers: number;
      config: Record<string, unknown>;
      configFile?: string;
      /** bind reuse-port sockets of its own: the primary proved the port free (../edge/accept.ts) */
      ownSockets?: boolean;
    }
  | { t: "engine"; status: EngineStatus }
  | { t: "models"; url: string; cards: ModelCard[] }
  | { t: "remove"; url: string }
  /** another source's counts (another worker, or a replica) */
  | { t: "load"; source: string; load: LoadCounts[] }
  /** a source is gone: its counts no longer apply */
  | { t: "gone"; source: string }
  | { t: "picks"; picks: Pick[] }
  /**
   * response ids another worker (or replica) learned; `unsigned`: from a replica whose report carried
   * no signature (no `peers.secret`), so with tenancy on its owners prove nothing
   */
  | { t: "responses"; links: ResponseLink[]; unsigned?: boolean }
  | { t: "config"; config: Record<string, unknown> }
  | { t: "drain" }
  | { t: "shutdown" }
  | { t: "exit" }
  | { t: "metrics-get"; id: number }
  | { t: "reply"; id: number; text?: string; error?: string }
  /** per claim of a batch (claims.ts): it stands, or was made on stale counts (sent just before) */
  | { t: "claimed"; results: [id: number, ok: boolean][] }
  /**
   * the group's client connections now, summed over the workers' reports, and the workers listening
   * (conn-balance.ts)
   */
  | { t: "conns"; total: number; workers: number }
  /** the messages of one turn, in order (outbox.ts): one write on the channel instead of one each */
  | { t: "many"; ms: ToWorker[] }
  | LimitAnswer;

/** worker → primary */
export type ToPrimary =
  /** the worker listens for messages: it may be sent its start */
  | { t: "hello" }
  | { t: "listening"; address: string; port: number; family: string }
  | ({ t: "sync" } & SyncBatch)
  | { t: "fail"; url: string; what: string }
  /** the engine refused a request as vLLM does while it drains on shutdown (../engines/health.ts) */
  | { t: "shutdown"; url: string }
  | { t: "ok"; url: string }
  | { t: "metrics-json"; id: number; data: unknown[] }
  /** a request that needs the primary: aggregated metrics, a reload, a drain of the group */
  | { t: "ask"; id: number; what: "metrics" | "reload" | "drain" }
  /** picks of a load-aware policy (claims.ts), after this worker's own counts without them */
  | { t: "claims"; own: LoadCounts[]; acked: number; items: ClaimItem[] }
  /** the client connections this worker holds now, sent when the count changed (conn-balance.ts) */
  | { t: "conns"; n: number }
  /** the messages of one turn, in order (outbox.ts) */
  | { t: "many"; ms: ToPrimary[] }
  | LimitRequest;

const tagged = (m: unknown): boolean =>
  typeof m === "object" && m !== null && typeof (m as { t?: unknown }).t === "string";
export const isToWorker = (m: unknown): m is ToWorker => tagged(m);
export const isToPrimary = (m: unknown): m is ToPrimary => tagged(m);
