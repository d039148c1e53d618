// The router's edge: one HTTP request in, one routed request (../request/routed-request.ts) out, or
// one rejection. JSON, multipart and bodyless requests go through the same steps in the same order —
// authenticate and // admit the tenant (before any body byte is read, so an anonymous client never makes the router
// buffer one and a tenant's slow bodies take its own slots), body, parse,
// validate, model and pin, prompt budget — and every refusal leaves through one path that
// counts, logs and answers it in OpenAI's error format. What each path is (its body, model, prompt,
// pin) is the endpoint table's (../request/endpoints.ts).
import type { IncomingMessage, ServerResponse } from "node:http";
import { Readable } from "node:stream";
import { setTimeout as delay } from "node:timers/promises";
import { HttpError, sendError } from "../../http/errors.js";
import {
  agenticContextOf,
  parseSloHeader,
  policyReadsSessions,
  SessionTracker,
  SLO_HEADER,
} from "../../routing/index.js";
import { bodyTooLarge, lingerAfterRefusal, parseJsonObjectOffLoop } from "../../http/body.js";
import { OWNER_METADATA_KEY, promptEstimate, type RouterGate } from "../../tenancy/router-gate.js";
import type { Admission, Tenant } from "../../tenancy/state.js";
import { WorkCancelled } from "../../eventloop/turns.js";
import { ANONYMOUS_FLOW, sheddableRefusal, type QueueAsk, type QueueFlow } from "../request/admission.js";
import type { AccessLog } from "../telemetry/access-log.js";
import { readRequestBody } from "./body.js";
import { aliasTarget, type RouterConfig } from "../config/config.js";
import type { DeadlineQueue } from "../dataplane/deadlines.js";
import type { RouterMetrics } from "../telemetry/metrics.js";
import type { PromptBudget } from "./prompt-budget.js";
import type { EngineRegistry } from "../engines/engine-registry.js";
import { modelNotFound, modelsNotYetKnown, type RoutedRequest } from "../request/routed-request.js";
import type { Endpoint, EndpointMatch } from "../request/endpoints.js";
import {
  followUpWaitMs,
  locateResponse,
  ownerMay,
  responseNotFound,
  type ResponseAffinity,
} from "../dataplane/response-affinity.js";
import { upstreamPath } from "../engines/upstream-rules.js";
import type { IssuedIds } from "../dataplane/issued-ids.js";

/** A client's X-Request-Id echoed on an answer the router gives itself (as the data plane echoes it). */
const SAFE_ID = /^[\x21-\x7e]{1,200}$/;

const MULTIPART_SNIFF_BYTES = 64 * 1024;
const EMPTY = Buffer.alloc(0);
const MODEL_FIELD = /name="model"\r\n(?:[^\r\n]+\r\n)*\r\n([^\r\n]*)\r\n/;

/** What an accepted request is handed to: the data plane (../dataplane/attempt-loop.ts). */
export interface DataPlane {
  handle(req: IncomingMessage, res: ServerResponse, pr: RoutedRequest): Promise<void>;
}

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

/** The body step's result: what the later steps need, whatever the body's format. */
interface Body {
  /** the model the client named (undefined: none given) */
  model: string | undefined;
  body: Buffer | Readable;
  /** bytes (declared or read), for the tenant's prompt estimate */
  bytes: number;
  parsed?: Record<string, unknown>;
}

/** The body size a request declares (Content-Length); 0 when it declares none (chunked, or no body). */
function declaredBytes(req: IncomingMessage): number {
  const n = Number(req.headers["content-length"] ?? 0);
  return Number.isFinite(n) && n > 0 ? n : 0;
}

/**
 * What a generation request asks of its wait in the admission queue: `vllm_xargs.agentic_context`'s
 * `priority` (its rank within its own flow) and `deadline_seconds` (its longest wait, which shortens the
 * queue's timeout but never extends it), as vllm-router reads them for its request pool; the same for
 * a request the endpoint picker queues. Off with the rest of the agentic context
 * (`session.agenticContext: false`).
 */
export function queueAskOf(body: Record<string, unknown>, cfg: RouterConfig): QueueAsk | undefined {
  if (body.vllm_xargs === undefined || !cfg.session.agenticContext) return undefined;
  const a = agenticContextOf(body);
  if (!a || (a.priority === undefined && a.deadlineS === undefined)) return undefined;
  return {
    rank: a.priority,
    timeoutMs: a.deadlineS !== undefined ? Math.max(0, a.deadlineS * 1000) : undefined,
  };
}

/** The admission-queue flow of a request: its tenant's (weight, priority), else the anonymous one. */
export function flowOf(t: Tenant | undefined): QueueFlow {
  return t ? { key: t.name, weight: t.weight, priority: t.priority } : ANONYMOUS_FLOW;
}

const NUMERIC_FIELDS = ["max_tokens", "max_completion_tokens", "n", "temperature", "top_p", "seed"];

/** Cheap checks of the fields the router itself reads or that are wrong in an obvious way. */
export function validateFields(path: string, obj: Record<string, unknown>): void {
  if (obj.model !== undefined && typeof obj.model !== "string") {
    throw new HttpError(400, "`model` must be a string", "model");
  }
  if (obj.stream !== undefined && obj.stream !== null && typeof obj.stream !== "boolean") {
    throw new HttpError(400, "`stream` must be a boolean", "stream");
  }
  if (path === "/v1/chat/completions" && !Array.isArray(obj.messages)) {
    throw new HttpError(400, "`messages` must be an array of messages", "messages");
  }
  if (path === "/v1/completions") {
    const p = obj.prompt;
    if (typeof p !== "string" && !Array.isArray(p)) {
      throw new HttpError(
        400,
        "`prompt` must be a string, a list of strings or a list of token ids",
        "prompt",
      );
    }
  }
  for (const f of NUMERIC_FIELDS) {
    const v = obj[f];
    if (v !== undefined && v !== null && typeof v !== "number")
      throw new HttpError(400, `\`${f}\` must be a number`, f);
  }
}

export class Ingress {
  /** which session each generation request belongs to (src/routing/sessions/session-identity.ts) */
  readonly sessions = new SessionTracker({ namespace: `${process.pid.toString(36)}.` });
  /** the configuration the tracker's options and `tracking` were last taken from */
  private sessionConfig: RouterConfig | undefined;
  /** the policy reads session keys: sessions are tracked (inferred, recorded), not only read off */
  private tracking = true;

  constructor(private readonly d: IngressDeps) {}

  /**
   * A request to a path the endpoint table relays: a JSON body is read whole (bounded), parsed once
   * and validated; a multipart upload streams through, only its head read to find the `model` field;
   * a route without a body forwards nothing.
   */
  handle(
    req: IncomingMessage,
    res: ServerResponse,
    path: string,
    url: string,
    match: EndpointMatch,
  ): Promise<void> {
    return this.run(req, res, path, url, match.endpoint, match.id);
  }

  private async run(
    req: IncomingMessage,
    res: ServerResponse,
    path: string,
    url: string,
    ep: Endpoint,
    pathId: string | undefined,
  ): Promise<void> {
    const multipart = ep.body === "multipart";
    let tenant: Tenant | undefined;
    // the tenant's slot, taken at the headers (released here if the request is refused later)
    let admission: Admission | undefined;
    let pr: RoutedRequest;
    try {
      tenant = this.d.gate.authenticate(req);
      const slo = parseSloHeader(req.headers[SLO_HEADER]);
      if (slo instanceof Error) throw new HttpError(400, slo.message, SLO_HEADER);
      // before any body byte is read: a tenant's slow bodies hold its own concurrency slots, and one
      // over its limit is refused now rather than after its body has been buffered
      if (tenant) admission = await this.d.gate.take(tenant, promptEstimate(declaredBytes(req)));
      // a sheddable tenant's generation with every engine full: the queue would refuse it at once
      // (../request/admission.ts), so it is refused now, before its body is read, parsed and routed
      if (tenant && tenant.priority < 0 && ep.counted === "requests" && this.d.registry.saturated()) {
        this.d.metrics.rejected.inc({ reason: "queue" });
        throw sheddableRefusal(flowOf(tenant));
      }
      let b: Body;
      if (multipart) b = await this.multipartBody(req);
      else if (ep.body === "none") b = await this.noBody(req);
      else {
        const body = await this.readJson(req);
        // large bodies are parsed on a worker thread (src/http/json-thread.ts)
        const parsed = parseJsonObjectOffLoop(req, body);
        b = jsonStep(path, body, parsed instanceof Promise ? await parsed : parsed);
      }
      const obj = b.parsed;
      // the reservation taken at the headers checked against the body read (a chunked body declared
      // no length): a prompt over the tenant's budget is refused here, before it is routed
      if (admission) await this.d.gate.reserve(admission, promptEstimate(b.bytes));
      const pinId =
        ep.pin === "path-id"
          ? pathId
          : ep.pin === "previous-response-id" && typeof obj?.previous_response_id === "string"
            ? obj.previous_response_id
            : undefined;
      let home = pinId !== undefined ? this.d.affinity.home(pinId) : undefined;
      // a router group with tenancy on: the engines are not asked, so the entry is given the time the
      // group takes to pass it on (a follow-up may overtake the message about its response)
      if (pinId !== undefined && tenant && this.d.affinity.sharing) {
        const ms = followUpWaitMs(this.d.config().peers);
        if (home === undefined) home = await this.d.affinity.arrival(pinId, ms);
        // another tenant's is answered no sooner than an unknown one: the delay tells nothing
        else if (home.owner !== tenant.name) await delay(ms);
      }
      // tenancy on: another tenant's response, or one whose owner nobody knows, is not there for this
      // tenant (the answer an id nobody made gets; the engines are not asked)
      // ... unless its engine holds it under this tenant's owner tag (the router restarted, the replica
      // that made it is gone, its entry was evicted): the engines are asked, and only the tag decides;
      // another tenant's known id is asked for too, so its 404 comes no sooner than an unknown one's
      if (pinId !== undefined && !ownerMay(home, tenant?.name)) {
        const tag = tenant ? this.d.gate.ownerTag(tenant) : undefined;
        const found =
          tag !== undefined
            ? await locateResponse(this.d.registry, this.d.affinity, pinId, undefined, {
                tenant: tenant!.name,
                tag,
                field: OWNER_METADATA_KEY,
              })
            : undefined;
        if (found === undefined) throw responseNotFound(pinId);
        home = found;
      }
      let model = ep.modelless
        ? this.anyModel(home?.model)
        : this.model(b.model, multipart || ep.modelOptional, multipart, tenant);
      // an id the router never saw, among several engines: the engines are asked who holds it; when
      // none does, an engine that lacks the history must not answer as if it did (vLLM's own 404)
      if (pinId !== undefined && home === undefined) {
        const among = ep.modelless ? undefined : model;
        if (this.candidates(among) > 1) {
          home = await locateResponse(this.d.registry, this.d.affinity, pinId, among);
          if (!home) throw responseNotFound(pinId);
          if (ep.modelless) model = this.anyModel(home.model);
        }
      }
      // an alias: the engine only knows the target name, so this (rare) request is re-serialised
      let mutated = obj !== undefined && b.model !== undefined && model !== b.model;
      if (mutated) obj!.model = model;
      // an abort: only the caller's own requests in flight, by the ids their engines know them by
      if (ep.abortIds === "scoped" && obj !== undefined && obj.request_ids != null) {
        const own = this.d.issued.scope(tenant?.name ?? "", obj.request_ids, tenant === undefined);
        if (own.length === 0) return this.abortedNone(req, res, ep, admission);
        obj.request_ids = own;
        mutated = true;
      }
      let promptTokens: number[] | undefined;
      const workBegan = performance.now();
      if (obj) {
        // the connection, not the response: a pipelined request's response has no socket of its own
        const counting = this.d.budget.check(ep, model, obj, workBegan, req.socket);
        if (counting !== undefined) {
          promptTokens = await counting;
          // gone after the counting's last look (it stops at its next slice or worker chunk once the
          // client is gone): not admitted or routed for nobody, and counted as a 499 below
          if (req.socket.destroyed) throw new WorkCancelled();
        }
      }
      let admitted;
      if (admission) {
        // the tenant's cache_salt into the body before the routing view is built, so the KV-aware
        // policy hashes the blocks the engine will; fields only the router sets removed
        admitted = this.d.gate.prepare(admission, multipart ? url : path, obj, promptEstimate(b.bytes), {
          model,
        });
        mutated ||= admitted.mutated;
      }
      pr = {
        // only the query parameters vLLM reads on this route go on (../engines/upstream-rules.ts)
        path: upstreamPath(url, ep.query),
        endpoint: ep,
        method: req.method === "GET" ? "GET" : "POST",
        pin: home && pinId !== undefined ? { id: pinId, engine: home.engine } : undefined,
        model,
        stream: obj?.stream === true,
        sessionKey: this.sessionKey(req, obj, ep, pinId, home?.session, workBegan),
        body: mutated ? Buffer.from(JSON.stringify(obj)) : b.body,
        parsed: obj,
        // with tenancy on, the client's key was the router's credential: it stops here
        clientAuthorization: tenant ? undefined : req.headers.authorization,
        tenant: admitted?.request,
        flow: flowOf(tenant),
        // a tenant above the default priority may take the room kept above each engine's cap
        headroom: tenant && tenant.priority > 0 ? this.d.config().admission.topBandHeadroom : undefined,
        queueAsk: ep.counted === "requests" && obj ? queueAskOf(obj, this.d.config()) : undefined,
        generation: ep.counted === "requests",
        promptTokens: promptTokens && promptTokens.length > 0 ? promptTokens : undefined,
        workBegan,
        sloTtftMs: slo,
      };
    } catch (err) {
      return this.reject(req, res, path, ep, tenant, admission, err);
    }
    return this.d.dataPlane.handle(req, res, pr);
  }

  /**
   * An abort that names none of its caller's requests in flight: answered here as the engine answers
   * one whose ids it does not know (200, nothing aborted), so it tells nothing of others' ids.
   */
  private abortedNone(
    req: IncomingMessage,
    res: ServerResponse,
    ep: Endpoint,
    admission: Admission | undefined,
  ): void {
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
  private reject(
    req: IncomingMessage,
    res: ServerResponse,
    path: string,
    ep: Endpoint,
    tenant: Tenant | undefined,
    admission: Admission | undefined,
    err: unknown,
  ): void {
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

  /** The whole JSON body, bounded; a client stalling mid-body for limits.bodyIdleTimeout gets 408. */
  private readJson(req: IncomingMessage): Promise<Buffer> {
    const lim = this.d.config().limits;
    return readRequestBody(req, lim.maxBodyBytes, { queue: this.d.deadlines, ms: lim.bodyIdleTimeout });
  }

  /** A route without a body: a GET forwards none; a POST's bytes (if any) are read, bounded, and passed on. */
  private async noBody(req: IncomingMessage): Promise<Body> {
    if (req.method === "GET") {
      req.resume();
      return { model: undefined, body: EMPTY, bytes: 0 };
    }
    const body = await this.readJson(req);
    return { model: undefined, body, bytes: body.length };
  }

  private async multipartBody(req: IncomingMessage): Promise<Body> {
    const ctype = String(req.headers["content-type"] ?? "");
    if (!ctype.toLowerCase().startsWith("multipart/form-data")) {
      throw new HttpError(415, `unsupported Content-Type '${ctype}': expected multipart/form-data`);
    }
    const limit = this.d.config().limits.maxBodyBytes;
    const declared = Number(req.headers["content-length"] ?? 0);
    if (declared > limit) throw bodyTooLarge(`request body of ${declared} bytes`, limit);
    const it = (req as AsyncIterable<Buffer>)[Symbol.asyncIterator]();
    const head: Buffer[] = [];
    let size = 0;
    let ended = false;
    let model: string | undefined;
    while (size < MULTIPART_SNIFF_BYTES) {
      const r = await it.next();
      if (r.done) {
        ended = true;
        break;
      }
      head.push(r.value);
      size += r.value.length;
      const m = MODEL_FIELD.exec(Buffer.concat(head).toString("latin1"));
      if (m) {
        model = Buffer.from(m[1]!, "latin1").toString("utf8");
        break;
      }
    }
    let sent = 0;
    async function* chunks(): AsyncGenerator<Buffer> {
      for (const c of head) {
        sent += c.length;
        yield c;
      }
      if (ended) return;
      while (true) {
        const r = await it.next();
        if (r.done) return;
        sent += r.value.length;
        if (sent > limit) throw bodyTooLarge("request body", limit);
        yield r.value;
      }
    }
    return {
      model,
      body: Readable.from(chunks(), { objectMode: false }),
      bytes: declared > 0 ? declared : size,
    };
  }

  /**
   * The served model a request goes to: aliases resolved, the fleet's only model when optional. A
   * model the tenant may not use (its `models`, adapters private to others) is answered exactly as one
   * that does not exist.
   */
  private model(
    requested: string | undefined,
    optional: boolean,
    multipart: boolean,
    tenant: Tenant | undefined,
  ): string {
    const cfg = this.d.config();
    const model =
      requested !== undefined
        ? (aliasTarget(cfg.aliases, requested) ?? requested)
        : optional
          ? this.soleModel()
          : undefined;
    if (model === undefined) {
      throw multipart
        ? new HttpError(400, "the form needs a `model` field before the file part", "model")
        : new HttpError(400, "the request needs a `model` field", "model");
    }
    if (!this.d.registry.knowsModel(model))
      throw this.d.registry.modelsPending() ? modelsNotYetKnown(model) : modelNotFound(model);
    const adapters = this.d.registry.adapters?.registry;
    const named = requested ?? model;
    // as a name that exists nowhere: the name the client gave, and the same 503 while models are unknown
    if (!this.d.gate.mayUse(tenant, named, model, (n) => adapters?.privateTo(n)))
      throw this.d.registry.modelsPending() ? modelsNotYetKnown(named) : modelNotFound(named);
    return model;
  }

  /**
   * The model of a request that names none (a stored response's, or /version): the pinned response's
   * model, else the fleet's only one, else any engine's; 503 when no engine serves anything yet.
   */
  private anyModel(pinned: string | undefined): string {
    if (pinned) return pinned;
    const only = this.soleModel();
    if (only !== undefined) return only;
    for (const e of this.d.registry.engines.values())
      if (e.healthy && !e.draining) for (const m of e.view.models) return m;
    for (const e of this.d.registry.engines.values()) for (const m of e.view.models) return m;
    throw new HttpError(503, "no engine serves a model yet; retry later", null, { "retry-after": "1" });
  }

  /** Engines a request could go to: those serving `model` (any model when undefined), not draining. */
  private candidates(model: string | undefined): number {
    let n = 0;
    for (const e of this.d.registry.engines.values())
      if (!e.draining && (model === undefined || e.view.models.has(model))) n++;
    return n;
  }

  /** The only model name in the fleet, when there is exactly one. */
  private soleModel(): string | undefined {
    let only: string | undefined;
    for (const e of this.d.registry.engines.values()) {
      for (const m of e.view.models) {
        if (only === undefined) only = m;
        else if (only !== m) return undefined;
      }
    }
    return only;
  }

  /**
   * A generation request's session, by the tracker (agentic context, header, body field, Responses
   * chain, else inferred from the prompt); other requests' from the header or body field alone. Under
   * a policy that reads no session key, a generation request's is only what it names: the debug header
   * and response affinity still carry a named one, and no prompt is hashed for a key nobody reads.
   */
  private sessionKey(
    req: IncomingMessage,
    obj: Record<string, unknown> | undefined,
    ep: Endpoint,
    pinId: string | undefined,
    pinSession: string | undefined,
    now: number,
  ): string | undefined {
    const cfg = this.d.config();
    const s = cfg.session;
    const h = req.headers[s.header.toLowerCase()];
    const header = typeof h === "string" && h !== "" ? h : undefined;
    if (ep.counted !== "requests") {
      if (header !== undefined) return header;
      const v = s.bodyKey && obj ? obj[s.bodyKey] : undefined;
      return typeof v === "string" || typeof v === "number" ? String(v) : undefined;
    }
    // once per configuration (a reload replaces the object, the policy with it)
    if (cfg !== this.sessionConfig) {
      this.sessionConfig = cfg;
      this.tracking = policyReadsSessions(cfg.policy);
      // no longer tracked: held sessions would only sit there (and in the sessions gauge) until a
      // reload brings back a policy that reads them
      if (!this.tracking) this.sessions.clear();
      this.sessions.configure({
        maxSessions: s.maxSessions,
        idleMs: s.idleTimeout,
        agenticContext: s.agenticContext,
        bodyKey: s.bodyKey,
        responseChain: s.responseChain,
        infer: s.infer,
      });
    }
    const previousResponse =
      ep.pin === "previous-response-id" && pinId !== undefined
        ? { id: pinId, session: pinSession }
        : undefined;
    const named = { header, body: obj, previousResponse };
    return (this.tracking ? this.sessions.identify(named, now) : this.sessions.named(named))?.key;
  }
}

/** Validate: the JSON body's part of the pipeline once it is parsed. */
function jsonStep(path: string, body: Buffer, obj: Record<string, unknown>): Body {
  validateFields(path, obj);
  return { model: obj.model as string | undefined, body, bytes: body.length, parsed: obj };
}
