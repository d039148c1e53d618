// Admission control: a bounded FIFO of requests waiting for an engine with room, each with a
// deadline; and a retry budget that keeps failover from multiplying load during an outage.
import { HttpError } from "../http/errors.js";

interface Waiter {
  /** tries to claim an engine; true when claimed (the waiter is then done) */
  tryAcquire: () => boolean;
  resolve: () => void;
  reject: (err: Error) => void;
  timer: NodeJS.Timeout;
  done: boolean;
}

export class AdmissionQueue {
  private waiters: Waiter[] = [];

  constructor(private limits: { queueSize: number; queueTimeout: number }) {}

  setLimits(limits: { queueSize: number; queueTimeout: number }): void {
    this.limits = limits;
  }

  get depth(): number {
    return this.waiters.length;
  }

  /** Waits until `tryAcquire` succeeds; 429 when the queue is full or the wait times out. */
  wait(tryAcquire: () => boolean, signal: AbortSignal): Promise<void> {
    const retryAfter = String(Math.max(1, Math.ceil(this.limits.queueTimeout / 1000)));
    if (this.waiters.length >= this.limits.queueSize) {
      return Promise.reject(
        new HttpError(429, "the router's wait queue is full; retry later", null, {
          "retry-after": retryAfter,
        }),
      );
    }
    return new Promise<void>((resolve, reject) => {
      const w: Waiter = {
        tryAcquire,
        resolve,
        reject,
        done: false,
        timer: setTimeout(() => {
          this.drop(w);
          reject(
            new HttpError(
              429,
              `no engine had room within ${this.limits.queueTimeout} ms; retry later`,
              null,
              {
                "retry-after": retryAfter,
              },
            ),
          );
        }, this.limits.queueTimeout),
      };
      signal.addEventListener(
        "abort",
        () => {
          this.drop(w);
          reject(new Error("client went away while queued"));
        },
        { once: true },
      );
      this.waiters.push(w);
    });
  }

  private drop(w: Waiter): void {
    if (w.done) return;
    w.done = true;
    clearTimeout(w.timer);
    const i = this.waiters.indexOf(w);
    if (i >= 0) this.waiters.splice(i, 1);
  }

  /** Lets queued requests claim freed room, oldest first; stops after `max` admissions. */
  kick(max = Infinity): void {
    if (this.waiters.length === 0) return;
    let admitted = 0;
    for (let i = 0; i < this.waiters.length && admitted < max;) {
      const w = this.waiters[i]!;
      if (w.tryAcquire()) {
        w.done = true;
        clearTimeout(w.timer);
        this.waiters.splice(i, 1);
        admitted++;
        w.resolve();
      } else i++;
    }
  }

  clear(): void {
    for (const w of [...this.waiters]) {
      this.drop(w);
      w.reject(new HttpError(503, "router is shutting down"));
    }
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
