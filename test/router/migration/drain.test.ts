// Draining one engine: by hand (POST /admin/engines/drain) or because the engine says so (vLLM's
// drain on SIGTERM: new requests refused with a 500, /health still 200). Either way it takes no new
// requests at once; its streams finish there, or move when engineDrainTimeout passes.
import { test } from "node:test";
import assert from "node:assert/strict";
import { hashKey } from "../../../src/tenancy/keys.js";
import { startTestSim } from "../../sim/helpers.js";
import { post, routerFor, waitUntil } from "../../helpers/router.js";
import { readStream } from "../../../bench/support/sse-client.js";

const MODEL = "Qwen/Qwen2.5-0.5B-Instruct";
const SIM_ARGS = ["--time-scale", "5", "--seed", "3", "--output-len-mean", "100000"];
const ADMIN = "admin-secret-key";
const body = (i: number) => ({ model: MODEL, max_tokens: 100, temperature: 0, prompt: `drain ${i}` });

test("POST /admin/engines/drain: the engine takes no new requests, its streams move at the deadline, undrain brings it back", async () => {
  const [a, b] = await Promise.all([0, 1].map(() => startTestSim(MODEL, SIM_ARGS)));
  const router = await routerFor([a!.url, b!.url], {
    policy: "round-robin",
    engineDrainTimeout: 300,
    tenancy: { adminKeys: [hashKey(ADMIN)] },
  });
  const reg = router.router.registry;
  const drain = (path: string, engine: string, key = ADMIN) =>
    post(`${router.url}/admin/engines/${path}`, { engine }, { authorization: `Bearer ${key}` });
  try {
    await waitUntil(() => reg.snapshot().every((v) => v.healthy), 10_000, "both in rotation");
    const streams = [0, 1, 2, 3].map((i) => readStream(router.url, body(i), "completion"));
    await waitUntil(() => streams.every((s) => s.events >= 3), 30_000, "streams under way");
    assert.equal((await drain("drain", a!.url, "wrong")).status, 401);
    assert.equal((await drain("drain", "http://nowhere:1")).status, 404);
    const r = await drain("drain", a!.url);
    assert.equal(r.status, 202);
    assert.equal(((await r.json()) as { state: string }).state, "draining");
    // new requests go elsewhere at once
    for (let i = 0; i < 4; i++) {
      const n = await post(
        `${router.url}/v1/completions`,
        { ...body(10 + i), max_tokens: 2 },
        { "x-switchyard-debug": "1", "x-switchyard-debug-key": ADMIN },
      );
      assert.equal(n.status, 200);
      assert.match(n.headers.get("x-switchyard-route") ?? "", new RegExp(b!.url));
      await n.arrayBuffer();
    }
    await Promise.all(streams.map((s) => s.done));
    for (const s of streams) {
      assert.deepEqual(s.errors, []);
      assert.equal(s.dones, 1);
      assert.equal(s.usage, undefined);
      assert.equal(s.finish, "length");
    }
    const m = await (
      await fetch(`${router.url}/metrics`, { headers: { authorization: `Bearer ${ADMIN}` } })
    ).text();
    assert.match(m, /switchyard_migrations_total\{[^}]*reason="drain",outcome="continued"\} 2/);
    // a drain by hand holds whatever the probes say, until undrained
    await new Promise((res) => setTimeout(res, 300));
    assert.equal(reg.engines.get(a!.url)!.state, "draining");
    assert.equal((await drain("undrain", a!.url)).status, 200);
    await waitUntil(() => reg.engines.get(a!.url)!.state === "healthy", 5000, "back in rotation");
  } finally {
    await router.close();
    await a!.close();
    await b!.close();
  }
});

test("an engine draining as vLLM does (new requests refused with a 500 while /health answers 200) leaves rotation at its first refusal, unejected; the refused request is answered elsewhere and its streams finish there", async () => {
  const simArgs = [...SIM_ARGS, "--vllm-version", "0.32.0"];
  const [a, b] = await Promise.all([0, 1].map(() => startTestSim(MODEL, simArgs)));
  // the deadline is far: streams on the draining engine finish where they are
  const router = await routerFor([a!.url, b!.url], { policy: "round-robin", engineDrainTimeout: 60_000 });
  const reg = router.router.registry;
  try {
    await waitUntil(() => reg.snapshot().every((v) => v.healthy), 10_000, "both in rotation");
    const streams = [0, 1].map((i) => readStream(router.url, body(i), "completion"));
    await waitUntil(() => streams.every((s) => s.events >= 3), 30_000, "streams under way");
    const onA = streams.find((s) => s.route.includes(a!.url))!;
    const drained = a!.drain(30);
    // round-robin sends one of these to the draining engine: it refuses, the router goes elsewhere
    for (let i = 0; i < 4; i++) {
      const n = await post(`${router.url}/v1/completions`, { ...body(9 + i), max_tokens: 2 });
      assert.equal(n.status, 200, await n.clone().text());
      await n.arrayBuffer();
    }
    assert.equal(reg.engines.get(a!.url)!.state, "draining");
    // /health still answers 200: the probes do not bring it back while it drains
    await new Promise((res) => setTimeout(res, 2500));
    assert.equal(reg.engines.get(a!.url)!.state, "draining");
    await Promise.all(streams.map((s) => s.done));
    await drained;
    assert.deepEqual(onA.errors, []);
    assert.equal(onA.dones, 1);
    assert.equal(onA.finish, "length");
    const m = await (
      await fetch(`${router.url}/metrics`, { headers: { authorization: `Bearer ${ADMIN}` } })
    ).text();
    assert.doesNotMatch(m, /switchyard_engine_ejections_total\{/, "a drain is not an ejection");
    assert.doesNotMatch(m, /switchyard_migrations_total\{/, "nothing had to move");
    // once it stops, a probe fails; started again, it is a new engine and comes back
    await a!.close();
    await waitUntil(() => reg.engines.get(a!.url)!.state !== "draining", 10_000, "seen stopped");
  } finally {
    await router.close();
    await a!.close();
    await b!.close();
  }
});
