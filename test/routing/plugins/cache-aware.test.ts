// Cache-aware routing as pure functions (the `cache-aware` plugin and what it reads): the prefix index (matching, LRU cap, purge), the KV block
// index fed from vLLM's own event bytes, the cost function and its saturation guard under skew.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import {
  createPolicy,
  decide,
  PrefixIndex,
  PrefixOracle,
  charBlockIds,
  renderForPrefix,
  type EngineView,
  type RequestView,
} from "../../../src/routing/index.js";
import { eng } from "../../helpers/routing.js";
import { KvBlockIndex } from "../../../src/router/kv/block-index.js";
import { blockStored as stored } from "../../../bench/support/kv.js";
import { decodeBatch } from "../../../src/kvevents/codec.js";
import { computeBlockHashes } from "../../../src/protocol/block-hashing.js";
import { fixturePath } from "../../helpers/vectors.js";

const words = (seed: number, n: number) => {
  let x = seed >>> 0 || 1;
  const out: string[] = [];
  for (let i = 0; i < n; i++) {
    x = Math.imul(x ^ (x >>> 15), 0x2c1b3c6d) >>> 0;
    out.push(`w${x % 9973}`);
  }
  return out.join(" ");
};

test("prefix index: longest shared prefix per engine, chat roles count, other models never match", () => {
  const idx = new PrefixIndex({ blockChars: 16 });
  const a = { model: "m", prompt: "x".repeat(160) };
  const b = { model: "m", prompt: "x".repeat(80) + "y".repeat(80) };
  idx.insert(idx.ids(a).ids, "e1");
  idx.insert(idx.ids(b).ids, "e2");
  const out = new Float64Array(2);
  idx.match(idx.ids(a).ids, [{ id: "e1" }, { id: "e2" }], out);
  assert.deepEqual([...out], [10, 5]);
  idx.match(idx.ids({ model: "other", prompt: "x".repeat(160) }).ids, [{ id: "e1" }, { id: "e2" }], out);
  assert.deepEqual([...out], [0, 0]);
  assert.notEqual(
    renderForPrefix({ messages: [{ role: "system", content: "hi" }] }),
    renderForPrefix({ messages: [{ role: "user", content: "hi" }] }),
  );
  assert.equal(idx.purge("e1"), 10);
  assert.equal(idx.size, 10); // e2's blocks, shared or not, stay
  idx.match(idx.ids(a).ids, [{ id: "e1" }, { id: "e2" }], out);
  assert.deepEqual([...out], [0, 5]);
  assert.deepEqual([...idx.enginesHeld()], ["e2"]);
});

test("prefix index: a token-id prompt gets the blocks and length of its ids joined by spaces, without the join", () => {
  const idx = new PrefixIndex({ blockChars: 64, maxBlocksPerRequest: 256 });
  let x = 7;
  const next = () => (x = Math.imul(x ^ (x >>> 13), 0x5bd1e995) >>> 0);
  const cases: unknown[][] = [
    [],
    [0],
    [0x7fffffff, 1_000_000_000, 999_999_999, 10, 9, 100, 99],
    // past the blocks the index reads per request (256 × 64 characters): rendered only that far
    Array.from({ length: 6000 }, () => next() % 200_000),
    Array.from({ length: 900 }, () => next() % 12),
    // not ids the fast path writes: the join renders them as before
    [1, -2, 3.5, 4],
    [Number.MAX_SAFE_INTEGER, 1],
  ];
  for (const ids of cases) {
    const want = { ids: charBlockIds(ids.join(" "), "m", 64, 256), chars: ids.join(" ").length };
    assert.deepEqual(idx.ids({ model: "m", prompt: ids }), want, `${ids.length} ids`);
    assert.deepEqual(idx.ids({ model: "m", prompt: [ids, [1, 2]] }), want, `${ids.length} ids, batched`);
  }
});

test("prefix index: an id learned by one engine, then others, then purged, matches the engines it was last sent to", () => {
  const engines = ["a", "b", "c"].map((id) => ({ id }));
  const out = new Float64Array(3);
  const matched = (idx: PrefixIndex, ids: number[]) => (idx.match(ids, engines, out), [...out]);
  const idx = new PrefixIndex({ maxEnginesPerBlock: 2 });
  idx.insert([1, 2], "a");
  assert.deepEqual(matched(idx, [1, 2]), [2, 0, 0]);
  idx.insert([1], "b");
  idx.insert([1], "a"); // a again: the newest of the two, b kept
  assert.deepEqual(matched(idx, [1, 2]), [2, 1, 0]);
  idx.insert([1], "c"); // a third engine pushes out the least recent, b
  assert.deepEqual(matched(idx, [1, 2]), [2, 0, 1]);
  assert.equal(idx.engineRefs, 3);
  assert.equal(idx.purge("a"), 2);
  assert.deepEqual(matched(idx, [1, 2]), [0, 0, 1]);
  assert.deepEqual([...idx.enginesHeld()], ["c"]);
  assert.equal(idx.purge("c"), 1);
  assert.equal(idx.size, 0);
  // one engine per id: the newest replaces it
  const one = new PrefixIndex({ maxEnginesPerBlock: 1 });
  one.insert([7], "a");
  one.insert([7], "b");
  assert.deepEqual(matched(one, [7]), [0, 1, 0]);
  assert.equal(one.engineRefs, 1);
});

test("prefix index memory stays within its cap over a long run of distinct prefixes", () => {
  const idx = new PrefixIndex({ blockChars: 64, maxBlocks: 5000 });
  const engines = ["a", "b", "c", "d"];
  let peak = 0;
  for (let i = 0; i < 3000; i++) {
    const { ids } = idx.ids({ model: "m", prompt: `${i} ` + words(i, 200) });
    idx.insert(ids, engines[i % 4]!);
    peak = Math.max(peak, idx.size);
    assert.ok(idx.approxBytes() <= idx.capBytes());
  }
  assert.equal(peak, 5000);
  assert.ok(idx.evictions > 0);
  // the most recent prompt is still fully known; an early one is gone
  const last = idx.ids({ model: "m", prompt: `2999 ` + words(2999, 200) }).ids;
  const out = new Float64Array(1);
  idx.match(last, [{ id: "d" }], out);
  assert.equal(out[0], last.length);
  idx.match(idx.ids({ model: "m", prompt: `0 ` + words(0, 200) }).ids, [{ id: "a" }], out);
  assert.equal(out[0], 0);
});

test("KV index from vLLM's event bytes: router hashes match, removal shortens, AllBlocksCleared empties", () => {
  const ev = JSON.parse(readFileSync(fixturePath("vectors/vllm-kv-events.json"), "utf8")) as {
    frames: { name: string; frames_hex: string[] }[];
  };
  const hv = JSON.parse(readFileSync(fixturePath("vectors/vllm-block-hashes.json"), "utf8")) as {
    cases: { name: string; python_hash_seed: string; block_size: number; token_ids: number[] }[];
  };
  const frame = (name: string) =>
    decodeBatch(Buffer.from(ev.frames.find((f) => f.name === name)!.frames_hex[2]!, "hex"));
  const idx = new KvBlockIndex();
  for (const e of frame("stored_v011").events) idx.apply("e1", e);
  const c = hv.cases.find((x) => x.name === "small_vocab_64tokens")!;
  const ours = computeBlockHashes(c.token_ids, { blockSize: c.block_size, hashSeed: c.python_hash_seed }).ids;
  assert.deepEqual(idx.match(ours, "e1"), { blocks: 4, credit: 4 });
  assert.deepEqual(idx.match(ours, "e2"), { blocks: 0, credit: 0 });
  for (const e of frame("stored_child_then_removed").events) idx.apply("e1", e);
  assert.equal(idx.match(ours, "e1").blocks, 1);
  for (const e of frame("all_cleared").events) idx.apply("e1", e);
  assert.equal(idx.match(ours, "e1").blocks, 0);
  assert.equal(idx.size, 0);
});

test("KV index: offload tier credit, purge per engine, LRU cap over a long run", () => {
  const idx = new KvBlockIndex({ maxBlocks: 1000, offloadCredit: 0.8 });
  const hs = [1n, 2n, 3n];
  idx.apply("e1", stored(hs, "GPU"));
  idx.apply("e1", stored([3n], "CPU", 2n));
  idx.apply("e1", { type: "BlockRemoved", blockHashes: [3n], medium: "GPU" });
  assert.deepEqual(idx.match(hs, "e1"), { blocks: 3, credit: 2.8 });
  idx.apply("e2", stored(hs, "GPU"));
  assert.equal(idx.purge("e1"), 3);
  assert.deepEqual(idx.match(hs, "e1"), { blocks: 0, credit: 0 });
  assert.equal(idx.match(hs, "e2").blocks, 3);
  for (let i = 0; i < 20_000; i++) {
    const h = BigInt(1000 + i);
    idx.apply(`e${i % 3}`, stored([h], "GPU", null));
    assert.ok(idx.size <= 1000);
  }
  assert.ok(idx.approxBytes() <= idx.capBytes());
  let held = 0;
  for (const e of ["e0", "e1", "e2"]) held += idx.blocksOf(e);
  assert.equal(held, idx.size); // per-engine sets shrink with evictions too
});

test("KV index: what each engine's GPU cache holds is counted from its events, through offload copies, removals, evictions and purges", () => {
  const kv = new KvBlockIndex({ maxBlocks: 6 });
  kv.apply("e1", stored([1n, 2n, 3n]));
  kv.apply("e1", stored([3n, 4n], "CPU")); // 3 offloaded as well, 4 offloaded only
  kv.apply("e2", stored([1n, 5n]));
  assert.equal(kv.gpuBlocksOf("e1"), 3);
  assert.equal(kv.gpuBlocksOf("e2"), 2);
  kv.apply("e1", stored([2n])); // stored again: still one block
  kv.apply("e1", { type: "BlockRemoved", blockHashes: [3n], medium: "GPU" }); // left in CPU
  kv.apply("e1", { type: "BlockRemoved", blockHashes: [9n], medium: "GPU" }); // never held
  assert.equal(kv.gpuBlocksOf("e1"), 2);
  // oldest first: 3, 4 (offloaded only), 1, 5, 2. Past 6 hashes the index drops the oldest
  kv.apply("e1", stored([6n, 7n, 8n])); // drops 3 and 4: no GPU copy of either
  assert.equal(kv.gpuBlocksOf("e1"), 5);
  kv.apply("e2", stored([9n, 10n])); // drops 1 (held by both) and 5
  assert.equal(kv.gpuBlocksOf("e1"), 4);
  assert.equal(kv.gpuBlocksOf("e2"), 2);
  kv.purge("e1");
  assert.equal(kv.gpuBlocksOf("e1"), 0);
  assert.equal(kv.gpuBlocksOf("nobody"), 0);
});

/**
 * `kv` filled with `n` hashes stored by engines a, b and c in turn (a third of them held by two or
 * three, every fifth in the offload tier only), beside a model of what each engine holds; `check`
 * compares every engine's counts, hashes and first `probe` matches with the model.
 */
function filledKvIndex(kv: KvBlockIndex, n: number, seed: bigint) {
  const model = new Map<string, Map<bigint, number>>(["a", "b", "c"].map((e) => [e, new Map()]));
  let x = seed;
  const next = () => (x = (x * 6364136223846793005n + 1442695040888963407n) & 0xffffffffffffffffn);
  const shared: bigint[] = [];
  const store = (engine: string, h: bigint, medium: "GPU" | "CPU") => {
    kv.apply(engine, stored([h], medium));
    const m = model.get(engine)!;
    m.set(h, (m.get(h) ?? 0) | (medium === "GPU" ? 1 : 2));
  };
  for (let i = 0; i < n; i++) {
    const h = i % 3 === 0 && shared.length > 0 ? shared[(i * 7919) % shared.length]! : next();
    if (i % 3 !== 0) shared.push(h);
    store(["a", "b", "c"][i % 3]!, h, i % 5 === 0 ? "CPU" : "GPU");
  }
  const check = (probe: number) => {
    for (const e of ["a", "b", "c"]) {
      const m = model.get(e)!;
      assert.equal(kv.blocksOf(e), m.size, e);
      assert.equal(kv.gpuBlocksOf(e), [...m.values()].filter((t) => t & 1).length, e);
      assert.deepEqual(new Set(kv.hashesOf(e)), new Set(m.keys()), e);
      for (const [h, t] of [...m].slice(0, probe))
        assert.deepEqual(kv.matchTiers([h], e), { gpu: t & 1 ? 1 : 0, any: 1 }, `${e} ${h}`);
    }
  };
  return { model, shared, next, store, check };
}

test("purging one engine from a large KV index leaves every other engine's hashes, tiers and counts as they were", () => {
  const kv = new KvBlockIndex({ maxBlocks: 100_000 });
  const { model, check } = filledKvIndex(kv, 20_000, 12345n);
  assert.equal(kv.purge("b"), model.get("b")!.size);
  model.set("b", new Map());
  check(500);
  assert.equal(kv.size, new Set([...model.get("a")!.keys(), ...model.get("c")!.keys()]).size);
});

test("a purge of a large KV index answers at once and sweeps the engine's hashes out over turns", async () => {
  const kv = new KvBlockIndex({ maxBlocks: 100_000, purgeSlotsPerTurn: 1024 });
  const { model, shared, next, store, check: checkEngines } = filledKvIndex(kv, 6_000, 777n);
  const check = () => {
    checkEngines(200);
    // a hash b held before its purge and does not hold again is not b's, whatever the sweep has reached
    for (const h of shared.slice(0, 300))
      if (!model.get("b")!.has(h)) assert.deepEqual(kv.matchTiers([h], "b"), { gpu: 0, any: 0 });
  };
  const turn = () => new Promise<void>((r) => setImmediate(r));

  assert.equal(kv.purge("b"), model.get("b")!.size);
  model.set("b", new Map());
  assert.ok(kv.sweeping);
  check();
  // between the sweep's turns b comes back (a new number: its old holders stay not its), stores a hash it
  // held before, and c is purged too: the pass starts again for both
  await turn();
  store("b", shared[1]!, "GPU");
  store("b", next(), "CPU");
  check();
  await turn();
  assert.equal(kv.purge("c"), model.get("c")!.size);
  model.set("c", new Map());
  check();
  while (kv.sweeping) await turn();
  check();
  // every retired holder is gone: the table holds exactly the live engines' hashes
  const live = new Set([...model.get("a")!.keys(), ...model.get("b")!.keys()]);
  assert.equal(kv.size, live.size);
});

test("both indexes evict the least recently touched id first; touching one makes it the newest", () => {
  const kv = new KvBlockIndex({ maxBlocks: 3 });
  kv.apply("e1", stored([1n, 2n, 3n]));
  kv.apply("e2", stored([1n])); // 1 is now the most recently stored: 2 is the oldest
  kv.apply("e1", stored([4n]));
  assert.deepEqual(kv.hashesOf("e1").sort(), [1n, 3n, 4n]);
  kv.apply("e1", { type: "BlockRemoved", blockHashes: [3n], medium: "GPU" });
  kv.apply("e1", stored([5n, 6n])); // room for one after the removal: 1 goes, then nothing else
  assert.deepEqual(kv.hashesOf("e1").sort(), [4n, 5n, 6n]);
  assert.deepEqual(kv.hashesOf("e2"), []);
  assert.equal(kv.evictions, 2);

  const px = new PrefixIndex({ maxBlocks: 3 });
  px.insert([10, 11, 12], "a"); // tail first: 12 is the oldest, 10 the newest
  px.insert([12], "b"); // 12 touched: 11 is the oldest now
  px.insert([13], "a");
  const out = new Float64Array(2);
  px.match([12], [{ id: "a" }, { id: "b" }], out);
  assert.deepEqual([...out], [1, 1]);
  px.match([11], [{ id: "a" }, { id: "b" }], out);
  assert.deepEqual([...out], [0, 0], "11 was evicted");
  assert.equal(px.size, 3);
  assert.equal(px.purge("a"), 3);
  assert.equal(px.size, 1, "12 is still held by b");
});

/** A toy fleet: every request stays in flight for `hold` further arrivals. */
function runFleet(
  policy: ReturnType<typeof createPolicy>,
  prompts: (i: number) => RequestView,
  n: number,
  hold: number,
) {
  const engines = ["a", "b", "c", "d"].map((id) => eng(id));
  const done: { at: number; e: EngineView }[] = [];
  const counts = new Map<string, number>();
  let maxInFlight = 0;
  for (let i = 0; i < n; i++) {
    while (done.length > 0 && done[0]!.at <= i) done.shift()!.e.inFlight--;
    const d = decide(policy, prompts(i), { engines });
    assert.equal(d.kind, "picked");
    if (d.kind !== "picked") continue;
    d.engine.inFlight++;
    maxInFlight = Math.max(maxInFlight, d.engine.inFlight);
    counts.set(d.engine.id, (counts.get(d.engine.id) ?? 0) + 1);
    if (hold > 0) done.push({ at: i + hold, e: d.engine });
    else d.engine.inFlight--;
  }
  return { counts, maxInFlight };
}

const HOT = "SYSTEM: " + words(7, 1500);

test("skewed load: a hot shared prefix spreads over several engines under load, sticks when idle", () => {
  const req = (i: number): RequestView => ({
    model: "m",
    seq: i,
    prompt: `${HOT}\nQ${i}: ${words(i + 100, 20)}`,
  });
  // idle fleet: every request finds the prefix on the first engine that got it
  const idle = runFleet(createPolicy("prefix", { cache: new PrefixOracle() }), req, 200, 0);
  assert.equal(idle.counts.size, 1);
  // busy fleet (40 in flight): the guard and the load term spread the hot prefix
  const busy = runFleet(createPolicy("prefix", { cache: new PrefixOracle() }), req, 2000, 40);
  assert.ok(busy.counts.size >= 3, `spread over ${busy.counts.size} engines`);
  for (const c of busy.counts.values()) assert.ok(c < 2000 * 0.6, `one engine took ${c} of 2000`);
  assert.ok(busy.maxInFlight <= 40 / 4 + 8 + 2, `max in flight on one engine ${busy.maxInFlight}`);
});

test("multi-round users mostly return to the engine holding their history; round-robin scatters them", () => {
  const user = (u: number, round: number, seq: number): RequestView => ({
    model: "m",
    seq,
    messages: [
      { role: "system", content: HOT },
      { role: "user", content: `user ${u}: ` + words(u, 400) },
      ...Array.from({ length: round }, (_, r) => ({ role: "user", content: words(u * 31 + r, 30) })),
    ],
  });
  const stayed = (policy: ReturnType<typeof createPolicy>) => {
    const engines = ["a", "b", "c", "d"].map((id) => eng(id));
    const last = new Map<number, string>();
    let same = 0;
    let seq = 0;
    for (let round = 0; round < 6; round++) {
      for (let u = 0; u < 15; u++) {
        const d = decide(policy, user(u, round, seq++), { engines });
        if (d.kind !== "picked") throw new Error(d.kind);
        d.engine.inFlight++; // the round's requests are in flight together
        if (round > 0 && last.get(u) === d.engine.id) same++;
        last.set(u, d.engine.id);
      }
      for (const e of engines) e.inFlight = 0;
    }
    return { same: same / (15 * 5), engines: new Set(last.values()).size };
  };
  const prefix = stayed(createPolicy("prefix", { cache: new PrefixOracle() }));
  const rr = stayed(createPolicy("round-robin"));
  assert.ok(prefix.same >= 0.8, `prefix kept ${prefix.same} of follow-ups on their engine`);
  assert.ok(prefix.engines >= 3, `users spread over ${prefix.engines} engines`);
  assert.ok(rr.same < 0.5, `round-robin kept ${rr.same}`);
});
