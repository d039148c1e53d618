// The vLLM KV-event vectors in test/fixtures/vectors, and a mapping from their `decoded` JSON form to
// typed batches. Two sets: vllm-kv-events.json (events as tagged arrays, vLLM ≤ 0.23) and
// vllm-kv-events-v028.json (events as tagged maps, vLLM ≥ 0.24; captured at v0.28).
import type {
  BlockStored,
  KvEvent,
  KvEventBatch,
  KvEventLayout,
  MsgValue,
} from "../../src/kvevents/events.js";
import { readVectors } from "../helpers/vectors.js";

export interface EventVector {
  name: string;
  note?: string;
  topic: string;
  seq: number;
  frames_hex: [string, string, string];
  decoded: unknown[];
}

export const ARRAY_VECTORS = "vllm-kv-events.json";
export const MAP_VECTORS = "vllm-kv-events-v028.json";

export function loadVectors(file = ARRAY_VECTORS): EventVector[] {
  return readVectors<{ frames: EventVector[] }>(file).frames;
}

/** Every vector with the layout its events are written in. */
export function allVectors(): Array<EventVector & { layout: KvEventLayout }> {
  return [
    ...loadVectors(ARRAY_VECTORS).map((v) => ({ ...v, layout: "array" as const })),
    ...loadVectors(MAP_VECTORS).map((v) => ({ ...v, layout: "map" as const })),
  ];
}

/** Vector JSON writes integers beyond 2^53 as decimal strings; hashes are bigints whatever their size. */
function hash(x: unknown): bigint {
  return BigInt(x as string | number);
}

function fromMap(e: Record<string, unknown>): KvEvent {
  switch (e.type) {
    case "BlockStored": {
      const ev: BlockStored = {
        type: "BlockStored",
        blockHashes: (e.block_hashes as unknown[]).map(hash),
        parentBlockHash: e.parent_block_hash === null ? null : hash(e.parent_block_hash),
        tokenIds: e.token_ids as number[],
        blockSize: e.block_size as number,
        loraId: e.lora_id as number | null,
        medium: e.medium as string | null,
        loraName: e.lora_name as string | null,
      };
      if (e.extra_keys != null) ev.extraKeys = e.extra_keys as (MsgValue[] | null)[];
      if (e.group_idx != null) ev.groupIdx = e.group_idx as number;
      if (e.kv_cache_spec_kind != null) ev.kvCacheSpecKind = e.kv_cache_spec_kind as string;
      if (e.kv_cache_spec_sliding_window != null)
        ev.kvCacheSpecSlidingWindow = e.kv_cache_spec_sliding_window as number;
      if (e.locality != null) ev.locality = e.locality as string;
      return ev;
    }
    case "BlockRemoved": {
      const ev: KvEvent = {
        type: "BlockRemoved",
        blockHashes: (e.block_hashes as unknown[]).map(hash),
        medium: e.medium as string | null,
      };
      if (e.group_idx != null) ev.groupIdx = e.group_idx as number;
      if (e.locality != null) ev.locality = e.locality as string;
      return ev;
    }
    case "AllBlocksCleared":
      return { type: "AllBlocksCleared" };
    default:
      throw new Error(`vector event type ${String(e.type)}`);
  }
}

function fromArray(e: unknown[]): KvEvent {
  switch (e[0]) {
    case "BlockStored": {
      const ev: KvEvent = {
        type: "BlockStored",
        blockHashes: (e[1] as unknown[]).map(hash),
        parentBlockHash: e[2] === null ? null : hash(e[2]),
        tokenIds: e[3] as number[],
        blockSize: e[4] as number,
        loraId: (e[5] as number | null | undefined) ?? null,
        medium: (e[6] as string | null | undefined) ?? null,
      };
      if (e.length > 7) ev.loraName = e[7] as string | null;
      return ev;
    }
    case "BlockRemoved":
      return {
        type: "BlockRemoved",
        blockHashes: (e[1] as unknown[]).map(hash),
        medium: (e[2] as string | null | undefined) ?? null,
      };
    case "AllBlocksCleared":
      return { type: "AllBlocksCleared" };
    default:
      throw new Error(`vector event type ${String(e[0])}`);
  }
}

/** A vector's `decoded` JSON (events as arrays or as maps) → the typed batch decodeBatch should produce. */
export function typedFromVectorForm(decoded: unknown[]): KvEventBatch {
  const [ts, events, rank] = decoded as [number, unknown[], number | null | undefined];
  return {
    ts,
    dataParallelRank: rank ?? null,
    events: events.map((e) => (Array.isArray(e) ? fromArray(e) : fromMap(e as Record<string, unknown>))),
  };
}
