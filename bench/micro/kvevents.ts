// KV-event codec throughput: decode (the router's hot path) and encode (the sim's), in events/s and
// MB/s, on batches shaped like a busy engine's steps; @msgpack/msgpack's generic decode of the same bytes is
// shown for reference (it only builds the untyped tree, we produce typed events).
// Run: npm run bench -- micro/kvevents   (or: node --import tsx bench/micro/kvevents.ts)
import { Decoder } from "@msgpack/msgpack";
import { decodeBatch, encodeBatch } from "../../src/kvevents/codec.js";
import type { KvEvent, KvEventBatch } from "../../src/kvevents/events.js";

function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s * 1664525 + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

const rand = rng(7);
const hash = () => (BigInt(Math.floor(rand() * 2 ** 32)) << 32n) | BigInt(Math.floor(rand() * 2 ** 32));

/** One step: a few requests storing 1-8 full 16-token blocks, some evictions. */
function makeBatch(): KvEventBatch {
  const events: KvEvent[] = [];
  const stores = 1 + Math.floor(rand() * 6);
  for (let i = 0; i < stores; i++) {
    const n = 1 + Math.floor(rand() * 8);
    events.push({
      type: "BlockStored",
      blockHashes: Array.from({ length: n }, hash),
      parentBlockHash: rand() < 0.7 ? hash() : null,
      tokenIds: Array.from({ length: n * 16 }, () => Math.floor(rand() * 128000)),
      blockSize: 16,
      loraId: null,
      medium: "GPU",
    });
  }
  if (rand() < 0.5)
    events.push({ type: "BlockRemoved", blockHashes: Array.from({ length: 4 }, hash), medium: "GPU" });
  return { ts: 1763700000 + rand(), events, dataParallelRank: 0 };
}

const batches = Array.from({ length: 2000 }, makeBatch);
const payloads = batches.map((b) => encodeBatch(b));
const events = batches.reduce((n, b) => n + b.events.length, 0);
const bytes = payloads.reduce((n, p) => n + p.length, 0);

function run(name: string, fn: () => void, rounds: number): void {
  fn(); // warm up
  const t0 = performance.now();
  for (let r = 0; r < rounds; r++) fn();
  const s = (performance.now() - t0) / 1000;
  const ev = (events * rounds) / s;
  const mb = (bytes * rounds) / s / 1e6;
  const bps = (batches.length * rounds) / s;
  console.log(
    `${name.padEnd(28)} ${Math.round(ev).toLocaleString("en-US").padStart(12)} events/s  ${Math.round(bps).toLocaleString("en-US").padStart(10)} batches/s  ${mb.toFixed(0).padStart(5)} MB/s`,
  );
}

console.log(
  `${batches.length} batches, ${events} events, ${(bytes / batches.length).toFixed(0)} bytes/batch on average`,
);
const generic = new Decoder({ useBigInt64: true });
const rounds = Number(process.env.ROUNDS ?? 20);
run(
  "decodeBatch (typed)",
  () => {
    for (const p of payloads) decodeBatch(p);
  },
  rounds,
);
run(
  "@msgpack/msgpack decode (untyped)",
  () => {
    for (const p of payloads) generic.decode(p);
  },
  rounds,
);
run(
  "encodeBatch",
  () => {
    for (const b of batches) encodeBatch(b);
  },
  rounds,
);
