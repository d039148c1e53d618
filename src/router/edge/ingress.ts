// The router's edge: one HTTP request in, one routed request (../request/routed-request.ts) out, or
// one rejection. JSON, multipart and bodyless requests go through the same named steps in the same
// order, each its own file: authenticate (and take the tenant's slot, before any body byte is read),
// read the body, pin, resolve the model, count the prompt, admit. Every refusal leaves through one
// path that counts, logs and answers it in OpenAI's error format. What each path is (its body, model,
// prompt, pin) is the endpoint table's (../request/endpoints.ts). The accepted request goes forward to
// the data plane handed in at construction; nothing here calls back into the assembly.
import type { IncomingMessage, ServerResponse } from "node:http";
import { HttpError, sendError } from "../../http/errors.js";
import { lingerAfterRefusal } from "../../http/body.js";
import type { RouterGate } from "../../tenancy/router-gate.js";
import { WorkCancelled } from "../../eventloop/turns.js";
import type { AccessLog } from "../telemetry/access-log.js";
import type { RouterConfig } from "../config/config.js";
import type { DeadlineQueue } from "../dataplane/deadlines.js";
import type { RouterMetrics } from "../telemetry/metrics.js";
import type { PromptBudget } from "./prompt-budget.js";
import type { EngineRegistry } from "../engines/engine-registry.js";
import type { RoutedRequest } from "../request/routed-request.js";
import type { EndpointMatch } from "../request/endpoints.js";
import type { ResponseAffinity } from "../dataplane/response-affinity.js";
import type { IssuedIds } from "../dataplane/issued-ids.js";
import type { SessionTracker } from "../../routing/index.js";
import type { Passage } from "./passage.js";
import { Authenticate } from "./authenticate.js";
import { ReadBody } from "./read-body.js";
import { Pin } from "./pin.js";
import { ResolveModel } from "./resolve-model.js";
import { CountPrompt } from "./count-prompt.js";
import { Admit } from "./admit.js";

export { flowOf } from "./authenticate.js";
export { queueAskOf } from "./admit.js";
export { validateFields } from "./read-body.js";

/** A client's X-Request-Id echoed on an answer the router gives itself (as the data plane echoes it). */
const SAFE_ID = /^[\x21-\x7e]{1,200}$/;

/** What an accepted request is handed to: the data plane (../dataplane/attempt-loop.ts). */
export interface DataPlane {
  handle(req: IncomingMessage, res: ServerResponse, pr: RoutedRequest): Promise<void>;
}

/** What the ingress and its steps need, set at construction (../assembly.ts). */
export interface IngressDeps {
  config: () => RouterConfig;
  registry: EngineRegistry;
  gate: RouterGate;
  metrics: RouterMetrics;
  budget: PromptBudget;
  /** the shared coarse timer (body idle timeout) */
  deadlines: DeadlineQueue;
  policyName: () => string;
  accessLog: AccessLog;
  /** which engine made each stored response (a pinned request goes there) */
  affinity: ResponseAffinity;
  /** the token-in requests in flight by tenant (an abort names only its caller's own) */
  issued: IssuedIds;
  /** takes an accepted request on (the data plane) */
  dataPlane: DataPlane;
}

export class Ingress {
  private readonly authenticate: Authenticate;
  private readonly readBody: ReadBody;
  private readonly pin: Pin;
  private readonly resolveModel: ResolveModel;
  private readonly countPrompt: CountPrompt;
  private readonly admit: Admit;

  constructor(private readonly d: IngressDeps) {
    this.authenticate = new Authenticate(d);
    this.readBody = new ReadBody(d);
    this.resolveModel = new ResolveModel(d);
    this.pin = new Pin({ ...d, models: this.resolveModel });
    this.countPrompt = new CountPrompt(d);
    this.admit = new Admit(d);
  }

  /** which session each generation request belongs to (src/routing/sessions/session-identity.ts) */
  get sessions(): SessionTracker {
    return this.admit.sessions;
  }

  /** A request to a path the endpoint table relays: the steps in order, then the data plane. */
  handle(
    req: IncomingMessage,
    res: ServerResponse,
    path: string,
    url: string,
    match: EndpointMatch,
  ): Promise<void> {
    return this.run({ req, res, path, url, ep: match.endpoint, pathId: match.id });
  }

  /** A step that need not wait returns nothing, and the request goes on in the same turn. */
  private async run(p: Passage): Promise<void> {
    let pr: RoutedRequest;
    try {
      let waits = this.authenticate.run(p);
      if (waits !== undefined) await waits;
      await this.readBody.run(p);
      waits = this.pin.home(p);
      if (waits !== undefined) await waits;
      this.resolveModel.run(p);
      waits = this.pin.locate(p);
      if (waits !== undefined) await waits;
      this.resolveModel.named(p);
      if (!this.admit.ownAbortIds(p)) return this.abortedNone(p);
      waits = this.countPrompt.run(p);
      if (waits !== undefined) await waits;
      pr = this.admit.run(p);
    } catch (err) {
      return this.reject(p, err);
    }
    return this.d.dataPlane.handle(p.req, p.res, pr);
  }

  /**
   * An abort that names none of its caller's requests in flight: answered here as the engine answers
   * one whose ids it does not know (200, nothing aborted), so it tells nothing of others' ids.
   */
  private abortedNone({ req, res, ep, admission }: Passage): void {
    if (admission) this.d.gate.release(admission, 200);
    this.d.metrics.countUnlisted(ep.path, 200, ep.counted === "tokenizer" ? "tokenizer" : "other");
    const h = req.headers["x-request-id"];
    res.writeHead(
      200,
      typeof h === "string" && SAFE_ID.test(h)
        ? { "content-length": 0, "x-request-id": h }
        : { "content-length": 0 },
    );
    res.end();
  }

  /** The one way out for a request the edge refuses. */
  private reject({ req, res, path, ep, tenant, admission }: Passage, err: unknown): void {
    if (admission) {
      // nothing was used: the slot and the reservation come back, the refusal counts for the tenant
      const status = err instanceof HttpError ? err.status : 499;
      this.d.gate.release(admission, status);
    }
    if (!(err instanceof HttpError)) {
      if (err instanceof WorkCancelled) {
        // the client went away while its prompt was counted: a 499, as the data plane counts one
        this.d.metrics.countRequest("none", "none", 499, this.d.policyName());
        this.d.accessLog.rejected(req, path, 499, tenant?.name, "the client went away");
        return void res.destroy();
      }
      // the client went away mid-body: nobody to answer, nothing wrong with the router (a request
      // whose body was read destroys itself, so `req.destroyed` alone would hide a real failure)
      if (res.destroyed || (req.destroyed && !req.complete)) return void res.destroy();
      throw err;
    }
    lingerAfterRefusal(req, res);
    if (err.status !== 429 && err.status !== 503 && !admission) this.d.gate.refused(tenant, err.status);
    if (ep.counted !== "requests") this.d.metrics.countUnlisted(ep.path, err.status, ep.counted);
    else this.d.metrics.countRequest("none", "none", err.status, this.d.policyName());
    this.d.accessLog.rejected(req, path, err.status, tenant?.name, err.message);
    sendError(res, err);
  }
}
