// Disaggregated prefill/decode: vLLM's kv_transfer_params flow, orchestrated by the router. When a
// model has engines in a prefill pool and a decode pool, a chat/completions request is first prefilled
// (max_tokens 1, `do_remote_decode`) on a prefill engine, then the original request plus the returned
// params goes to a decode engine through the data plane's ordinary path (streamed, with its failover);
// with no prefill engine answering, the decode engine computes the prompt itself. Pools come from each
// engine's role. See docs/disaggregated.md.
import type { IncomingMessage, ServerResponse } from "node:http";
import { Counter, Histogram, type Registry as PromRegistry } from "prom-client";
import type { RequestView } from "../../routing/index.js";
import { HttpError } from "../../http/errors.js";
import { logger } from "../../obs/log.js";
import type { RetryBudget } from "../request/admission.js";
import type { RouterConfig } from "../config/config.js";
import type { EngineSpec } from "../../discovery/types.js";
import type { RoutedRequest } from "../request/routed-request.js";
import { endpointOf } from "../request/endpoints.js";
import type { EngineRegistry } from "../engines/engine-registry.js";
import type { EngineRecord } from "../engines/engine-record.js";
import { discard } from "../engines/engine-get.js";
import { engineErrorMessage, upstreamAuthorization } from "../engines/upstream-rules.js";
import { CancelledError } from "../../errors/index.js";

const log = logger("router.disagg");

export type EngineRole = "prefill" | "decode" | "both";
/** role values accepted in config and labels; `mixed` is the Helm chart's name for `both` */
export const ROLE_NAMES = ["prefill", "decode", "both", "mixed"] as const;

/** bound on a prefill answer (one token; echo or logprobs make it larger) */
const MAX_PREFILL_ANSWER = 8 * 2 ** 20;

/** An engine's role; absent or unknown roles serve whole requests ("both"). */
export function roleOf(spec: EngineSpec): EngineRole {
  const r = spec.role?.trim().toLowerCase();
  if (r === "prefill" || r === "decode") return r;
  return "both";
}

/** What the prefill step reads and changes of the data plane's per-request state. */
export interface DisaggContext {
  readonly pr: RoutedRequest;
  readonly view: RequestView;
  readonly requestId: string;
  readonly req: IncomingMessage;
  readonly res: ServerResponse;
  readonly clientGone: boolean;
  readonly totalTimedOut: boolean;
}

/** The data plane's machinery the prefill step borrows: picking under admission, and answering errors. */
export interface DisaggHooks {
  /** the client's headers for upstream, without Authorization (decided per engine) */
  headers: readonly string[];
  /** picks an engine among the view's non-excluded candidates and claims a slot (may queue) */
  acquire(): EngineRecord | Promise<EngineRecord>;
  release(e: EngineRecord): void;
  /** answers the client with an error (JSON, or an SSE error event once a stream began) */
  fail(e: HttpError): void;
}

export interface DisaggDeps {
  registry: EngineRegistry;
  config: () => RouterConfig;
  budget: RetryBudget;
  metrics: PromRegistry;
  /** the client may have the debug explanation (debug.allowHeader; the prefill engine's URL) */
  mayDebug: (req: IncomingMessage) => boolean;
}

type PrefillResult =
  | { kind: "params"; params: Record<string, unknown> }
  /** the engine answered 200 without kv_transfer_params (first token was EOS, or no connector) */
  | { kind: "none" }
  | { kind: "client-error"; error: HttpError }
  | { kind: "retry"; reason: string };

/** The body the prefill engine gets: one token, not streamed, asking to keep the KV for a decode engine. */
export function prefillBody(parsed: Record<string, unknown>, model: string): Record<string, unknown> {
  const body: Record<string, unknown> = { ...parsed, model, max_tokens: 1, stream: false };
  if ("max_completion_tokens" in body) body.max_completion_tokens = 1;
  // a stream option without stream is a 400, min_tokens above max_tokens too; one sample is enough
  delete body.stream_options;
  delete body.min_tokens;
  if ("n" in body) body.n = 1;
  body.kv_transfer_params = {
    do_remote_decode: true,
    do_remote_prefill: false,
    remote_engine_id: null,
    remote_block_ids: null,
    remote_host: null,
    remote_port: null,
  };
  return body;
}

/**
 * One prefill call on one engine, cut only by its timeout or the client leaving: an engine's ejection
 * never cuts a call it is still working on (see ../dataplane/attempt.ts).
 */
class PrefillCall {
  readonly abort = new AbortController();
  /** why the router cut the call: timeout, client_gone */
  why = "";
  stop(why: string, message: string): void {
    if (this.why) return;
    this.why = why;
    this.abort.abort(new CancelledError(message));
  }
}

export class Disaggregation {
  private readonly requests: Counter<"model" | "outcome">;
  private readonly attempts: Counter<"engine" | "result">;
  private readonly prefillSeconds: Histogram<"model">;
  /** prefill-role engines as of the snapshot array `views` (see prefillEngines) */
  private readonly roles: { views: unknown; at: number; prefill: EngineRecord[] } = {
    views: null,
    at: 0,
    prefill: [],
  };

  constructor(private readonly d: DisaggDeps) {
    const registers = [d.metrics];
    this.requests = new Counter({
      name: "switchyard_disagg_requests_total",
      help:
        "Requests that ran the prefill/decode flow, by outcome: transferred (decode got the KV params), " +
        "no_params (prefill answered without them), fallback (no prefill engine answered; decode computed " +
        "the prompt), client_error (prefill's 4xx relayed), aborted (client gone or total timeout)",
      labelNames: ["model", "outcome"],
      registers,
    });
    this.attempts = new Counter({
      name: "switchyard_disagg_prefill_attempts_total",
      help: "Prefill calls per engine, by result: ok, client_error, or the failover reason",
      labelNames: ["engine", "result"],
      registers,
    });
    this.prefillSeconds = new Histogram({
      name: "switchyard_disagg_prefill_seconds",
      help: "Time from arrival to the prefill step's answer (failovers included)",
      labelNames: ["model"],
      buckets: [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 40, 80],
      registers,
    });
  }

  /**
   * Prefill-role engines, recomputed when the engine set changes (a new snapshot array) or at most a
   * second later (a hot reload may change a known engine's role in place), so that a fleet without
   * prefill engines pays one comparison per request.
   */
  private prefillEngines(): readonly EngineRecord[] {
    const views = this.d.registry.snapshot();
    const now = performance.now();
    const c = this.roles;
    if (c.views !== views || now - c.at > 1000) {
      c.views = views;
      c.at = now;
      c.prefill = [];
      for (const e of this.d.registry.engines.values())
        if (!e.draining && roleOf(e.spec) === "prefill") c.prefill.push(e);
    }
    return c.prefill;
  }

  /** True when this request should run the two-step flow. */
  applies(pr: RoutedRequest): boolean {
    const prefill = this.prefillEngines();
    if (prefill.length === 0) return false;
    // the paths that run the two-step flow are the endpoint table's (vLLM's P/D proxies handle two)
    if (!pr.parsed || !Buffer.isBuffer(pr.body) || !(pr.endpoint ?? endpointOf(pr.path))?.disagg)
      return false;
    // a client (or another proxy) already speaking the protocol is passed through untouched
    if (pr.parsed.kv_transfer_params !== undefined && pr.parsed.kv_transfer_params !== null) return false;
    const usable = (e: EngineRecord) =>
      !e.draining && e.view.healthy && e.view.weight > 0 && e.view.models.has(pr.model);
    if (!prefill.some(usable)) return false;
    for (const e of this.d.registry.engines.values())
      if (roleOf(e.spec) !== "prefill" && usable(e)) return true;
    return false;
  }

  /**
   * Runs the prefill step and readies the decode step: on return the request's body carries the
   * params and its candidates are the decode pool. Returns true when the request is finished
   * (answered with an error, or the client left), false when the data plane should send the decode step.
   */
  async prefill(ctx: DisaggContext, hooks: DisaggHooks): Promise<boolean> {
    const started = performance.now();
    const model = ctx.pr.model;
    const cfg = this.d.config();
    const parsed = ctx.pr.parsed!;
    const body = Buffer.from(JSON.stringify(prefillBody(parsed, model)));
    // the prefill pick sees only prefill engines; the decode pick (the attempts loop) only the others
    const notPrefill = new Set<string>();
    const prefillOnly = new Set<string>();
    for (const e of this.d.registry.engines.values())
      (roleOf(e.spec) === "prefill" ? prefillOnly : notPrefill).add(e.url);
    ctx.view.exclude = notPrefill;

    let outcome: PrefillResult = { kind: "retry", reason: "no prefill engine" };
    for (let attempt = 1; ; attempt++) {
      let engine: EngineRecord;
      try {
        engine = await hooks.acquire();
      } catch (err) {
        if (ctx.clientGone || ctx.totalTimedOut) return this.aborted(model);
        outcome = { kind: "retry", reason: `no prefill engine: ${(err as Error).message}` };
        break;
      }
      try {
        outcome = await this.call(ctx, engine, body, hooks.headers, cfg);
      } finally {
        hooks.release(engine);
      }
      this.attempts.inc({
        engine: engine.url,
        result:
          outcome.kind === "retry" ? outcome.reason : outcome.kind === "client-error" ? "client_error" : "ok",
      });
      if (ctx.clientGone || ctx.totalTimedOut) return this.aborted(model);
      if (outcome.kind !== "retry") {
        if (!ctx.res.headersSent && this.d.mayDebug(ctx.req))
          ctx.res.setHeader("x-switchyard-prefill", `engine=${engine.url}`);
        break;
      }
      notPrefill.add(engine.url);
      if (attempt >= cfg.retry.maxAttempts || !this.d.budget.tryRetry()) break;
      log.debug({ engine: engine.url, reason: outcome.reason, requestId: ctx.requestId }, "prefill failover");
    }
    this.prefillSeconds.observe({ model }, (performance.now() - started) / 1000);

    // the decode step: every engine but the prefill-only ones
    ctx.view.exclude = prefillOnly;
    switch (outcome.kind) {
      case "client-error":
        this.requests.inc({ model, outcome: "client_error" });
        hooks.fail(outcome.error);
        return true;
      case "params":
        this.requests.inc({ model, outcome: "transferred" });
        ctx.pr.body = Buffer.from(JSON.stringify({ ...parsed, model, kv_transfer_params: outcome.params }));
        return false;
      case "none":
        this.requests.inc({ model, outcome: "no_params" });
        return false;
      case "retry":
        this.requests.inc({ model, outcome: "fallback" });
        log.warn(
          { model, reason: outcome.reason, requestId: ctx.requestId },
          "no prefill engine answered: the decode engine computes the prompt",
        );
        return false;
    }
  }

  private aborted(model: string): true {
    this.requests.inc({ model, outcome: "aborted" });
    return true;
  }

  private async call(
    ctx: DisaggContext,
    engine: EngineRecord,
    body: Buffer,
    base: readonly string[],
    cfg: RouterConfig,
  ): Promise<PrefillResult> {
    const headers = [...base];
    let typed = false;
    for (let i = 0; i < headers.length; i += 2)
      if (headers[i]!.toLowerCase() === "content-type") typed = true;
    if (!typed) headers.push("content-type", "application/json");
    const auth = upstreamAuthorization(engine.spec, cfg, ctx.pr.clientAuthorization);
    if (auth !== undefined) headers.push("authorization", auth);
    const call = new PrefillCall();
    const onClose = () => {
      if (!ctx.res.writableFinished) call.stop("client_gone", "client went away");
    };
    ctx.res.once("close", onClose);
    const timer = setTimeout(
      () => call.stop("timeout", `no prefill answer within ${cfg.timeouts.firstByte} ms`),
      cfg.timeouts.firstByte,
    );
    const reg = this.d.registry;
    try {
      const res = await engine.pool.request({
        path: ctx.pr.path,
        method: "POST",
        headers,
        body,
        signal: call.abort.signal,
      });
      let size = 0;
      const chunks: Buffer[] = [];
      for await (const chunk of res.body as AsyncIterable<Buffer>) {
        // the engine makes progress: the health checker reads this (../engines/health.ts)
        engine.lastByteAt = performance.now();
        size += chunk.length;
        if (size > MAX_PREFILL_ANSWER) {
          discard(res.body);
          reg.reportFailure(engine, "prefill answer too large");
          return { kind: "retry", reason: "answer_too_large" };
        }
        chunks.push(chunk);
      }
      const text = Buffer.concat(chunks, size).toString("utf8");
      const status = res.statusCode;
      if (status === 200) {
        reg.reportSuccess(engine);
        let doc: { kv_transfer_params?: unknown };
        try {
          doc = JSON.parse(text) as { kv_transfer_params?: unknown };
        } catch {
          reg.reportFailure(engine, "prefill answer is not JSON");
          return { kind: "retry", reason: "bad_answer" };
        }
        const p = doc.kv_transfer_params;
        return p && typeof p === "object" && !Array.isArray(p)
          ? { kind: "params", params: p as Record<string, unknown> }
          : { kind: "none" };
      }
      if (status >= 500 || status === 408 || status === 429) {
        if (status >= 500) reg.reportFailure(engine, `answered ${status}`);
        return { kind: "retry", reason: `status_${status}` };
      }
      reg.reportSuccess(engine);
      const { message, param } = engineErrorMessage(text, status);
      return { kind: "client-error", error: new HttpError(status, message, param) };
    } catch (err) {
      const e = err as Error & { code?: string };
      if (call.why) return { kind: "retry", reason: call.why };
      reg.reportFailure(engine, `${e.code ?? "error"}: ${e.message}`);
      return { kind: "retry", reason: `transport_${e.code ?? "error"}` };
    } finally {
      clearTimeout(timer);
      ctx.res.off("close", onClose);
    }
  }
}
