// The adapter-load budget of each tenant (`limits.adapterLoadsPerMinute`): a LoRA load stalls its
// engine's steps for every request there, so the tenant whose request causes one pays for it, before
// it starts. A token bucket per tenant holding one minute's allowance (at least one load), refilled
// continuously, on this replica (split per replica as the other limits are without Redis).
import { LruMap } from "../collections/lru-map.js";
import { HttpError } from "../http/errors.js";
import { MINUTE_MS } from "./buckets.js";

interface Bucket {
  level: number;
  at: number;
}

/** tenants' buckets kept at most (the least recently charged go first) */
const MAX_BUCKETS = 100_000;

export class AdapterLoadMeter {
  /** least recently charged first: an LruMap, as a Map re-inserted on every charge walks its deleted slots */
  private readonly buckets = new LruMap<string, Bucket>();

  constructor(private readonly now: () => number = () => performance.now()) {}

  /** Charges one load to `tenant` at `perMinute` (0: no limit); throws the 429 with Retry-After. */
  charge(tenant: string, perMinute: number): void {
    if (!(perMinute > 0)) return;
    const cap = Math.max(1, perMinute);
    const now = this.now();
    let b = this.buckets.use(tenant);
    if (b === undefined) {
      b = { level: cap, at: now };
      if (this.buckets.size >= MAX_BUCKETS) this.buckets.shift();
      this.buckets.add(tenant, b);
    }
    b.level = Math.min(cap, b.level + (Math.max(0, now - b.at) * perMinute) / MINUTE_MS);
    b.at = now;
    if (b.level < 1) {
      const secs = Math.max(1, Math.ceil(((1 - b.level) * MINUTE_MS) / perMinute / 1000));
      throw new HttpError(
        429,
        `tenant '${tenant}' is over its adapter loads per minute limit (${Number.isInteger(perMinute) ? perMinute : perMinute.toFixed(2)}): ` +
          `the adapter is not loaded anywhere it could be served; retry in ${secs} s`,
        null,
        { "retry-after": String(secs), "x-ratelimit-limit": "adapter_loads_per_minute" },
      );
    }
    b.level -= 1;
  }
}
