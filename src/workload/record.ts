// What the client records about one request. Times are milliseconds from performance.now();
// `start` is relative to the run's start so that records of one run share a clock.

export type ErrorKind =
  "http_4xx" | "http_5xx" | "connect" | "timeout" | "stream_error" | "no_output" | "aborted" | "other";

export interface RequestRecord {
  /** order of dispatch within the run */
  index: number;
  sessionId: string;
  round: number;
  /** send time, ms since the run started */
  start: number;
  ok: boolean;
  /** ms from send to the first chunk carrying output; NaN when none came */
  ttft: number;
  /** ms between consecutive output-carrying chunks (vllm bench's ITL samples) */
  itl: number[];
  /** ms from send to the end of the stream */
  e2el: number;
  /** prompt tokens: the server's usage when reported, else the workload's intended count */
  promptTokens: number;
  /** output tokens: usage.completion_tokens when reported, else output-carrying chunks */
  outputTokens: number;
  usageReported: boolean;
  httpStatus: number;
  errorKind: ErrorKind | null;
  error: string;
  /**
   * sent after a tool pause (Turn.pauseBeforeS): an agent's resumed turn, whose context may have left
   * the engine's cache while it waited
   */
  resumed?: boolean;
  /**
   * the engine's own timing of this request, ms, where it returned one (vLLM's per-request `metrics`,
   * `--enable-per-request-metrics`): queue wait + prefill (QUEUED → first token) and decode time /
   * (output − 1), both on the engine core's clock, so without the API server's own time
   */
  engineTtft?: number;
  engineTpot?: number;
}

/** TPOT as vllm bench defines it: (E2EL − TTFT) / (output tokens − 1), only for outputs of 2+ tokens. */
export function tpotOf(r: RequestRecord): number | null {
  if (!r.ok || r.outputTokens <= 1 || !Number.isFinite(r.ttft)) return null;
  return (r.e2el - r.ttft) / (r.outputTokens - 1);
}
