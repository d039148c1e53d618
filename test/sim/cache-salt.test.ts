// cache_salt on every generating route of the sim, as vLLM 0.32 honours it: the salt is mixed into
// the first KV block's hash, so the same long prompt under two salts shares no prefix-cache hit,
// while the same salt hits. The router's per-tenant isolation (docs/security.md) rides on this, so
// a route that dropped the salt would let isolated tenants time each other's prompts.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import type { RunningSim } from "../../src/sim/app.js";
import { getText, metric, postJson, startTestSim } from "./helpers.js";

const MODEL = "meta-llama/Llama-3.1-8B-Instruct";
let sim: RunningSim;

before(async () => {
  sim = await startTestSim(MODEL, ["--time-scale", "0.02"]);
});
after(async () => sim.close());

/**
 * A prompt many blocks long, its words distinct per route; the salts are per route too, as the chat
 * template's opening block is the same on chat, Responses and Messages.
 */
function longText(route: string): string {
  const words: string[] = [];
  for (let i = 0; i < 400; i++) words.push(`${route}${i % 37}w${i}`);
  return words.join(" ");
}

interface Cached {
  hits: number;
  cached: number;
}

async function cached(): Promise<Cached> {
  const m = await getText(`${sim.url}/metrics`);
  return {
    hits: metric(m.text, "vllm:prefix_cache_hits_total"),
    cached: metric(m.text, "vllm:prompt_tokens_cached_total"),
  };
}

const ROUTES: Array<{ route: string; path: string; body: (text: string, salt: string) => unknown }> = [
  {
    route: "chat",
    path: "/v1/chat/completions",
    body: (text, salt) => ({
      model: MODEL,
      max_tokens: 2,
      cache_salt: salt,
      messages: [{ role: "user", content: text }],
    }),
  },
  {
    route: "completions",
    path: "/v1/completions",
    body: (text, salt) => ({ model: MODEL, max_tokens: 2, cache_salt: salt, prompt: text }),
  },
  {
    route: "responses",
    path: "/v1/responses",
    body: (text, salt) => ({
      model: MODEL,
      max_output_tokens: 2,
      store: false,
      cache_salt: salt,
      input: text,
    }),
  },
  {
    route: "messages",
    path: "/v1/messages",
    body: (text, salt) => ({
      model: MODEL,
      max_tokens: 2,
      cache_salt: salt,
      messages: [{ role: "user", content: text }],
    }),
  },
];

for (const r of ROUTES) {
  test(`${r.route}: the same long prompt under two cache salts shares no prefix-cache hit, under one salt it hits`, async () => {
    const text = longText(r.route);
    const send = async (salt: string) => {
      const res = await postJson(`${sim.url}${r.path}`, r.body(text, salt));
      assert.equal(res.status, 200, res.text);
    };
    await send(`${r.route}-tenant-a`);
    const afterA = await cached();
    await send(`${r.route}-tenant-b`);
    const afterB = await cached();
    assert.equal(afterB.hits, afterA.hits, "another salt hits none of the first salt's blocks");
    assert.equal(afterB.cached, afterA.cached, "no prompt token counted cached across salts");
    await send(`${r.route}-tenant-a`);
    const again = await cached();
    assert.ok(
      again.hits - afterB.hits >= 256,
      `the same salt hits its blocks (${again.hits - afterB.hits} tokens)`,
    );
    assert.ok(again.cached > afterB.cached, "and counts its prompt tokens cached");
  });
}
