// The KV-cache manager on its own, as the scheduler drives it: lookup across tiers, admission that
// changes nothing when the blocks do not fit, allocation for running requests, freeing, and the
// invariant the scheduler asserts at the end of each step.
import { test } from "node:test";
import assert from "node:assert/strict";
import { KvCacheManager } from "../../src/engine/kv-cache-manager.js";
import { Req } from "../../src/engine/request.js";
import { newCounters } from "../../src/engine/engine.js";
import { config, request, tokens } from "./helpers.js";

const counters = newCounters;

/** admits a request for its whole prompt and caches its blocks, as one prefill step would */
function prefill(kv: KvCacheManager, r: Req): void {
  const hit = kv.findCached(r);
  const hitTokens = (hit.gpu + hit.cpu + hit.lmcache + hit.external) * 16;
  assert.ok(kv.admit(r, hit, r.numTokens - hitTokens));
  r.numComputed = hitTokens;
  r.stepTokens = r.numTokens - hitTokens;
  kv.cacheBlocks(r, r.numTokens);
  kv.assertCovers(r);
  r.numComputed = r.numTokens;
  r.stepTokens = 0;
}

test("a repeated prompt finds its full blocks in the GPU prefix cache after the first is freed", () => {
  const c = counters();
  const kv = new KvCacheManager(config({ numGpuBlocksOverride: 64 }), c, false);
  const prompt = tokens(100);
  const a = new Req(request("a", prompt), 0);
  prefill(kv, a);
  assert.equal(a.blocks.length, 7);
  kv.free(a);
  const b = new Req(request("b", prompt), 1);
  const hit = kv.findCached(b);
  // 6 full blocks below the last token: the hit is capped so that at least one token is computed
  assert.deepEqual({ ...hit }, { gpu: 6, cpu: 0, lmcache: 0, external: 0 });
  prefill(kv, b);
  assert.equal(c.prefixCacheHits, 96);
  assert.equal(kv.probeCachedTokens(prompt), 96);
});

test("admission that does not fit changes nothing; a running request's allocation can fail", () => {
  const kv = new KvCacheManager(config({ numGpuBlocksOverride: 8 }), counters(), false);
  const big = new Req(request("big", tokens(200)), 0);
  const hit = kv.findCached(big);
  assert.equal(kv.admit(big, hit, 200), false);
  assert.equal(big.blocks.length, 0);
  assert.equal(kv.numFreeBlocks, 8);
  const small = new Req(request("small", tokens(100, 1)), 1);
  prefill(kv, small);
  assert.equal(kv.numFreeBlocks, 1);
  assert.equal(kv.allocateSlots(small, 40), false);
  assert.equal(kv.allocateSlots(small, 20), true);
  assert.equal(small.blocks.length, 8);
  kv.free(small);
  assert.equal(kv.numFreeBlocks, 8);
  assert.equal(small.blocks.length, 0);
});

test("the native CPU tier serves what the GPU evicted", () => {
  const c = counters();
  const kv = new KvCacheManager(
    config({ numGpuBlocksOverride: 16, offload: { backend: "native", bytes: 64 * 2 ** 21 } }),
    c,
    false,
  );
  const a = new Req(request("a", tokens(160)), 0);
  kv.beginStep();
  prefill(kv, a);
  assert.equal(c.offloadStoredBlocks, 10);
  kv.free(a);
  // another prompt takes every block, evicting a's from HBM
  const other = new Req(request("o", tokens(250, 2)), 1);
  prefill(kv, other);
  kv.free(other);
  const again = new Req(request("a2", tokens(160)), 2);
  const hit = kv.findCached(again);
  assert.ok(hit.cpu > 0, `CPU hit ${hit.cpu}`);
  assert.equal(hit.gpu + hit.cpu, 9);
});

test("a scheduled request without blocks for its tokens breaks the invariant", () => {
  const kv = new KvCacheManager(config({ numGpuBlocksOverride: 8 }), counters(), false);
  const r = new Req(request("r", tokens(40)), 0);
  r.stepTokens = 40;
  assert.throws(() => kv.assertCovers(r), /KV invariant: request r has 0 blocks for 40 tokens \(needs 3\)/);
});
