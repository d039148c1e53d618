// Where a request goes: the policy's pick under admission (at once when an engine has room, else
// after waiting in the bounded queue), a pinned request's one engine, panic mode when none of the
// model's engines is in rotation, a registry adapter's pick by the LoRA placement; the slot on the
// pick taken and freed through one SlotClaims (slot-claims.ts): a lone router's are the registry's
// slots, a router worker's (../cluster/worker-claims.ts) claims its primary confirms, a refused one
// decided again through the PickHost here. Also the engines' count of requests awaiting a first
// token that will not stream (`unstreamed`).
import {
  createPolicy,
  decide,
  retryAfterSeconds,
  type CacheOracle,
  type Decision,
  type EngineView,
  type Policy,
} from "../../routing/index.js";
import { createLoraPolicy, createLoraPolicyByName } from "../../routing/lora.js";
import { HttpError } from "../../http/errors.js";
import type { AdmissionQueue } from "../request/admission.js";
import type { RouterConfig } from "../config/config.js";
import type { EngineRegistry } from "../engines/engine-registry.js";
import type { EngineRecord } from "../engines/engine-record.js";
import { modelNotFound } from "../request/routed-request.js";
import { LoneSlotClaims, type PickHost, type SlotClaims, type SlotClaimsFactory } from "./slot-claims.js";
import type { RequestContext } from "./request-context.js";
import { responseNotFound } from "./response-affinity.js";

export interface PickDeps {
  registry: EngineRegistry;
  queue: AdmissionQueue;
  config: () => RouterConfig;
  policy: () => Policy;
  /** what the LoRA placement prices a candidate's cached prefix of an adapter's prompt by */
  loraCache?: CacheOracle | undefined;
}

export class EnginePicks {
  /** what the claims side calls to decide a request again */
  private readonly host: PickHost<RequestContext> = {
    acquire: (ctx, word) => this.acquire(ctx, word),
    unpick: (ctx, e) => this.unpick(ctx, e),
  };
  /** slots on the policy's picks: a lone router's, or a router worker's claims (useClaims) */
  private claims: SlotClaims<RequestContext>;
  /** the LoRA placement for registry adapters, made on the first such request */
  private loraPolicy: Policy | undefined;

  constructor(private readonly d: PickDeps) {
    this.claims = new LoneSlotClaims(d.registry, this.host);
  }

  /** Who confirms the picks: `make`'s claims (a router worker's), or none (a lone router). */
  useClaims(make: SlotClaimsFactory | undefined): void {
    this.claims = make ? make(this.host) : new LoneSlotClaims(this.d.registry, this.host);
  }

  /** A pick that must stand first (the prefill step's): the claims' own way of taking it. */
  standing(ctx: RequestContext): EngineRecord | Promise<EngineRecord> {
    return this.claims.standing(ctx);
  }

  /**
   * Picks an engine and claims a slot on it. Synchronous when an engine has room (the common case:
   * no promise, no microtask); a promise only when every candidate is at its cap and it queues.
   * `word`: the claims' own token for a pick that must stand first (SlotClaims.standing).
   */
  acquire(ctx: RequestContext, word?: object): EngineRecord | Promise<EngineRecord> {
    const reg = this.d.registry;
    const now = performance.now();
    const pin = ctx.pr.pin;
    if (pin !== undefined) {
      // the engine holding the response, or nobody: another would answer without the history
      const e = reg.engines.get(pin.engine);
      if (!e || e.draining || !e.healthy || ctx.view.exclude?.has(e.url)) throw responseNotFound(pin.id);
      reg.takeSlot(e, now);
      return e;
    }
    const dec = decide(this.policyFor(ctx), ctx.view, { engines: reg.snapshot(), now });
    if (dec.kind === "picked") {
      const e = reg.engines.get(dec.engine.id)!;
      // a router worker's load-aware pick may await its group's word (ctx.claim): the request goes out
      // meanwhile, its answer held (Attempt), and one refused is taken back and decided again (run)
      this.claims.take(e, ctx, now, word);
      return e;
    }
    if (dec.kind === "unknown-model") throw modelNotFound(ctx.pr.model);
    if (dec.kind === "unavailable") return this.panicPick(ctx);
    if (dec.kind === "over-slo" && this.d.config().slo.onMiss === "reject") throw overSlo(dec);
    return this.queueForSlot(ctx);
  }

  /** A refused pick let go of: its claim and slot freed, and the policy forgets it (its prefill ledger). */
  private unpick(ctx: RequestContext, e: EngineRecord): void {
    this.releaseSlot(e, ctx);
    this.policyFor(ctx).onUnpicked?.(ctx.view, e.view);
  }

  /**
   * No engine in rotation can take the request. When that is because none of the model's engines is
   * in rotation at all (every one ejected or never admitted), route among them anyway: panic mode,
   * as Envoy does below its panic threshold. Otherwise (the ones in rotation were tried) it is a 503.
   */
  private panicPick(ctx: RequestContext): EngineRecord {
    const reg = this.d.registry;
    const model = ctx.pr.model;
    const views: EngineView[] | undefined = reg.panicViews(model);
    if (views) {
      const now = performance.now();
      const dec = decide(this.policyFor(ctx), ctx.view, { engines: views, now });
      const e = dec.kind === "picked" ? reg.engines.get(dec.engine.id) : undefined;
      if (e) {
        reg.takeSlot(e, now);
        if (!ctx.panicked) {
          ctx.panicked = true;
          reg.notePanic(model);
        }
        return e;
      }
    }
    throw new HttpError(503, `no ready engine serves the model \`${model}\` right now; retry later`, null, {
      "retry-after": "1",
    });
  }

  /** Saturated (or over its SLO, queueing): waits in the bounded queue for room. */
  private async queueForSlot(ctx: RequestContext): Promise<EngineRecord> {
    const reg = this.d.registry;
    let picked: EngineRecord | undefined;
    const tryAcquire = (): boolean => {
      const now = performance.now();
      const dec = decide(this.policyFor(ctx), ctx.view, { engines: reg.snapshot(), now });
      if (dec.kind !== "picked") return false;
      const e = reg.engines.get(dec.engine.id);
      if (!e) return false;
      reg.takeSlot(e, now);
      picked = e;
      return true;
    };
    const since = performance.now();
    try {
      await this.d.queue.wait(tryAcquire, ctx.queueSignal(), ctx.pr.flow, ctx.pr.queueAsk);
    } catch (err) {
      // timed out, refused or its client gone while held: it ranks among the waiting no more
      this.policyFor(ctx).onLeftQueue?.(ctx.view);
      throw err;
    } finally {
      ctx.queuedMs += performance.now() - since;
    }
    return picked!;
  }

  /**
   * A non-streamed answer's first byte comes with its last, so its engine's count of requests awaiting a
   * first token holds it all along: `unstreamed` says how many of those it holds (late binding leaves
   * them out). `e`: the attempt now counted on that engine; undefined: none (answered, or ended).
   */
  countUnstreamed(ctx: RequestContext, e: EngineRecord | undefined): void {
    const was = ctx.unstreamedOn;
    if (was === e) return;
    if (was?.view.unstreamed) was.view.unstreamed--;
    ctx.unstreamedOn = e;
    if (e) e.view.unstreamed = (e.view.unstreamed ?? 0) + 1;
  }

  /**
   * The request's slot on `e` is free (a claim of its still out is withdrawn with it). `answered`:
   * the attempt's first byte reached the client (and firstToken was told then).
   */
  releaseSlot(e: EngineRecord, ctx: RequestContext, answered = false): void {
    if (ctx.loraEngine === e.url) {
      ctx.loraEngine = undefined;
      this.d.registry.adapters?.noteDone(e, ctx.view.lora!.name);
    }
    this.claims.free(e, ctx, answered);
    this.d.queue.kick(1);
  }

  /**
   * The policy that places a request: a registry adapter's by the LoRA placement (src/routing/lora.ts),
   * which prices where the adapter is loaded and what loading it costs; every other by the router's
   */
  policyFor(ctx: RequestContext): Policy {
    return ctx.view.lora ? (this.loraPolicy ??= this.makeLoraPolicy()) : this.d.policy();
  }

  /** the configured placement (`lora.policy`): ours, priced with the cache oracle, or a baseline */
  private makeLoraPolicy(): Policy {
    const name = this.d.config().lora?.policy ?? "lora";
    if (name === "lora") return createLoraPolicy({ cache: this.d.loraCache });
    if (name === "round-robin") return createPolicy("round-robin");
    return createLoraPolicyByName(name);
  }
}

/** 429 for a request no engine is predicted to start within its TTFT SLO */
export class OverSloError extends HttpError {}
function overSlo(d: Extract<Decision, { kind: "over-slo" }>): HttpError {
  return new OverSloError(
    429,
    `no engine is predicted to serve the first token within the request's TTFT SLO of ${Math.round(d.sloTtftMs)} ms (best: ${Math.round(d.predictedTtftMs)} ms); retry later`,
    null,
    { "retry-after": String(retryAfterSeconds(d.retryAfterMs)) },
  );
}
