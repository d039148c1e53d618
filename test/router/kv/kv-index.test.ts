// One KV index per KV-cache group: an eviction in one group leaves the others alone, and a predicted hit
// is gated by the full-attention groups only.
import { test } from "node:test";
import assert from "node:assert/strict";
import type { BlockStored } from "../../../src/kvevents/events.js";
import { KvIndex, MAX_KV_GROUPS } from "../../../src/router/kv/kv-index.js";

const stored = (hashes: bigint[], extra: Partial<BlockStored> = {}): BlockStored => ({
  type: "BlockStored",
  blockHashes: hashes,
  parentBlockHash: null,
  tokenIds: hashes.flatMap(() => [1, 2]),
  blockSize: 2,
  loraId: null,
  medium: "GPU",
  ...extra,
});

test("an eviction in one KV-cache group does not erase the same hash in another", () => {
  const idx = new KvIndex();
  idx.apply("e", stored([1n, 2n, 3n], { groupIdx: 0 }));
  idx.apply("e", stored([1n, 2n, 3n], { groupIdx: 1 }));
  idx.apply("e", { type: "BlockRemoved", blockHashes: [1n], medium: "GPU", groupIdx: 1 });
  assert.deepEqual(idx.match([1n, 2n, 3n], "e"), { blocks: 3, credit: 3 });
  assert.equal(idx.blocksIn(0, "e"), 3);
  assert.equal(idx.blocksIn(1, "e"), 2);
  // events without a group (older engines) are group 0
  idx.apply("e", { type: "BlockRemoved", blockHashes: [3n], medium: "GPU" });
  assert.deepEqual(idx.match([1n, 2n, 3n], "e"), { blocks: 2, credit: 2 });
  idx.apply("e", { type: "AllBlocksCleared" });
  assert.equal(idx.blocksOf("e"), 0);
});

test("a hit needs every full-attention group; sliding-window groups do not shorten it", () => {
  const idx = new KvIndex();
  idx.apply("e", stored([1n, 2n, 3n, 4n], { groupIdx: 0, kvCacheSpecKind: "full_attention" }));
  idx.apply("e", stored([1n, 2n], { groupIdx: 1, kvCacheSpecKind: "full_attention" }));
  idx.apply(
    "e",
    stored([4n], { groupIdx: 2, kvCacheSpecKind: "sliding_window", kvCacheSpecSlidingWindow: 4 }),
  );
  assert.deepEqual(idx.match([1n, 2n, 3n, 4n], "e"), { blocks: 2, credit: 2 });
  // another engine that never said which groups are what: group 0 stands for it
  idx.apply("f", stored([1n, 2n, 3n], { groupIdx: 0 }));
  idx.apply("f", stored([9n], { groupIdx: 1 }));
  assert.deepEqual(idx.match([1n, 2n, 3n], "f"), { blocks: 3, credit: 3 });
  // groups beyond the cap are counted and dropped
  idx.apply("f", stored([5n], { groupIdx: MAX_KV_GROUPS }));
  assert.equal(idx.droppedGroupEvents, 1);
  idx.forget("e");
  assert.equal(idx.blocksOf("e"), 0);
  assert.equal(idx.size, 4);
});
