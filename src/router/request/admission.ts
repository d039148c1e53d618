// Admission control: requests waiting for an engine with room, in a weighted fair queue across
// tenants (src/tenancy/fair-queue.ts: priority bands, start-time fair queuing by weight, global and
// per-tenant bounds, push-out of the longest flow's last waiter, one deadline timer); and a retry
// budget that keeps failover from multiplying load during an outage. Without tenancy every request
// is in one flow ("anonymous"), which makes the fair queue a bounded FIFO.
import { HttpError } from "../../http/errors.js";
import { FairQueue, type Ticket } from "../../tenancy/fair-queue.js";
import { CancelledError } from "../../errors/index.js";

/** Who a waiting request belongs to; the fair queue shares freed room between flows by weight. */
export interface QueueFlow {
  key: string;
  weight: number;
  priority: number;
}

export const ANONYMOUS_FLOW: QueueFlow = { key: "anonymous", weight: 1, priority: 0 };

export interface QueueLimits {
  queueSize: number;
  queueTimeout: number;
  /** waiters per flow; 0 = only the global bound */
  perFlow?: number;
}

/**
 * What one request asks of its wait, within its flow (an agent's `vllm_xargs.agentic_context`): a rank
 * (`priority`, higher first) and its own longest wait (`deadline_seconds`), which can shorten the
 * queue's timeout but not extend it. Neither moves it ahead of another flow's requests.
 */
export interface QueueAsk {
  rank?: number | undefined;
  timeoutMs?: number | undefined;
}

interface Waiter {
  /** tries to claim an engine; true when claimed (the waiter is then done) */
  tryAcquire: () => boolean;
  resolve: () => void;
  reject: (err: Error) => void;
  flow: string;
  ticket: Ticket<Waiter> | undefined;
  /** its own longest wait, ms, when it asked for one shorter than the queue's */
  timeoutMs: number | undefined;
}

/**
 * The 429 of a sheddable flow's request with every engine full: never queued, refused at once (the
 * edge refuses it before its body is read when it can tell the fleet is full by then).
 */
export function sheddableRefusal(flow: QueueFlow): HttpError {
  return new HttpError(
    429,
    `every engine is full and '${flow.key}' is sheddable (priority ${flow.priority}): refused rather than queued; retry later`,
    null,
    { "retry-after": "1" },
  );
}

export class AdmissionQueue {
  private readonly q: FairQueue<Waiter>;
  private timer: NodeJS.Timeout | undefined;
  private timerAt = Infinity;
  /** told how long each admitted waiter waited (seconds), by flow */
  onWaited: ((flow: string, seconds: number) => void) | undefined;
  private recheckEvery = 0;
  private recheck: NodeJS.Timeout | undefined;

  /**
   * > 0: while requests wait, they try again this often (ms), not only when room is freed: the policy
   * holds them for room that time frees (Policy.recheckMs). A change applies to those waiting now.
   */
  get recheckMs(): number {
    return this.recheckEvery;
  }

  set recheckMs(ms: number) {
    if (ms === this.recheckEvery) return;
    this.recheckEvery = ms;
    if (this.recheck) clearInterval(this.recheck);
    this.recheck = undefined;
    this.armRecheck();
  }

  constructor(private limits: QueueLimits) {
    this.q = new FairQueue<Waiter>(this.fqLimits(limits));
  }

  private fqLimits(l: QueueLimits) {
    return { size: l.queueSize, perFlow: l.perFlow ?? 0, timeout: l.queueTimeout };
  }

  setLimits(limits: QueueLimits): void {
    this.limits = limits;
    this.q.setLimits(this.fqLimits(limits));
  }

  get depth(): number {
    return this.q.size;
  }

  private retryAfter(): Record<string, string> {
    return { "retry-after": String(Math.max(1, Math.ceil(this.limits.queueTimeout / 1000))) };
  }

  /**
   * Waits until `tryAcquire` succeeds; 429 when the queue is full or the wait times out. A sheddable
   * flow (priority below 0, as the Gateway API Inference Extension's `Sheddable` criticality) is never
   * queued: with every engine full it is refused at once, so it neither waits out its timeout nor
   * takes queue room a higher band could use.
   */
  wait(
    tryAcquire: () => boolean,
    signal: AbortSignal,
    flow: QueueFlow = ANONYMOUS_FLOW,
    ask?: QueueAsk,
  ): Promise<void> {
    // a client already gone never takes a queue slot (an aborted signal fires no more events)
    if (signal.aborted) return Promise.reject(new CancelledError("client went away while queued"));
    if (flow.priority < 0) return tryAcquire() ? Promise.resolve() : Promise.reject(sheddableRefusal(flow));
    return new Promise<void>((resolve, reject) => {
      const own = ask?.timeoutMs;
      const timeoutMs = own !== undefined && own >= 0 && own < this.limits.queueTimeout ? own : undefined;
      const w: Waiter = { tryAcquire, resolve, reject, flow: flow.key, ticket: undefined, timeoutMs };
      const now = Date.now();
      const r = this.q.enqueue(
        flow.key,
        w,
        ask ? { weight: flow.weight, priority: flow.priority, rank: ask.rank, timeout: timeoutMs } : flow,
        now,
      );
      if (!r.ok) {
        const what =
          r.reason === "tenant_queue_full"
            ? `too many requests of '${flow.key}' are waiting already`
            : "the router's wait queue is full";
        return reject(new HttpError(429, `${what}; retry later`, null, this.retryAfter()));
      }
      w.ticket = r.ticket;
      // a flood pushed out of a full queue makes room for a shorter flow
      r.evicted?.reject(
        new HttpError(429, "pushed out of the wait queue by other tenants' requests; retry later", null, {
          ...this.retryAfter(),
        }),
      );
      signal.addEventListener(
        "abort",
        () => {
          if (w.ticket && this.q.cancel(w.ticket))
            reject(new CancelledError("client went away while queued"));
        },
        { once: true },
      );
      this.armTimer();
      this.armRecheck();
    });
  }

  private armRecheck(): void {
    if (this.recheck || this.recheckEvery <= 0 || this.q.size === 0) return;
    this.recheck = setInterval(() => {
      if (this.q.size === 0 || this.recheckEvery <= 0) {
        clearInterval(this.recheck);
        this.recheck = undefined;
        return;
      }
      this.kick();
    }, this.recheckEvery);
    this.recheck.unref?.();
  }

  private armTimer(): void {
    const next = this.q.nextDeadline();
    if (next === undefined) {
      if (this.timer) clearTimeout(this.timer);
      this.timer = undefined;
      this.timerAt = Infinity;
      return;
    }
    if (this.timer && this.timerAt <= next) return;
    if (this.timer) clearTimeout(this.timer);
    this.timerAt = next;
    this.timer = setTimeout(() => this.expire(), Math.max(0, next - Date.now()));
    this.timer.unref?.();
  }

  private expire(): void {
    this.timer = undefined;
    this.timerAt = Infinity;
    for (const w of this.q.expire(Date.now())) {
      const what =
        w.timeoutMs !== undefined
          ? `no engine had room within the request's deadline (${w.timeoutMs} ms)`
          : `no engine had room within ${this.limits.queueTimeout} ms`;
      w.reject(new HttpError(429, `${what}; retry later`, null, this.retryAfter()));
    }
    this.armTimer();
  }

  /** Lets queued requests claim freed room, fairly across flows; stops after `max` admissions. */
  kick(max = Infinity): void {
    if (this.q.size === 0) return;
    const now = Date.now();
    for (let admitted = 0; admitted < max; admitted++) {
      // a policy that holds requests one by one (recheckMs) lets a held one's followers by it
      const w = this.q.dequeue((w) => w.tryAcquire(), 64, this.recheckMs > 0);
      if (!w) break;
      this.onWaited?.(w.flow, (now - w.ticket!.enqueuedAt) / 1000);
      w.resolve();
    }
    if (this.q.size === 0) this.armTimer();
  }

  clear(): void {
    for (const w of this.q.drain()) w.reject(new HttpError(503, "router is shutting down"));
    if (this.recheck) clearInterval(this.recheck);
    this.recheck = undefined;
    this.armTimer();
  }
}

/** Retries allowed ≤ ratio × requests over a sliding window (plus a floor), in ten buckets. */
export class RetryBudget {
  private readonly requests = new Float64Array(10);
  private readonly retries = new Float64Array(10);
  private bucketStart = 0;
  private idx = 0;

  constructor(private opts: { budgetRatio: number; budgetWindow: number; minRetries: number }) {}

  setOptions(opts: { budgetRatio: number; budgetWindow: number; minRetries: number }): void {
    this.opts = opts;
  }

  private roll(now: number): void {
    const width = this.opts.budgetWindow / 10;
    if (this.bucketStart === 0) this.bucketStart = now;
    let steps = Math.floor((now - this.bucketStart) / width);
    if (steps <= 0) return;
    if (steps > 10) steps = 10;
    for (let s = 0; s < steps; s++) {
      this.idx = (this.idx + 1) % 10;
      this.requests[this.idx] = 0;
      this.retries[this.idx] = 0;
    }
    this.bucketStart = now;
  }

  onRequest(now = Date.now()): void {
    this.roll(now);
    this.requests[this.idx]!++;
  }

  /** Takes one retry from the budget when there is one. */
  tryRetry(now = Date.now()): boolean {
    this.roll(now);
    let req = 0;
    let ret = 0;
    for (let i = 0; i < 10; i++) {
      req += this.requests[i]!;
      ret += this.retries[i]!;
    }
    if (ret >= this.opts.minRetries + this.opts.budgetRatio * req) return false;
    this.retries[this.idx]!++;
    return true;
  }
}
