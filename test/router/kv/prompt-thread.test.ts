// The prompt thread: long prompts tokenized and hashed on a worker give the values the event loop
// gives (tokens, every hash scheme's block hashes, LMCache chunks, prefix ids), and a router under a
// stream of long prompts moves that work to the thread without changing what it predicts.
import { test } from "node:test";
import assert from "node:assert/strict";
import { computeBlockHashes, type BlockHashOptions } from "../../../src/protocol/block-hashing.js";
import { chunkHashes } from "../../../src/protocol/lmcache-chunks.js";
import { promptBlockIds } from "../../../src/routing/index.js";
import { blockEnds, hashedBlocks } from "../../../src/router/kv/prompt-hashes.js";
import { PromptWorkshop, promptView, promptChars } from "../../../src/router/kv/prompt-work.js";
import { PROMPT_THREAD_MIN_CHARS, PromptThread, WARM_AFTER } from "../../../src/router/kv/prompt-thread.js";
import { requestTokenizerFor } from "../../../src/router/kv/tokenizers.js";
import { post, routeOf, routerFor, waitUntil } from "../../helpers/router.js";
import { kvEventsOf, startTestSim } from "../../sim/helpers.js";

const MODEL = "meta-llama/Llama-3.1-8B-Instruct";
const LONG =
  "You are a careful assistant. " + "Answer every question about the rivers of Europe in detail. ".repeat(90);

test("the prompt thread's work gives the event loop's tokens, block hashes, chunk hashes and prefix ids", () => {
  const shop = new PromptWorkshop({});
  const loop = requestTokenizerFor(MODEL, undefined, {})!;
  const views = [
    {
      model: MODEL,
      seq: 0,
      messages: [
        { role: "system", content: LONG },
        { role: "user", content: "Which is longest?" },
      ],
      body: { add_generation_prompt: true, cache_salt: "tenant-a", max_tokens: 4 },
    },
    { model: MODEL, seq: 1, prompt: `${LONG} The Danube`, body: { add_special_tokens: false } },
    { model: MODEL, seq: 2, prompt: Array.from({ length: 1500 }, (_, i) => (i * 7919) % 128000), body: {} },
  ];
  const schemes: { key: string; blockSize: number; unit: number; opts: BlockHashOptions }[] = [
    { key: "gpu", blockSize: 16, unit: 16, opts: { blockSize: 16, hashSeed: "0" } },
    // a hybrid model's: hashed in units of 8, a block's hash the chain's at its end
    {
      key: "hybrid",
      blockSize: 32,
      unit: 8,
      opts: { blockSize: 8, hashSeed: "vllm-none-hash", extraKeyStyle: "tagged" },
    },
    {
      key: "adapter",
      blockSize: 16,
      unit: 16,
      opts: {
        blockSize: 16,
        hashSeed: "0",
        loraName: "sql",
        loraPath: "/adapters/sql",
        cacheSalt: "tenant-a",
      },
    },
  ];
  for (const view of views) {
    assert.ok(promptChars(view) >= PROMPT_THREAD_MIN_CHARS, "a long prompt");
    // twice: the second answer comes from the worker's memos (hash links, tokenizer chunks)
    for (let round = 0; round < 2; round++) {
      const a = shop.work({
        id: 1,
        generation: 0,
        tokenizer: { model: MODEL, root: undefined },
        view: structuredClone(promptView(view as never)),
        schemes,
        chunks: [{ tokens: 256, seed: "0" }],
        prefix: { blockChars: 64, maxBlocks: 4096 },
      });
      const tokens = loop.tokens(view as never)!;
      assert.deepEqual(Array.from(a.tokens!), tokens);
      for (const s of schemes) {
        const units = computeBlockHashes(
          tokens.slice(0, hashedBlocks(tokens, s.blockSize) * s.blockSize),
          s.opts,
        ).ids;
        const want = blockEnds(units, s);
        assert.ok(want.length > 10);
        assert.deepEqual(Array.from(a.hashes!.find((h) => h.key === s.key)!.ids), want, s.key);
      }
      assert.deepEqual(
        Array.from(a.chunks![0]!.hashes),
        Array.from(chunkHashes(tokens, Math.floor(tokens.length / 256), { chunkTokens: 256, hashSeed: "0" })),
      );
      const ids = promptBlockIds(view, 64, 4096);
      assert.deepEqual(Array.from(a.prefix!.ids), ids.ids);
      assert.equal(a.prefix!.chars, ids.chars);
    }
  }
});

test("a prompt of ids that are not token ids is left to the event loop", () => {
  const shop = new PromptWorkshop({});
  const a = shop.work({
    id: 7,
    generation: 0,
    tokenizer: { model: MODEL, root: undefined },
    view: { model: MODEL, prompt: [1, 2, 3.5, ...new Array(2000).fill(9)], body: {} },
    schemes: [{ key: "gpu", blockSize: 16, unit: 16, opts: { blockSize: 16, hashSeed: "0" } }],
    chunks: [],
    prefix: { blockChars: 64, maxBlocks: 4096 },
  });
  assert.equal(a.tokens, undefined);
  assert.ok(a.error);
});

test("a router loads its model's tokenizer on its loop and its prompt thread before the first request, hashes long prompts there, and predicts what its loop predicts", async () => {
  const s = await startTestSim(
    MODEL,
    [
      "--kv-events-config",
      JSON.stringify({
        enable_kv_cache_events: true,
        publisher: "zmq",
        endpoint: "tcp://127.0.0.1:0",
        replay_endpoint: "tcp://127.0.0.1:0",
      }),
      "--hash-seed",
      "0",
      "--time-scale",
      "0.05",
    ],
    {},
  );
  const router = await routerFor([{ url: s.url, kvEvents: kvEventsOf(s) }], { policy: "kv" });
  const cache = router.router.cache;
  const registry = router.router.registry;
  const chat = (i: number) => ({
    model: MODEL,
    messages: [
      { role: "system", content: `${i === 0 ? "" : `${i} `}${LONG}` },
      { role: "user", content: "Which is longest?" },
    ],
    max_tokens: 2,
  });
  const view = (i: number) => ({ model: MODEL, seq: i, messages: chat(i).messages, body: chat(i) });
  const notCancelled = { cancelled: false };
  try {
    await waitUntil(() => registry.snapshot().every((v) => v.healthy && v.blockSize === 16), 5000, "sim");
    // the engine listed its model: the tokenizer is loaded on the loop and on the thread, unasked
    await waitUntil(() => cache.thread.finishedThrough >= 1, 30_000, "the thread's tokenizer loaded");
    const info = await (await fetch(`${router.url}/metrics`)).text();
    assert.match(
      info,
      new RegExp(`switchyard_routing_tokenizer_info\\{model="${MODEL}",source="[^"]+"\\} 1`),
    );
    // the engine computes the prompt, and the router indexes its events
    const res = await post(`${router.url}/v1/chat/completions`, chat(0));
    assert.equal(res.status, 200);
    await res.arrayBuffer();
    await waitUntil(() => cache.kvRouted(s.url) && cache.kv.blocksOf(s.url) > 50, 5000, "events indexed");
    // worked out on the loop (predict without hashing ahead), then on the thread: the same prediction
    const onLoop = cache.predict(view(0) as never, registry.snapshot());
    assert.equal(onLoop.source[0], "kv");
    assert.ok(onLoop.cachedTokens[0]! > 16 * 50, String(onLoop.cachedTokens[0]));
    const answeredBefore = cache.thread.stats.answered;
    let fromThread: ReturnType<typeof cache.predict> | undefined;
    await waitUntil(
      async () => {
        const v = view(0);
        const ahead = cache.hashAhead(v as never, 0, notCancelled);
        if (ahead === undefined) return false;
        await ahead;
        fromThread = cache.predict(v as never, registry.snapshot());
        return cache.thread.stats.answered > answeredBefore;
      },
      20_000,
      "the prompt thread answering",
    );
    assert.deepEqual(
      { ...fromThread!, cachedTokens: Array.from(fromThread!.cachedTokens) },
      { ...onLoop, cachedTokens: Array.from(onLoop.cachedTokens) },
    );
    // and a request through the router is routed by the thread's hashes
    const again = await routeOf(router.url, "/v1/chat/completions", chat(0));
    assert.equal(again.source, "kv");
    assert.equal(Number(again.predicted_cached_tokens), onLoop.cachedTokens[0]);
    const metrics = await (await fetch(`${router.url}/metrics`)).text();
    const taken = /switchyard_routing_long_prompts_total\{by="thread"\} (\d+)/.exec(metrics);
    assert.ok(taken && Number(taken[1]) >= 2, metrics.slice(0, 200));
  } finally {
    await router.close();
    await s.close();
  }
});

/** an ask for one GPU block scheme and the prefix ids of a text prompt */
const ask = (prompt: string) => ({
  tokenizer: { model: MODEL, root: undefined },
  view: { model: MODEL, prompt, body: {} },
  schemes: [{ key: "gpu", blockSize: 16, unit: 16, opts: { blockSize: 16, hashSeed: "0" } }],
  chunks: [],
  prefix: { blockChars: 64, maxBlocks: 4096 },
});

test("an ask whose request is cancelled goes back to the loop, and the thread answers the next one", async () => {
  const thread = new PromptThread({});
  try {
    // long prompts keep coming: the loop takes the first ones, then the thread loads the tokenizer
    for (let i = 0; i < WARM_AFTER; i++) assert.equal(thread.takes(MODEL, undefined), false);
    await waitUntil(() => thread.takes(MODEL, undefined), 30_000, "the tokenizer loaded on the thread");
    const owner = { cancelled: false };
    const gone = thread.ask(ask(LONG.repeat(40)), owner);
    owner.cancelled = true;
    assert.equal(await gone, undefined);
    const answered = await thread.ask(ask(LONG), { cancelled: false });
    assert.ok(
      answered?.tokens && answered.tokens.length > 500,
      JSON.stringify({ n: answered?.tokens?.length, e: answered?.error }),
    );
    assert.equal(thread.stats.answered, 1);
  } finally {
    await thread.close();
  }
  // closed: nothing is sent any more
  assert.equal(await thread.ask(ask(LONG)), undefined);
});

test("warmed at a model's first long prompt, the thread takes the next ones once loaded, with none left on the loop", async () => {
  const thread = new PromptThread({});
  try {
    thread.warm(MODEL, undefined);
    // the worker answers the load (message 1); its answer is read on this loop's next turns
    await waitUntil(() => thread.finishedThrough >= 1, 30_000, "the tokenizer loaded on the thread");
    await new Promise((r) => setTimeout(r, 50));
    assert.equal(thread.takes(MODEL, undefined), true);
    assert.equal(thread.stats.onLoop, 0);
    const answered = await thread.ask(ask(LONG), { cancelled: false });
    assert.ok(answered?.tokens && answered.tokens.length > 500);
  } finally {
    await thread.close();
  }
});

test("a busy event loop that has not yet read the thread's answers keeps sending it long prompts", async () => {
  const thread = new PromptThread({});
  try {
    for (let i = 0; i < WARM_AFTER; i++) thread.takes(MODEL, undefined);
    await waitUntil(() => thread.takes(MODEL, undefined), 30_000, "the tokenizer loaded on the thread");
    const before = thread.finishedThrough;
    const answer = thread.ask(ask(LONG), { cancelled: false });
    // the loop is held (as a loop at a full core is) while the worker answers: its message waits unread
    const held = performance.now();
    while (thread.finishedThrough === before && performance.now() - held < 30_000);
    const spin = performance.now();
    while (performance.now() - spin < 20);
    assert.ok(thread.finishedThrough > before, "the worker finished the ask");
    // the ask has been owed for over 20 ms, but the worker is done with it: not behind
    assert.equal(thread.takes(MODEL, undefined), true);
    assert.ok((await answer)?.tokens);
  } finally {
    await thread.close();
  }
});
