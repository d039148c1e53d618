// Per-tenant cache isolation end to end: the router's tenancy gate salts every generating route's body
// (Anthropic Messages included), and the sim honours the salt as vLLM 0.32 does, so two isolated
// tenants sending the same long prompt share no prefix-cache hit (engine metrics). Audio uploads are
// multipart, and vLLM's transcription and translation requests take no `cache_salt`: the router passes
// them through unsalted and unaltered (docs/security.md says what that leaves shared).
import { test } from "node:test";
import assert from "node:assert/strict";
import { hashKey } from "../../src/tenancy/keys.js";
import { deriveCacheSalt } from "../../src/tenancy/salt.js";
import { startFakeEngine } from "../../bench/support/fakes/fake-engine.js";
import { post, routerFor } from "../helpers/router.js";
import { getText, metric, startTestSim } from "../sim/helpers.js";

const MODEL = "meta-llama/Llama-3.1-8B-Instruct";
const KEY_A = "sk-team-a-0123456789abcdef";
const KEY_B = "sk-team-b-abcdefghij012345";
const SALT_SECRET = "salt-secret-0123456789";

const tenancy = {
  tenants: { a: { cacheIsolation: true }, b: { cacheIsolation: true } },
  keys: [
    { hash: hashKey(KEY_A), tenant: "a" },
    { hash: hashKey(KEY_B), tenant: "b" },
  ],
  cacheSaltSecret: SALT_SECRET,
};

test("two isolated tenants sending the same long prompt to /v1/messages get no prefix-cache hit from each other; one tenant hits its own", async () => {
  const sim = await startTestSim(MODEL, ["--time-scale", "0.02"]);
  const r = await routerFor([sim.url], { tenancy });
  try {
    const words: string[] = [];
    for (let i = 0; i < 400; i++) words.push(`river${i % 29}n${i}`);
    const body = {
      model: MODEL,
      max_tokens: 2,
      messages: [{ role: "user", content: words.join(" ") }],
    };
    const send = async (key: string) => {
      const res = await post(`${r.url}/v1/messages`, body, { authorization: `Bearer ${key}` });
      const text = await res.text();
      assert.equal(res.status, 200, text);
    };
    const hits = async () =>
      metric((await getText(`${sim.url}/metrics`)).text, "vllm:prefix_cache_hits_total");
    await send(KEY_A);
    const afterA = await hits();
    await send(KEY_B);
    const afterB = await hits();
    assert.equal(afterB, afterA, "tenant b hits none of tenant a's blocks");
    await send(KEY_A);
    assert.ok((await hits()) - afterB >= 256, "tenant a hits its own blocks");
  } finally {
    await r.close();
    await sim.close();
  }
});

test("an isolated tenant's /v1/messages body reaches the engine with its cache_salt; a multipart upload passes unsalted and unaltered", async () => {
  const eng = await startFakeEngine();
  const r = await routerFor([eng.url], { tenancy });
  try {
    const m = await post(
      `${r.url}/v1/messages`,
      { model: "fake/model-a", max_tokens: 1, messages: [{ role: "user", content: "hi" }] },
      { authorization: `Bearer ${KEY_A}` },
    );
    assert.equal(m.status, 200);
    await m.arrayBuffer();
    assert.equal(
      (JSON.parse(eng.lastBody) as { cache_salt?: string }).cache_salt,
      deriveCacheSalt(SALT_SECRET, "a"),
    );

    const form = new FormData();
    form.append("model", "fake/model-a");
    form.append("file", new Blob([new Uint8Array(5_000).fill(7)]), "a.wav");
    const sent = new Request("http://x/", { method: "POST", body: form });
    const contentType = sent.headers.get("content-type")!;
    const bytes = Buffer.from(await sent.arrayBuffer());
    const a = await fetch(`${r.url}/v1/audio/transcriptions`, {
      method: "POST",
      headers: { authorization: `Bearer ${KEY_A}`, "content-type": contentType },
      body: bytes,
    });
    assert.equal(a.status, 200, await a.clone().text());
    await a.arrayBuffer();
    assert.equal(eng.lastBody, bytes.toString(), "the upload reaches the engine byte for byte");
    assert.ok(!eng.lastBody.includes("cache_salt"), "no salt field is added to the form");
  } finally {
    await r.close();
    await eng.close();
  }
});
