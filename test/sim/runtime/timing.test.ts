// The sim's latencies follow the engine model as a client sees them. A busy machine can only make the
// sim slower than its model, never faster, so the live side is held to LOWER bounds: a prefill takes at
// least its modelled time, a batch of streams at least its modelled busy time, and a prefix hit is
// served from the cache. How latencies compare (TTFT grows with prompt length, a hit cuts it, ITL grows
// with the batch) is asserted on a virtual-time replica of the same engine fed the same requests, where
// no load can move it; engine/model.test.ts holds the model's shapes on their own.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import type { RunningSim } from "../../../src/sim/app.js";
import { Engine } from "../../../src/engine/engine.js";
import { VirtualDriver } from "../../../src/engine/drivers.js";
import { Recorder, request } from "../../engine/helpers.js";
import { startTestSim, tokenIds } from "../helpers.js";

let sim: RunningSim;
before(async () => {
  sim = await startTestSim("meta-llama/Llama-3.1-8B-Instruct", [
    "--time-scale",
    "1",
    "--max-num-batched-tokens",
    "16384",
  ]);
});
after(async () => sim.close());

/** A virtual-time engine with the sim's own configuration: what the model says the sim should do. */
function replica() {
  const rec = new Recorder();
  const engine = new Engine(sim.ctx.runtime.config, rec);
  const driver = new VirtualDriver();
  driver.attach(engine);
  let n = 0;
  /** runs the prompts side by side from now until idle; their TTFTs and mean ITLs in seconds */
  const run = (prompts: number[][], maxTokens: number) => {
    const t0 = driver.now;
    const ids = prompts.map((p) => {
      const id = `r${n++}`;
      engine.add(request(id, p, { maxTokens, ignoreEos: true, arrivalTime: t0 }));
      return id;
    });
    driver.wake(engine);
    driver.run();
    return ids.map((id) => {
      const times = rec.tokens.get(id)!.times;
      return { ttft: times[0]! - t0, itl: (times.at(-1)! - times[0]!) / (maxTokens - 1) };
    });
  };
  return { run };
}

/** Streams one completion; returns the client-side TTFT and mean ITL in seconds. */
async function timed(prompt: number[], maxTokens: number): Promise<{ ttft: number; itl: number }> {
  const t0 = performance.now();
  const res = await fetch(`${sim.url}/v1/completions`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ prompt, max_tokens: maxTokens, stream: true, ignore_eos: true }),
  });
  assert.equal(res.status, 200);
  const arrivals: number[] = [];
  let tokens = 0;
  const decoder = new TextDecoder();
  let buf = "";
  for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
    buf += decoder.decode(chunk, { stream: true });
    let i: number;
    while ((i = buf.indexOf("\n\n")) >= 0) {
      const ev = buf.slice(0, i);
      buf = buf.slice(i + 2);
      if (!ev.startsWith("data: {")) continue;
      arrivals.push(performance.now());
      // steps the sim completes within a timer tick share one event (src/sim/runtime/runtime.ts): count tokens
      const text = (JSON.parse(ev.slice(6)) as { choices: { text: string }[] }).choices[0]!.text;
      tokens += text.split(" ").length - 1;
    }
  }
  assert.equal(tokens, maxTokens);
  const ttft = (arrivals[0]! - t0) / 1000;
  const itl = (arrivals.at(-1)! - arrivals[0]!) / 1000 / (maxTokens - 1);
  return { ttft, itl };
}

const counters = () => ({ ...sim.ctx.runtime.engine.snapshot().counters });
/** timers never fire early by more than Node's rounding (under 1 ms) */
const SLACK_S = 0.002;

test("TTFT: a prefill takes at least its modelled time; a prefix hit is served from the cache", async () => {
  const scale = sim.ctx.runtime.timeScale;
  const longPrompt = tokenIds(12000, 12);
  const model = replica();
  const [mShort] = model.run([tokenIds(32, 11)], 2);
  const [mLong] = model.run([longPrompt], 2);
  const [mAgain] = model.run([longPrompt], 2);
  // the model's shape for this engine
  assert.ok(mLong!.ttft > 3 * mShort!.ttft, "12k-token prefill takes much longer than 32 tokens");
  assert.ok(mAgain!.ttft < mLong!.ttft / 2, "prefix hit skips most of the prefill");

  await timed(tokenIds(32, 10), 2); // warm up the client and the server's code paths
  const short = await timed(tokenIds(32, 11), 2);
  const long = await timed(longPrompt, 2);
  const before = counters();
  const again = await timed(longPrompt, 2);
  const hits = counters().prefixCacheHits - before.prefixCacheHits;
  console.log(
    `TTFT short ${short.ttft.toFixed(4)} s, long ${long.ttft.toFixed(4)} s, long with prefix hit ${again.ttft.toFixed(4)} s ` +
      `(modelled ${mShort!.ttft.toFixed(4)} / ${mLong!.ttft.toFixed(4)} / ${mAgain!.ttft.toFixed(4)} s at scale ${scale})`,
  );
  assert.ok(
    long.ttft >= mLong!.ttft * scale - SLACK_S,
    `the 12k prefill ran ${long.ttft} s, modelled ${mLong!.ttft} s`,
  );
  assert.ok(
    again.ttft >= mAgain!.ttft * scale - SLACK_S,
    `the hit ran ${again.ttft} s, modelled ${mAgain!.ttft} s`,
  );
  // all but the last (partial or recomputed) block of the 12k prompt came from the prefix cache
  assert.ok(hits >= 12000 - 32, `prefix cache hits ${hits} tokens`);
});

test("ITL: a batch of streams takes at least its modelled busy time, and decodes more slowly than one stream", async () => {
  const scale = sim.ctx.runtime.timeScale;
  const shared = tokenIds(4000, 21);
  const prompts = Array.from({ length: 48 }, (_, i) => [...shared, 100 + i]);
  const model = replica();
  model.run([shared], 24); // caches the shared prefix, as the live single stream does below
  const [mSingle] = model.run([[...shared, 99]], 24);
  const mBatch = model.run(prompts, 24);
  const mBatchItl = mBatch.reduce((a, r) => a + r.itl, 0) / mBatch.length;
  assert.ok(mBatchItl > 1.5 * mSingle!.itl, "the model: a larger batch decodes each token more slowly");

  const single = await timed(shared, 24);
  // 48 streams sharing the cached 4k-token prefix: each step reads every sequence's KV
  const before = counters();
  const t0 = performance.now();
  const batch = await Promise.all(prompts.map((p) => timed(p, 24)));
  const wall = (performance.now() - t0) / 1000;
  const after = counters();
  const busy = after.busySeconds - before.busySeconds;
  const meanItl = batch.reduce((a, r) => a + r.itl, 0) / batch.length;
  console.log(
    `ITL single ${(single.itl * 1000).toFixed(2)} ms, batch of 48 ${(meanItl * 1000).toFixed(2)} ms ` +
      `(modelled ${(mSingle!.itl * 1000).toFixed(2)} / ${(mBatchItl * 1000).toFixed(2)} ms); ` +
      `batch ${wall.toFixed(3)} s wall for ${busy.toFixed(3)} s modelled in ${after.steps - before.steps} steps`,
  );
  assert.equal(after.generationTokens - before.generationTokens, 48 * 24, "every token of every stream");
  // the real-time driver may catch up at most 50 ms it fell behind: the wall time covers the model's
  assert.ok(wall >= busy * scale - 0.05 - SLACK_S, `the batch ran ${wall} s, modelled busy ${busy} s`);
  // a late first token lets the next steps catch up (at most 50 ms), never more
  const catchUp = (0.05 + SLACK_S) / 23;
  assert.ok(single.itl >= mSingle!.itl * scale - catchUp, `one stream's ITL ${single.itl} s`);
});
