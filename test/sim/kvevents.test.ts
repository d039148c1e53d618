// KV events from the sim over a real ZMQ SUB socket: a token-id prompt produces BlockStored events
// whose hashes equal vLLM's (shared vectors), memory pressure produces BlockRemoved, reset produces
// AllBlocksCleared, and missed batches can be replayed through the ROUTER socket.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { Dealer, Subscriber } from "zeromq";
import { decodeBatch } from "../../src/kvevents/codec.js";
import type { KvEvent, KvEventBatch } from "../../src/kvevents/events.js";
import type { RunningSim } from "../../src/sim/app.js";
import { parseSimArgs } from "../../src/sim/config/config.js";
import { postJson, startTestSim, tokenIds } from "./helpers.js";
import { vectorPath } from "../helpers/vectors.js";

const vectors = JSON.parse(readFileSync(vectorPath("vllm-block-hashes.json"), "utf8")) as {
  cases: Array<{
    name: string;
    token_ids: number[];
    python_hash_seed: string;
    blocks: Array<{ uint64: string }>;
  }>;
};
const smallVocab = vectors.cases.find((c) => c.name === "small_vocab_64tokens")!;

let sim: RunningSim;
let sub: Subscriber;
const received: Array<{ seq: bigint; batch: KvEventBatch; payload: Buffer }> = [];
let receiving: Promise<void>;

before(async () => {
  const cfg = JSON.stringify({
    enable_kv_cache_events: true,
    publisher: "zmq",
    endpoint: "tcp://127.0.0.1:*",
    replay_endpoint: "tcp://127.0.0.1:*",
    topic: "kv@sim@opt",
  });
  // 8 blocks of 16 tokens: a second 64-token prompt must evict blocks of the first.
  sim = await startTestSim("facebook/opt-125m", [
    "--kv-events-config",
    cfg,
    "--num-gpu-blocks-override",
    "8",
    "--hash-seed",
    smallVocab.python_hash_seed,
    "--time-scale",
    "0.1",
  ]);
  assert.ok(sim.kvEventsEndpoint);
  sub = new Subscriber();
  // ZMQ's slow joiner: a batch published before the subscription reaches the sim is dropped. Wait for the
  // connection (a loaded machine can take a while), then give the subscription message time to cross.
  const connected = new Promise<void>((resolve) => sub.events.on("connect", () => resolve()));
  sub.connect(sim.kvEventsEndpoint!);
  sub.subscribe("kv@sim@opt");
  receiving = (async () => {
    for await (const [topic, seq, payload] of sub) {
      assert.equal(topic!.toString(), "kv@sim@opt");
      received.push({ seq: seq!.readBigUInt64BE(), batch: decodeBatch(payload!), payload: payload! });
    }
  })().catch(() => {});
  await connected;
  await new Promise((r) => setTimeout(r, 300));
});

after(async () => {
  sub.close();
  await receiving;
  await sim.close();
});

/** Polls `pred`; `ms` is a hang guard. */
async function waitFor(pred: () => boolean, what: string, ms = 30_000): Promise<void> {
  const end = Date.now() + ms;
  while (!pred()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

const events = (): KvEvent[] => received.flatMap((r) => r.batch.events);

test("a token-id prompt stores blocks whose hashes equal vLLM's sha256_cbor hashes", async () => {
  const sentAt = Date.now() / 1000;
  const r = await postJson(`${sim.url}/v1/completions`, { prompt: smallVocab.token_ids, max_tokens: 1 });
  assert.equal(r.status, 200, r.text);
  await waitFor(() => events().some((e) => e.type === "BlockStored"), "BlockStored");
  const stored = events().filter((e) => e.type === "BlockStored");
  const hashes = stored.flatMap((e) => (e.type === "BlockStored" ? e.blockHashes : []));
  assert.deepEqual(
    hashes.slice(0, 4).map(String),
    smallVocab.blocks.map((b) => b.uint64),
  );
  const first = stored[0]!;
  assert.ok(first.type === "BlockStored");
  assert.equal(first.parentBlockHash, null);
  assert.equal(first.blockSize, 16);
  assert.equal(first.medium, "GPU");
  assert.deepEqual(first.tokenIds, smallVocab.token_ids.slice(0, first.blockHashes.length * 16));
  assert.equal(received[0]!.seq, 0n);
  assert.equal(received[0]!.batch.dataParallelRank, 0);
  // wall time (epoch seconds), not a monotonic clock: between the send and now, whatever the load
  const ts = received[0]!.batch.ts;
  assert.ok(ts >= sentAt - 0.001 && ts <= Date.now() / 1000 + 0.001, `ts ${ts} is wall time`);
});

test("the sim claims vLLM 0.28.0 by default and publishes that release's layout: tagged maps with group_idx", async () => {
  const version = (await (await fetch(`${sim.url}/version`)).json()) as { version: string };
  assert.equal(version.version, "0.28.0");
  await waitFor(() => received.length > 0, "a batch");
  const first = received[0]!;
  // [ts, [event...], rank]: the array header, the float64 ts, the events array, then a map (0x8N)
  assert.equal(first.payload[0], 0x93);
  assert.equal(first.payload[10]! & 0xf0, 0x90);
  assert.equal(first.payload[11]! & 0xf0, 0x80, first.payload.toString("hex").slice(0, 40));
  const stored = first.batch.events.find((e) => e.type === "BlockStored");
  assert.ok(stored && stored.type === "BlockStored");
  assert.equal(stored.groupIdx, 0);
  assert.equal(stored.loraName, null);
});

test("--vllm-version 0.23.0 reports that version and publishes tagged arrays without group_idx", async () => {
  const old = await startTestSim("facebook/opt-125m", [
    "--vllm-version",
    "0.23.0",
    "--kv-events-config",
    JSON.stringify({ enable_kv_cache_events: true, endpoint: "tcp://127.0.0.1:*", replay_endpoint: null }),
  ]);
  const s = new Subscriber();
  const got: Buffer[] = [];
  s.connect(old.kvEventsEndpoint!);
  s.subscribe("");
  const loop = (async () => {
    for await (const [, , payload] of s) got.push(payload!);
  })().catch(() => {});
  try {
    const v = (await (await fetch(`${old.url}/version`)).json()) as { version: string };
    assert.equal(v.version, "0.23.0");
    for (let i = 0; got.length === 0; i++) {
      assert.ok(i < 100, "no KV events");
      await postJson(`${old.url}/v1/completions`, { prompt: `old layout ${i} `.repeat(12), max_tokens: 1 });
      await new Promise((r) => setTimeout(r, 30));
    }
    assert.equal(got[0]![11]! & 0xf0, 0x90, "an event array");
    const ev = decodeBatch(got[0]!).events[0]!;
    assert.equal(ev.type, "BlockStored");
    assert.equal((ev as { groupIdx?: number }).groupIdx, undefined);
  } finally {
    s.close();
    await loop;
    await old.close();
  }
  assert.throws(
    () => parseSimArgs(["facebook/opt-125m", "--vllm-version", "latest"], {}),
    /--vllm-version must look like 0.28.0/,
  );
});

test("memory pressure evicts cached blocks: BlockRemoved with the evicted hashes", async () => {
  // 8 blocks hold two 64-token prompts; the third evicts the least recently used: the first.
  for (const seed of [7, 9]) {
    const r = await postJson(`${sim.url}/v1/completions`, { prompt: tokenIds(64, seed), max_tokens: 1 });
    assert.equal(r.status, 200, r.text);
  }
  await waitFor(() => events().some((e) => e.type === "BlockRemoved"), "BlockRemoved");
  const removed = events().flatMap((e) => (e.type === "BlockRemoved" ? e.blockHashes.map(String) : []));
  const first = new Set(smallVocab.blocks.map((b) => b.uint64));
  await waitFor(() => events().filter((e) => e.type === "BlockRemoved").length >= 4, "4 removals");
  assert.deepEqual(
    new Set(events().flatMap((e) => (e.type === "BlockRemoved" ? e.blockHashes.map(String) : []))),
    first,
  );
  assert.ok(
    removed.every((h) => first.has(h)),
    `removed ${removed.join(",")}`,
  );
});

test("reset_prefix_cache publishes AllBlocksCleared", async () => {
  const r = await fetch(`${sim.url}/reset_prefix_cache`, { method: "POST" });
  assert.equal(r.status, 200);
  await waitFor(() => events().some((e) => e.type === "AllBlocksCleared"), "AllBlocksCleared");
});

test("replay: a DEALER gets every buffered batch from seq 0, then the end marker", async () => {
  const dealer = new Dealer({ receiveTimeout: 30_000 }); // a hang guard
  dealer.connect(sim.kvReplayEndpoint!);
  const start = Buffer.alloc(8);
  start.writeBigUInt64BE(0n);
  await dealer.send([Buffer.alloc(0), start]);
  const replayed: Array<{ seq: bigint; batch: KvEventBatch }> = [];
  for (;;) {
    const frames = await dealer.receive();
    const [empty, seqBuf, payload] = frames.length === 3 ? frames : [Buffer.alloc(0), ...frames];
    assert.equal(empty!.length, 0);
    const seq = seqBuf!.readBigUInt64BE();
    if (seq === 0xffffffffffffffffn) break;
    replayed.push({ seq, batch: decodeBatch(payload!) });
  }
  dealer.close();
  assert.ok(replayed.length >= received.length);
  assert.deepEqual(
    replayed.slice(0, received.length).map((r) => r.seq),
    received.map((r) => r.seq),
  );
  const firstStored = replayed[0]!.batch.events.find((e) => e.type === "BlockStored");
  assert.ok(firstStored && firstStored.type === "BlockStored");
  assert.equal(String(firstStored.blockHashes[0]), smallVocab.blocks[0]!.uint64);
});
