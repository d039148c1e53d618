// Tenant limits without Redis, for a router process group: the replica's share of each limit is one
// budget, not one per worker (a client on one keep-alive connection stays on one worker, and would
// otherwise get a fraction of its limit; many clients would get several times it). The primary keeps
// the budget in the same LocalLimiter a lone router uses and each worker asks it: one IPC round
// trip per admission, as a Redis-backed limiter makes one network round trip. With Redis, workers
// talk to Redis themselves and this is not used.
import { HttpError } from "../../http/errors.js";
import type { TenantLimits } from "../../tenancy/config.js";
import { LocalLimiter, type Grant, type Limiter, type Usage } from "../../tenancy/limiter.js";

/** worker → primary */
export type LimitRequest =
  | { t: "limit-admit"; id: number; tenant: string; limits: TenantLimits; estimate: number }
  | { t: "limit-reserve"; id: number; grant: number; estimate: number }
  | { t: "limit-record"; grant: number; usage: Usage }
  | { t: "limit-release"; grant: number };

/** primary → worker */
export interface LimitAnswer {
  t: "limit-answer";
  id: number;
  grant?: number;
  refusal?: { status: number; message: string; headers: Record<string, string> };
}

interface GroupGrant extends Grant {
  id: number;
}

const ANSWER_TIMEOUT_MS = 5_000;

/** A worker's limiter: every decision is the primary's. */
export class GroupLimiter implements Limiter {
  private seq = 0;
  private readonly waiting = new Map<number, (a: LimitAnswer) => void>();

  constructor(private readonly send: (m: LimitRequest) => void) {}

  /** The primary raises the reservation (a body read without a declared length), or answers its 429. */
  reserve(grant: Grant, estimate: number): Promise<void> {
    if (estimate <= grant.promptReserved || grant.recorded) return Promise.resolve();
    const id = ++this.seq;
    return new Promise<void>((resolve, reject) => {
      const t = setTimeout(() => {
        this.waiting.delete(id);
        // the primary did not answer: the request keeps its admission (usage settles it)
        resolve();
      }, ANSWER_TIMEOUT_MS);
      this.waiting.set(id, (a) => {
        clearTimeout(t);
        if (a.refusal) reject(new HttpError(a.refusal.status, a.refusal.message, null, a.refusal.headers));
        else {
          grant.promptReserved = estimate;
          resolve();
        }
      });
      this.send({ t: "limit-reserve", id, grant: (grant as GroupGrant).id, estimate });
    });
  }

  admit(tenant: string, limits: TenantLimits, estimate: number): Promise<Grant> {
    const id = ++this.seq;
    return new Promise<Grant>((resolve, reject) => {
      const t = setTimeout(() => {
        this.waiting.delete(id);
        reject(
          new HttpError(503, "the router's limit keeper did not answer; retry", null, { "retry-after": "1" }),
        );
      }, ANSWER_TIMEOUT_MS);
      this.waiting.set(id, (a) => {
        clearTimeout(t);
        if (a.grant !== undefined) {
          const g: GroupGrant = {
            id: a.grant,
            tenant,
            promptReserved: estimate,
            limits,
            recorded: false,
            released: false,
          };
          resolve(g);
        } else {
          const r = a.refusal ?? { status: 503, message: "refused", headers: {} };
          reject(new HttpError(r.status, r.message, null, r.headers));
        }
      });
      this.send({ t: "limit-admit", id, tenant, limits, estimate });
    });
  }

  /** The primary's answer to an admission. */
  answer(a: LimitAnswer): void {
    const done = this.waiting.get(a.id);
    this.waiting.delete(a.id);
    done?.(a);
  }

  record(grant: Grant, usage: Usage): void {
    if (grant.recorded) return;
    grant.recorded = true;
    this.send({ t: "limit-record", grant: (grant as GroupGrant).id, usage });
  }

  release(grant: Grant): void {
    if (grant.released) return;
    grant.released = true;
    this.send({ t: "limit-release", grant: (grant as GroupGrant).id });
  }

  async close(): Promise<void> {
    for (const done of this.waiting.values()) done({ t: "limit-answer", id: 0 });
    this.waiting.clear();
  }
}

/** The primary's side: one LocalLimiter for the replica, grants remembered per worker until released. */
export class LimitKeeper {
  private readonly local = new LocalLimiter();
  private seq = 0;
  /** grant id → the grant and the worker holding it */
  private readonly grants = new Map<number, { grant: Grant; worker: number }>();

  handle(worker: number, m: LimitRequest): LimitAnswer | undefined {
    if (m.t === "limit-admit") {
      const r = this.local.admitNow(m.tenant, m.limits, m.estimate);
      if (r instanceof HttpError)
        return {
          t: "limit-answer",
          id: m.id,
          refusal: { status: r.status, message: r.message, headers: r.headers },
        };
      const id = ++this.seq;
      this.grants.set(id, { grant: r, worker });
      return { t: "limit-answer", id: m.id, grant: id };
    }
    const held = this.grants.get(m.grant);
    if (m.t === "limit-reserve") {
      const r = held ? this.local.reserveNow(held.grant, m.estimate) : undefined;
      return r
        ? {
            t: "limit-answer",
            id: m.id,
            refusal: { status: r.status, message: r.message, headers: r.headers },
          }
        : { t: "limit-answer", id: m.id, grant: m.grant };
    }
    if (!held) return undefined;
    if (m.t === "limit-record") this.local.record(held.grant, m.usage);
    else {
      this.local.release(held.grant);
      this.grants.delete(m.grant);
    }
    return undefined;
  }

  /** A worker exited: the requests it held are over, their slots free. */
  releaseAll(worker: number): void {
    for (const [id, g] of this.grants) {
      if (g.worker !== worker) continue;
      this.local.release(g.grant);
      this.grants.delete(id);
    }
  }

  setOptions(o: { idleEvictAfter: number; maxStates: number }): void {
    this.local.setOptions(o);
  }
}
