// Graceful drain (issue 9 acceptance 6): SIGTERM to a real `switchyard router` process during load.
// New connections are refused at once (before any stream in flight has ended); every stream in flight
// finishes whole when it can within --drain-timeout, and the process exits as soon as they are done,
// long before the deadline and without cutting anything; a stream longer than the deadline is cut only
// after it. POST /admin/drain turns readiness off without stopping the process. Orders and lower bounds
// only: a busy machine can delay each step, never reorder them.
import { test } from "node:test";
import assert from "node:assert/strict";
import { connect } from "node:net";
import { Agent, request } from "undici";
import { freePort, spawnCli, waitForHttp } from "../../bench/support/cli.js";
import { hashKey } from "../../src/tenancy/keys.js";
import { startFakeEngine } from "../../bench/support/fakes/fake-engine.js";
import { routerFor } from "../helpers/router.js";

const MODEL = "fake/model-a";
/** the drain's warning is asserted on, whatever level the runner sets */
const WARN_LOGS = { SWITCHYARD_LOG_LEVEL: "warn" };

function refused(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect(port, "127.0.0.1");
    s.once("connect", () => {
      s.destroy();
      resolve(false);
    });
    s.once("error", () => resolve(true));
  });
}

interface StreamResult {
  tokens: number;
  done: boolean;
  endedAt: number;
}

async function stream(url: string, agent: Agent, maxTokens: number): Promise<StreamResult> {
  const res = await request(`${url}/v1/completions`, {
    method: "POST",
    dispatcher: agent,
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ model: MODEL, prompt: "x", max_tokens: maxTokens, stream: true }),
  });
  assert.equal(res.statusCode, 200);
  let text = "";
  try {
    for await (const c of res.body) text += (c as Buffer).toString("utf8");
  } catch {
    // cut by the router at the deadline
  }
  return {
    tokens: (text.match(/"text":/g) ?? []).length,
    done: text.includes("data: [DONE]") && !text.includes('"error"'),
    endedAt: performance.now(),
  };
}

test(
  "SIGTERM during load: no new connections, every in-flight stream finishes, exit before the deadline",
  { timeout: 120_000 },
  async () => {
    const eng = await startFakeEngine({ tokenDelayMs: 100 });
    const port = await freePort();
    const router = spawnCli(
      [
        "router",
        "--host=127.0.0.1",
        `--port=${port}`,
        `--backend=${eng.url}`,
        // far beyond the streams' ~6 s: exiting before it shows the router did not wait for it
        "--drain-timeout=60s",
      ],
      WARN_LOGS,
    );
    const agent = new Agent({ connections: 64 });
    try {
      const url = `http://127.0.0.1:${port}`;
      await waitForHttp(`${url}/ready`, 30_000);
      // 12 streams of 60 tokens at 100 ms: ~6 s each (longer than the old fixed 5 s grace)
      const streams: Promise<StreamResult>[] = [];
      for (let i = 0; i < 12; i++) {
        streams.push(stream(url, agent, 60));
        await new Promise((r) => setTimeout(r, 40));
      }
      while (eng.active < 12) await new Promise((r) => setTimeout(r, 20));
      const exited = new Promise<number | null>((resolve) =>
        router.child.once("exit", (code) => resolve(code)),
      );
      const termAt = performance.now();
      router.child.kill("SIGTERM");
      // the listener closes at once: while every stream is still running
      let closedAt = Infinity;
      const deadline = termAt + 30_000; // timing-ok: a hang guard, polled
      while (closedAt === Infinity && performance.now() < deadline) {
        if (await refused(port)) closedAt = performance.now();
        else await new Promise((r) => setTimeout(r, 20));
      }
      const results = await Promise.all(streams);
      const firstEnd = Math.min(...results.map((r) => r.endedAt));
      assert.ok(closedAt < firstEnd, "new connections were refused before any stream in flight ended");
      for (const r of results) {
        assert.equal(r.tokens, 60, "every stream in flight got all its tokens");
        assert.ok(r.done, "and ended with [DONE], no error event");
      }
      const code = await exited;
      assert.equal(code, 0, router.output().slice(-2000));
      // the router says when its deadline cut the drain short; how long the drain took is not
      // asserted, since a busy machine stretches it
      assert.doesNotMatch(router.output(), /drain deadline passed/, "nothing was left for the deadline");
      assert.equal(eng.aborted, 0, "no upstream request was cut");
    } finally {
      await agent.close();
      await router.stop();
      await eng.close();
    }
  },
);

test("a stream longer than --drain-timeout is cut only at the deadline", { timeout: 120_000 }, async () => {
  const eng = await startFakeEngine({ tokenDelayMs: 100 });
  const port = await freePort();
  const router = spawnCli(
    ["router", "--host=127.0.0.1", `--port=${port}`, `--backend=${eng.url}`, "--drain-timeout=2s"],
    WARN_LOGS,
  );
  const agent = new Agent({ connections: 8 });
  try {
    const url = `http://127.0.0.1:${port}`;
    await waitForHttp(`${url}/ready`, 30_000);
    const long = stream(url, agent, 200); // 20 s
    const short = stream(url, agent, 5);
    while (eng.active < 2) await new Promise((r) => setTimeout(r, 20));
    const termAt = performance.now();
    router.child.kill("SIGTERM");
    const [l, s] = await Promise.all([long, short]);
    assert.equal(s.tokens, 5);
    assert.ok(s.done);
    const cutAfter = l.endedAt - termAt;
    assert.ok(
      cutAfter >= 1_900,
      `the long stream was cut ${cutAfter.toFixed(0)} ms after SIGTERM, before the 2 s deadline`,
    );
    // cut, not finished: it had 20 s of tokens to send; the router says why it cut it
    assert.ok(l.tokens > 0 && l.tokens < 200, `${l.tokens} tokens`);
    assert.ok(!l.done);
    // the log line reaches this process through a pipe, after the client saw the cut: give it until
    // the router's output closes (it exits once the deadline cut the stream)
    const said = /drain deadline passed/;
    for (let i = 0; i < 300 && !said.test(router.output()) && !router.child.stderr!.readableEnded; i++)
      await new Promise((r) => setTimeout(r, 100));
    assert.match(router.output(), /drain deadline passed: cutting the requests still open/);
  } finally {
    await agent.close();
    await router.stop();
    await eng.close();
  }
});

test("POST /admin/drain: readiness off, responses close their connections, requests still served", async () => {
  const ADMIN = "sk-admin-drain-0000000000";
  const eng = await startFakeEngine();
  const r = await routerFor([eng.url], { tenancy: { adminKeys: [hashKey(ADMIN)] } });
  try {
    assert.equal((await fetch(`${r.url}/admin/drain`, { method: "POST" })).status, 401);
    const res = await fetch(`${r.url}/admin/drain`, {
      method: "POST",
      headers: { authorization: `Bearer ${ADMIN}` },
    });
    assert.equal(res.status, 202);
    assert.equal((await fetch(`${r.url}/ready`)).status, 503);
    const ok = await fetch(`${r.url}/v1/completions`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ model: MODEL, prompt: "x", max_tokens: 1 }),
    });
    assert.equal(ok.status, 200);
    assert.equal(ok.headers.get("connection"), "close");
    await ok.text();
  } finally {
    await r.close();
    await eng.close();
  }
});
