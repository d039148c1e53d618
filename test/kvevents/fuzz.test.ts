// Random and mutated payloads: decodeBatch either returns a batch or throws a DecodeError, quickly.
import { test } from "node:test";
import assert from "node:assert/strict";
import { encode } from "@msgpack/msgpack";

/** an independent msgpack encoder, to build inputs our codec did not write itself */
const pack = (value: unknown): Buffer => Buffer.from(encode(value, { useBigInt64: true }));
import { decodeBatch, DecodeError, encodeBatch } from "../../src/kvevents/codec.js";
import { mulberry32 as prng } from "../../src/random/rng.js";
import { loadVectors } from "./vectors.js";

function check(buf: Buffer, what: string): "ok" | "error" {
  try {
    const b = decodeBatch(buf);
    // whatever decodes must be well-typed enough to encode again
    encodeBatch(b);
    return "ok";
  } catch (err) {
    if (err instanceof DecodeError) return "error";
    assert.fail(`${what}: ${buf.toString("hex").slice(0, 200)} threw a non-decode error: ${String(err)}`);
  }
}

const SEED = Number(process.env.FUZZ_SEED ?? 20251121);

test("mutated vectors (byte flips, truncation, splices) decode or fail with a DecodeError", () => {
  const rnd = prng(SEED);
  const seeds = loadVectors().map((v) => Buffer.from(v.frames_hex[2], "hex"));
  const tally = { ok: 0, error: 0 };
  for (let n = 0; n < 30000; n++) {
    const src = seeds[Math.floor(rnd() * seeds.length)]!;
    let buf = Buffer.from(src);
    const kind = Math.floor(rnd() * 4);
    if (kind === 0) {
      for (let k = 1 + Math.floor(rnd() * 4); k > 0; k--)
        buf[Math.floor(rnd() * buf.length)] = Math.floor(rnd() * 256);
    } else if (kind === 1) {
      buf = buf.subarray(0, Math.floor(rnd() * buf.length));
    } else if (kind === 2) {
      const other = seeds[Math.floor(rnd() * seeds.length)]!;
      const at = Math.floor(rnd() * buf.length);
      buf = Buffer.concat([buf.subarray(0, at), other.subarray(Math.floor(rnd() * other.length))]);
    } else {
      // a huge length prefix written somewhere: must not allocate or loop on it
      const at = Math.floor(rnd() * Math.max(1, buf.length - 5));
      buf[at] = [0xdd, 0xdf, 0xdb, 0xc6][Math.floor(rnd() * 4)]!;
      buf.writeUInt32BE(0xfffffff0, at + 1);
    }
    tally[check(buf, `mutation ${n} (seed ${SEED})`)]++;
  }
  // both outcomes occur, or the mutations are not exercising anything
  assert.ok(tally.ok > 0 && tally.error > 0, JSON.stringify(tally));
  // how fast the decoder is belongs to `npm run bench -- micro/kvevents`, not here: a bound on this loop's wall
  // time is one a busy machine can break, and a decoder that loops forever never reaches it
});

test("random bytes and random msgpack values decode or fail with a DecodeError", () => {
  const rnd = prng(SEED + 1);
  const randomValue = (depth: number): unknown => {
    const r = rnd();
    if (depth > 3 || r < 0.3) {
      const leaf = Math.floor(rnd() * 8);
      return [
        null,
        Math.floor(rnd() * 2 ** 32) - 2 ** 31,
        rnd() * 1e9,
        "BlockStored",
        "BlockRemoved",
        Buffer.from([1, 2, 3]),
        (1n << 63n) + BigInt(Math.floor(rnd() * 1000)),
        "AllBlocksCleared",
      ][leaf];
    }
    if (r < 0.8) return Array.from({ length: Math.floor(rnd() * 8) }, () => randomValue(depth + 1));
    const o: Record<string, unknown> = {};
    for (const k of ["type", "ts", "events", "block_hashes", "token_ids", "block_size", "medium"])
      if (rnd() < 0.5) o[k] = randomValue(depth + 1);
    return o;
  };
  for (let n = 0; n < 20000; n++) {
    const buf =
      n % 2 === 0
        ? Buffer.from(Array.from({ length: Math.floor(rnd() * 64) }, () => Math.floor(rnd() * 256)))
        : pack([rnd() * 1e9, [randomValue(0), randomValue(0)], randomValue(2)]);
    check(buf, `random ${n} (seed ${SEED + 1})`);
  }
  // deep nesting in a skipped field must fail cleanly, not overflow the stack
  const deep = Buffer.concat([
    Buffer.from("94cb000000000000000090c0", "hex"),
    Buffer.alloc(100000, 0x91),
    Buffer.from([0xc0]),
  ]);
  assert.throws(() => decodeBatch(deep), DecodeError);
});
