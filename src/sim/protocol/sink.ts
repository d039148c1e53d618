// Where the real-time engine delivers one request's tokens and its end: the HTTP handler that owns the
// request (completions.ts), or the NixlConnector wrapping it (disagg.ts). Its own module so that the
// runtime and the connector, which both speak it, do not import each other.
import type { FinishReason, RequestTimings } from "../../engine/types.js";

export interface RequestSink {
  onTokens(tokenIds: readonly number[], time: number): void;
  onFinished(reason: FinishReason, timings: RequestTimings): void;
}
