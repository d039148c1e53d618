// LruMap (src/collections/lru-map.ts) against the "Map as LRU" idiom it replaced (touch = delete +
// re-insert, evict = keys().next()), same operations in the same script: half touches of live keys,
// half evict-oldest + insert, at 1,000 / 10,000 / 100,000 keys.
//   node dist/bench/micro/lru.js [--seconds 1]
import { LruMap } from "../../src/collections/lru-map.js";

const i = process.argv.indexOf("--seconds");
const seconds = i > 0 ? Number(process.argv[i + 1]) : 1;

interface Lru {
  touch(k: number): void;
  add(k: number): void;
  shift(): void;
}

class MapLru implements Lru {
  private readonly m = new Map<number, true>();
  touch(k: number): void {
    if (this.m.delete(k)) this.m.set(k, true);
  }
  add(k: number): void {
    this.m.set(k, true);
  }
  shift(): void {
    const first = this.m.keys().next();
    if (!first.done) this.m.delete(first.value);
  }
}

function run(lru: Lru, n: number): number {
  for (let k = 0; k < n; k++) lru.add(k);
  let next = n;
  let x = 1;
  let ops = 0;
  const t0 = performance.now();
  while (performance.now() - t0 < seconds * 1000) {
    for (let k = 0; k < 1000; k++, ops++) {
      x = (x * 1103515245 + 12345) & 0x7fffffff;
      if (k % 2) lru.touch(next - 1 - (x % n));
      else {
        lru.shift();
        lru.add(next++);
      }
    }
  }
  return ((performance.now() - t0) * 1000) / ops;
}

for (const n of [1_000, 10_000, 100_000]) {
  const map = run(new MapLru(), n);
  const lm = new LruMap<number, true>();
  const list = run({ touch: (k) => lm.touch(k), add: (k) => lm.set(k, true), shift: () => lm.shift() }, n);
  console.log(
    `${String(n).padStart(7)} keys: Map idiom ${map.toFixed(3)} µs/op, LruMap ${list.toFixed(3)} µs/op (${(map / list).toFixed(1)}×)`,
  );
}
