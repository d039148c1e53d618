// Limits shared by every router replica: the bucket arithmetic of buckets.ts as Lua, run atomically
// in Redis with Redis's own clock (replicas' clocks may disagree). Concurrency is a sorted set of
// leases scored by expiry, so a replica that dies without releasing loses its slots after leaseTtl
// instead of forever. When Redis fails, `onError: open` hands the request to the local limiter with
// the per-replica split; `closed` answers 503. A tenant without limits never asks Redis, so it is
// served whatever the store's state. A release that fails (Redis unreachable for a moment) is kept
// and retried every second: without that, a blip of a second would cost the tenant that slot until
// its lease expired (leaseTtl, an hour by default), on every replica.
import { randomBytes } from "node:crypto";
import { createHash } from "node:crypto";
import { HttpError } from "../http/errors.js";
import { logger } from "../obs/log.js";
import type { TenantLimits } from "./config.js";
import { splitLimits, type LimitName } from "./buckets.js";
import { LocalLimiter, limitError, type Grant, type Limiter, type Usage } from "./limiter.js";
import { RedisConnection } from "./redis-connection.js";
import { PeerError } from "../errors/index.js";

const log = logger("tenancy");

// Pieces both scripts share: Redis's clock and the three limits (ARGV 1-3); the token buckets of
// KEYS[1] refilled to `now`; the buckets saved with an expiry once they would be full again.
const NOW = `local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local rpm, ptpm, ctpm = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
`;
const REFILL = `local h = redis.call('HMGET', KEYS[1], 'rq', 'pt', 'ct', 'ts')
local ts = tonumber(h[4]) or now
local el = now - ts
if el < 0 then el = 0 end
local function lvl(v, cap)
  if cap <= 0 then return 0 end
  local x = tonumber(v)
  if x == nil then return cap end
  x = x + el * cap / 60000
  if x > cap then x = cap end
  return x
end
local rq, pt, ct = lvl(h[1], rpm), lvl(h[2], ptpm), lvl(h[3], ctpm)
`;
const SAVE = `redis.call('HSET', KEYS[1], 'rq', tostring(rq), 'pt', tostring(pt), 'ct', tostring(ct), 'ts', now)
local full = 1000
if rpm > 0 then full = math.max(full, (rpm - rq) * 60000 / rpm) end
if ptpm > 0 then full = math.max(full, (ptpm - pt) * 60000 / ptpm) end
if ctpm > 0 then full = math.max(full, (ctpm - ct) * 60000 / ctpm) end
redis.call('PEXPIRE', KEYS[1], math.ceil(full) + 1000)
`;

// KEYS[1] buckets hash, KEYS[2] lease zset.
// ARGV: rpm ptpm ctpm maxConcurrent promptEstimate leaseId leaseTtlMs
const ADMIT = `
${NOW}local maxc, est, ttl = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[7])
${REFILL}if maxc > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
  if redis.call('ZCARD', KEYS[2]) >= maxc then return {1, 1000} end
end
if rpm > 0 and rq < 1 then return {2, math.ceil((1 - rq) * 60000 / rpm)} end
local need = math.min(est, ptpm)
if ptpm > 0 and pt < need then return {3, math.ceil((need - pt) * 60000 / ptpm)} end
local cneed = math.min(1, ctpm)
if ctpm > 0 and ct < cneed then return {4, math.ceil((cneed - ct) * 60000 / ctpm)} end
if rpm > 0 then rq = rq - 1 end
if ptpm > 0 then pt = pt - est end
${SAVE}if maxc > 0 then
  redis.call('ZADD', KEYS[2], now + ttl, ARGV[6])
  redis.call('PEXPIRE', KEYS[2], ttl)
end
return {0, 0}
`;

// KEYS[1] buckets hash. ARGV: rpm ptpm ctpm promptDelta completion
const RECORD = `
${NOW}local dp, dc = tonumber(ARGV[4]), tonumber(ARGV[5])
${REFILL}if ptpm > 0 then pt = math.min(ptpm, pt - dp) end
if ctpm > 0 then ct = math.min(ctpm, ct - dc) end
${SAVE}return 0
`;

// KEYS[1] buckets hash. ARGV: rpm ptpm ctpm extra total: the prompt reservation raised by extra to
// total, refused as ADMIT refuses an estimate of total (what is reserved already counts as held)
const RESERVE = `
${NOW}local extra, total = tonumber(ARGV[4]), tonumber(ARGV[5])
${REFILL}local need = math.min(total, ptpm)
local held = total - extra
if ptpm > 0 and pt + held < need then return {3, math.ceil((need - pt - held) * 60000 / ptpm)} end
if ptpm > 0 then pt = pt - extra end
${SAVE}return {0, 0}
`;

function hasLimits(l: TenantLimits): boolean {
  return (
    l.requestsPerMinute > 0 ||
    l.promptTokensPerMinute > 0 ||
    l.completionTokensPerMinute > 0 ||
    l.maxConcurrent > 0
  );
}

const REFUSAL: Record<number, LimitName> = {
  1: "concurrent_requests",
  2: "requests_per_minute",
  3: "prompt_tokens_per_minute",
  4: "completion_tokens_per_minute",
};

class Script {
  readonly sha: string;
  constructor(readonly body: string) {
    this.sha = createHash("sha1").update(body).digest("hex");
  }
}

const admitScript = new Script(ADMIT);
const recordScript = new Script(RECORD);
const reserveScript = new Script(RESERVE);

/** failed releases kept for retry; beyond this the oldest is left to expire with its lease */
const MAX_UNRELEASED = 4096;
const RELEASE_RETRY_MS = 1000;

interface RedisGrant extends Grant {
  leaseId: string | undefined;
  /** set when the grant came from the fallback limiter */
  local?: Grant;
}

export interface RedisLimiterOptions {
  url: string;
  /** the password apart from the URL (tenancy.redis.passwordFile or $SWITCHYARD_REDIS_PASSWORD) */
  password?: string | undefined;
  prefix: string;
  onError: "open" | "closed";
  timeout: number;
  leaseTtl: number;
  /** sizes the fallback used while Redis is failing */
  replicas: number;
  fallback?: Limiter;
}

export class RedisLimiter implements Limiter {
  private readonly client: RedisConnection;
  readonly fallback: Limiter;
  private lastErrorLog = 0;
  /** Redis failures seen (tests, metrics) */
  errors = 0;
  /** lease id → lease key of releases Redis did not confirm, in the order they failed */
  private readonly unreleased = new Map<string, string>();
  private retryTimer: NodeJS.Timeout | undefined;
  private closed = false;

  constructor(private opts: RedisLimiterOptions) {
    this.client = new RedisConnection({ url: opts.url, password: opts.password, timeout: opts.timeout });
    this.fallback = opts.fallback ?? new LocalLimiter();
  }

  /** Options other than the connection (url) can change on reload. */
  setOptions(o: Pick<RedisLimiterOptions, "prefix" | "onError" | "timeout" | "leaseTtl" | "replicas">): void {
    this.opts = { ...this.opts, ...o };
  }

  get url(): string {
    return this.opts.url;
  }

  get password(): string | undefined {
    return this.opts.password;
  }

  async admit(tenant: string, limits: TenantLimits, promptEstimate: number): Promise<Grant> {
    if (!hasLimits(limits)) {
      // nothing to count: no round trip, and no 503 for this tenant while the store is down
      const free: RedisGrant = {
        tenant,
        promptReserved: promptEstimate,
        limits,
        recorded: false,
        released: false,
        leaseId: undefined,
      };
      return free;
    }
    const leaseId = limits.maxConcurrent > 0 ? randomBytes(12).toString("base64url") : undefined;
    let reply: unknown;
    try {
      reply = await this.eval(
        admitScript,
        [this.bucketsKey(tenant), this.leaseKey(tenant)],
        [
          limits.requestsPerMinute,
          limits.promptTokensPerMinute,
          limits.completionTokensPerMinute,
          limits.maxConcurrent,
          promptEstimate,
          leaseId ?? "-",
          Math.max(1000, Math.round(this.opts.leaseTtl)),
        ],
      );
    } catch (err) {
      return this.onFailure(err as Error, tenant, limits, promptEstimate);
    }
    if (!Array.isArray(reply) || typeof reply[0] !== "number")
      return this.onFailure(
        new PeerError("unexpected reply to the admit script"),
        tenant,
        limits,
        promptEstimate,
      );
    const code = reply[0];
    if (code !== 0) {
      const limit = REFUSAL[code]!;
      const value =
        limit === "concurrent_requests"
          ? limits.maxConcurrent
          : limit === "requests_per_minute"
            ? limits.requestsPerMinute
            : limit === "prompt_tokens_per_minute"
              ? limits.promptTokensPerMinute
              : limits.completionTokensPerMinute;
      throw limitError(tenant, { limit, value, retryAfterMs: Number(reply[1]) });
    }
    const g: RedisGrant = {
      tenant,
      promptReserved: promptEstimate,
      limits,
      recorded: false,
      released: false,
      leaseId,
    };
    return g;
  }

  async reserve(grant: Grant, promptEstimate: number): Promise<void> {
    const extra = promptEstimate - grant.promptReserved;
    if (extra <= 0 || grant.recorded) return;
    const g = grant as RedisGrant;
    if (g.local) {
      await this.fallback.reserve(g.local, promptEstimate);
      grant.promptReserved = promptEstimate;
      return;
    }
    const l = grant.limits;
    if (l.promptTokensPerMinute <= 0) {
      grant.promptReserved = promptEstimate;
      return;
    }
    let reply: unknown;
    try {
      reply = await this.eval(
        reserveScript,
        [this.bucketsKey(grant.tenant)],
        [l.requestsPerMinute, l.promptTokensPerMinute, l.completionTokensPerMinute, extra, promptEstimate],
      );
    } catch (err) {
      // the store failed after admitting: the request keeps its admission (usage settles it later)
      this.logError("reserve", err as Error);
      if (this.opts.onError === "closed")
        throw new HttpError(503, "the rate-limit store is unreachable; retry later", null, {
          "retry-after": "1",
        });
      return;
    }
    if (Array.isArray(reply) && reply[0] === 3)
      throw limitError(grant.tenant, {
        limit: "prompt_tokens_per_minute",
        value: l.promptTokensPerMinute,
        retryAfterMs: Number(reply[1]),
      });
    grant.promptReserved = promptEstimate;
  }

  record(grant: Grant, usage: Usage): void {
    if (grant.recorded) return;
    const g = grant as RedisGrant;
    if (g.local) {
      grant.recorded = true;
      return this.fallback.record(g.local, usage);
    }
    grant.recorded = true;
    const l = grant.limits;
    if (l.promptTokensPerMinute <= 0 && l.completionTokensPerMinute <= 0) return;
    this.eval(
      recordScript,
      [this.bucketsKey(grant.tenant)],
      [
        l.requestsPerMinute,
        l.promptTokensPerMinute,
        l.completionTokensPerMinute,
        usage.promptTokens - grant.promptReserved,
        usage.completionTokens,
      ],
    ).catch((err: Error) => this.logError("record", err));
  }

  release(grant: Grant): void {
    if (grant.released) return;
    grant.released = true;
    const g = grant as RedisGrant;
    if (g.local) return this.fallback.release(g.local);
    if (!g.leaseId) return;
    this.removeLease(this.leaseKey(grant.tenant), g.leaseId);
  }

  /** Releases still waiting for Redis (tests, metrics). */
  get pendingReleases(): number {
    return this.unreleased.size;
  }

  private removeLease(key: string, leaseId: string): void {
    // ZREM is idempotent, so a retry after a reply that was lost (timeout) does no harm
    this.client
      .run((redis) => redis.zrem(key, leaseId))
      .catch((err: Error) => {
        this.logError("release", err);
        this.keepForRetry(key, leaseId);
      });
  }

  private keepForRetry(key: string, leaseId: string): void {
    if (this.closed) return;
    if (this.unreleased.size >= MAX_UNRELEASED)
      this.unreleased.delete(this.unreleased.keys().next().value as string);
    this.unreleased.set(leaseId, key);
    this.retryTimer ??= setInterval(() => this.retryReleases(), RELEASE_RETRY_MS).unref();
  }

  private retryReleases(): void {
    if (this.unreleased.size === 0 || this.closed) {
      clearInterval(this.retryTimer);
      this.retryTimer = undefined;
      return;
    }
    const batch = [...this.unreleased];
    this.unreleased.clear();
    // failures come back through keepForRetry for the next tick
    for (const [leaseId, key] of batch) this.removeLease(key, leaseId);
  }

  /** Resolves once every command sent so far has been answered (tests). */
  async flush(): Promise<void> {
    await this.client.run((redis) => redis.ping());
  }

  async close(): Promise<void> {
    this.closed = true;
    clearInterval(this.retryTimer);
    this.retryTimer = undefined;
    this.unreleased.clear();
    this.client.close();
  }

  private bucketsKey(tenant: string): string {
    // the {tenant} hash tag keeps both keys of a tenant in one Redis Cluster slot
    return `${this.opts.prefix}{${tenant}}:b`;
  }

  private leaseKey(tenant: string): string {
    return `${this.opts.prefix}{${tenant}}:c`;
  }

  /** Runs a script by its digest, sending its body only when this Redis does not hold it yet. */
  private eval(script: Script, keys: string[], args: (string | number)[]): Promise<unknown> {
    return this.client.run(async (redis) => {
      try {
        return await redis.evalsha(script.sha, keys.length, ...keys, ...args);
      } catch (err) {
        if (!(err instanceof Error) || !err.message.startsWith("NOSCRIPT")) throw err;
        return await redis.eval(script.body, keys.length, ...keys, ...args);
      }
    });
  }

  private async onFailure(
    err: Error,
    tenant: string,
    limits: TenantLimits,
    estimate: number,
  ): Promise<Grant> {
    this.logError("admit", err);
    if (this.opts.onError === "closed")
      throw new HttpError(503, "the rate-limit store is unreachable; retry later", null, {
        "retry-after": "1",
      });
    // a refusal rejects with its 429
    const local = await this.fallback.admit(tenant, splitLimits(limits, this.opts.replicas), estimate);
    const g: RedisGrant = {
      tenant,
      promptReserved: estimate,
      limits,
      recorded: false,
      released: false,
      leaseId: undefined,
      local,
    };
    return g;
  }

  private logError(op: string, err: Error): void {
    this.errors++;
    const now = Date.now();
    if (now - this.lastErrorLog < 10_000) return;
    this.lastErrorLog = now;
    log.warn(
      { op, err: err.message, onError: this.opts.onError },
      this.opts.onError === "open"
        ? "redis limit store failed; per-replica limits apply until it answers"
        : "redis limit store failed; limited requests get 503 until it answers",
    );
  }
}
