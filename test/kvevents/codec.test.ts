import { test } from "node:test";
import assert from "node:assert/strict";
import { encode } from "@msgpack/msgpack";

/** an independent msgpack encoder, to build inputs our codec did not write itself */
const pack = (value: unknown): Buffer => Buffer.from(encode(value, { useBigInt64: true }));
import { decodeBatch, DecodeError, encodeBatch, type DecodeStats } from "../../src/kvevents/codec.js";
import type { KvEventBatch } from "../../src/kvevents/events.js";
import { allVectors, loadVectors, typedFromVectorForm } from "./vectors.js";

const vectors = loadVectors();

test("every vector, v0.11 array events and v0.28 map events, decodes to its decoded form and re-encodes byte for byte", () => {
  const all = allVectors();
  assert.ok(all.filter((v) => v.layout === "array").length >= 5);
  assert.ok(all.filter((v) => v.layout === "map").length >= 4);
  for (const v of all) {
    const payload = Buffer.from(v.frames_hex[2], "hex");
    const batch = decodeBatch(payload);
    assert.deepEqual(batch, typedFromVectorForm(v.decoded), v.name);
    assert.equal(encodeBatch(batch, v.layout).toString("hex"), v.frames_hex[2], v.name);
  }
});

test("the v0.28 vectors carry group_idx and extra_keys, and the map layout writes them back in vLLM's field order", () => {
  const v = loadVectors("vllm-kv-events-v028.json");
  const salted = decodeBatch(Buffer.from(v.find((x) => x.name === "v028_lora_salt")!.frames_hex[2], "hex"));
  const ev = salted.events[0]!;
  assert.equal(ev.type, "BlockStored");
  if (ev.type !== "BlockStored") return;
  assert.equal(ev.groupIdx, 0);
  assert.equal(ev.loraName, "adapter");
  assert.deepEqual(ev.extraKeys, [["salt-1"], null]);
  const removed = decodeBatch(
    Buffer.from(v.find((x) => x.name === "v028_child_removed_cpu")!.frames_hex[2], "hex"),
  ).events[2]!;
  assert.deepEqual(removed, {
    type: "BlockRemoved",
    blockHashes: [2238298608368006271n],
    medium: "GPU",
    groupIdx: 0,
  });
});

test("a parent hash of 0 is read as no parent, in both layouts (vLLM treats a falsy parent as NONE_HASH)", () => {
  const arrayForm = decodeBatch(pack([1.0, [["BlockStored", [5], 0, [1, 2], 2, null, "GPU"]]]));
  const mapForm = decodeBatch(
    pack([
      1.0,
      [{ type: "BlockStored", block_hashes: [5], parent_block_hash: 0, token_ids: [1, 2], block_size: 2 }],
    ]),
  );
  const absent = decodeBatch(
    pack([1.0, [{ type: "BlockStored", block_hashes: [5], token_ids: [1, 2], block_size: 2 }]]),
  );
  for (const b of [arrayForm, mapForm, absent]) {
    const ev = b.events[0]!;
    assert.equal(ev.type, "BlockStored");
    if (ev.type === "BlockStored") assert.equal(ev.parentBlockHash, null);
  }
});

test("both layouts round-trip every optional field; the map layout omits None-default fields that are unset", () => {
  const full: KvEventBatch = {
    ts: 7.5,
    events: [
      {
        type: "BlockStored",
        blockHashes: [1n << 63n],
        parentBlockHash: 3n,
        tokenIds: [1, 2],
        blockSize: 2,
        loraId: null,
        medium: "GPU",
        loraName: null,
        extraKeys: [["a", 1, Buffer.from([1, 2])]],
        groupIdx: 1,
        kvCacheSpecKind: "sliding_window",
        kvCacheSpecSlidingWindow: 128,
        locality: "LOCAL",
      },
      { type: "BlockRemoved", blockHashes: [4n], medium: "GPU", groupIdx: 1, locality: "REMOTE" },
      { type: "AllBlocksCleared" },
    ],
    dataParallelRank: 0,
  };
  for (const layout of ["array", "map"] as const)
    assert.deepEqual(decodeBatch(encodeBatch(full, layout)), full, layout);
  const bare: KvEventBatch = {
    ts: 1,
    events: [
      {
        type: "BlockStored",
        blockHashes: [1n],
        parentBlockHash: null,
        tokenIds: [9],
        blockSize: 1,
        loraId: null,
        medium: "GPU",
      },
    ],
    dataParallelRank: 0,
  };
  const mapHex = encodeBatch(bare, "map").toString("hex");
  // eight entries: the fields without a default (lora_name written as nil), nothing after them
  assert.ok(mapHex.includes("88a474797065ab426c6f636b53746f726564"), mapHex);
  assert.ok(mapHex.endsWith("a96c6f72615f6e616d65c000"), mapHex);
  assert.deepEqual(decodeBatch(encodeBatch(bare, "map")).events[0], { ...bare.events[0], loraName: null });
  // the array layout writes nil for an unset field before a set one, and nothing after the last set one
  const grouped: KvEventBatch = {
    ...bare,
    events: [{ ...bare.events[0]!, groupIdx: 2 } as KvEventBatch["events"][0]],
  };
  const arr = decodeBatch(encodeBatch(grouped, "array")).events[0];
  assert.deepEqual(arr, { ...grouped.events[0], loraName: null });
  // ten elements: the tag, the eight fields up to lora_name (unset ones nil), extra_keys nil, group_idx
  assert.ok(
    encodeBatch(grouped, "array").toString("hex").includes("919aab426c6f636b53746f726564"),
    "tag .. group_idx",
  );
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
        future_field: { nested: [1, 2] },
      },
      { type: "BlockRemoved", block_hashes: [2238298608368006271n], medium: "GPU" },
    ],
    data_parallel_rank: 0,
  });
  const stored = arrayForm.events[0]!;
  assert.equal(stored.type, "BlockStored");
  if (stored.type === "BlockStored") stored.extraKeys = [["future", 1]];
  assert.deepEqual(decodeBatch(mapPayload), arrayForm);
  // and an array batch whose events are maps
  const mixed = pack([1.5, [{ type: "AllBlocksCleared" }, { type: "BlockRemoved", block_hashes: [7] }]]);
  assert.deepEqual(decodeBatch(mixed), {
    ts: 1.5,
    events: [{ type: "AllBlocksCleared" }, { type: "BlockRemoved", blockHashes: [7n], medium: null }],
    dataParallelRank: null,
  });
});

test("short arrays take defaults; newer trailing fields are read and unknown ones skipped", () => {
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
      [
        "BlockStored",
        [1],
        2,
        [5],
        1,
        7,
        "GPU",
        "ad",
        [["mm", "x"]],
        1,
        "sliding_window",
        64,
        "LOCAL",
        { more: true },
      ],
      ["BlockRemoved", [1], "GPU", 1, "REMOTE", "extra"],
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
        extraKeys: [["mm", "x"]],
        groupIdx: 1,
        kvCacheSpecKind: "sliding_window",
        kvCacheSpecSlidingWindow: 64,
        locality: "LOCAL",
      },
      { type: "BlockRemoved", blockHashes: [1n], medium: "GPU", groupIdx: 1, locality: "REMOTE" },
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
