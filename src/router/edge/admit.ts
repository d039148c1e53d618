// Ingress step: admit (ingress.ts). The caller's own ids in an abort; the tenant's admission prepared
// (its cache_salt into the body before the routing view is built, fields only the router sets
// removed); the session a generation request belongs to; and the routed request
// (../request/routed-request.ts) the data plane takes on.
import type { IncomingMessage } from "node:http";
import { agenticContextOf, policyReadsSessions, SessionTracker } from "../../routing/index.js";
import { promptEstimate, type RouterGate } from "../../tenancy/router-gate.js";
import type { QueueAsk } from "../request/admission.js";
import type { RouterConfig } from "../config/config.js";
import type { Endpoint } from "../request/endpoints.js";
import type { RoutedRequest } from "../request/routed-request.js";
import { upstreamPath } from "../engines/upstream-rules.js";
import type { IssuedIds } from "../dataplane/issued-ids.js";
import { flowOf } from "./authenticate.js";
import type { Passage } from "./passage.js";

/** What admitting needs: the config, the tenancy gate, the token-in requests in flight by tenant. */
export interface AdmitNeeds {
  config: () => RouterConfig;
  gate: Pick<RouterGate, "prepare">;
  issued: IssuedIds;
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

export class Admit {
  /** which session each generation request belongs to (src/routing/sessions/session-identity.ts) */
  readonly sessions = new SessionTracker({ namespace: `${process.pid.toString(36)}.` });
  /** the configuration the tracker's options and `tracking` were last taken from */
  private sessionConfig: RouterConfig | undefined;
  /** the policy reads session keys: sessions are tracked (inferred, recorded), not only read off */
  private tracking = true;

  constructor(private readonly d: AdmitNeeds) {}

  /** An abort: only the caller's own requests in flight, by the ids their engines know them by; false when none. */
  ownAbortIds(p: Passage): boolean {
    const obj = p.body?.parsed;
    if (p.ep.abortIds !== "scoped" || obj === undefined || obj.request_ids == null) return true;
    const own = this.d.issued.scope(p.tenant?.name ?? "", obj.request_ids, p.tenant === undefined);
    if (own.length === 0) return false;
    obj.request_ids = own;
    p.mutated = true;
    return true;
  }

  run(p: Passage): RoutedRequest {
    const { req, ep, tenant, home, pinId } = p;
    const b = p.body!;
    const obj = b.parsed;
    const model = p.model!;
    const cfg = this.d.config();
    let admitted;
    if (p.admission) {
      // the tenant's cache_salt into the body before the routing view is built, so the KV-aware
      // policy hashes the blocks the engine will; fields only the router sets removed
      const path = ep.body === "multipart" ? p.url : p.path;
      admitted = this.d.gate.prepare(p.admission, path, obj, promptEstimate(b.bytes), { model });
      p.mutated ||= admitted.mutated;
    }
    const promptTokens = p.promptTokens;
    return {
      // only the query parameters vLLM reads on this route go on (../engines/upstream-rules.ts)
      path: upstreamPath(p.url, ep.query),
      endpoint: ep,
      method: req.method === "GET" ? "GET" : "POST",
      pin: home && pinId !== undefined ? { id: pinId, engine: home.engine } : undefined,
      model,
      stream: obj?.stream === true,
      sessionKey: this.sessionKey(req, obj, ep, pinId, home?.session, p.workBegan!),
      body: p.mutated ? Buffer.from(JSON.stringify(obj)) : b.body,
      parsed: obj,
      // with tenancy on, the client's key was the router's credential: it stops here
      clientAuthorization: tenant ? undefined : req.headers.authorization,
      tenant: admitted?.request,
      flow: flowOf(tenant),
      // a tenant above the default priority may take the room kept above each engine's cap
      headroom: tenant && tenant.priority > 0 ? cfg.admission.topBandHeadroom : undefined,
      queueAsk: ep.counted === "requests" && obj ? queueAskOf(obj, cfg) : undefined,
      generation: ep.counted === "requests",
      promptTokens: promptTokens && promptTokens.length > 0 ? promptTokens : undefined,
      workBegan: p.workBegan,
      sloTtftMs: p.slo,
    };
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
