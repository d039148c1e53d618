// The limit arithmetic, shared by the local limiter and mirrored line for line by the Redis Lua
// script (redis-limiter.ts), so one replica and many replicas enforce the same thing.
//
// Each per-minute limit is a token bucket holding up to one minute's allowance, refilled
// continuously (limit / 60 000 per ms). A request needs 1 request token; it reserves its prompt
// estimate (a request bigger than a whole minute's budget passes on a full bucket, else it could
// never pass); completion tokens are unknown until usage arrives, so a request needs the completion
// bucket out of debt (≥ 1 token) and pays afterwards. Usage settles the difference, so buckets
// may go negative: the debt is what makes the next requests wait.
import type { TenantLimits } from "./config.js";

export const MINUTE_MS = 60_000;

export type LimitName =
  "requests_per_minute" | "prompt_tokens_per_minute" | "completion_tokens_per_minute" | "concurrent_requests";

export const LIMIT_TEXT: Record<LimitName, string> = {
  requests_per_minute: "requests per minute",
  prompt_tokens_per_minute: "prompt tokens per minute",
  completion_tokens_per_minute: "completion tokens per minute",
  concurrent_requests: "concurrent requests",
};

export interface Buckets {
  requests: number;
  prompt: number;
  completion: number;
  /** ms of the last refill */
  at: number;
}

export function fullBuckets(limits: TenantLimits, now: number): Buckets {
  return {
    requests: limits.requestsPerMinute,
    prompt: limits.promptTokensPerMinute,
    completion: limits.completionTokensPerMinute,
    at: now,
  };
}

function refillOne(level: number, cap: number, elapsed: number): number {
  if (cap <= 0) return 0;
  const v = level + (elapsed * cap) / MINUTE_MS;
  return v > cap ? cap : v;
}

export function refill(b: Buckets, limits: TenantLimits, now: number): void {
  const elapsed = now > b.at ? now - b.at : 0;
  b.requests = refillOne(b.requests, limits.requestsPerMinute, elapsed);
  b.prompt = refillOne(b.prompt, limits.promptTokensPerMinute, elapsed);
  b.completion = refillOne(b.completion, limits.completionTokensPerMinute, elapsed);
  b.at = now;
}

export interface Refusal {
  limit: LimitName;
  /** the configured value, for the message */
  value: number;
  retryAfterMs: number;
}

function waitFor(level: number, need: number, cap: number): number {
  return Math.ceil(((need - level) * MINUTE_MS) / cap);
}

/** Checks every per-minute bucket (already refilled); undefined when the request may pass. */
export function check(b: Buckets, limits: TenantLimits, promptEstimate: number): Refusal | undefined {
  const rpm = limits.requestsPerMinute;
  if (rpm > 0 && b.requests < 1)
    return { limit: "requests_per_minute", value: rpm, retryAfterMs: waitFor(b.requests, 1, rpm) };
  const ptpm = limits.promptTokensPerMinute;
  const need = Math.min(promptEstimate, ptpm);
  if (ptpm > 0 && b.prompt < need)
    return { limit: "prompt_tokens_per_minute", value: ptpm, retryAfterMs: waitFor(b.prompt, need, ptpm) };
  const ctpm = limits.completionTokensPerMinute;
  const cneed = Math.min(1, ctpm);
  if (ctpm > 0 && b.completion < cneed)
    return {
      limit: "completion_tokens_per_minute",
      value: ctpm,
      retryAfterMs: waitFor(b.completion, cneed, ctpm),
    };
  return undefined;
}

export function take(b: Buckets, limits: TenantLimits, promptEstimate: number): void {
  if (limits.requestsPerMinute > 0) b.requests -= 1;
  if (limits.promptTokensPerMinute > 0) b.prompt -= promptEstimate;
}

/** Settles usage against the reservation: refunds capped at the bucket size, debts kept. */
export function settle(b: Buckets, limits: TenantLimits, promptDelta: number, completion: number): void {
  if (limits.promptTokensPerMinute > 0)
    b.prompt = Math.min(limits.promptTokensPerMinute, b.prompt - promptDelta);
  if (limits.completionTokensPerMinute > 0)
    b.completion = Math.min(limits.completionTokensPerMinute, b.completion - completion);
}

/** True when the buckets hold as much as fresh ones would: dropping them then loses nothing. */
export function isFull(b: Buckets, limits: TenantLimits): boolean {
  return (
    b.requests >= limits.requestsPerMinute &&
    b.prompt >= limits.promptTokensPerMinute &&
    b.completion >= limits.completionTokensPerMinute
  );
}

/** Each replica's share when limits are split without shared counters. */
export function splitLimits(l: TenantLimits, replicas: number): TenantLimits {
  if (replicas <= 1) return l;
  return {
    requestsPerMinute: l.requestsPerMinute / replicas,
    promptTokensPerMinute: l.promptTokensPerMinute / replicas,
    completionTokensPerMinute: l.completionTokensPerMinute / replicas,
    maxConcurrent: l.maxConcurrent > 0 ? Math.max(1, Math.floor(l.maxConcurrent / replicas)) : 0,
    ...(l.adapterLoadsPerMinute !== undefined
      ? { adapterLoadsPerMinute: l.adapterLoadsPerMinute / replicas }
      : {}),
  };
}
