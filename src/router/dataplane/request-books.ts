// A client request's books in the data plane: opened when the edge hands it over (counted in flight,
// its response's close listened to with one shared listener, its deadlines armed, its migration
// planned, its ids noted) and closed once, whatever happened (timers and listener off, counted,
// traced, charged to its tenant, logged); the SSE keep-alive comments in between.
import type { IncomingMessage, ServerResponse } from "node:http";
import type { Policy } from "../../routing/index.js";
import { SSE_HEADERS } from "../../protocol/sse.js";
import type { Tracer } from "../../obs/tracing.js";
import type { RetryBudget } from "../request/admission.js";
import type { RoutedRequest } from "../request/routed-request.js";
import type { RouterConfig } from "../config/config.js";
import type { RouterMetrics } from "../telemetry/metrics.js";
import type { AccessLog } from "../telemetry/access-log.js";
import type { DeadlineQueue } from "./deadlines.js";
import type { IssuedIds } from "./issued-ids.js";
import type { Migrations } from "./migration-flow.js";
import { RequestContext } from "./request-context.js";
import type { ResponseAffinity } from "./response-affinity.js";

const KEEPALIVE_BYTES = Buffer.from(": keep-alive\n\n");

export interface RequestBooksDeps {
  metrics: RouterMetrics;
  budget: RetryBudget;
  config: () => RouterConfig;
  policy: () => Policy;
  tracer?: Tracer | undefined;
  accessLog?: AccessLog | undefined;
  affinity?: ResponseAffinity | undefined;
  issued?: IssuedIds | undefined;
}

/** The request context of a response, for the one shared 'close' listener (no closure per request). */
const CONTEXT = Symbol("switchyard.requestContext");
type WithContext = ServerResponse & { [CONTEXT]?: RequestContext };

function onResponseClose(this: WithContext): void {
  const ctx = this[CONTEXT];
  if (ctx && !this.writableFinished) {
    ctx.clientGone = true;
    ctx.cancel();
  }
}

export class RequestBooks {
  constructor(
    private readonly d: RequestBooksDeps,
    private readonly deadlines: DeadlineQueue,
    private readonly migrations: Migrations,
  ) {}

  /** A request handed over by the edge: counted in flight, listened to, its deadlines armed. */
  open(req: IncomingMessage, res: ServerResponse, pr: RoutedRequest, cfg: RouterConfig): RequestContext {
    const metrics = this.d.metrics;
    const ctx = new RequestContext(req, res, pr, this, metrics, this.d.tracer);
    metrics.inFlight++;
    this.d.budget.onRequest();
    (res as WithContext)[CONTEXT] = ctx;
    res.on("close", onResponseClose);
    // gone while the ingress awaited a body parsed on a thread or a tenant's admission: its close has
    // passed (the connection's: a pipelined request's response has no socket of its own)
    if (res.destroyed || req.socket.destroyed) ctx.clientGone = true;
    const now = ctx.started;
    this.deadlines.arm(ctx.total, cfg.timeouts.total, now);
    if (pr.stream && cfg.timeouts.keepAlive > 0)
      this.deadlines.arm(ctx.keepAlive, cfg.timeouts.keepAlive, now);
    if (pr.generation && cfg.migration.enabled && (pr.stream || cfg.migration.nonStreaming))
      this.migrations.plan(ctx, cfg.migration.nonStreaming);
    if (ctx.endpoint?.remembers && this.d.affinity) ctx.watchResponseId();
    if (ctx.endpoint?.abortIds === "issued" && this.d.issued) {
      const clientId = ctx.echoId !== ctx.requestId ? ctx.echoId : undefined;
      ctx.issued = this.d.issued.add(pr.tenant?.tenant ?? "", ctx.requestId, clientId);
    }
    return ctx;
  }

  /** The request's end, whatever happened: timers off, listener off, counted, logged. */
  close(ctx: RequestContext): void {
    const res = ctx.res;
    const pr = ctx.pr;
    const metrics = this.d.metrics;
    this.deadlines.disarm(ctx.total);
    this.deadlines.disarm(ctx.keepAlive);
    // a continuation that never got going: the migration failed (the client saw an error event)
    if (ctx.migrating !== undefined && !ctx.clientGone)
      metrics.countMigration(pr.model, ctx.migrating, "failed");
    res.off("close", onResponseClose);
    (res as WithContext)[CONTEXT] = undefined;
    metrics.inFlight--;
    if (ctx.issued) this.d.issued?.remove(ctx.issued);
    const status = ctx.clientGone ? 499 : ctx.status || res.statusCode;
    const ep = ctx.endpoint;
    if (pr.generation) metrics.countRequest(pr.model, ctx.engineUrl, status, this.d.policy().name);
    else if (ep) metrics.countUnlisted(ep.path, status, ep.counted === "other" ? "other" : "tokenizer");
    else metrics.countUnlisted(pr.path, status);
    const seconds = (performance.now() - ctx.started) / 1000;
    ctx.series.e2e.observe(seconds);
    ctx.trace?.end(status, ctx.engineUrl);
    // a request that never reached an engine generated nothing (without usage it is charged none)
    pr.tenant?.finish(status, ctx.engineUrl !== "none");
    this.d.accessLog?.write(ctx, status, seconds);
  }

  /** A keep-alive comment is due (before the first byte, or while a stream moves). */
  sendKeepAlive(ctx: RequestContext): void {
    const res = ctx.res;
    // comments keep the client's connection warm before the first byte and while a stream moves
    if ((ctx.relayed && ctx.migrating === undefined) || res.writableEnded || res.destroyed) return;
    if (!res.headersSent) {
      // Committing to 200 now is safe: an engine failure later becomes an SSE error event.
      res.writeHead(200, { ...SSE_HEADERS, "x-request-id": ctx.echoId });
      ctx.status = 200;
    }
    res.write(KEEPALIVE_BYTES);
    this.deadlines.arm(ctx.keepAlive, this.d.config().timeouts.keepAlive);
  }
}
