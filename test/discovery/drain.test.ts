// Graceful drain through discovery: an engine removed from the backends file takes no new requests;
// the streams it carries may finish for engineDrainTimeout, then move to another engine, and every
// one of them reads as the unbroken answer of a third sim with the same seed.
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startTestSim } from "../sim/helpers.js";
import { routerFor, waitUntil } from "../helpers/router.js";
import { readStream, type StreamRead } from "../../bench/support/sse-client.js";
import { freePorts } from "../../bench/support/cli.js";

const MODEL = "Qwen/Qwen2.5-0.5B-Instruct";
const SIM_ARGS = ["--time-scale", "5", "--seed", "11", "--output-len-mean", "100000"];

test("an engine removed from the discovery file while 20 streams run on it loses none of them", async (t) => {
  const [a, b, reference] = await Promise.all([0, 1, 2].map(() => startTestSim(MODEL, SIM_ARGS)));
  const dir = mkdtempSync(join(tmpdir(), "drain-"));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, "backends.yaml");
  writeFileSync(file, `- ${a!.url}\n`);
  const router = await routerFor([], { discovery: { mode: "file", file }, engineDrainTimeout: 300 });
  try {
    const streams: StreamRead[] = [];
    const unbroken: StreamRead[] = [];
    for (let i = 0; i < 20; i++) {
      const kind = i % 2 === 0 ? "chat" : "completion";
      const body =
        kind === "chat"
          ? { model: MODEL, max_tokens: 120, temperature: 0, messages: [{ role: "user", content: `q${i}` }] }
          : { model: MODEL, max_tokens: 120, temperature: 0, prompt: `p${i}` };
      streams.push(readStream(router.url, body, kind));
      unbroken.push(readStream(reference!.url, body, kind));
    }
    await waitUntil(() => streams.every((s) => s.events >= 5), 30_000, "20 streams under way");
    assert.ok(streams.every((s) => s.route.includes(a!.url)));
    // a ConfigMap-style update: the engine is replaced by another
    writeFileSync(join(dir, ".next"), `- ${b!.url}\n`);
    renameSync(join(dir, ".next"), file);
    await Promise.all([...streams, ...unbroken].map((s) => s.done));
    for (let i = 0; i < 20; i++) {
      const s = streams[i]!;
      assert.deepEqual(s.errors, [], `stream ${i}: no error event`);
      assert.equal(s.dones, 1, `stream ${i}: one [DONE]`);
      assert.equal(s.text, unbroken[i]!.text, `stream ${i}: the unbroken answer`);
      assert.equal(s.finish, "length");
    }
    const m = await (await fetch(`${router.url}/metrics`)).text();
    const moved = /switchyard_migrations_total\{[^}]*reason="drain",outcome="continued"\} (\d+)/.exec(m);
    assert.ok(moved && Number(moved[1]) > 0, "streams still running at the deadline moved");
    await waitUntil(() => !router.router.registry.engines.has(a!.url), 5000, "the drained engine gone");
  } finally {
    await router.close();
    for (const s of [a, b, reference]) await s!.close();
  }
});

test("a stream at its drain deadline with no engine serving its model yet stays on its engine and moves once one answers", async (t) => {
  const [a, reference] = await Promise.all([0, 1].map(() => startTestSim(MODEL, SIM_ARGS)));
  const [bPort] = await freePorts(1);
  const dir = mkdtempSync(join(tmpdir(), "drain-"));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, "backends.yaml");
  writeFileSync(file, `- ${a!.url}\n`);
  const router = await routerFor([], { discovery: { mode: "file", file }, engineDrainTimeout: 300 });
  let b: Awaited<ReturnType<typeof startTestSim>> | undefined;
  try {
    const streams: StreamRead[] = [];
    const unbroken: StreamRead[] = [];
    for (let i = 0; i < 4; i++) {
      const body = {
        model: MODEL,
        max_tokens: 400,
        temperature: 0,
        messages: [{ role: "user", content: `q${i}` }],
      };
      streams.push(readStream(router.url, body, "chat"));
      unbroken.push(readStream(reference!.url, body, "chat"));
    }
    await waitUntil(() => streams.every((s) => s.events >= 5), 30_000, "4 streams under way");
    // the replacement is named before it listens: at the deadline nothing else serves the model
    writeFileSync(join(dir, ".next"), `- http://127.0.0.1:${bPort}\n`);
    renameSync(join(dir, ".next"), file);
    await waitUntil(
      () => router.router.registry.engines.get(a!.url)?.draining === true,
      10_000,
      "a draining",
    );
    await new Promise((r) => setTimeout(r, 1000)); // past the deadline (a slow machine only weakens the check)
    assert.ok(
      streams.every((s) => s.errors.length === 0 && s.dones === 0),
      "no stream failed or ended yet",
    );
    b = await startTestSim(MODEL, SIM_ARGS, { port: bPort });
    await Promise.all([...streams, ...unbroken].map((s) => s.done));
    for (let i = 0; i < 4; i++) {
      const s = streams[i]!;
      assert.deepEqual(s.errors, [], `stream ${i}: no error event`);
      assert.equal(s.text, unbroken[i]!.text, `stream ${i}: the unbroken answer`);
    }
    const m = await (await fetch(`${router.url}/metrics`)).text();
    const moved = /switchyard_migrations_total\{[^}]*reason="drain",outcome="continued"\} (\d+)/.exec(m);
    assert.ok(moved && Number(moved[1]) > 0, "the streams moved once the replacement answered");
  } finally {
    await router.close();
    for (const s of [a, reference, b]) await s?.close();
  }
});
