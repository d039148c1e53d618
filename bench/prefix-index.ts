// The prefix index's cost per request on long prompts, and its bytes per id.
// Workload: 32 shared 6,000-character system prompts, each request adding 2,000 characters of its
// own (about 125 blocks of 64 characters), four engines, an index already at its 200,000-id cap so
// every request also evicts. Each request costs block ids + match + insert, as the router pays it.
//   node --expose-gc dist/bench/prefix-index.js [--seconds 4]
import { charBlockIds, PrefixIndex } from "../src/routing/prefix-index.js";

const gc = (globalThis as { gc?: () => void }).gc;
if (!gc) {
  console.error("run with node --expose-gc");
  process.exit(2);
}
const i = process.argv.indexOf("--seconds");
const seconds = i > 0 ? Number(process.argv[i + 1]) : 4;

// bytes per id, one engine each
{
  gc();
  const h0 = process.memoryUsage().heapUsed;
  const idx = new PrefixIndex({ maxBlocks: 200_000 });
  const ids: number[] = [];
  for (let k = 0; k < 200_000; k++) ids.push((k * 2654435761) >>> 0);
  for (let k = 0; k < ids.length; k += 100) idx.insert(ids.slice(k, k + 100), "http://engine-0");
  gc();
  const h1 = process.memoryUsage().heapUsed;
  console.log(`bytes per id: ${((h1 - h0) / idx.size).toFixed(0)} (${idx.size} ids)`);
}

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
  `µs per request (ids + match + insert): ${(((performance.now() - t0) * 1000) / done).toFixed(1)} over ${done} requests; ${idx.evictions} evictions, ${idx.size} ids held`,
);
