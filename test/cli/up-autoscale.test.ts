// `switchyard up --autoscale MIN:MAX`: the router's SLO decision carried out on this machine. Load that
// rises and falls (streams from bench/support's client) starts engines and then stops them; no request
// fails and no stream is cut; an engine chosen to leave gets no new request once the router drains it,
// and is stopped only after the router let it go, which it does when the engine holds nothing. Counts
// and orders only: every wait is a bounded hang guard, never a timing.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { cliCommand, freePort, freeUpPorts, spawnCli, waitForHttp } from "../../bench/support/cli.js";
import { readStream, type StreamRead } from "../../bench/support/sse-client.js";
import { autoscaleRange } from "../../src/cli/up-autoscale.js";

test("up --autoscale: MIN:MAX is read and checked", () => {
  assert.deepEqual(autoscaleRange({ autoscale: "1:4" }), { min: 1, max: 4 });
  assert.deepEqual(autoscaleRange({ autoscale: "0:2" }), { min: 0, max: 2 });
  assert.equal(autoscaleRange({}), undefined);
  assert.throws(() => autoscaleRange({ autoscale: "4" }), /expected MIN:MAX/);
  assert.throws(() => autoscaleRange({ autoscale: "3:2" }), /at least MIN/);
});

const MODEL = "meta-llama/Llama-3.1-8B-Instruct";
/**
 * a prompt of about a thousand tokens, each its own from the first token (no prefix-cache hits): at
 * --time-scale 10 one replica holds about two a second at the default SLO
 */
const prompt = (n: number) =>
  `request ${n}: ${Array.from({ length: 250 }, (_, i) => `word${i % 50} and`).join(" ")}`;

interface Sent {
  read: StreamRead;
  /** the engines the router had draining or had let go when this request was sent */
  goneAtSend: Set<string>;
  /** sent as the load fell, after the peak */
  falling: boolean;
}

test("up --autoscale 1:3: rising load starts engines, falling load drains and stops them, no request failed", async () => {
  const port = await freePort();
  const { engineBase, kvBase } = await freeUpPorts(3);
  const stack = spawnCli([
    "up",
    "--autoscale",
    "1:3",
    "--port",
    String(port),
    "--engine-base-port",
    String(engineBase),
    "--kv-events-base-port",
    String(kvBase),
    "--model",
    MODEL,
    "--gpu",
    "h100",
    "--max-model-len",
    "8192",
    "--time-scale",
    "10",
    "--autoscale-interval",
    "1",
    "--autoscale-startup",
    "2",
    "--autoscale-scale-down-window",
    "3",
    "--autoscale-trend-window",
    "5",
    "--ready-timeout",
    "120",
  ]);
  const url = `http://127.0.0.1:${port}`;
  const { cmd, args: pre } = cliCommand();
  const sent: Sent[] = [];
  let peak = 0;
  /** engines the router listed as draining, or stopped listing after it had listed them */
  const gone = new Set<string>();
  const known = new Set<string>();
  let maxEngines = 0;
  let polling = true;
  const poll = (async () => {
    while (polling) {
      try {
        const r = (await (await fetch(`${url}/engines`)).json()) as {
          engines: { url: string; state: string }[];
        };
        const listed = new Set(r.engines.map((e) => e.url));
        for (const e of r.engines) {
          known.add(e.url);
          if (e.state === "draining") gone.add(e.url);
        }
        for (const u of known) if (!listed.has(u)) gone.add(u);
        // an engine that came back (its port reused by a new start) is in rotation again
        for (const e of r.engines) if (e.state !== "draining" && gone.has(e.url)) gone.delete(e.url);
        maxEngines = Math.max(maxEngines, r.engines.filter((e) => e.state !== "draining").length);
      } catch {
        // the router is busy or not up yet: the next poll
      }
      await new Promise((r) => setTimeout(r, 100));
    }
  })();
  const send = () =>
    sent.push({
      read: readStream(url, { model: MODEL, prompt: prompt(sent.length), max_tokens: 16 }, "completion"),
      goneAtSend: new Set(gone),
      falling: peak > 0,
    });
  /** open-loop load at `perS` requests a second until `until()` or the guard's end */
  const load = async (perS: number, guardMs: number, until: () => boolean) => {
    const end = Date.now() + guardMs;
    while (Date.now() < end && !until()) {
      send();
      await new Promise((r) => setTimeout(r, 1000 / perS));
    }
  };
  const serving = () =>
    [...(stack.output().matchAll(/autoscale: engine \S+ \w+[^(]*\((\d+) serving\)/g) ?? [])].map((m) =>
      Number(m[1]),
    );
  try {
    await waitForHttp(`${url}/ready`, 180_000);
    // up prints its summary once the router is ready: then its scaler runs
    for (let i = 0; i < 600 && !/autoscale 1:3 from the router's SLO decision/.test(stack.output()); i++)
      await new Promise((r) => setTimeout(r, 100));
    assert.match(stack.output(), /autoscale 1:3 from the router's SLO decision/);
    // switchyard status shows the decision and its reason (the router's first decision may come a
    // period after up's summary: asked again until it counts the first engine)
    type Pools = { autoscale: { pools: { reason: string; current: number }[] } };
    const statusPools = (): Pools["autoscale"]["pools"] => {
      const status = spawnSync(
        cmd,
        [...pre, "status", "--router", url, "--interval", "0", "--format", "json"],
        {
          encoding: "utf8",
          timeout: 60_000,
        },
      );
      assert.equal(status.status, 0, status.stderr);
      return (JSON.parse(status.stdout) as Pools).autoscale.pools;
    };
    let pools = statusPools();
    for (let i = 0; i < 60 && pools[0]?.current !== 1; i++) {
      await new Promise((r) => setTimeout(r, 500));
      pools = statusPools();
    }
    assert.equal(pools.length, 1);
    assert.equal(pools[0]!.current, 1);
    assert.match(pools[0]!.reason, /^(hold|up|down):/);
    // low, then high until a third engine serves, then low until the fleet is back to one
    await load(0.5, 5_000, () => false);
    await load(6, 120_000, () => serving().includes(3));
    await load(6, 5_000, () => false);
    // what the fall does is read after the peak (the rise may have had a drain of its own)
    peak = stack.output().length;
    const fallen = () => /stopped, it held nothing \(1 serving\)/.test(stack.output().slice(peak));
    await load(0.5, 180_000, fallen);
    // and a little more: requests sent once the router let the engines go
    await load(0.5, 4_000, () => false);
    await Promise.all(sent.map((s) => s.read.done));
  } finally {
    polling = false;
    await poll;
    await stack.stop("SIGINT");
  }
  const out = stack.output();
  const started = [...out.matchAll(/autoscale: engine (\S+) started/g)].map((m) => m[1]!);
  const stopped = [...out.slice(peak).matchAll(/autoscale: engine (\S+) stopped, it held nothing/g)].map(
    (m) => m[1]!,
  );
  assert.ok(started.length >= 2, `two engines started as load rose:\n${out.slice(-3000)}`);
  assert.ok(stopped.length >= 2, `two engines drained and stopped as load fell:\n${out.slice(-3000)}`);
  assert.ok(maxEngines >= 3, `the router had three engines in rotation at the peak (${maxEngines})`);
  // no request failed and no stream was cut: each ended with its finish reason and one [DONE]
  for (const s of sent) {
    const r = s.read;
    assert.equal(r.status, 200);
    assert.deepEqual(r.errors, []);
    assert.equal(r.dones, 1);
    assert.ok(r.finish === "length" || r.finish === "stop", `finished: ${r.finish}`);
    assert.ok(r.text.length > 0);
  }
  // as the load fell (no engine started then: a port `up` starts a new engine on is not the old
  // engine, which the poll cannot tell apart), an engine the router had drained or let go took no
  // request sent after that
  assert.doesNotMatch(out.slice(peak), /started/, "nothing started as the load fell");
  let checked = 0;
  for (const s of sent) {
    const engine = /engine=([^;]+)/.exec(s.read.route)?.[1];
    assert.ok(engine, `the route header names the engine: ${s.read.route}`);
    if (!s.falling) continue;
    assert.ok(!s.goneAtSend.has(engine), `${engine} was draining but got a new request`);
    if (s.goneAtSend.size > 0) checked++;
  }
  assert.ok(checked > 0, "requests were sent after an engine was drained");
});
