// The sim hashes and drains as the vLLM release it claims (--vllm-version): since 0.31 a salted
// prompt's first block carries the tagged extra key ("cache_salt", salt), since 0.29 an unset
// PYTHONHASHSEED means the fixed seed "vllm-none-hash"; a drain refuses new requests with vLLM's
// shutdown 500 while /health answers 200 and streams in flight finish.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { Subscriber } from "zeromq";
import { decodeBatch } from "../../src/kvevents/codec.js";
import { computeBlockHashes } from "../../src/protocol/block-hashing.js";
import { readStream } from "../../bench/support/sse-client.js";
import { postJson, startTestSim } from "./helpers.js";
import { vectorPath } from "../helpers/vectors.js";

const MODEL = "meta-llama/Llama-3.1-8B-Instruct";

interface TaggedCase {
  name: string;
  python_hash_seed: string | null;
  block_size: number;
  cache_salt: string | null;
  token_ids: number[];
  blocks: { uint64: string; event_extra_keys: unknown }[];
}
const tagged = JSON.parse(readFileSync(vectorPath("vllm-block-hashes-tagged.json"), "utf8")) as {
  cases: TaggedCase[];
};

/** A sim publishing KV events, and the BlockStored events of one prompt sent to it. */
async function storedBy(version: string, body: Record<string, unknown>) {
  const cfg = JSON.stringify({
    enable_kv_cache_events: true,
    publisher: "zmq",
    endpoint: "tcp://127.0.0.1:*",
    topic: "kv",
  });
  const sim = await startTestSim(MODEL, ["--kv-events-config", cfg, "--vllm-version", version]);
  const sub = new Subscriber();
  const hashes: bigint[] = [];
  const keys: unknown[] = [];
  try {
    const connected = new Promise<void>((resolve) => sub.events.on("connect", () => resolve()));
    sub.connect(sim.kvEventsEndpoint!);
    sub.subscribe("kv");
    const reading = (async () => {
      for await (const [, , payload] of sub)
        for (const e of decodeBatch(payload!).events)
          if (e.type === "BlockStored") {
            hashes.push(...e.blockHashes);
            keys.push(...(e.extraKeys ?? []));
          }
    })().catch(() => {});
    await connected;
    await new Promise((r) => setTimeout(r, 300)); // the subscription crosses (ZMQ's slow joiner)
    const r = await postJson(`${sim.url}/v1/completions`, { max_tokens: 1, ...body });
    assert.equal(r.status, 200, r.text);
    const want = Math.floor((body.prompt as number[]).length / 16);
    const end = Date.now() + 30_000; // a hang guard
    while (hashes.length < want && Date.now() < end) await new Promise((res) => setTimeout(res, 20));
    sub.close();
    await reading;
    return { hashes: hashes.map(String), keys };
  } finally {
    await sim.close();
  }
}

test("a sim claiming vLLM 0.32 without PYTHONHASHSEED publishes, for a salted prompt, the block hashes vLLM 0.32 computes", async () => {
  const c = tagged.cases.find((x) => x.name === "salt_unset_seed")!;
  assert.equal(c.python_hash_seed, null);
  const got = await storedBy("0.32.0", { prompt: c.token_ids, cache_salt: c.cache_salt });
  assert.deepEqual(
    got.hashes,
    c.blocks.map((b) => b.uint64),
  );
  // the events keep the untagged form, the salt on the first block alone
  assert.deepEqual(got.keys[0], (c.blocks[0]!.event_extra_keys as unknown[])[0]);
});

test("a sim claiming vLLM 0.30 hashes the salt untagged, from the fixed seed of 0.29 and later", async () => {
  const c = tagged.cases.find((x) => x.name === "salt_unset_seed")!;
  const got = await storedBy("0.30.0", { prompt: c.token_ids, cache_salt: c.cache_salt });
  const want = computeBlockHashes(c.token_ids, {
    blockSize: 16,
    hashSeed: "vllm-none-hash",
    cacheSalt: c.cache_salt,
  }).ids.map(String);
  assert.deepEqual(got.hashes, want);
  assert.notDeepEqual(
    got.hashes,
    c.blocks.map((b) => b.uint64),
  );
});

test("a sim claiming vLLM 0.28 without PYTHONHASHSEED hashes from the pinned seed 0 (0.28 itself would draw a random one)", async () => {
  const c = tagged.cases.find((x) => x.name === "plain_unset_seed")!;
  const got = await storedBy("0.28.0", { prompt: c.token_ids });
  const want = computeBlockHashes(c.token_ids, { blockSize: 16, hashSeed: "0" }).ids.map(String);
  assert.deepEqual(got.hashes, want);
});

test("a draining sim refuses new requests with vLLM's shutdown 500 while /health answers 200, and its stream in flight finishes", async () => {
  const sim = await startTestSim(MODEL, ["--vllm-version", "0.32.0", "--time-scale", "2"]);
  try {
    const stream = readStream(
      sim.url,
      { model: MODEL, prompt: "a long answer", max_tokens: 40, ignore_eos: true },
      "completion",
    );
    const end = Date.now() + 30_000;
    while (stream.events < 2 && Date.now() < end) await new Promise((r) => setTimeout(r, 20));
    const drained = sim.drain(30);
    const refused = await postJson(`${sim.url}/v1/chat/completions`, {
      model: MODEL,
      messages: [{ role: "user", content: "hi" }],
    });
    assert.equal(refused.status, 500);
    assert.deepEqual(refused.json, {
      error: {
        message: "cannot schedule new futures after shutdown",
        type: "InternalServerError",
        param: null,
        code: 500,
      },
    });
    assert.equal((await fetch(`${sim.url}/health`)).status, 200);
    assert.equal((await fetch(`${sim.url}/live`)).status, 404, "vLLM serves no /live");
    assert.equal((await fetch(`${sim.url}/v1/models`)).status, 200);
    await stream.done;
    await drained;
    assert.deepEqual(stream.errors, []);
    assert.equal(stream.dones, 1);
    assert.equal(stream.finish, "length");
  } finally {
    await sim.close();
  }
});
