// A router-initiated GET to an engine (health, models, metrics, /version, /kv_event_sources, a stored
// response's lookup): through the engine's own pool, with the engine key (upstream-rules.ts), bounded
// in size, and the errors it throws. The data plane's requests are relayed, never read this way.
import type { RouterConfig } from "../config/config.js";
import type { EngineRecord } from "./engine-record.js";
import { probeHeaders } from "./upstream-rules.js";
import { PeerError } from "../../errors/index.js";

/** An engine answered a router-initiated GET with a status other than 200. */
export class UpstreamHttpError extends PeerError {
  override name = "UpstreamHttpError";
  constructor(
    readonly path: string,
    readonly status: number,
  ) {
    super(`GET ${path} answered ${status}`);
  }
}

/** An engine's answer to a router-initiated GET was larger than the router reads. */
export class UpstreamTooLargeError extends PeerError {
  override name = "UpstreamTooLargeError";
  constructor(readonly maxBytes: number) {
    super(`answer larger than ${maxBytes} bytes`);
  }
}

/** An undici answer's body, as much of it as these helpers use. */
type UpstreamBody = AsyncIterable<Buffer> & { destroy(): void; on(ev: "error", fn: () => void): unknown };

/** Drops an undici body we will not read; the listener keeps its abort error from going uncaught. */
export function discard(body: UpstreamBody): void {
  body.on("error", () => undefined);
  body.destroy();
}

/** Reads at most `max` bytes of an undici body as text; larger bodies are cut off and destroyed. */
async function readBounded(body: UpstreamBody, max: number): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of body) {
    size += chunk.length;
    if (size > max) {
      discard(body);
      throw new UpstreamTooLargeError(max);
    }
    chunks.push(chunk);
  }
  return Buffer.concat(chunks, size).toString("utf8");
}

/**
 * GET from an engine through its own pool (its protocol: an h2c-only engine refuses HTTP/1.1, so
 * no other client should probe it) with the engine key (upstream-rules.ts), bounded in size;
 * throws UpstreamHttpError unless 200.
 */
export async function engineGet(
  e: EngineRecord,
  path: string,
  signal: AbortSignal,
  maxBytes: number,
  cfg: RouterConfig,
): Promise<string> {
  const res = await e.pool.request({
    path,
    method: "GET",
    headers: probeHeaders(e.spec, cfg),
    signal,
  });
  // not progress (lastByteAt): vLLM's API server answers /metrics while a stuck engine core hangs /health
  if (res.statusCode !== 200) {
    discard(res.body);
    throw new UpstreamHttpError(path, res.statusCode);
  }
  return readBounded(res.body, maxBytes);
}
