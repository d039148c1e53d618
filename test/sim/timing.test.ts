// The sim's latencies follow the engine model as a client sees them: TTFT grows with prompt length,
// a prefix-cache hit cuts it, and inter-token latency grows with the decode batch. Margins are wide
// (factors of 2 or more against modelled gaps of 5x or more) so that a busy machine cannot flip them.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import type { RunningSim } from "../../src/sim/app.js";
import { startTestSim, tokenIds } from "./helpers.js";

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
      // steps the sim completes within a timer tick share one event (src/sim/runtime.ts): count tokens
      const text = (JSON.parse(ev.slice(6)) as { choices: { text: string }[] }).choices[0]!.text;
      tokens += text.split(" ").length - 1;
    }
  }
  assert.equal(tokens, maxTokens);
  const ttft = (arrivals[0]! - t0) / 1000;
  const itl = (arrivals.at(-1)! - arrivals[0]!) / 1000 / (maxTokens - 1);
  return { ttft, itl };
}

test("TTFT grows with prompt length; a prefix hit cuts it", async () => {
  await timed(tokenIds(32, 10), 2); // warm up the client and the server's code paths
  const short = await timed(tokenIds(32, 11), 2);
  const longPrompt = tokenIds(12000, 12);
  const long = await timed(longPrompt, 2);
  const again = await timed(longPrompt, 2);
  console.log(
    `TTFT short ${short.ttft.toFixed(4)} s, long ${long.ttft.toFixed(4)} s, long with prefix hit ${again.ttft.toFixed(4)} s`,
  );
  assert.ok(long.ttft > 3 * short.ttft, "12k-token prefill takes much longer than 32 tokens");
  assert.ok(again.ttft < long.ttft / 2, "prefix hit skips most of the prefill");
});

test("ITL grows with the decode batch", async () => {
  const shared = tokenIds(4000, 21);
  const single = await timed(shared, 24);
  // 96 streams sharing the cached 4k-token prefix: each step reads every sequence's KV
  const batch = await Promise.all(Array.from({ length: 96 }, (_, i) => timed([...shared, 100 + i], 24)));
  const meanItl = batch.reduce((a, r) => a + r.itl, 0) / batch.length;
  console.log(
    `ITL single ${(single.itl * 1000).toFixed(2)} ms, batch of 96 ${(meanItl * 1000).toFixed(2)} ms`,
  );
  assert.ok(meanItl > 1.5 * single.itl, "a larger batch decodes each token more slowly");
});
