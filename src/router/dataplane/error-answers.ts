// The answers a request gets when the data plane gives up on it: an error (JSON before anything was
// sent, an SSE error event after), the last engine's own 5xx answer when no engine did better, a 503
// when none could be reached, and a poison request's 502 that tells the client not to retry.
import { HttpError, endStreamWithError, sendError } from "../../http/errors.js";
import { logger } from "../../obs/log.js";
import type { RouterMetrics } from "../telemetry/metrics.js";
import type { AttemptContext } from "./attempt-context.js";
import type { RetryOutcome } from "./attempt-outcome.js";
import type { RequestContext } from "./request-context.js";
import { responseNotFound } from "./response-affinity.js";

/** the data plane's logger (its name kept from before the loop had one of its own) */
const log = logger("router.dataplane");

/** Answers with an error: a JSON error before anything was sent, an SSE error event after. */
export function answerError(ctx: AttemptContext, e: HttpError): void {
  const res = ctx.res;
  ctx.status = e.status;
  if (!res.headersSent) {
    res.setHeader("x-request-id", ctx.echoId);
    sendError(res, e);
  } else if (ctx.pr.stream && !res.writableEnded) {
    endStreamWithError(res, e.status, e.message);
  } else res.destroy();
}

/** No engine could answer: pass on the last engine's 5xx answer, or say what went wrong. */
export function answerFailure(ctx: RequestContext, last: RetryOutcome): void {
  const res = ctx.res;
  if (last.body && !res.headersSent) {
    ctx.status = last.status;
    const h: string[] = [];
    for (let i = 0; i < last.headers.length; i += 2) {
      if (last.headers[i]!.toLowerCase() !== "content-length") h.push(last.headers[i]!, last.headers[i + 1]!);
    }
    h.push("content-length", String(last.body.length), "x-request-id", ctx.echoId);
    res.writeHead(last.status, h);
    res.end(last.body);
    return;
  }
  // the engine holding a stored response cannot be reached: for the client the response is gone
  if (ctx.onlyConnectFailures && ctx.pr.pin) return answerError(ctx, responseNotFound(ctx.pr.pin.id));
  if (ctx.onlyConnectFailures) {
    // nothing reached an engine: the fleet is down or unreachable, which is what 503 says
    const tried = ctx.attempts === 1 ? "its engine" : `any of the ${ctx.attempts} engines tried`;
    return answerError(
      ctx,
      new HttpError(
        503,
        `no engine serving the model \`${ctx.pr.model}\` could be reached (${tried}; last: ${last.reason}); retry later`,
        null,
        { "retry-after": "1" },
      ),
    );
  }
  answerError(ctx, new HttpError(last.status || 502, `upstream engine failed: ${last.reason}`));
}

/** The request broke (or met broken) engines while they held it, too often to try another. */
export function answerPoisoned(ctx: RequestContext, last: RetryOutcome, metrics: RouterMetrics): void {
  const n = ctx.inFlightFailures;
  metrics.poisoned.inc({ model: ctx.pr.model });
  log.warn(
    { requestId: ctx.requestId, model: ctx.pr.model, engines: n, last: last.reason },
    "request not retried: engines failed while serving it (possible poison request)",
  );
  answerError(
    ctx,
    new HttpError(
      502,
      `the request was not retried: ${n} engines failed while serving it (last: ${last.reason}); ` +
        "it may be what makes them fail",
      null,
      // the OpenAI clients honour this and do not retry on their own
      { "x-should-retry": "false" },
    ),
  );
}
