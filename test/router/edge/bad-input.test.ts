import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { request } from "node:http";
import { startFakeEngine, type FakeEngine } from "../../../bench/support/fakes/fake-engine.js";
import { post, routerFor } from "../../helpers/router.js";
import type { RunningRouter } from "../../../src/router/index.js";

let e: FakeEngine;
let router: RunningRouter;
before(async () => {
  e = await startFakeEngine({ models: ["fake/m"] });
  router = await routerFor([e.url], { limits: { maxBodyBytes: 4096 } });
});
after(async () => {
  await router.close();
  await e.close();
});

async function expectError(res: Response, status: number, param?: string): Promise<void> {
  assert.equal(res.status, status);
  const body = (await res.json()) as {
    error: { message: string; type: string; code: number; param: string | null };
  };
  assert.equal(body.error.code, status);
  assert.equal(typeof body.error.message, "string");
  assert.equal(typeof body.error.type, "string");
  if (param !== undefined) assert.equal(body.error.param, param);
}

test("bad bodies get OpenAI-format errors with the right status", async () => {
  const url = `${router.url}/v1/chat/completions`;
  await expectError(await post(url, "{not json"), 400);
  await expectError(await post(url, "[1,2]"), 400);
  await expectError(await post(url, '"text"'), 400);
  await expectError(await post(url, "null"), 400);
  await expectError(await post(url, ""), 400);
  await expectError(await post(url, "[".repeat(200) + "]".repeat(200)), 400);
  await expectError(
    await fetch(url, {
      method: "POST",
      headers: { "content-type": "text/plain" },
      body: '{"model":"fake/m"}',
    }),
    415,
  );
  await expectError(await post(url, { model: "fake/m", messages: [], pad: "x".repeat(5000) }), 413);
  await expectError(await post(url, { messages: [] }), 400, "model");
  await expectError(await post(url, { model: "nope", messages: [] }), 404, "model");
  await expectError(await post(url, { model: 7, messages: [] }), 400, "model");
  await expectError(await post(url, { model: "fake/m", messages: "hi" }), 400, "messages");
  await expectError(await post(url, { model: "fake/m", messages: [], stream: "yes" }), 400, "stream");
  await expectError(await post(url, { model: "fake/m", messages: [], max_tokens: "10" }), 400, "max_tokens");
  await expectError(
    await post(`${router.url}/v1/completions`, { model: "fake/m", prompt: 5 }),
    400,
    "prompt",
  );
  await expectError(await fetch(`${router.url}/v1/nothing-here`), 404);
  await expectError(await fetch(url), 405);
});

test("a chunked body over the limit is refused with 413 too", async () => {
  const status = await new Promise<number>((resolve, reject) => {
    const u = new URL(`${router.url}/v1/completions`);
    const req = request(
      {
        host: u.hostname,
        port: u.port,
        path: u.pathname,
        method: "POST",
        headers: { "content-type": "application/json" },
      },
      (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      },
    );
    req.on("error", reject);
    for (let i = 0; i < 10; i++) req.write("x".repeat(1000));
    req.end();
  });
  assert.equal(status, 413);
});

/** Small deterministic PRNG so a failure can be replayed. */
function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s ^ (s >>> 15), 0x2c1b3c6d) + 0x6d2b79f5) >>> 0;
    return s / 4294967296;
  };
}

test("fuzz: random bodies never crash the router nor get a 5xx", async () => {
  const rand = rng(42);
  const pick = <T>(xs: T[]): T => xs[Math.floor(rand() * xs.length)]!;
  const values = (): unknown =>
    pick([
      null,
      true,
      -1,
      1e300,
      "fake/m",
      "nope",
      "",
      [],
      {},
      [1, "a"],
      { nested: { deep: [null] } },
      "\u0000\ud800",
      Number.MAX_SAFE_INTEGER,
    ]);
  const keys = [
    "model",
    "messages",
    "prompt",
    "stream",
    "max_tokens",
    "n",
    "temperature",
    "stream_options",
    "user",
    "x",
  ];
  const paths = ["/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/tokenize", "/v1/score"];
  for (let i = 0; i < 400; i++) {
    let body: string;
    const kind = rand();
    if (kind < 0.2) {
      body = Array.from({ length: Math.floor(rand() * 40) }, () =>
        String.fromCharCode(Math.floor(rand() * 128)),
      ).join("");
    } else {
      const obj: Record<string, unknown> = {};
      for (const k of keys) if (rand() < 0.5) obj[k] = values();
      if (rand() < 0.5) obj.model = "fake/m";
      if (rand() < 0.3) obj.messages = [{ role: "user", content: "hi" }];
      body = JSON.stringify(obj);
      if (kind > 0.9) body = body.slice(0, Math.floor(rand() * body.length));
    }
    const path = pick(paths);
    const res = await post(`${router.url}${path}`, body);
    const text = await res.text();
    assert.ok(res.status < 500, `${path} ${body} → ${res.status} ${text}`);
    if (res.status >= 400) {
      const doc = JSON.parse(text) as { error: { code: number } };
      assert.equal(doc.error.code, res.status);
    }
  }
  assert.equal((await fetch(`${router.url}/health`)).status, 200);
});
