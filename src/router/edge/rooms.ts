// What the HTTP edge (server.ts) serves with: every room of one router, wired by ../assembly.ts, and
// the process group a router worker answers for. Interfaces only, so the edge's files and the
// assembly above them share one description without importing each other.
import type { Policy } from "../../routing/index.js";
import type { AdmissionQueue, RetryBudget } from "../request/admission.js";
import type { RouterConfig } from "../config/config.js";
import type { StaticDiscovery } from "../../discovery/static.js";
import type { Tracer } from "../../obs/tracing.js";
import type { RouterMetrics } from "../telemetry/metrics.js";
import type { AccessLog } from "../telemetry/access-log.js";
import type { AttemptLoop } from "../dataplane/attempt-loop.js";
import type { EngineRegistry } from "../engines/engine-registry.js";
import type { EngineRecord } from "../engines/engine-record.js";
import type { CacheRouting } from "../kv/cache-routing.js";
import type { TenancyState } from "../../tenancy/state.js";
import type { RouterGate } from "../../tenancy/router-gate.js";
import type { IssuedIds } from "../dataplane/issued-ids.js";
import type { ResponseAffinity } from "../dataplane/response-affinity.js";
import type { EngineDrains } from "../migration/drain.js";
import type { Ingress } from "./ingress.js";

/**
 * The process group a router worker belongs to (`router --workers N`, src/router/cluster): what it
 * answers for the whole group rather than for itself.
 */
export interface RouterGroup {
  /** e.g. "worker 1/2", in the debug route header */
  readonly label: string;
  /** the group's /metrics page */
  metrics(): Promise<string>;
  /** drains every worker */
  drain(): void;
  /** re-reads the config file in the primary and applies it everywhere; the refusal, if any */
  reload(): Promise<string | undefined>;
  /** this worker's own requests in flight on the engine (its view counts the group's) */
  ownInFlight(e: EngineRecord): number;
}

/** The autoscaling decision as GET /autoscale shows it (../autoscale/loop.ts's report). */
export interface AutoscaleView {
  report(): unknown;
}

/** Every room the edge serves with, wired (../assembly.ts). */
export interface RouterRooms {
  readonly registry: EngineRegistry;
  readonly metrics: RouterMetrics;
  readonly queue: AdmissionQueue;
  readonly budget: RetryBudget;
  readonly discovery: StaticDiscovery;
  /** cache-aware routing state (prefix index, KV-event index and subscriptions, watchdog) */
  readonly cache: CacheRouting;
  /** the data plane: each routed request's attempts on engines */
  readonly attemptLoop: AttemptLoop;
  readonly accessLog: AccessLog;
  /** OTLP span exporter; undefined when tracing is off */
  readonly tracer: Tracer | undefined;
  /** API keys, tenant limits, cache salts (src/tenancy); off until a key is configured */
  readonly tenancy: TenancyState;
  /** the tenancy gate every way in goes through: HTTP ingress and the endpoint picker (epp-glue.ts) */
  readonly gate: RouterGate;
  /** the edge: HTTP request → routed request or rejection */
  readonly ingress: Ingress;
  /** engines draining: the deadline after which their requests in flight move elsewhere */
  readonly drains: EngineDrains;
  /** which engine made each stored response (../dataplane/response-affinity.ts); a router group shares it */
  readonly affinity: ResponseAffinity;
  /** the token-in requests in flight by tenant, so an abort stops only the caller's own */
  readonly issued: IssuedIds;
  /** the SLO autoscaling decision, exported (../autoscale/loop.ts) */
  readonly autoscale: AutoscaleView;
  /** the config in force and the policy new requests are routed with */
  readonly config: RouterConfig;
  readonly policy: Policy;
  /** set in a router worker: the process group it serves with */
  group: RouterGroup | undefined;
  /** engines discovered, probes and scrapes running, cache-aware routing started */
  start(): Promise<void>;
  /** applies a new configuration to new requests */
  reconfigure(cfg: RouterConfig): void;
  /** after the HTTP server closed: every room stops */
  close(): Promise<void>;
}
