// KV events for tests and benchmarks that feed an index directly, without the wire format.
import type { KvEvent, KvMedium } from "../../src/kvevents/events.js";

/** A BlockStored event for `blockHashes` (no parent, no tokens, block size 16). */
export function blockStored(
  blockHashes: bigint[],
  medium: KvMedium | null = "GPU",
  parentBlockHash: bigint | null = null,
): KvEvent {
  return {
    type: "BlockStored",
    blockHashes,
    parentBlockHash,
    tokenIds: [],
    blockSize: 16,
    loraId: null,
    medium,
  };
}
