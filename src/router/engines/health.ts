// Engine health as Envoy's outlier detection does it: active probes (GET /health) and passive signals
// (connect errors, resets, 5xx on live traffic) decide whether an engine is in rotation, and neither may
// empty the fleet on a guess. A probe timeout is excused while the engine sends bytes or the router's
// own event loop ran late; at most `health.maxEjectionPercent` of a model's engines are out at once;
// ejection stops new traffic only; an engine draining (503 on /health, 200 on /live) leaves rotation at
// once. The rules and their reasons: docs/router.md#containment.
import { logger } from "../../obs/log.js";
import type { RouterConfig } from "../config/config.js";
import type { FailureMarks } from "./failure-marks.js";
import { PeerError } from "../../errors/index.js";

export type HealthState = "probing" | "healthy" | "ejected" | "draining";

/** What health reads and writes of an engine record (the registry's EngineRecord). */
export interface HealthRecord {
  readonly url: string;
  state: HealthState;
  readonly draining: boolean;
  healthFailures: number;
  healthSuccesses: number;
  passiveFailures: number;
  lastError: string;
  /** performance.now() of the last byte received from the engine on any request */
  lastByteAt: number;
  withheldLoggedAt: number;
  /** drained by hand: stays draining whatever the probes say, until undrained */
  drainHeld: boolean;
  /**
   * performance.now() when the engine refused a request with vLLM's shutdown 500 (0: it has not):
   * it drains with /health still 200, so it stays out until a probe fails (it stopped) or
   * health.shutdownHold passes
   */
  shutdownAt: number;
  readonly view: { healthy: boolean; readonly models: ReadonlySet<string> };
  /** recent failures by request (the data plane's poison judgement); probes and ejections mark 0 */
  readonly failures?: FailureMarks;
}

const log = logger("router.health");

/** The error a probe's `send` rejects with when the engine says it is draining (registry.ts). */
export const ENGINE_DRAINING = "engine is draining";

/** A router timer firing this much later than asked (share of the timeout) means the router lagged. */
const LAG_SHARE = 0.5;
/** Times a probe's timeout is extended for router lag before it counts. */
const MAX_LAG_EXTENSIONS = 3;
/** Withheld ejections of one engine are logged at most this often. */
const WITHHELD_LOG_MS = 10_000;

export interface HealthHooks {
  onEject?: (url: string, reason: string) => void;
  onEjectWithheld?: (url: string, reason: string) => void;
  onProbeExcused?: (url: string, why: "progress" | "router_lag") => void;
  /** an engine became usable: queued requests may proceed */
  onCapacity?: () => void;
  /** an engine started draining: no new requests; those in flight get engineDrainTimeout */
  onDraining?: (url: string) => void;
}

/** What a probe came to. */
export type ProbeVerdict =
  | { kind: "ok" }
  | { kind: "failed"; error: string }
  /** the engine says it is draining: it takes no new requests and finishes those it has */
  | { kind: "draining" }
  /** it timed out, but the engine is evidently alive or the router could not tell */
  | { kind: "excused"; why: "progress" | "router_lag" };

/** The clock and timers a probe's timeout reads: the process's own, or a virtual one in tests. */
export interface ProbeClock {
  now(): number;
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(timer: unknown): void;
  /** runs `fn` after the I/O of the current event-loop turn */
  setImmediate(fn: () => void): void;
}

export const systemClock: ProbeClock = {
  now: () => performance.now(),
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (t) => clearTimeout(t as NodeJS.Timeout),
  setImmediate: (fn) => void setImmediate(fn),
};

/**
 * Races `answer` against a timeout that knows when it cannot be trusted: a timer that fires late
 * (router lag) is extended, up to MAX_LAG_EXTENSIONS times; and the verdict waits one turn of the
 * event loop, so an answer already read from the socket wins over a timer that happened to run first
 * (timers run before I/O in each turn). Resolves "answered" or how the wait ended.
 */
export function lagAwareTimeout(
  answer: Promise<unknown>,
  timeoutMs: number,
  clock: ProbeClock = systemClock,
): Promise<"answered" | "timeout" | "router_lag"> {
  return new Promise((resolve) => {
    let settled = false;
    let lagged = false;
    let extensions = 0;
    let timer: unknown;
    const done = (v: "answered" | "timeout" | "router_lag") => {
      if (settled) return;
      settled = true;
      if (timer !== undefined) clock.clearTimeout(timer);
      resolve(v);
    };
    answer.then(
      () => done("answered"),
      () => done("answered"),
    );
    const arm = () => {
      const due = clock.now() + timeoutMs;
      timer = clock.setTimeout(() => {
        const late = clock.now() - due;
        clock.setImmediate(() => {
          if (settled) return;
          if (late > timeoutMs * LAG_SHARE) {
            lagged = true;
            if (extensions++ < MAX_LAG_EXTENSIONS) return arm();
          }
          done(lagged ? "router_lag" : "timeout");
        });
      }, timeoutMs);
    };
    arm();
  });
}

export class Health {
  private cfg: RouterConfig;

  constructor(
    cfg: RouterConfig,
    private readonly engines: ReadonlyMap<string, HealthRecord>,
    private readonly hooks: HealthHooks = {},
    private readonly clock: ProbeClock = systemClock,
  ) {
    this.cfg = cfg;
  }

  setConfig(cfg: RouterConfig): void {
    this.cfg = cfg;
  }

  /**
   * Judges one probe: `send(signal)` performs the request and rejects on any failure. A timeout is a
   * failure only when the engine sent nothing meanwhile and the router was not lagging.
   */
  async probe(e: HealthRecord, send: (signal: AbortSignal) => Promise<unknown>): Promise<ProbeVerdict> {
    const sentAt = this.clock.now();
    const ac = new AbortController();
    let error = "";
    const answer = send(ac.signal).then(
      () => true,
      (err: unknown) => {
        error = (err as Error).message;
        return false;
      },
    );
    const how = await lagAwareTimeout(answer, this.cfg.health.timeout, this.clock);
    if (how === "answered") {
      if (await answer) return { kind: "ok" };
      return error === ENGINE_DRAINING ? { kind: "draining" } : { kind: "failed", error };
    }
    ac.abort(new PeerError(`no answer within ${this.cfg.health.timeout} ms`));
    void answer;
    if (e.lastByteAt > sentAt) return { kind: "excused", why: "progress" };
    if (how === "router_lag") return { kind: "excused", why: "router_lag" };
    return { kind: "failed", error: `no answer within ${this.cfg.health.timeout} ms` };
  }

  /** Applies a probe's verdict: counts toward ejection or re-admission. */
  judge(e: HealthRecord, v: ProbeVerdict): "admit" | "none" {
    if (v.kind === "excused") {
      this.hooks.onProbeExcused?.(e.url, v.why);
      log.debug({ engine: e.url, why: v.why }, "health probe timed out; not counted");
      return "none";
    }
    if (v.kind === "draining") {
      this.drain(e, false);
      return "none";
    }
    if (v.kind === "failed") {
      // a process that drained and stopped: when it answers again it is a new engine
      e.shutdownAt = 0;
      e.failures?.mark(0, performance.now());
      e.lastError = `health: ${v.error}`;
      e.healthSuccesses = 0;
      if (++e.healthFailures >= this.cfg.health.failuresToEject) this.eject(e, "health");
      return "none";
    }
    e.healthFailures = 0;
    e.healthSuccesses++;
    if (e.drainHeld) return "none";
    if (e.shutdownAt > 0) {
      // vLLM's /health answers 200 all through its drain: only time (or a failed probe) ends it
      if (performance.now() - e.shutdownAt < this.cfg.health.shutdownHold) return "none";
      e.shutdownAt = 0;
      log.info({ engine: e.url }, "engine still answers after its shutdown hold; back in rotation");
    }
    if (e.state === "probing" || e.state === "draining") return "admit";
    if (e.state === "ejected" && e.healthSuccesses >= this.cfg.health.successesToReadmit) return "admit";
    return "none";
  }

  setHealthy(e: HealthRecord): void {
    if (e.state === "healthy") return;
    const was = e.state;
    e.state = "healthy";
    e.view.healthy = !e.draining;
    e.passiveFailures = 0;
    log.info({ engine: e.url, was }, "engine in rotation");
    this.hooks.onCapacity?.();
  }

  /** Out of rotation at once, in-flight requests left to finish; `held`: until undrain (by hand). */
  drain(e: HealthRecord, held: boolean): void {
    if (held) e.drainHeld = true;
    if (e.state === "draining") return;
    const was = e.state;
    e.state = "draining";
    e.view.healthy = false;
    e.healthSuccesses = 0;
    log.info({ engine: e.url, was, byHand: held }, "engine draining: no new requests");
    this.hooks.onDraining?.(e.url);
  }

  /**
   * The engine refused a request with vLLM's shutdown 500 (VLLM_SHUTDOWN_MESSAGES): it drains as vLLM
   * 0.18 and later do on SIGTERM, finishing what it holds while /health keeps answering 200. Out of
   * rotation at once, as any drain, and held there until a probe fails or health.shutdownHold passes.
   */
  shuttingDown(e: HealthRecord): void {
    if (e.shutdownAt === 0) log.info({ engine: e.url }, "engine refused a request as it shuts down");
    e.shutdownAt = performance.now();
    this.drain(e, false);
  }

  /** Ends a drain made by hand: the engine is probed again and admitted like a new one. */
  undrain(e: HealthRecord): void {
    e.drainHeld = false;
    if (e.state === "draining") e.state = "probing";
  }

  /**
   * Takes an engine out of rotation, unless that would put more than maxEjectionPercent of one of
   * its models' engines out of rotation (then it stays in, and the withheld ejection is counted).
   */
  eject(e: HealthRecord, reason: string): void {
    if (e.state === "ejected") return;
    const was = e.state;
    if (was === "healthy" && !this.mayEject(e)) {
      this.hooks.onEjectWithheld?.(e.url, reason);
      const now = performance.now();
      if (now - e.withheldLoggedAt > WITHHELD_LOG_MS) {
        e.withheldLoggedAt = now;
        log.warn(
          {
            engine: e.url,
            reason,
            lastError: e.lastError,
            maxEjectionPercent: this.cfg.health.maxEjectionPercent,
          },
          "engine looks unhealthy but stays in rotation: its model's other engines are out already",
        );
      }
      return;
    }
    e.state = "ejected";
    e.view.healthy = false;
    e.healthSuccesses = 0;
    e.failures?.mark(0, performance.now());
    if (was === "healthy") {
      log.warn({ engine: e.url, reason, lastError: e.lastError }, "engine ejected");
      this.hooks.onEject?.(e.url, reason);
    }
  }

  /** True when taking `e` out keeps every model it serves within maxEjectionPercent. */
  private mayEject(e: HealthRecord): boolean {
    const pct = this.cfg.health.maxEjectionPercent;
    if (pct >= 100) return true;
    for (const model of e.view.models) {
      let n = 0;
      let out = 0;
      for (const o of this.engines.values()) {
        if (o.draining || !o.view.models.has(model)) continue;
        n++;
        if (o !== e && o.state !== "healthy") out++;
      }
      if (out + 1 > Math.floor((n * pct) / 100)) return false;
    }
    return true;
  }

  /** live traffic: a connect error, reset or 5xx answer from the engine */
  reportFailure(e: HealthRecord, what: string): void {
    e.lastError = what;
    if (++e.passiveFailures >= this.cfg.health.passiveFailures) this.eject(e, "passive");
  }

  reportSuccess(e: HealthRecord): void {
    e.passiveFailures = 0;
  }
}
