// Active-active replicas (`peers:`): two routers in front of the same engines tell each other their
// in-flight counts and routing picks over ZMQ, and route as one; a replica that falls silent stops
// counting. Real routers over loopback, real ZMQ.
import { test } from "node:test";
import assert from "node:assert/strict";
import { Publisher } from "zeromq";
import { freePorts } from "../../../bench/support/cli.js";
import { parseReport } from "../../../src/router/cluster/peers.js";
import type { RunningRouter } from "../../../src/router/index.js";
import { startFakeEngine } from "../../../bench/support/fakes/fake-engine.js";
import { routerFor, waitUntil } from "../../helpers/router.js";

const MODEL = "fake/model-a";

async function pair(
  policy: string,
  engines: string[],
): Promise<{ a: RunningRouter; b: RunningRouter; close(): Promise<void> }> {
  const [pa, pb] = await freePorts(2);
  const peers = (own: number, other: number, id: string) => ({
    bind: `tcp://127.0.0.1:${own}`,
    endpoints: [`tcp://127.0.0.1:${other}`],
    interval: 50,
    expireAfter: 600,
    id,
  });
  const a = await routerFor(engines, { policy, peers: peers(pa!, pb!, "a") });
  const b = await routerFor(engines, { policy, peers: peers(pb!, pa!, "b") });
  return {
    a,
    b,
    close: async () => {
      await a.close(0);
      await b.close(0);
    },
  };
}

const total = (r: RunningRouter) =>
  [...r.router.registry.engines.values()].reduce((s, e) => s + e.view.inFlight, 0);

test("two replicas route least-load on each other's in-flight counts", { timeout: 30_000 }, async () => {
  const engines = [
    await startFakeEngine({ tokenDelayMs: 100 }),
    await startFakeEngine({ tokenDelayMs: 100 }),
  ];
  const p = await pair(
    "least-load",
    engines.map((e) => e.url),
  );
  const ac = new AbortController();
  try {
    const start = async (r: RunningRouter) => {
      const res = await fetch(`${r.url}/v1/completions`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ model: MODEL, prompt: "x", max_tokens: 300, stream: true }),
        signal: ac.signal,
      });
      void res.body?.pipeTo(new WritableStream()).catch(() => undefined);
    };
    for (let i = 0; i < 3; i++) await start(p.a);
    // within a report or two, b counts a's three
    await waitUntil(() => total(p.b) === 3, 5000, "b to see a's requests");
    for (let i = 0; i < 3; i++) {
      await start(p.b);
      await waitUntil(() => total(p.a) === 4 + i, 5000, "a to see b's request");
    }
    await waitUntil(() => engines[0]!.active + engines[1]!.active === 6, 5000, "six streams");
    assert.equal(engines[0]!.active, 3, "the replicas together split six streams 3/3");
    assert.equal(engines[1]!.active, 3);
  } finally {
    ac.abort();
    await p.close();
    for (const e of engines) await e.close();
  }
});

test("a prefix one replica routed is known to the other", { timeout: 30_000 }, async () => {
  const engines = [await startFakeEngine({ tokenDelayMs: 20 }), await startFakeEngine({ tokenDelayMs: 20 })];
  const p = await pair(
    "prefix",
    engines.map((e) => e.url),
  );
  const ac = new AbortController();
  try {
    // picks travel once, in the next report: wait until b hears a's reports (ZMQ drops what a
    // publisher sends before the subscriber's connection is up, which a busy box can stretch)
    const held = await fetch(`${p.a.url}/v1/completions`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ model: MODEL, prompt: "warm-up", max_tokens: 40, stream: true }),
      signal: ac.signal,
    });
    void held.body?.pipeTo(new WritableStream()).catch(() => undefined);
    await waitUntil(() => total(p.b) === 1, 5000, "b to hear a's reports");
    const prompt = "Answer like a pirate, briefly, and never in more than one sentence. ".repeat(10);
    const ask = async (r: RunningRouter) => {
      const res = await fetch(`${r.url}/v1/completions`, {
        method: "POST",
        headers: { "content-type": "application/json", "x-switchyard-debug": "1" },
        body: JSON.stringify({ model: MODEL, prompt, max_tokens: 1 }),
      });
      const text = await res.text();
      return res.headers.get("x-switchyard-route") ?? `(status ${res.status}: ${text})`;
    };
    const first = await ask(p.a);
    const engine = /engine=([^;]+)/.exec(first)![1];
    // b learns the pick, and that a's request has ended (else the hit engine looks busier)
    await waitUntil(
      () => p.b.router.cache.prefix.index.size > 0 && total(p.b) === 0,
      5000,
      "b to learn a's pick",
    );
    const second = await ask(p.b);
    assert.match(second, /predicted_cached_tokens=[1-9]/);
    assert.equal(/engine=([^;]+)/.exec(second)![1], engine);
  } finally {
    ac.abort();
    await p.close();
    for (const e of engines) await e.close();
  }
});

test("a replica that falls silent no longer counts", { timeout: 30_000 }, async () => {
  const eng = await startFakeEngine({ tokenDelayMs: 100 });
  const p = await pair("least-load", [eng.url]);
  const ac = new AbortController();
  try {
    const res = await fetch(`${p.a.url}/v1/completions`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ model: MODEL, prompt: "x", max_tokens: 300, stream: true }),
      signal: ac.signal,
    });
    void res.body?.pipeTo(new WritableStream()).catch(() => undefined);
    await waitUntil(() => total(p.b) === 1, 5000, "b to count a's stream");
    // a goes away without a word (its last report said 1)
    await p.a.close(0);
    await waitUntil(() => total(p.b) === 0, 5000, "b to forget a after expireAfter");
  } finally {
    ac.abort();
    await p.b.close(0);
    await eng.close();
  }
});

test(
  "a replica claiming 2^53 requests on an engine counts as maxReportedInFlight, and /metrics counts the cut",
  { timeout: 30_000 },
  async () => {
    const eng = await startFakeEngine({});
    const [own, forger] = await freePorts(2);
    // a raw publisher where the router expects another replica
    const pub = new Publisher({ linger: 0 });
    await pub.bind(`tcp://127.0.0.1:${forger}`);
    const r = await routerFor([eng.url], {
      policy: "least-load",
      peers: {
        bind: `tcp://127.0.0.1:${own}`,
        endpoints: [`tcp://127.0.0.1:${forger}`],
        interval: 50,
        expireAfter: 600,
        maxReportedInFlight: 100,
      },
    });
    try {
      const report = JSON.stringify({
        v: 1,
        id: "forger",
        seq: 0,
        load: [[eng.url, 2 ** 53, 2 ** 53, 2 ** 53]],
        picks: [],
      });
      // PUB drops what it sends before the router's subscription arrives: send until it counts
      await waitUntil(
        async () => {
          await pub.send(["switchyard.router.v1", report]);
          return total(r) > 0;
        },
        5000,
        "the forged report to arrive",
      );
      assert.equal(total(r), 100);
      const text = await (await fetch(`${r.url}/metrics`)).text();
      const m = /^switchyard_routing_peer_counts_clamped_total (\d+)/m.exec(text);
      assert.ok(m && Number(m[1]) >= 3, text.slice(0, 200));
    } finally {
      pub.close();
      await r.close(0);
      await eng.close();
    }
  },
);

test("reports from the network are checked and bounded", () => {
  const ok = parseReport(
    Buffer.from(
      JSON.stringify({
        v: 1,
        id: "r1",
        seq: 3,
        load: [["http://e:8000", 2]],
        picks: [["http://e:8000", [1, 2], 0]],
      }),
    ),
  );
  assert.deepEqual(ok?.load, [["http://e:8000", 2]]);
  for (const bad of [
    "not json",
    JSON.stringify({ v: 2, id: "r", seq: 0, load: [], picks: [] }),
    JSON.stringify({ v: 1, id: "", seq: 0, load: [], picks: [] }),
    JSON.stringify({ v: 1, id: "r", seq: 0, load: [["u", -1]], picks: [] }),
    JSON.stringify({ v: 1, id: "r", seq: 0, load: [["u", 1.5]], picks: [] }),
    JSON.stringify({ v: 1, id: "r", seq: 0, load: [], picks: [["u", [1.5], 0]] }),
    JSON.stringify({ v: 1, id: "r", seq: 0, load: [], picks: [["u", "x", 0]] }),
  ])
    assert.equal(parseReport(Buffer.from(bad)), null, bad);
});

test("a replica's counts beyond what one engine can hold are cut to it, and counted", () => {
  const report = (row: unknown[]) =>
    Buffer.from(JSON.stringify({ v: 1, id: "r1", seq: 0, load: [row], picks: [] }));
  // 2^53 requests in flight, all awaiting a first token, with as many prefill tokens
  const huge = parseReport(report(["http://e:8000", 2 ** 53, 2 ** 53, 2 ** 53]), 4096)!;
  assert.deepEqual(huge.load, [["http://e:8000", 4096, 4096, 4096 * 2 ** 21]]);
  assert.equal(huge.clamped, 3);
  // awaiting a first token is a part of those in flight; prefill is bounded by those waiting
  const odd = parseReport(report(["http://e:8000", 3, 9, 10 ** 9]), 4096)!;
  assert.deepEqual(odd.load, [["http://e:8000", 3, 3, 3 * 2 ** 21]]);
  assert.equal(odd.clamped, 2);
  const none = parseReport(report(["http://e:8000", 3, 0, 5]), 4096)!;
  assert.deepEqual(none.load, [["http://e:8000", 3, 0, 0]]);
  const fine = parseReport(report(["http://e:8000", 12, 2, 5000]), 4096)!;
  assert.equal(fine.clamped, 0);
  assert.deepEqual(fine.load, [["http://e:8000", 12, 2, 5000]]);
});
