import { test } from "node:test";
import assert from "node:assert/strict";
import { encode } from "@msgpack/msgpack";

/** an independent msgpack encoder, to build inputs our codec did not write itself */
const pack = (value: unknown): Buffer => Buffer.from(encode(value, { useBigInt64: true }));
import { decodeBatch, DecodeError, encodeBatch, type DecodeStats } from "../../src/kvevents/codec.js";
import type { KvEventBatch } from "../../src/kvevents/events.js";
import { loadVectors, typedFromVectorForm } from "./vectors.js";

const vectors = loadVectors();

test("every shared vector decodes to its decoded form and re-encodes byte for byte", () => {
  assert.ok(vectors.length >= 5);
  for (const v of vectors) {
    const payload = Buffer.from(v.frames_hex[2], "hex");
    const batch = decodeBatch(payload);
    assert.deepEqual(batch, typedFromVectorForm(v.decoded), v.name);
    assert.equal(encodeBatch(batch).toString("hex"), v.frames_hex[2], v.name);
  }
});

test("hashes beyond 2^53 come back as exact bigints", () => {
  const v = vectors.find((x) => x.name === "stored_v011")!;
  const b = decodeBatch(Buffer.from(v.frames_hex[2], "hex"));
  const ev = b.events[0]!;
  assert.equal(ev.type, "BlockStored");
  if (ev.type !== "BlockStored") return;
  assert.equal(ev.blockHashes[2], 18191525584461729910n);
  assert.equal(ev.tokenIds.length, ev.blockHashes.length * ev.blockSize);
});

test("the encoder writes floats as float64 even when integral, and ints in msgspec's smallest form", () => {
  const hex = encodeBatch({
    ts: 2,
    events: [
      {
        type: "BlockStored",
        blockHashes: [5n, 300n, 1n << 40n, (1n << 64n) - 1n],
        parentBlockHash: null,
        tokenIds: [0, 127, 128, 255, 256, 65535, 65536],
        blockSize: 1,
        loraId: -1,
        medium: "CPU",
        loraName: "sql-adapter",
      },
    ],
    dataParallelRank: null,
  }).toString("hex");
  assert.ok(hex.startsWith("92cb4000000000000000"), hex);
  assert.ok(hex.includes("9405cd012ccf0000010000000000cfffffffffffffffff"), hex);
  assert.ok(hex.includes("97007fcc80ccffcd0100cdffffce00010000"), hex);
  // lora_id -1 as a negative fixint, medium, then lora_name appended
  assert.ok(hex.endsWith("01ffa3435055ab73716c2d61646170746572"), hex);
});

test("round trip keeps every field, including lora_name and a null medium followed by lora_name", () => {
  const batch: KvEventBatch = {
    ts: 1763700000.125,
    events: [
      {
        type: "BlockStored",
        blockHashes: [1n, 2n],
        parentBlockHash: 9n,
        tokenIds: [1, 2, 3, 4],
        blockSize: 2,
        loraId: 3,
        medium: null,
        loraName: "x",
      },
      { type: "BlockRemoved", blockHashes: [1n], medium: "CPU" },
      { type: "AllBlocksCleared" },
    ],
    dataParallelRank: 3,
  };
  assert.deepEqual(decodeBatch(encodeBatch(batch)), batch);
});

test("the map form (events and batch as maps with a type key) decodes to the same values", () => {
  const arrayForm = decodeBatch(
    Buffer.from(vectors.find((x) => x.name === "stored_child_then_removed")!.frames_hex[2], "hex"),
  );
  const mapPayload = pack({
    ts: 1763700001.0,
    events: [
      {
        type: "BlockStored",
        block_hashes: [2238298608368006271n],
        parent_block_hash: 4602402057149520825n,
        token_ids: [
          23858, 25799, 23010, 22549, 39454, 7562, 16042, 26804, 5095, 30726, 5164, 21502, 9741, 6024, 15108,
          44505,
        ],
        block_size: 16,
        lora_id: null,
        medium: "GPU",
        extra_keys: [["future", 1]],
      },
      { type: "BlockRemoved", block_hashes: [2238298608368006271n], medium: "GPU" },
    ],
    data_parallel_rank: 0,
  });
  assert.deepEqual(decodeBatch(mapPayload), arrayForm);
  // and an array batch whose events are maps
  const mixed = pack([1.5, [{ type: "AllBlocksCleared" }, { type: "BlockRemoved", block_hashes: [7] }]]);
  assert.deepEqual(decodeBatch(mixed), {
    ts: 1.5,
    events: [{ type: "AllBlocksCleared" }, { type: "BlockRemoved", blockHashes: [7n], medium: null }],
    dataParallelRank: null,
  });
});

test("short arrays take defaults; extra trailing fields are skipped", () => {
  const short = pack([3, [["BlockStored", [1], null, [5, 6], 2]]]);
  assert.deepEqual(decodeBatch(short), {
    ts: 3,
    events: [
      {
        type: "BlockStored",
        blockHashes: [1n],
        parentBlockHash: null,
        tokenIds: [5, 6],
        blockSize: 2,
        loraId: null,
        medium: null,
      },
    ],
    dataParallelRank: null,
  });
  const long = pack([
    3.25,
    [
      ["BlockStored", [1], 2, [5], 1, 7, "GPU", "ad", [["mm", "x"]], { more: true }],
      ["BlockRemoved", [1], "GPU", "extra"],
      ["AllBlocksCleared", 1],
    ],
    4,
    "trailing",
  ]);
  assert.deepEqual(decodeBatch(long), {
    ts: 3.25,
    events: [
      {
        type: "BlockStored",
        blockHashes: [1n],
        parentBlockHash: 2n,
        tokenIds: [5],
        blockSize: 1,
        loraId: 7,
        medium: "GPU",
        loraName: "ad",
      },
      { type: "BlockRemoved", blockHashes: [1n], medium: "GPU" },
      { type: "AllBlocksCleared" },
    ],
    dataParallelRank: 4,
  });
});

test("raw 32-byte digests (VLLM_KV_EVENTS_USE_INT_BLOCK_HASHES=0) keep their low 64 bits, big-endian", () => {
  const digest = Buffer.alloc(32);
  for (let i = 0; i < 32; i++) digest[i] = i;
  const payload = pack([1.0, [["BlockRemoved", [digest], "GPU"]], 0]);
  const ev = decodeBatch(payload).events[0]!;
  assert.equal(ev.type, "BlockRemoved");
  if (ev.type === "BlockRemoved") assert.equal(ev.blockHashes[0], 0x18191a1b1c1d1e1fn);
  // negative int64 hashes (pre-0.10 engines used Python's hash()) read as two's complement
  const neg = decodeBatch(pack([1.0, [["BlockRemoved", [-2n]]]])).events[0]!;
  if (neg.type === "BlockRemoved") assert.equal(neg.blockHashes[0], (1n << 64n) - 2n);
  else assert.fail("expected BlockRemoved");
});

test("unknown event types are skipped and counted, not fatal", () => {
  const stats: DecodeStats = { unknownEvents: 0 };
  const b = decodeBatch(
    pack([1.0, [["BlockPinned", [1], 2], { type: "Other" }, ["AllBlocksCleared"]]]),
    stats,
  );
  assert.deepEqual(b.events, [{ type: "AllBlocksCleared" }]);
  assert.equal(stats.unknownEvents, 2);
});

test("malformed payloads throw a DecodeError that says what is wrong", () => {
  const cases: Array<[Buffer, RegExp]> = [
    [Buffer.alloc(0), /truncated/],
    [pack("hello"), /batch must be an array/],
    [pack([1.0]), /needs \[ts, events\]/],
    [pack(["x", []]), /ts must be an integer/],
    [pack([1.0, [["BlockStored", [1]]]]), /at least 4 fields/],
    [pack([1.0, [["BlockStored", ["h"], null, [], 16]]]), /block_hashes must be an integer or bytes/],
    [pack([1.0, [["BlockStored", [1], null, [1.5], 16]]]), /token_ids must be an integer/],
    [pack([1.0, [[]]]), /empty event array/],
    [pack([1.0, [{ block_hashes: [1] }]]), /without a "type" key/],
    [Buffer.concat([pack([1.0, []]), Buffer.from([0])]), /trailing byte/],
    [Buffer.from("dd7fffffff", "hex"), /cannot fit/],
    [Buffer.from("92cb4000", "hex"), /truncated/],
  ];
  for (const [buf, re] of cases) {
    assert.throws(
      () => decodeBatch(buf),
      (err: unknown) => err instanceof DecodeError && re.test(err.message),
      `${buf.toString("hex")} should fail with ${re}`,
    );
  }
});
