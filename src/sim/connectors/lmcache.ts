// LMCache in the sim: what the connector does around the engine model. Before a request enters the
// engine its prompt's chunk hashes are computed (as LMCache 0.5.x does, lmcache-keys.ts) and, with a
// remote server, the longest stored prefix is looked up; the engine then loads that prefix at the
// remote bandwidth instead of computing it (its local CPU tier is the engine's own ChunkTier). When the
// engine announces computed chunks they are stored remotely and published as BlockStored events the
// way vLLM relays LMCache's: one per chunk, the LMCache chunk hash, medium "cpu".
import type { EngineConfig, EngineRequest } from "../../engine/types.js";
import { kvCapacity } from "../../engine/capacity.js";
import type { BlockStored, KvEvent } from "../../kvevents/events.js";
import type { Logger } from "../../obs/log.js";
import type { LmcacheSettings } from "../config/lmcache-config.js";
import { chunkHashes, chunkMeta, lmcacheDtypeName, type ChunkKeyScheme } from "./lmcache-keys.js";
import { LmcacheRemote } from "./lmcache-remote.js";

/** The medium vLLM's LMCache-backed connectors put in BlockStored (lower case, unlike native "CPU"). */
export const LMCACHE_EVENT_MEDIUM = "cpu";

export interface LmcacheStats {
  /** prompt tokens of requests the connector was asked about (vllm:external_prefix_cache_queries) */
  queriedTokens: number;
  lookups: number;
  lookupHitChunks: number;
  storedChunks: number;
  droppedChunks: number;
  bytesSent: number;
  bytesReceived: number;
  errors: number;
  storeQueue: number;
}

interface PromptChunks {
  hashes: BigUint64Array;
  /** leading chunks the remote server already holds: not stored again (LMCache skips existing keys) */
  remoteHit: number;
}

export class LmcacheTier {
  readonly remote: LmcacheRemote | null;
  readonly scheme: ChunkKeyScheme;
  /** request id → its prompt's chunk hashes, from arrival until it finishes (bounded by requests in flight) */
  private readonly chunks = new Map<string, PromptChunks>();
  private queriedTokens = 0;

  constructor(
    readonly settings: LmcacheSettings,
    modelName: string,
    config: EngineConfig,
    log: Logger,
  ) {
    this.scheme = {
      modelName,
      worldSize: config.tensorParallelSize,
      dtype: lmcacheDtypeName(config.model.dtype),
      chunkTokens: settings.chunkTokens,
      hashSeed: config.hashSeed,
    };
    const perRankChunkBytes = settings.chunkTokens * kvCapacity(config).kvBytesPerToken;
    this.remote = settings.remoteUrl
      ? new LmcacheRemote(
          settings.remoteUrl,
          this.scheme,
          chunkMeta(config.model, config.tensorParallelSize, settings.chunkTokens),
          Math.max(1, Math.round(perRankChunkBytes * settings.payloadScale)),
          settings.blockingTimeoutSecs * 1000,
          log,
        )
      : null;
  }

  /**
   * Hashes the prompt's full chunks and, with a remote server, looks its prefix up. Returns a promise
   * when the request must wait for the lookup (it then carries externalCachedTokens), null otherwise.
   */
  prepare(req: EngineRequest): Promise<void> | null {
    const n = this.settings.chunkTokens;
    const numChunks = Math.floor(req.promptTokenIds.length / n);
    const hashes = chunkHashes(req.promptTokenIds, numChunks, this.scheme);
    const entry: PromptChunks = { hashes, remoteHit: 0 };
    this.chunks.set(req.requestId, entry);
    if (!this.remote) return null;
    this.queriedTokens += req.promptTokenIds.length;
    const bandwidth = this.settings.remoteLoadBandwidth;
    return this.remote.lookup(hashes, numChunks).then((hit) => {
      entry.remoteHit = hit;
      if (hit > 0) {
        req.externalCachedTokens = hit * n;
        req.externalLoadBandwidth = bandwidth;
      }
    });
  }

  /** The engine computed chunks [from, to) of a request's prompt: store them, and say so on the event stream. */
  chunksComputed(
    requestId: string,
    from: number,
    to: number,
    tokenIds: readonly number[],
    emit: ((events: KvEvent[]) => void) | null,
  ): void {
    const entry = this.chunks.get(requestId);
    if (!entry) return;
    const hashes = entry.hashes;
    const last = Math.min(to, hashes.length);
    if (last <= from) return;
    const firstNew = Math.max(from, entry.remoteHit);
    if (firstNew < last) this.remote?.store(hashes, firstNew, last);
    if (!emit) return;
    const n = this.settings.chunkTokens;
    // LMCache's CacheStoreEvent, as vLLM's LMCacheConnectorV1 turns it into a BlockStored: one per chunk,
    // no LoRA fields (LMCache hashes tokens only) and no group_idx
    const events: BlockStored[] = [];
    for (let c = from; c < last; c++)
      events.push({
        type: "BlockStored",
        blockHashes: [hashes[c]!],
        parentBlockHash: c > 0 ? hashes[c - 1]! : null,
        tokenIds: tokenIds.slice(c * n, (c + 1) * n),
        blockSize: n,
        loraId: null,
        medium: LMCACHE_EVENT_MEDIUM,
        loraName: null,
      });
    emit(events);
  }

  forget(requestId: string): void {
    this.chunks.delete(requestId);
  }

  stats(): LmcacheStats {
    const r = this.remote?.counters;
    return {
      queriedTokens: this.queriedTokens,
      lookups: r?.lookups ?? 0,
      lookupHitChunks: r?.lookupHitChunks ?? 0,
      storedChunks: r?.storedChunks ?? 0,
      droppedChunks: r?.droppedChunks ?? 0,
      bytesSent: r?.bytesSent ?? 0,
      bytesReceived: r?.bytesReceived ?? 0,
      errors: r?.errors ?? 0,
      storeQueue: this.remote?.queued ?? 0,
    };
  }

  async close(): Promise<void> {
    this.chunks.clear();
    await this.remote?.close();
  }
}
