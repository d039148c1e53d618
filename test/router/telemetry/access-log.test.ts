// The access log: one info line per request from a real `switchyard router` process (logger
// router.access): id, tenant, model, engine, status, TTFT, duration, tokens from the answer's usage,
// retries; successes sampled by accessLog.sampleRatio and capped by accessLog.maxPerSecond, errors
// always logged.
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { stringify } from "yaml";
import { freePort, spawnCli, waitForHttp } from "../../../bench/support/cli.js";
import { startFakeEngine } from "../../../bench/support/fakes/fake-engine.js";
import { post } from "../../helpers/router.js";
import { LinesPerSecond } from "../../../src/router/telemetry/access-log.js";

function accessLines(output: string): Array<Record<string, unknown>> {
  return output
    .split("\n")
    .filter((l) => l.includes('"name":"router.access"'))
    .map((l) => JSON.parse(l) as Record<string, unknown>);
}

async function withRouter(
  accessLog: Record<string, unknown>,
  fn: (url: string, lines: () => Array<Record<string, unknown>>) => Promise<void>,
  more: { config?: Record<string, unknown>; engine?: { firstTokenDelayMs?: number } } = {},
): Promise<void> {
  const e = await startFakeEngine({ models: ["fake/m"], ...more.engine });
  const dir = mkdtempSync(join(tmpdir(), "sy-access-"));
  const file = join(dir, "router.yaml");
  const config = { backends: [e.url], accessLog, health: { interval: "100ms" }, ...more.config };
  writeFileSync(file, stringify(config));
  const port = await freePort();
  const r = spawnCli(["router", "--config", file, "--host", "127.0.0.1", "--port", String(port)], {
    SWITCHYARD_LOG_LEVEL: "info",
  });
  try {
    const url = `http://127.0.0.1:${port}`;
    await waitForHttp(`${url}/ready`, 20_000, 200, r);
    await fn(url, () => accessLines(r.output()));
  } finally {
    await r.stop();
    await e.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

/** waits for cond; the bound is a hang guard (the assertion after it says what failed), not a timing */
async function until(cond: () => boolean): Promise<void> {
  for (let i = 0; i < 600 && !cond(); i++) await new Promise((res) => setTimeout(res, 50));
}

test("access log: one info line per request, with model, engine, status, TTFT, duration and tokens", async () => {
  await withRouter({ enabled: true }, async (url, lines) => {
    const ok = await post(
      url + "/v1/completions",
      { model: "fake/m", prompt: "x", max_tokens: 3 },
      {
        "x-request-id": "req-123",
      },
    );
    assert.equal(ok.status, 200);
    await ok.text();
    const missing = await post(url + "/v1/completions", { model: "nope", prompt: "x" });
    assert.equal(missing.status, 404);
    await missing.text();
    await until(() => lines().length >= 2);
    const [a, b] = lines();
    assert.equal(a!.requestId, "req-123");
    assert.equal(a!.model, "fake/m");
    assert.match(String(a!.engine), /^http:\/\/127\.0\.0\.1:\d+$/);
    assert.equal(a!.status, 200);
    assert.equal(a!.level, 30);
    assert.equal(typeof a!.ttftMs, "number");
    assert.equal(typeof a!.durationMs, "number");
    assert.equal(a!.promptTokens, 7);
    assert.equal(a!.completionTokens, 3);
    assert.equal(a!.retries, 0);
    assert.equal(b!.status, 404);
    assert.equal(b!.engine, "none");
  });
});

test("access log: a request that waited in the router's admission queue says for how long; one bound at once does not", async () => {
  await withRouter(
    { enabled: true },
    async (url, lines) => {
      // one request at a time per engine: the second waits in the router until the first is answered
      const send = (id: string) =>
        post(
          url + "/v1/completions",
          { model: "fake/m", prompt: "x", max_tokens: 5 },
          { "x-request-id": id },
        );
      // each answer comes after a second (a non-streamed answer waits its first-token delay; the per-token
      // delay paces streams only): the other is sent long before the first answer can end
      for (const r of await Promise.all([send("first"), send("second")])) {
        assert.equal(r.status, 200);
        await r.text();
      }
      await until(() => lines().length >= 2);
      const byId = new Map(lines().map((l) => [l.requestId, l]));
      const waited = [byId.get("first")!, byId.get("second")!].filter((l) => l.queuedMs !== undefined);
      assert.equal(waited.length, 1, "exactly one of the two waited for the other");
      assert.ok(Number(waited[0]!.queuedMs) > 0);
    },
    { config: { admission: { maxInFlightPerEngine: 1 } }, engine: { firstTokenDelayMs: 1_000 } },
  );
});

test("access log: sampleRatio 0 drops successes but keeps every error", async () => {
  await withRouter({ enabled: true, sampleRatio: 0 }, async (url, lines) => {
    for (let i = 0; i < 5; i++) {
      const r = await post(url + "/v1/completions", { model: "fake/m", prompt: "x", max_tokens: 1 });
      await r.text();
    }
    const bad = await post(url + "/v1/completions", "{oops");
    assert.equal(bad.status, 400);
    await bad.text();
    await until(() => lines().length >= 1);
    await new Promise((res) => setTimeout(res, 200));
    assert.deepEqual(
      lines().map((l) => l.status),
      [400],
    );
  });
});

test("access log: maxPerSecond caps successes' lines each second, counts the rest and says how many, keeping every error", async () => {
  await withRouter({ enabled: true, maxPerSecond: 1 }, async (url, lines) => {
    const n = 8;
    for (let i = 0; i < n; i++) {
      const r = await post(url + "/v1/completions", { model: "fake/m", prompt: "x", max_tokens: 1 });
      await r.text();
    }
    const bad = await post(url + "/v1/completions", "{oops");
    assert.equal(bad.status, 400);
    await bad.text();
    const successes = () => lines().filter((l) => l.status === 200);
    const skipped = () =>
      lines()
        .filter((l) => l.msg === "access lines skipped")
        .reduce((a, l) => a + Number(l.skipped), 0);
    // every success has a line or is counted in a summary, which comes when its second ends
    await until(() => successes().length + skipped() === n);
    assert.equal(successes().length + skipped(), n);
    assert.ok(lines().some((l) => l.status === 400));
    for (const l of lines().filter((l) => l.msg === "access lines skipped")) assert.equal(l.maxPerSecond, 1);
    // how many lines a second gets is asserted in virtual time (LinesPerSecond, below)
    const metrics = await (await fetch(url + "/metrics")).text();
    assert.match(metrics, new RegExp(`^switchyard_access_log_lines_skipped_total ${skipped()}$`, "m"));
  });
});

test("access log cap: at most maxPerSecond lines a second, a second beginning at the first line after the last ended (virtual time)", () => {
  const cap = new LinesPerSecond();
  const taken = (ts: number[]) => ts.map((t) => cap.take(t, 2));
  assert.deepEqual(taken([0, 1, 2, 999.9]), [true, true, false, false]);
  assert.equal(cap.endsAt, 1000);
  assert.equal(cap.takeSkipped(), 2, "the second's skipped lines, taken at its end");
  assert.equal(cap.takeSkipped(), 0);
  // a quiet spell: the next second begins at the next line, not on a grid
  assert.deepEqual(taken([5000, 5500, 5999]), [true, true, false]);
  assert.equal(cap.endsAt, 6000);
  assert.equal(cap.takeSkipped(), 1);
  assert.equal(cap.take(6000, 2), true, "the next second begins as this one ends");
  assert.equal(cap.endsAt, 7000);
  assert.throws(
    () => {
      cap.take(6001, 2);
      cap.take(6002, 2);
      cap.take(7000, 2);
    },
    /invariant/,
    "a second's skipped count must be taken before the next begins",
  );
});
