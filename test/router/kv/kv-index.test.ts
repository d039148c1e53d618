// One KV index per KV-cache group: an eviction in one group leaves the others alone, and a predicted hit
// is gated by the full-attention groups only. One engine's chain read by tier: the credit a hit earns
// and the GPU and offload blocks it spans come from the same leading blocks.
import { test } from "node:test";
import assert from "node:assert/strict";
import type { BlockStored } from "../../../src/kvevents/events.js";
import { KvBlockIndex } from "../../../src/router/kv/block-index.js";
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

test("a chain held partly on the GPU and partly offloaded reads the same leading blocks as credit and as tiers", () => {
  const idx = new KvBlockIndex({ offloadCredit: 0.5 });
  // blocks 1-2 on the GPU, 3 offloaded only, 4 on the GPU again, 5 on another engine only
  idx.apply("e", stored([1n, 2n, 4n]));
  idx.apply("e", stored([3n], { medium: "CPU" }));
  idx.apply("f", stored([5n]));
  const chain = [1n, 2n, 3n, 4n, 5n];
  // the prefix ends where the engine holds a block in no tier (5); an offloaded block counts at its credit
  assert.deepEqual(idx.match(chain, "e"), { blocks: 4, credit: 3.5 });
  // the GPU run ends at the first block held only offloaded, even though a later one is on the GPU
  assert.deepEqual(idx.matchTiers(chain, "e"), { gpu: 2, any: 4 });
  // a block held in both tiers counts as a GPU block
  idx.apply("e", stored([3n]));
  assert.deepEqual(idx.match(chain, "e"), { blocks: 4, credit: 4 });
  assert.deepEqual(idx.matchTiers(chain, "e"), { gpu: 4, any: 4 });
  // a chain whose first block it lacks, and an engine it never heard of
  assert.deepEqual(idx.match([9n, 1n], "e"), { blocks: 0, credit: 0 });
  assert.deepEqual(idx.matchTiers([9n, 1n], "e"), { gpu: 0, any: 0 });
  assert.deepEqual(idx.match(chain, "nobody"), { blocks: 0, credit: 0 });
  assert.deepEqual(idx.matchTiers(chain, "nobody"), { gpu: 0, any: 0 });
});

test("one prompt walked for several engines reads each engine's blocks, and an event between walks is seen", () => {
  const idx = new KvBlockIndex();
  const prompt = [1n, 2n, 3n, 4n];
  idx.apply("a", stored([1n, 2n, 3n]));
  idx.apply("b", stored([1n]));
  assert.deepEqual(idx.matchTiers(prompt, "a"), { gpu: 3, any: 3 });
  // the walk for b reads past where a's stopped, on the same array
  idx.apply("c", stored([1n, 2n, 3n, 4n]));
  assert.deepEqual(idx.matchTiers(prompt, "b"), { gpu: 1, any: 1 });
  assert.deepEqual(idx.matchTiers(prompt, "c"), { gpu: 4, any: 4 });
  // a block b stores between two walks of the same prompt counts in the second
  idx.apply("b", stored([2n]));
  assert.deepEqual(idx.matchTiers(prompt, "b"), { gpu: 2, any: 2 });
  idx.apply("c", { type: "BlockRemoved", blockHashes: [2n], medium: "GPU" });
  assert.deepEqual(idx.matchTiers(prompt, "c"), { gpu: 1, any: 1 });
  idx.purge("a");
  assert.deepEqual(idx.matchTiers(prompt, "a"), { gpu: 0, any: 0 });
});

test("a hash gaining and losing holders, by event, purge and eviction, is read the same for each engine", () => {
  const idx = new KvBlockIndex({ maxBlocks: 2 });
  const seen = (engine: string) => idx.matchTiers([1n], engine).any;
  idx.apply("a", stored([1n]));
  idx.apply("b", stored([1n], { medium: "CPU" }));
  idx.apply("c", stored([1n]));
  assert.deepEqual([seen("a"), seen("b"), seen("c")], [1, 1, 1]);
  assert.deepEqual(idx.matchTiers([1n], "b"), { gpu: 0, any: 1 });
  // b's offload copy gone, then a's: c alone holds it, and b holding it again on its GPU makes two
  idx.apply("b", { type: "BlockRemoved", blockHashes: [1n], medium: "CPU" });
  idx.purge("a");
  assert.deepEqual([seen("a"), seen("b"), seen("c")], [0, 0, 1]);
  idx.apply("b", stored([1n]));
  assert.deepEqual([idx.gpuBlocksOf("b"), idx.gpuBlocksOf("c")], [1, 1]);
  idx.apply("c", { type: "BlockRemoved", blockHashes: [1n], medium: "GPU" });
  assert.deepEqual([seen("b"), seen("c"), idx.blocksOf("c")], [1, 0, 0]);
  // the last holder's removal drops the hash; two newer hashes evict an older one with all its holders
  idx.apply("c", stored([1n]));
  idx.apply("a", stored([2n, 3n]));
  assert.equal(idx.size, 2);
  assert.deepEqual(
    [seen("b"), seen("c"), idx.gpuBlocksOf("b"), idx.gpuBlocksOf("c"), idx.evictions],
    [0, 0, 0, 0, 1],
  );
});
