// The cache-aware routing indexes under load, at their caps, and their bytes per entry.
// Prefix index: 32 shared 6,000-character system prompts, each request adding 2,000 characters of its
// own (about 125 blocks of 64 characters), four engines, the index already at its 200,000-id cap so
// every request also evicts; each request costs block ids + match + insert, as the router pays it.
// KV index: four engines' BlockStored events of 16 hashes at the 1,000,000-hash cap, half of them
// re-storing hashes another engine stored (shared prefixes), one BlockRemoved per four events; its
// bytes per hash with one holder and with two.
//   node --expose-gc dist/bench/micro/routing-indexes.js [--seconds 4]
import { blockStored as stored } from "../support/kv.js";
import { KvBlockIndex } from "../../src/router/kv/block-index.js";
import { charBlockIds, PrefixIndex } from "../../src/routing/index.js";

const gc = (globalThis as { gc?: () => void }).gc;
if (!gc) {
  console.error("run with node --expose-gc");
  process.exit(2);
}
/** the heap and the typed arrays' backing stores (the prefix index keeps its table in typed arrays) */
const heapBytes = () => {
  const m = process.memoryUsage();
  return m.heapUsed + m.arrayBuffers;
};
const i = process.argv.indexOf("--seconds");
const seconds = i > 0 ? Number(process.argv[i + 1]) : 4;

// bytes per id of a prefix index at its cap whose every id was sent to `engines` engines, in a
// function of its own so that nothing else is live beside it
function prefixBytesPerId(engines: number): number {
  const ids: number[] = [];
  for (let k = 0; k < 200_000; k++) ids.push((k * 2654435761) >>> 0);
  gc!();
  gc!();
  const before = heapBytes();
  const idx = new PrefixIndex({ maxBlocks: 200_000 });
  for (let k = 0; k < ids.length; k += 100)
    for (let e = 0; e < engines; e++) idx.insert(ids.slice(k, k + 100), `http://engine-${e}`);
  gc!();
  gc!();
  return (heapBytes() - before) / idx.size;
}
console.log(
  `prefix index: bytes per id: ${[1, 2, 4].map((n) => `${prefixBytesPerId(n).toFixed(0)} sent to ${n}`).join(", ")}`,
);

const letters = (seed: number, n: number) =>
  Array.from({ length: n }, (_, j) => String.fromCharCode(97 + ((seed * 7 + j * 13) % 26))).join("");
const systems = Array.from({ length: 32 }, (_, s) => letters(s, 6000));
const engines = [0, 1, 2, 3].map((e) => ({ id: `http://engine-${e}` }));
const idx = new PrefixIndex();
const prompt = (n: number) => `${systems[n % 32]}user ${n} ${"x".repeat(2000)}${n}`;
for (let n = 0; n < 4000; n++) idx.insert(charBlockIds(prompt(n), "m", 64, 4096), engines[n % 4]!.id);
gc();
const out = new Float64Array(engines.length);
const t0 = performance.now();
let n = 4000;
while (performance.now() - t0 < seconds * 1000) {
  for (let k = 0; k < 500; k++, n++) {
    const ids = charBlockIds(prompt(n), "m", 64, 4096);
    idx.match(ids, engines, out);
    idx.insert(ids, engines[n % 4]!.id);
  }
}
const done = n - 4000;
console.log(
  `prefix index: µs per request (ids + match + insert): ${(((performance.now() - t0) * 1000) / done).toFixed(1)} over ${done} requests; ${idx.evictions} evictions, ${idx.size} ids held`,
);

// bytes per hash of a KV index at its cap whose every hash `holders` engines hold (one; two: a shared
// prefix on two engines), measured in a function of its own so that nothing else is live beside it
function kvBytesPerHash(holders: 1 | 2): number {
  gc!();
  gc!();
  const before = heapBytes();
  const index = new KvBlockIndex({ maxBlocks: 1_000_000 });
  let own = 1n;
  for (let k = 0; k < 62_500; k++) {
    const hashes = Array.from({ length: 16 }, () => own++);
    for (let h = 0; h < holders; h++) index.apply(`http://engine-${(k + h) % 4}`, stored(hashes));
  }
  gc!();
  return (heapBytes() - before) / index.size;
}
console.log(
  `kv index: bytes per hash: ${kvBytesPerHash(1).toFixed(0)} with one holder, ${kvBytesPerHash(2).toFixed(0)} with two`,
);

// ---- KV index ----
{
  gc();
  const kv = new KvBlockIndex({ maxBlocks: 1_000_000 });
  let next = 1n;
  const fresh = () => Array.from({ length: 16 }, () => next++);
  for (let k = 0; k < 62_500; k++) kv.apply(`http://engine-${k % 4}`, stored(fresh()));
  const recent: bigint[][] = [];
  const t1 = performance.now();
  let events = 0;
  while (performance.now() - t1 < seconds * 1000) {
    for (let k = 0; k < 1000; k++, events++) {
      const engine = `http://engine-${events % 4}`;
      let hashes: bigint[];
      if (events % 2 === 1 && recent.length > 0) hashes = recent[(events * 7) % recent.length]!;
      else {
        hashes = fresh();
        recent.push(hashes);
        if (recent.length > 256) recent.shift();
      }
      kv.apply(engine, stored(hashes));
      if (events % 4 === 3)
        kv.apply(engine, { type: "BlockRemoved", blockHashes: hashes.slice(8), medium: "GPU" });
    }
  }
  console.log(
    `kv index: µs per BlockStored event of 16 hashes: ${(((performance.now() - t1) * 1000) / events).toFixed(2)} over ${events} events; ${kv.evictions} evictions, ${kv.size} hashes held`,
  );
}
