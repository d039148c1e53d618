// One structured line per finished client request (pino, logger `router.access`, level info): who,
// which model and engine, the outcome, TTFT and duration, tokens when the answer carried `usage`,
// retries, and how long it waited in the router's admission queue (late binding's holds show there).
// Configured by `accessLog: { enabled, sampleRatio, maxPerSecond }`: the ratio samples successful
// requests and the cap bounds their lines per second per process — every error is logged, since those
// are the lines an operator looks for. The cap is there because in a flood of tiny
// requests the line cost 3–17 µs of each request's 55–60 µs of router CPU, and 20,000 lines a second
// is 5 MB/s of log nobody reads line by line; LLM traffic, whose requests last seconds, stays under it
// and keeps a line per request. Skipped lines are counted (`switchyard_access_log_lines_skipped_total`)
// and each second that skipped some says how many.
// Usage is read from the last relayed chunk only (vLLM writes it last), never by parsing the whole
// body. `migrations` says how many times a stream moved to another engine mid-response.
import type { IncomingMessage } from "node:http";
import { infoLineWriter, logger } from "../../obs/log.js";
import { findUsage } from "../../tenancy/request.js";
import type { RouterConfig } from "../config/config.js";
import type { RoutedRequest } from "../request/routed-request.js";
import { InvariantError } from "../../errors/index.js";

const log = logger("router.access");
/** the per-request line, serialised here (pino's generic serialiser cost more than the fields) */
const line = infoLineWriter("router.access");

/** What the access line reads of a finished request (the data plane's RequestContext). */
export interface AccessRecord {
  /** the router's id for the request, the X-Request-Id its engines got and logged */
  readonly requestId: string;
  /** the id in the client's response header: its own X-Request-Id (never sent to an engine), else requestId */
  readonly echoId?: string | undefined;
  readonly pr: RoutedRequest;
  readonly engineUrl: string;
  readonly attempts: number;
  readonly ttftMs: number;
  /** ms it waited in the router's admission queue (absent or 0: bound at once) */
  readonly queuedMs?: number;
  readonly panicked: boolean;
  readonly lastChunk: Buffer | undefined;
  /** times the stream moved to another engine mid-response */
  readonly migrations: number;
}

/** one decimal; JSON has no NaN or Infinity (pino writes null for them too) */
const round1 = (ms: number) => (Number.isFinite(ms) ? Math.round(ms * 10) / 10 : null);
const SAFE_ID = /^[\x21-\x7e]{1,200}$/;

/**
 * At most `max` lines a second: clock-free (the caller says the time, monotonic ms), so tests run it
 * in virtual time. A second begins at the first ask after the last one ended; what it skipped is
 * counted until the caller takes the count, which it must do before the next second begins.
 */
export class LinesPerSecond {
  private end = 0;
  private left = 0;
  private skipped = 0;

  /** when the second under way ends */
  get endsAt(): number {
    return this.end;
  }

  /** Whether one more line fits at `now`; one that does not is counted. */
  take(now: number, max: number): boolean {
    if (now >= this.end) {
      if (this.skipped !== 0)
        throw new InvariantError(
          "lines-per-second invariant: the ended second's skipped lines were not taken",
        );
      this.end = now + 1000;
      this.left = max;
    }
    if (this.left > 0) {
      this.left--;
      return true;
    }
    this.skipped++;
    return false;
  }

  /** The lines skipped since the last call (the second under way's, or the one that ended). */
  takeSkipped(): number {
    const n = this.skipped;
    this.skipped = 0;
    return n;
  }
}

export class AccessLog {
  private readonly cap = new LinesPerSecond();
  /** armed only while a second has skipped lines, so its summary comes even if no request follows */
  private summaryTimer: NodeJS.Timeout | undefined;

  constructor(
    private readonly config: () => RouterConfig,
    private readonly onSkipped: () => void = () => {},
  ) {}

  write(r: AccessRecord, status: number, seconds: number): void {
    const c = this.config().accessLog;
    if (!c.enabled || !line.enabled()) return;
    if (status < 400) {
      if (c.sampleRatio < 1 && Math.random() >= c.sampleRatio) return;
      if (c.maxPerSecond > 0 && !this.withinCap(c.maxPerSecond)) return;
    }
    const usage = r.lastChunk ? findUsage(r.lastChunk) : undefined;
    const pr = r.pr;
    // the fields pino would write for this object, in its order, undefined ones left out
    const tenant = pr.tenant?.tenant;
    // the id the client knows the request by, and the engines' when the client named it otherwise
    const echo = r.echoId ?? r.requestId;
    let f = `"requestId":${JSON.stringify(echo)},`;
    if (echo !== r.requestId) f += `"upstreamRequestId":${JSON.stringify(r.requestId)},`;
    if (tenant !== undefined) f += `"tenant":${JSON.stringify(tenant)},`;
    f += `"model":${JSON.stringify(pr.model)},"path":${JSON.stringify(pr.path)},"stream":${pr.stream},`;
    f += `"engine":${JSON.stringify(r.engineUrl)},"status":${status},`;
    if (r.ttftMs >= 0) f += `"ttftMs":${round1(r.ttftMs)},`;
    if (r.queuedMs !== undefined && r.queuedMs > 0) f += `"queuedMs":${round1(r.queuedMs)},`;
    f += `"durationMs":${round1(seconds * 1000)},`;
    if (usage) f += `"promptTokens":${usage.prompt},"completionTokens":${usage.completion},`;
    f += `"retries":${r.attempts > 1 ? r.attempts - 1 - r.migrations : 0},"migrations":${r.migrations},`;
    if (r.panicked) f += `"panic":true,`;
    line.write(f, "request");
  }

  /** Whether this second's cap has room for one more success's line; a success without one is counted. */
  private withinCap(max: number): boolean {
    const now = performance.now();
    if (now >= this.cap.endsAt) this.saySkipped();
    if (this.cap.take(now, max)) return true;
    this.onSkipped();
    this.summaryTimer ??= setTimeout(() => this.saySkipped(), this.cap.endsAt - now).unref();
    return false;
  }

  /** The second that ended skipped lines: one line says how many. */
  private saySkipped(): void {
    clearTimeout(this.summaryTimer);
    this.summaryTimer = undefined;
    const skipped = this.cap.takeSkipped();
    if (skipped > 0 && this.config().accessLog.enabled && log.isLevelEnabled("info"))
      log.info({ skipped, maxPerSecond: this.config().accessLog.maxPerSecond }, "access lines skipped");
  }

  /** The router stops: the second under way says what it skipped now. */
  close(): void {
    this.saySkipped();
  }

  /** A request the edge refused (never routed): always logged, it is an error. */
  rejected(
    req: IncomingMessage,
    path: string,
    status: number,
    tenant: string | undefined,
    why: string,
  ): void {
    if (!this.config().accessLog.enabled || !log.isLevelEnabled("info")) return;
    const id = req.headers["x-request-id"];
    log.info(
      {
        requestId: typeof id === "string" && SAFE_ID.test(id) ? id : undefined,
        tenant,
        path,
        engine: "none",
        status,
        error: why.slice(0, 200),
      },
      "request",
    );
  }
}
