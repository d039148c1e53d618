// vLLM's NixlConnector around the engine model: disaggregated prefill and decode. A producer
// (`do_remote_decode`) keeps a length-capped request's prompt KV for a decode engine to read (dropped
// after VLLM_NIXL_ABORT_REQUEST_TIMEOUT) and answers with `kv_transfer_params` saying where. A consumer
// (`do_remote_prefill`) reads it through the producer's side channel (the sim's stand-in for NIXL's RDMA
// read), waits the modelled transfer time without stalling running requests, and computes only what was
// not transferred; a failed read is counted and the prompt computed locally, as vLLM recomputes blocks
// whose load failed. See docs/disaggregated.md#simulated-engines.
import { createHash } from "node:crypto";
import type { ServerResponse } from "node:http";
import { Counter, Gauge, Histogram, type Registry } from "prom-client";
import { Agent, request } from "undici";
import { kvCapacity } from "../../engine/capacity.js";
import type { EngineConfig, EngineRequest, FinishReason, RequestTimings } from "../../engine/types.js";
import { HttpError } from "../../http/errors.js";
import type { Logger } from "../../obs/log.js";
import type { DisaggSettings, KvRole } from "../config/disagg-config.js";
import type { RequestSink } from "../protocol/sink.js";
import { PeerError } from "../../errors/index.js";

/** The producer's side-channel path: a decode engine reads (and thereby releases) held KV here. */
export const NIXL_READ_PATH = "/switchyard/nixl/read";
/** held prefills at most; past it the oldest is dropped (counted as expired) */
export const MAX_HOLDS = 65_536;
/** bound on one side-channel read, wall milliseconds */
export const READ_TIMEOUT_MS = 5_000;

/** vLLM's NixlPromMetrics buckets (seconds per transfer; bytes 2 KiB … 8 GiB, ×4 apart). */
const XFER_TIME_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 5.0];
const XFER_BYTES_BUCKETS = Array.from({ length: 12 }, (_, i) => 2 ** (11 + 2 * i));

interface Hold {
  engineId: string;
  tokens: number;
  blocks: number;
  digest: string;
  /** performance.now() ms after which the KV is dropped unread */
  expires: number;
}

/** What a decode engine was told by the proxy (vLLM's field names). */
interface RemoteParams {
  blockIds: number[];
  engineId: string;
  requestId: string;
  host: string;
  port: number;
}

export interface DisaggStats {
  prefills: number;
  expired: number;
  readsServed: number;
  readsRefused: number;
  transfers: number;
  failedTransfers: number;
  transferredTokens: number;
  queriedTokens: number;
}

/** 64-bit digest of a prompt's token ids: producer and consumer must be talking about the same prompt. */
export function promptDigest(ids: readonly number[]): string {
  const buf = Buffer.allocUnsafe(ids.length * 4);
  for (let i = 0; i < ids.length; i++) buf.writeUInt32LE(ids[i]! >>> 0, i * 4);
  return createHash("sha256").update(buf).digest("hex").slice(0, 16);
}

/** A uuid-shaped engine id, stable for a given model, address and seed (vLLM draws a random uuid4). */
export function deriveEngineId(model: string, host: string, port: number, seed: number): string {
  const h = createHash("sha256").update(`${model}\0${host}\0${port}\0${seed}`).digest("hex");
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-4${h.slice(13, 16)}-a${h.slice(17, 20)}-${h.slice(20, 32)}`;
}

function parseRemote(p: Record<string, unknown>): RemoteParams | null {
  const ids = p.remote_block_ids;
  if (!Array.isArray(ids) || ids.length === 0 || !ids.every((b) => Number.isInteger(b))) return null;
  const { remote_engine_id: engineId, remote_request_id: requestId, remote_host: host } = p;
  const port = p.remote_port;
  if (typeof engineId !== "string" || typeof requestId !== "string" || typeof host !== "string") return null;
  if (typeof port !== "number" || !Number.isInteger(port) || port <= 0 || port > 65535) return null;
  return { blockIds: ids as number[], engineId, requestId, host, port };
}

export class DisaggConnector {
  readonly role: KvRole;
  private readonly holds = new Map<string, Hold>();
  private heldBlocks = 0;
  /** consumer: the transfer each engine request waits for before admission */
  private readonly transfers = new WeakMap<EngineRequest, Promise<number>>();
  private readonly agent = new Agent({ keepAliveTimeout: 30_000, connections: 64 });
  /** the next block id handed out in remote_block_ids (a free-queue cursor over the GPU blocks) */
  private blockCursor = 0;
  private holdSeq = 0;
  private readonly numGpuBlocks: number;
  /** KV bytes per token, all TP ranks together */
  private readonly kvBytesPerToken: number;
  private readonly bandwidth: number;
  private readonly stats: DisaggStats = {
    prefills: 0,
    expired: 0,
    readsServed: 0,
    readsRefused: 0,
    transfers: 0,
    failedTransfers: 0,
    transferredTokens: 0,
    queriedTokens: 0,
  };
  private xferTime: Histogram.Internal<string> | null = null;
  private xferBytes: Histogram.Internal<string> | null = null;

  constructor(
    readonly settings: DisaggSettings,
    private readonly config: EngineConfig,
    private readonly timeScale: number,
    /** remote_engine_id this engine answers with */
    readonly engineId: string,
    /** where decode engines reach this one's side channel */
    private readonly host: string,
    private readonly port: number,
    private readonly log: Logger,
  ) {
    this.role = settings.role;
    const cap = kvCapacity(config);
    this.numGpuBlocks = Math.max(1, cap.numGpuBlocks);
    this.kvBytesPerToken = cap.kvBytesPerToken * config.tensorParallelSize;
    this.bandwidth = settings.bandwidthPerRank * config.tensorParallelSize;
  }

  /**
   * Wires one HTTP request's engine requests to the connector. `params` is the body's
   * kv_transfer_params; `sinks[i]` belongs to `reqs[i]` and may be replaced (producer: to learn the
   * finish); `setParams` puts the producer's kv_transfer_params into the answer.
   */
  attach(
    params: Record<string, unknown> | null | undefined,
    responseId: string,
    reqs: readonly EngineRequest[],
    sinks: RequestSink[],
    setParams: (p: Record<string, unknown> | null) => void,
  ): void {
    if (!params || reqs.length === 0) return;
    if (params.do_remote_decode === true) this.attachProducer(responseId, reqs[0]!, sinks, setParams);
    else if (params.do_remote_prefill === true) this.attachConsumer(params, reqs);
  }

  private attachProducer(
    responseId: string,
    req: EngineRequest,
    sinks: RequestSink[],
    setParams: (p: Record<string, unknown> | null) => void,
  ): void {
    // vLLM answers with the params of the request's (first) output; the others are computed, not held
    const inner = sinks[0]!;
    const prompt = req.promptTokenIds;
    sinks[0] = {
      onTokens: (ids, time) => inner.onTokens(ids, time),
      onFinished: (reason: FinishReason, timings: RequestTimings) => {
        setParams(reason === "length" ? this.hold(responseId, prompt) : null);
        inner.onFinished(reason, timings);
      },
    };
  }

  /** Keeps a finished prefill's KV for a decode engine; returns the kv_transfer_params to answer with. */
  private hold(responseId: string, prompt: readonly number[]): Record<string, unknown> {
    const now = performance.now();
    this.sweep(now);
    const bs = this.config.blockSize;
    const blocks = Math.ceil(prompt.length / bs);
    const requestId = `${responseId}-${(++this.holdSeq >>> 0).toString(16).padStart(8, "0")}`;
    if (this.holds.size >= MAX_HOLDS) this.drop(this.holds.keys().next().value!);
    this.holds.set(requestId, {
      engineId: this.engineId,
      tokens: prompt.length,
      blocks,
      digest: promptDigest(prompt),
      expires: now + this.settings.abortTimeoutSecs * 1000,
    });
    this.heldBlocks += blocks;
    this.stats.prefills++;
    const ids: number[] = new Array<number>(blocks);
    for (let i = 0; i < blocks; i++) ids[i] = (this.blockCursor + i) % this.numGpuBlocks;
    this.blockCursor = (this.blockCursor + blocks) % this.numGpuBlocks;
    return {
      do_remote_prefill: true,
      do_remote_decode: false,
      remote_block_ids: ids,
      remote_engine_id: this.engineId,
      remote_request_id: requestId,
      remote_host: this.host,
      remote_port: this.port,
      tp_size: this.config.tensorParallelSize,
    };
  }

  private drop(requestId: string): void {
    const h = this.holds.get(requestId);
    if (!h) return;
    this.holds.delete(requestId);
    this.heldBlocks -= h.blocks;
    this.stats.expired++;
  }

  /** Holds expire in insertion order (one timeout for all), so the oldest are at the head. */
  private sweep(now: number): void {
    for (const [id, h] of this.holds) {
      if (h.expires > now) return;
      this.drop(id);
    }
  }

  /** The side channel: a decode engine reads held KV, which releases it (NIXL's read + notification). */
  serveRead(body: Record<string, unknown>, res: ServerResponse): void {
    this.sweep(performance.now());
    const requestId = body.remote_request_id;
    const engineId = body.remote_engine_id;
    if (typeof requestId !== "string" || typeof engineId !== "string")
      throw new HttpError(400, "remote_request_id and remote_engine_id are required");
    const h = this.holds.get(requestId);
    if (!h || engineId !== h.engineId) {
      this.stats.readsRefused++;
      throw new HttpError(404, `no KV held for request ${requestId} (never prefilled here, read or expired)`);
    }
    if (body.digest !== h.digest) {
      this.stats.readsRefused++;
      throw new HttpError(
        409,
        `request ${requestId}: the decode engine's prompt differs from the prefilled one`,
      );
    }
    this.holds.delete(requestId);
    this.heldBlocks -= h.blocks;
    this.stats.readsServed++;
    const text = JSON.stringify({ num_tokens: h.tokens, num_blocks: h.blocks });
    res.writeHead(200, { "content-type": "application/json", "content-length": Buffer.byteLength(text) });
    res.end(text);
  }

  private attachConsumer(params: Record<string, unknown>, reqs: readonly EngineRequest[]): void {
    const prompt = reqs[0]!.promptTokenIds;
    this.stats.queriedTokens += prompt.length;
    const remote = parseRemote(params);
    if (!remote) {
      // vLLM: "Got invalid KVTransferParams ... This request will not utilize KVTransfer"
      this.log.warn(
        { params },
        "kv_transfer_params with do_remote_prefill lack remote fields: computing locally",
      );
      return;
    }
    const transfer = this.pull(remote, prompt);
    // choices of the same prompt share one transfer (n > 1)
    for (const r of reqs) if (r.promptTokenIds === prompt) this.transfers.set(r, transfer);
  }

  /** Reads the KV from the producer and waits the modelled transfer; resolves the tokens received (0: failed). */
  private async pull(remote: RemoteParams, prompt: readonly number[]): Promise<number> {
    const bs = this.config.blockSize;
    const tokens = Math.min(remote.blockIds.length * bs, prompt.length);
    const host = remote.host.includes(":") ? `[${remote.host}]` : remote.host;
    try {
      const res = await request(`http://${host}:${remote.port}${NIXL_READ_PATH}`, {
        method: "POST",
        dispatcher: this.agent,
        headers: { "content-type": "application/json" },
        body: JSON.stringify({
          remote_engine_id: remote.engineId,
          remote_request_id: remote.requestId,
          num_tokens: tokens,
          digest: promptDigest(prompt),
        }),
        signal: AbortSignal.timeout(READ_TIMEOUT_MS),
      });
      const text = await res.body.text();
      if (res.statusCode !== 200)
        throw new PeerError(`producer answered ${res.statusCode}: ${text.slice(0, 300)}`);
      const got = (JSON.parse(text) as { num_tokens?: unknown }).num_tokens;
      if (typeof got !== "number" || got < tokens)
        throw new PeerError(`producer holds ${String(got)} tokens`);
    } catch (err) {
      this.stats.failedTransfers++;
      this.log.warn(
        { err: (err as Error).message, producer: `${remote.host}:${remote.port}`, request: remote.requestId },
        "KV transfer failed: computing the prompt locally",
      );
      return 0;
    }
    const bytes = tokens * this.kvBytesPerToken;
    const seconds = bytes / this.bandwidth;
    await new Promise((r) => setTimeout(r, seconds * this.timeScale * 1000));
    this.stats.transfers++;
    this.stats.transferredTokens += tokens;
    this.xferTime?.observe(seconds);
    this.xferBytes?.observe(bytes);
    return tokens;
  }

  /**
   * Runtime hook before admission: a request whose KV comes from a producer waits for it, then
   * enters the engine with the transferred prefix as an external prefix already in place (the
   * transfer time was spent here, so the engine charges none: infinite bandwidth).
   */
  prepare(req: EngineRequest): Promise<void> | null {
    const t = this.transfers.get(req);
    if (!t) return null;
    this.transfers.delete(req);
    return t.then((tokens) => {
      if (tokens <= 0) return;
      req.externalCachedTokens = tokens;
      req.externalLoadBandwidth = Number.POSITIVE_INFINITY;
    });
  }

  snapshot(): DisaggStats & { heldRequests: number; heldBlocks: number } {
    this.sweep(performance.now());
    return { ...this.stats, heldRequests: this.holds.size, heldBlocks: this.heldBlocks };
  }

  /**
   * vLLM's NIXL metrics (recorded where the transfer runs: the decode engine), the connector's
   * external prefix counters, and the sim's own view of both sides.
   */
  registerMetrics(registry: Registry, labels: Record<string, string>, externalHitTokens: () => number): void {
    const labelNames = Object.keys(labels);
    const hist = (name: string, help: string, buckets: number[]) =>
      new Histogram({ name, help, buckets, labelNames, registers: [registry] }).labels(labels);
    this.xferTime = hist(
      "vllm:nixl_xfer_time_seconds",
      "Histogram of transfer duration for NIXL KV Cache transfers.",
      XFER_TIME_BUCKETS,
    );
    this.xferBytes = hist(
      "vllm:nixl_bytes_transferred",
      "Histogram of bytes transferred per NIXL KV Cache transfers.",
      XFER_BYTES_BUCKETS,
    );
    const counter = (name: string, help: string, read: () => number) => {
      let seen = 0;
      return new Counter({
        name,
        help,
        labelNames,
        registers: [registry],
        collect() {
          // mirrored: counters live in the connector; only the growth since the last scrape is added
          const v = read();
          this.inc(labels, Math.max(0, v - seen));
          seen = Math.max(seen, v);
        },
      });
    };
    const gauge = (name: string, help: string, read: () => number) =>
      new Gauge({
        name,
        help,
        labelNames,
        registers: [registry],
        collect() {
          this.set(labels, read());
        },
      });
    const s = () => this.snapshot();
    counter(
      "vllm:nixl_num_failed_transfers_total",
      "Number of failed NIXL KV Cache transfers.",
      () => this.stats.failedTransfers,
    );
    counter(
      "vllm:external_prefix_cache_queries_total",
      "External prefix cache queries from KV connector cross-instance cache sharing, in terms of number of queried tokens.",
      () => this.stats.queriedTokens,
    );
    counter(
      "vllm:external_prefix_cache_hits_total",
      "External prefix cache hits from KV connector cross-instance cache sharing, in terms of number of cached tokens.",
      externalHitTokens,
    );
    counter(
      "switchyard_sim_nixl_prefills_total",
      "Prefills answered with kv_transfer_params for a decode engine (producer, sim only).",
      () => this.stats.prefills,
    );
    counter(
      "switchyard_sim_nixl_expired_total",
      "Held prefills dropped unread after VLLM_NIXL_ABORT_REQUEST_TIMEOUT or past the hold cap (producer, sim only).",
      () => s().expired,
    );
    counter(
      "switchyard_sim_nixl_reads_served_total",
      "Side-channel reads that released held KV to a decode engine (producer, sim only).",
      () => this.stats.readsServed,
    );
    counter(
      "switchyard_sim_nixl_reads_refused_total",
      "Side-channel reads refused: unknown, already read, expired, or another prompt (producer, sim only).",
      () => this.stats.readsRefused,
    );
    counter(
      "switchyard_sim_nixl_transfers_total",
      "KV transfers completed from a prefill engine (consumer, sim only).",
      () => this.stats.transfers,
    );
    counter(
      "switchyard_sim_nixl_transferred_tokens_total",
      "Prompt tokens whose KV came from a prefill engine instead of being computed (consumer, sim only).",
      () => this.stats.transferredTokens,
    );
    gauge(
      "switchyard_sim_nixl_held_requests",
      "Prefills whose KV is held for a decode engine (producer, sim only).",
      () => s().heldRequests,
    );
    gauge(
      "switchyard_sim_nixl_held_blocks",
      "GPU blocks of held prefills (producer, sim only; not pinned in the engine model).",
      () => this.heldBlocks,
    );
  }

  async close(): Promise<void> {
    this.holds.clear();
    this.heldBlocks = 0;
    await this.agent.close();
  }
}
