// Per-tenant limits on one replica: token buckets (buckets.ts) and an in-flight count per tenant,
// in a map bounded by a cap, with idle entries dropped once they are as good as fresh.
import { LruMap } from "../collections/lru-map.js";
import { HttpError } from "../http/errors.js";
import type { TenantLimits } from "./config.js";
import {
  check,
  fullBuckets,
  isFull,
  LIMIT_TEXT,
  MINUTE_MS,
  refill,
  settle,
  take,
  type Buckets,
  type Refusal,
} from "./buckets.js";

export interface Usage {
  promptTokens: number;
  completionTokens: number;
}

/** What admit hands back; record and release take it, so a reload in between changes nothing. */
export interface Grant {
  readonly tenant: string;
  /** prompt tokens reserved at admission (raised by `reserve` once the body is read), settled when usage is known */
  promptReserved: number;
  /** the limits it was admitted under (settling uses the same ones) */
  readonly limits: TenantLimits;
  /** set by record / release so each happens once */
  recorded: boolean;
  released: boolean;
}

export interface Limiter {
  /** Resolves with a grant, or rejects with an HttpError (429 over a limit, 503 store down + closed). */
  admit(tenant: string, limits: TenantLimits, promptEstimate: number): Promise<Grant>;
  /**
   * Raises an admitted request's prompt reservation to `promptEstimate` (its body read: a chunked
   * body declared no length at admission), checked as admission checks it: rejects with the 429 when
   * the tenant's prompt bucket could not have admitted that estimate, and then reserves nothing more.
   */
  reserve(grant: Grant, promptEstimate: number): Promise<void>;
  record(grant: Grant, usage: Usage): void;
  release(grant: Grant): void;
  close(): Promise<void>;
}

export function limitError(tenant: string, r: Refusal): HttpError {
  const secs = Math.max(1, Math.ceil(r.retryAfterMs / 1000));
  return new HttpError(
    429,
    `tenant '${tenant}' is over its ${LIMIT_TEXT[r.limit]} limit (${formatLimit(r.value)}); retry in ${secs} s`,
    null,
    { "retry-after": String(secs), "x-ratelimit-limit": r.limit },
  );
}

function formatLimit(v: number): string {
  return Number.isInteger(v) ? String(v) : v.toFixed(2);
}

interface TenantState extends Buckets {
  inFlight: number;
  lastUsed: number;
  /** the limits last applied, so a sweep can judge fullness without the config */
  limits: TenantLimits;
}

interface LocalGrant extends Grant {
  state: TenantState;
}

export interface LocalLimiterOptions {
  now?: () => number;
  /** states idle this long (and full, with nothing in flight) are dropped */
  idleEvictAfter?: number;
  /** hard cap on tenant states; the least recently used goes first */
  maxStates?: number;
}

export class LocalLimiter implements Limiter {
  /**
   * An LruMap, not a Map re-inserting a tenant on every request: each re-insert left a deleted slot
   * that dropping the oldest walked past (about 8 µs at 100,000 tenants) and that V8 rebuilt the whole
   * table to clear, on a request's path.
   */
  private readonly states = new LruMap<string, TenantState>();
  private readonly now: () => number;
  private idleEvictAfter: number;
  private maxStates: number;
  private lastSweep = 0;

  constructor(opts: LocalLimiterOptions = {}) {
    this.now = opts.now ?? Date.now;
    this.idleEvictAfter = opts.idleEvictAfter ?? 600_000;
    this.maxStates = opts.maxStates ?? 100_000;
  }

  setOptions(opts: { idleEvictAfter: number; maxStates: number }): void {
    this.idleEvictAfter = opts.idleEvictAfter;
    this.maxStates = opts.maxStates;
  }

  get size(): number {
    return this.states.size;
  }

  /** In-flight requests of a tenant on this replica (tests, metrics). */
  inFlight(tenant: string): number {
    return this.states.get(tenant)?.inFlight ?? 0;
  }

  admit(tenant: string, limits: TenantLimits, promptEstimate: number): Promise<Grant> {
    const r = this.admitNow(tenant, limits, promptEstimate);
    return r instanceof HttpError ? Promise.reject(r) : Promise.resolve(r);
  }

  /** Synchronous admit for callers on a hot path; returns the refusal instead of throwing. */
  admitNow(tenant: string, limits: TenantLimits, promptEstimate: number): Grant | HttpError {
    const now = this.now();
    this.maybeSweep(now);
    const s = this.state(tenant, limits, now);
    refill(s, limits, now);
    s.lastUsed = now;
    s.limits = limits;
    if (limits.maxConcurrent > 0 && s.inFlight >= limits.maxConcurrent)
      return limitError(tenant, {
        limit: "concurrent_requests",
        value: limits.maxConcurrent,
        retryAfterMs: 1000,
      });
    const refusal = check(s, limits, promptEstimate);
    if (refusal) return limitError(tenant, refusal);
    take(s, limits, promptEstimate);
    s.inFlight++;
    const g: LocalGrant = {
      tenant,
      promptReserved: promptEstimate,
      limits,
      recorded: false,
      released: false,
      state: s,
    };
    return g;
  }

  reserve(grant: Grant, promptEstimate: number): Promise<void> {
    const r = this.reserveNow(grant, promptEstimate);
    return r ? Promise.reject(r) : Promise.resolve();
  }

  /** Synchronous `reserve`: the refusal returned instead of thrown. */
  reserveNow(grant: Grant, promptEstimate: number): HttpError | undefined {
    const extra = promptEstimate - grant.promptReserved;
    const s = (grant as LocalGrant).state;
    if (extra <= 0 || !s || grant.recorded) return undefined;
    const l = grant.limits;
    const now = this.now();
    refill(s, l, now);
    const ptpm = l.promptTokensPerMinute;
    // as admission would have judged the whole estimate: what is reserved already counts as held
    const need = Math.min(promptEstimate, ptpm);
    if (ptpm > 0 && s.prompt + grant.promptReserved < need)
      return limitError(grant.tenant, {
        limit: "prompt_tokens_per_minute",
        value: ptpm,
        retryAfterMs: Math.ceil(((need - s.prompt - grant.promptReserved) * MINUTE_MS) / ptpm),
      });
    if (ptpm > 0) s.prompt -= extra;
    grant.promptReserved = promptEstimate;
    return undefined;
  }

  record(grant: Grant, usage: Usage): void {
    if (grant.recorded) return;
    grant.recorded = true;
    const s = (grant as LocalGrant).state;
    if (!s) return;
    const now = this.now();
    refill(s, grant.limits, now);
    settle(s, grant.limits, usage.promptTokens - grant.promptReserved, usage.completionTokens);
    s.lastUsed = now;
  }

  release(grant: Grant): void {
    if (grant.released) return;
    grant.released = true;
    const s = (grant as LocalGrant).state;
    // an evicted state is no longer in the map: decrementing it is harmless
    if (s && s.inFlight > 0) s.inFlight--;
  }

  async close(): Promise<void> {
    this.states.clear();
  }

  private state(tenant: string, limits: TenantLimits, now: number): TenantState {
    let s = this.states.use(tenant);
    if (s) return s;
    if (this.states.size >= this.maxStates) {
      this.sweep(now);
      while (this.states.size >= this.maxStates) this.states.shift();
    }
    s = { ...fullBuckets(limits, now), inFlight: 0, lastUsed: now, limits };
    this.states.add(tenant, s);
    return s;
  }

  private maybeSweep(now: number): void {
    if (now - this.lastSweep < Math.min(this.idleEvictAfter, 10_000)) return;
    this.lastSweep = now;
    this.sweep(now);
  }

  /** Drops states idle past the threshold with nothing in flight and buckets full again. */
  private sweep(now: number): void {
    for (const { key: tenant, value: s } of this.states.oldestFirst()) {
      if (now - s.lastUsed < this.idleEvictAfter) break; // LRU order: the rest are newer
      if (s.inFlight > 0) continue;
      refill(s, s.limits, now);
      if (isFull(s, s.limits)) this.states.delete(tenant);
    }
  }
}
