// What a router's rooms read of the configuration while requests run: the config in force, the policy
// new requests are routed with, who may see the debug header, and the routing decision's debug line
// and header. One object, built by the assembly and handed to each room at construction, so a request
// in flight never calls back into the assembly; a reload swaps its fields.
import type { IncomingMessage, ServerResponse } from "node:http";
import type { Policy, RequestView } from "../routing/index.js";
import { logger } from "../obs/log.js";
import type { RouterGate } from "../tenancy/router-gate.js";
import type { RouterConfig } from "./config/config.js";
import type { RouterGroup } from "./edge/rooms.js";
import type { RouteListener } from "./dataplane/attempt-loop.js";

/** one line per routing decision, at debug level */
const routeLog = logger("router.route");

/** What the debug header's explanation is read from (the cache-aware routing state). */
export interface RouteExplainer {
  explain(view: RequestView): string | undefined;
}

/** Who may ask for the routing explanation (the tenancy gate). */
export type DebugKeys = Pick<RouterGate, "mayDebug">;

export class LiveState implements RouteListener {
  /** set in a router worker: the process group it serves with (names it in the debug header) */
  group: RouterGroup | undefined;

  constructor(
    private cfg: RouterConfig,
    private current: Policy | undefined,
    private readonly keys: DebugKeys,
    private readonly explainer: RouteExplainer,
  ) {}

  /** Applies a reload: new requests read the new config and policy. */
  set(cfg: RouterConfig, policy: Policy): void {
    this.cfg = cfg;
    this.current = policy;
  }

  /** the config in force */
  readonly config = (): RouterConfig => this.cfg;

  /** the policy new requests are routed with */
  readonly policy = (): Policy => this.current!;

  readonly policyName = (): string => this.current!.name;

  /**
   * `x-switchyard-debug: 1` from a client debug.allowHeader lets have the explanation (RouterGate.mayDebug);
   * anyone else's changes nothing in the answer.
   */
  readonly mayDebug = (req: IncomingMessage): boolean => {
    if (req.headers["x-switchyard-debug"] !== "1") return false;
    return this.keys.mayDebug(this.cfg.debug.allowHeader, req.headers["x-switchyard-debug-key"]);
  };

  /** An engine was picked for an attempt: the decision's debug line and, when allowed, its header. */
  routed(
    req: IncomingMessage,
    res: ServerResponse,
    view: RequestView,
    engineUrl: string,
    requestId: string,
  ): void {
    const debugLine = routeLog.isLevelEnabled("debug");
    const header = !res.headersSent && this.mayDebug(req);
    if (!debugLine && !header) return;
    const note = this.explainer.explain(view) ?? `engine=${engineUrl}; policy=${this.policyName()}`;
    // with the request id its access line carries, so a decision log joins what was predicted to
    // the TTFT that came (bench/support/decision-table.ts)
    if (debugLine) routeLog.debug({ requestId, model: view.model, seq: view.seq, note }, "routed");
    if (!header) return;
    res.setHeader(
      "x-switchyard-route",
      note +
        (view.sessionKey !== undefined ? `; session=${encodeURIComponent(view.sessionKey)}` : "") +
        (this.group ? `; ${this.group.label}` : ""),
    );
  }
}
