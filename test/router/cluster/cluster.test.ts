// `switchyard router --workers 2`: two worker processes behind one port behave as one router. Each
// test drives a real process group over loopback, telling the workers apart by the debug route header
// (every keep-alive connection stays on the worker that accepted it).
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { Client } from "undici";
import { stringify as toYaml } from "yaml";
import { parseSamples } from "../../../src/protocol/prometheus-text.js";
import { hashKey } from "../../../src/tenancy/keys.js";
import { freePort, spawnCli, waitForHttp, type Spawned } from "../../../bench/support/cli.js";
import { startFakeEngine, type FakeEngine } from "../../../bench/support/fakes/fake-engine.js";

const MODEL = "fake/model-a";
const ADMIN = "sk-admin-cluster-000000000";

interface Group {
  url: string;
  port: number;
  proc: Spawned;
  file: string;
  engines: FakeEngine[];
  close(): Promise<void>;
}

async function startGroup(
  policy: string,
  extra: Record<string, unknown> = {},
  engineOpts = {},
): Promise<Group> {
  const engines = [await startFakeEngine(engineOpts), await startFakeEngine(engineOpts)];
  const port = await freePort();
  const file = join(mkdtempSync(join(tmpdir(), "cluster-test-")), "router.yaml");
  const cfg = {
    host: "127.0.0.1",
    port,
    workers: 2,
    policy,
    backends: engines.map((e) => e.url),
    health: { interval: 100, timeout: 500, failuresToEject: 2, successesToReadmit: 2, passiveFailures: 2 },
    discovery: { modelsInterval: 300, metricsInterval: 100 },
    tenancy: { adminKeys: [hashKey(ADMIN)] },
    ...extra,
  };
  writeFileSync(file, toYaml(cfg));
  const proc = spawnCli(["router", "--config", file]);
  const url = `http://127.0.0.1:${port}`;
  await waitForHttp(`${url}/ready`, 30_000, 200, proc);
  return {
    url,
    port,
    proc,
    file,
    engines,
    close: async () => {
      await proc.stop();
      for (const e of engines) await e.close();
      rmSync(dirname(file), { recursive: true, force: true });
    },
  };
}

interface Conn {
  client: Client;
  worker: string;
}

/** A one-token completion that asks for the debug route header: its status and that header. */
async function routed(client: Client): Promise<{ status: number; route: string }> {
  const r = await client.request({
    path: "/v1/completions",
    method: "POST",
    headers: {
      "content-type": "application/json",
      "x-switchyard-debug": "1",
      "x-switchyard-debug-key": ADMIN,
    },
    body: JSON.stringify({ model: MODEL, prompt: "x", max_tokens: 1 }),
  });
  await r.body.text();
  return { status: r.statusCode, route: String(r.headers["x-switchyard-route"] ?? "") };
}

/** A keep-alive connection to the group, and the worker it landed on. */
async function connect(url: string): Promise<Conn> {
  const client = new Client(url, { keepAliveTimeout: 60_000, keepAliveMaxTimeout: 60_000 });
  const { route } = await routed(client);
  const worker = /worker (\d+)\/2/.exec(route)?.[1];
  assert.ok(worker, `the route header names the worker: ${route}`);
  return { client, worker };
}

/** Connections until `perWorker` of each worker are open (the primary deals them out in turn). */
async function connections(url: string, perWorker: number): Promise<Map<string, Conn[]>> {
  const by = new Map<string, Conn[]>([
    ["1", []],
    ["2", []],
  ]);
  // a worker that is still starting takes no connections yet: keep dealing for a while
  const end = Date.now() + 20_000;
  while (Date.now() < end && [...by.values()].some((l) => l.length < perWorker)) {
    const c = await connect(url);
    const list = by.get(c.worker)!;
    if (list.length < perWorker) list.push(c);
    else await c.client.close();
  }
  for (const [w, l] of by) assert.equal(l.length, perWorker, `${perWorker} connections on worker ${w}`);
  return by;
}

/** Starts a long stream on the connection; resolves with the engine it was routed to. */
async function holdStream(c: Conn, body: Record<string, unknown> = {}): Promise<string> {
  const r = await c.client.request({
    path: "/v1/completions",
    method: "POST",
    headers: {
      "content-type": "application/json",
      "x-switchyard-debug": "1",
      "x-switchyard-debug-key": ADMIN,
    },
    body: JSON.stringify({ model: MODEL, prompt: "x", max_tokens: 400, stream: true, ...body }),
  });
  assert.equal(r.statusCode, 200);
  r.body.on("error", () => undefined);
  r.body.resume();
  return /engine=([^;]+)/.exec(String(r.headers["x-switchyard-route"]))![1]!;
}

async function engines(c: Conn): Promise<{ url: string; inFlight: number; healthy: boolean }[]> {
  const r = await c.client.request({
    path: "/engines",
    method: "GET",
    headers: { authorization: `Bearer ${ADMIN}` },
  });
  return ((await r.body.json()) as { engines: { url: string; inFlight: number; healthy: boolean }[] })
    .engines;
}

async function until(cond: () => Promise<boolean>, what: string, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

async function closeAll(by: Map<string, Conn[]>): Promise<void> {
  for (const l of by.values()) for (const c of l) await c.client.destroy();
}

test(
  "two workers route least-load on the group's in-flight counts, and each reports the group's",
  { timeout: 60_000 },
  async () => {
    const g = await startGroup("least-load", {}, { tokenDelayMs: 100 });
    const by = await connections(g.url, 4);
    try {
      const count = new Map<string, number>(g.engines.map((e) => [e.url, 0]));
      // three streams through worker 1, then four through worker 2: worker 2 must see worker 1's
      // (a worker counting only its own would start again from 0/0 and end 4/3 or worse, not 4/3 at most)
      const order = [...by.get("1")!.slice(0, 3), ...by.get("2")!];
      let n = 0;
      for (const c of order) {
        const e = await holdStream(c);
        count.set(e, count.get(e)! + 1);
        n++;
        const [a, b] = [...count.values()];
        assert.ok(Math.abs(a! - b!) <= 1, `after ${n} streams the engines hold ${a} and ${b}`);
        // the next decision is made knowing this one: both workers report n in flight
        for (const w of ["1", "2"]) {
          const probe = by.get(w)!.at(-1)!;
          if (order.indexOf(probe) < n) continue;
          await until(
            async () => (await engines(probe)).reduce((s, x) => s + x.inFlight, 0) === n,
            `worker ${w} sees ${n}`,
          );
        }
      }
      const m = await (
        await fetch(`${g.url}/metrics`, { headers: { authorization: `Bearer ${ADMIN}` } })
      ).text();
      const inflight = [...m.matchAll(/^switchyard_engine_in_flight\{[^}]*\} (\d+)/gm)].map((x) =>
        Number(x[1]),
      );
      assert.equal(
        inflight.reduce((a, b) => a + b, 0),
        7,
        "the group's /metrics adds the workers' own counts once",
      );
      const healthy = [...m.matchAll(/^switchyard_engine_healthy\{[^}]*\} (\d+)/gm)].map((x) => Number(x[1]));
      assert.deepEqual(healthy, [1, 1], "a shared gauge is reported once, not once per worker");
    } finally {
      await closeAll(by);
      await g.close();
    }
  },
);

test(
  "requests decided at the same moment on both workers split as one router would split them",
  { timeout: 60_000 },
  async () => {
    // four engines that answer after 300 ms, eight requests at once, four through each worker: a worker
    // deciding on counts a moment old would pile two of the eight onto one engine now and then
    const engines = await Promise.all([0, 1, 2, 3].map(() => startFakeEngine({ firstTokenDelayMs: 300 })));
    const g = await startGroup("least-load", { backends: engines.map((e) => e.url) });
    const by = await connections(g.url, 4);
    try {
      const all = [...by.get("1")!, ...by.get("2")!];
      // the engine each answer came from (a refused pick's request may have reached another engine,
      // cancelled there or answered and not relayed, however long the primary took)
      const one = (c: Conn) =>
        c.client
          .request({
            path: "/v1/completions",
            method: "POST",
            headers: {
              "content-type": "application/json",
              "x-switchyard-debug": "1",
              "x-switchyard-debug-key": ADMIN,
            },
            body: JSON.stringify({ model: MODEL, prompt: "x", max_tokens: 1 }),
          })
          .then(async (r) => {
            await r.body.text();
            return /engine=([^;]+)/.exec(String(r.headers["x-switchyard-route"]))![1]!;
          });
      for (let round = 0; round < 10; round++) {
        const answeredBy = await Promise.all(all.map(one));
        const got = engines.map((e) => answeredBy.filter((u) => u === e.url).length);
        assert.deepEqual(got, [2, 2, 2, 2], `round ${round}: ${got.join("/")}`);
      }
      // every pick was put to the primary and stood: confirmed, or unconfirmed if the primary took
      // over 2 s to answer (a loaded machine), never left uncounted (refused ones were claimed anew)
      const claims = new Map<string, number>();
      let waited = 0;
      for (const x of parseSamples(
        await (await fetch(`${g.url}/metrics`, { headers: { authorization: `Bearer ${ADMIN}` } })).text(),
      )) {
        if (x.name === "switchyard_routing_claims_total") claims.set(x.labels.result!, x.value);
        if (x.name === "switchyard_routing_claim_wait_seconds_count") waited += x.value;
      }
      const stood = (claims.get("confirmed") ?? 0) + (claims.get("unconfirmed") ?? 0);
      assert.ok(stood >= 80, JSON.stringify([...claims]));
      // and each answer's wait was observed once
      assert.equal(waited, stood + (claims.get("refused") ?? 0));
    } finally {
      await closeAll(by);
      await g.close();
      for (const e of engines) await e.close();
    }
  },
);

test("the group's /metrics counts every worker's requests", { timeout: 60_000 }, async () => {
  const g = await startGroup("round-robin");
  const by = await connections(g.url, 2);
  try {
    // connections() made one request per connection it opened; count what /metrics says against
    // what the engines saw
    for (const l of by.values()) {
      for (const c of l) {
        const r = await c.client.request({
          path: "/v1/completions",
          method: "POST",
          headers: { "content-type": "application/json" },
          body: JSON.stringify({ model: MODEL, prompt: "x", max_tokens: 1 }),
        });
        await r.body.text();
      }
    }
    const served = g.engines.reduce((a, e) => a + e.hits, 0);
    const m = await (
      await fetch(`${g.url}/metrics`, { headers: { authorization: `Bearer ${ADMIN}` } })
    ).text();
    const total = [...m.matchAll(/^switchyard_requests_total\{[^}]*status="200"[^}]*\} (\d+)/gm)].reduce(
      (a, x) => a + Number(x[1]),
      0,
    );
    assert.equal(total, served, "requests_total is the sum over workers");
    assert.match(m, /^process_resident_memory_bytes \d+/m);
  } finally {
    await closeAll(by);
    await g.close();
  }
});

test("an engine failing live traffic is ejected once for the whole group", { timeout: 60_000 }, async () => {
  // the failing engine answers its health probes 503 as well: probes every 100 ms would eject it for
  // "health" whenever two of them ran before two live requests failed (a busy machine slows the
  // requests, not the probe timer). Probed once at start only, live traffic alone can eject it.
  const g = await startGroup("round-robin", {
    health: {
      interval: 600_000,
      timeout: 500,
      failuresToEject: 2,
      successesToReadmit: 2,
      passiveFailures: 2,
    },
  });
  const by = await connections(g.url, 1);
  const [bad, good] = g.engines;
  try {
    bad!.mode = "503";
    // a few requests through each worker: the failures of both add up in the primary
    for (let i = 0; i < 4; i++) {
      for (const l of by.values()) {
        const r = await l[0]!.client.request({
          path: "/v1/completions",
          method: "POST",
          headers: { "content-type": "application/json" },
          body: JSON.stringify({ model: MODEL, prompt: "x", max_tokens: 1 }),
        });
        assert.equal(r.statusCode, 200, "failover answers from the good engine");
        await r.body.text();
      }
    }
    for (const l of by.values()) {
      await until(
        async () => (await engines(l[0]!)).find((e) => e.url === bad!.url)?.healthy === false,
        "ejected",
      );
    }
    const m = await (
      await fetch(`${g.url}/metrics`, { headers: { authorization: `Bearer ${ADMIN}` } })
    ).text();
    assert.match(m, /^switchyard_engine_ejections_total\{engine="[^"]+",reason="passive"\} 1$/m);
    assert.doesNotMatch(m, /^switchyard_engine_ejections_total\{engine="[^"]+",reason="health"\} [1-9]/m);
    const before = good!.hits;
    for (const l of by.values()) {
      const r = await l[0]!.client.request({
        path: "/v1/completions",
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ model: MODEL, prompt: "x", max_tokens: 1 }),
      });
      await r.body.text();
    }
    assert.equal(good!.hits - before, 2, "both workers route around it");
  } finally {
    await closeAll(by);
    await g.close();
  }
});

test("a prefix learned by one worker routes the other worker's request", { timeout: 60_000 }, async () => {
  const g = await startGroup("prefix");
  const by = await connections(g.url, 1);
  try {
    const ask = async (c: Conn, prompt: string) => {
      const r = await c.client.request({
        path: "/v1/completions",
        method: "POST",
        headers: {
          "content-type": "application/json",
          "x-switchyard-debug": "1",
          "x-switchyard-debug-key": ADMIN,
        },
        body: JSON.stringify({ model: MODEL, prompt, max_tokens: 1 }),
      });
      await r.body.text();
      return String(r.headers["x-switchyard-route"]);
    };
    // picks travel in about a millisecond; a question asked of worker 2 before its pick arrived would
    // teach the index an engine of its own, so each try uses a new conversation and waits longer
    let second = "";
    let engine = "";
    for (let attempt = 1; attempt <= 20 && !/predicted_cached_tokens=[1-9]/.test(second); attempt++) {
      const prompt = `Conversation ${attempt}: you are a careful assistant who answers in one line. `.repeat(
        12,
      );
      engine = /engine=([^;]+)/.exec(await ask(by.get("1")![0]!, prompt))![1]!;
      await new Promise((r) => setTimeout(r, 20 * attempt));
      second = await ask(by.get("2")![0]!, prompt);
    }
    assert.match(second, /predicted_cached_tokens=[1-9]/, "worker 2 learned worker 1's pick");
    assert.equal(/engine=([^;]+)/.exec(second)![1], engine, second);
  } finally {
    await closeAll(by);
    await g.close();
  }
});

test("admin drain and config reloads reach every worker", { timeout: 60_000 }, async () => {
  const g = await startGroup("round-robin");
  const by = await connections(g.url, 1);
  try {
    const policyOf = async (c: Conn) => /policy=([^;]+)/.exec((await routed(c.client)).route)![1];
    const cfg = (await import("yaml")).parse(
      (await import("node:fs")).readFileSync(g.file, "utf8"),
    ) as Record<string, unknown>;
    writeFileSync(g.file, toYaml({ ...cfg, policy: "least-load" }));
    const r = await by.get("1")![0]!.client.request({
      path: "/admin/reload",
      method: "POST",
      headers: { authorization: `Bearer ${ADMIN}` },
    });
    assert.equal(r.statusCode, 200, await r.body.text());
    assert.equal(await policyOf(by.get("1")![0]!), "least-load");
    await until(async () => (await policyOf(by.get("2")![0]!)) === "least-load", "worker 2 reloaded");

    const d = await by.get("2")![0]!.client.request({
      path: "/admin/drain",
      method: "POST",
      headers: { authorization: `Bearer ${ADMIN}` },
    });
    assert.equal(d.statusCode, 202);
    await d.body.text();
    for (const w of ["1", "2"]) {
      await until(async () => {
        const x = await by.get(w)![0]!.client.request({ path: "/ready", method: "GET" });
        await x.body.text();
        return x.statusCode === 503;
      }, `worker ${w} not ready`);
    }
  } finally {
    await closeAll(by);
    await g.close();
  }
});

test(
  "the first SIGTERM drains every worker's streams; a worker that dies is replaced",
  { timeout: 60_000 },
  async () => {
    const g = await startGroup("round-robin", { drainTimeout: "20s" }, { tokenDelayMs: 50 });
    const by = await connections(g.url, 1);
    try {
      // a worker killed outright: the group goes on serving, the primary starts another
      const pids = (await import("node:fs"))
        .readFileSync(`/proc/${g.proc.child.pid}/task/${g.proc.child.pid}/children`, "utf8")
        .trim()
        .split(/\s+/)
        .map(Number);
      assert.equal(pids.length, 2, "two worker processes");
      process.kill(pids[0]!, "SIGKILL");
      await until(async () => {
        const now = (await import("node:fs"))
          .readFileSync(`/proc/${g.proc.child.pid}/task/${g.proc.child.pid}/children`, "utf8")
          .trim()
          .split(/\s+/)
          .map(Number);
        return now.length === 2 && !now.includes(pids[0]!);
      }, "a new worker");
      await waitForHttp(`${g.url}/ready`, 10_000);
      const fresh = await connections(g.url, 1);
      const streams = [...fresh.values()].map(async (l) => {
        const r = await l[0]!.client.request({
          path: "/v1/completions",
          method: "POST",
          headers: { "content-type": "application/json" },
          body: JSON.stringify({ model: MODEL, prompt: "x", max_tokens: 40, stream: true }),
        });
        const text = await r.body.text();
        return { tokens: (text.match(/"text":/g) ?? []).length, done: text.includes("[DONE]") };
      });
      while (g.engines.reduce((a, e) => a + e.active, 0) < 2) await new Promise((r) => setTimeout(r, 20));
      const exited = new Promise<number | null>((resolve) => g.proc.child.once("exit", (c) => resolve(c)));
      g.proc.child.kill("SIGTERM");
      for (const s of await Promise.all(streams)) {
        assert.equal(s.tokens, 40, "every stream in flight on either worker finished");
        assert.ok(s.done);
      }
      assert.equal(await exited, 0, g.proc.output().slice(-2000));
      await closeAll(fresh);
    } finally {
      await closeAll(by);
      await g.close();
    }
  },
);

test("a second signal ends a draining group at once", { timeout: 60_000 }, async () => {
  const g = await startGroup("round-robin", { drainTimeout: "60s" }, { tokenDelayMs: 100 });
  const by = await connections(g.url, 1);
  try {
    void holdStream(by.get("1")![0]!).catch(() => undefined);
    while (g.engines.reduce((a, e) => a + e.active, 0) < 1) await new Promise((r) => setTimeout(r, 20));
    const exited = new Promise<number | null>((resolve) => g.proc.child.once("exit", (c) => resolve(c)));
    g.proc.child.kill("SIGTERM");
    await new Promise((r) => setTimeout(r, 500));
    assert.equal(g.proc.child.exitCode, null, "still draining the 40 s stream");
    g.proc.child.kill("SIGTERM");
    assert.equal(await exited, 130);
    // the workers go with it
    await until(async () => {
      try {
        await fetch(`${g.url}/health`);
        return false;
      } catch {
        return true;
      }
    }, "nothing listening");
  } finally {
    await closeAll(by);
    await g.close();
  }
});

test(
  "a second group on a port the first holds fails with EADDRINUSE, its workers never joining the port",
  { timeout: 60_000 },
  async () => {
    // where Node has reusePort each worker binds its own socket in the port's group (accept.ts): the
    // primary's plain bind first is what keeps a second group out of it
    const g = await startGroup("round-robin");
    try {
      const second = spawnCli(["router", "--host", "127.0.0.1", "--port", String(g.port), "--workers", "2"]);
      const code = await new Promise<number | null>((resolve) =>
        second.child.once("exit", (c) => resolve(c)),
      );
      assert.notEqual(code, 0);
      assert.match(second.output(), /EADDRINUSE/);
      // the first group still serves every new connection
      const by = await connections(g.url, 2);
      await closeAll(by);
    } finally {
      await g.close();
    }
  },
);

test(
  "two workers even out 48 keep-alive connections that the kernel split unevenly, every request answered",
  { timeout: 60_000 },
  async () => {
    const g = await startGroup("round-robin");
    // the group is ready once one worker is: wait for the other, or a busy machine's slow second
    // worker (every connection on the first) is what the 20 s below measure
    const seen = new Set<string>();
    const upBy = Date.now() + 30_000;
    while (seen.size < 2 && Date.now() < upBy) {
      const probe = new Client(g.url);
      seen.add(/worker (\d+)\/2/.exec((await routed(probe)).route)?.[1] ?? "?");
      await probe.close();
    }
    const clients = Array.from(
      { length: 48 },
      () => new Client(g.url, { keepAliveTimeout: 60_000, keepAliveMaxTimeout: 60_000 }),
    );
    try {
      const split = async (): Promise<Map<string, number>> => {
        const on = new Map<string, number>();
        await Promise.all(
          clients.map(async (client) => {
            const r = await routed(client);
            assert.equal(r.status, 200);
            const w = /worker (\d+)\/2/.exec(r.route)?.[1] ?? "?";
            on.set(w, (on.get(w) ?? 0) + 1);
          }),
        );
        return on;
      };
      // a worker reports its count within 25 ms of a change, the total goes out once counts settle;
      // a round of requests every 100 ms
      const end = Date.now() + 20_000;
      let on = await split();
      const gap = () => Math.abs((on.get("1") ?? 0) - (on.get("2") ?? 0));
      while (gap() > 2 && Date.now() < end) {
        await new Promise((resolve) => setTimeout(resolve, 100));
        on = await split();
      }
      assert.ok(gap() <= 2, `24 each, within the slack: ${JSON.stringify([...on])}`);
      const m = await (
        await fetch(`${g.url}/metrics`, { headers: { authorization: `Bearer ${ADMIN}` } })
      ).text();
      assert.match(m, /^switchyard_connections_rebalanced_total \d+/m);
    } finally {
      for (const c of clients) await c.close();
      await g.close();
    }
  },
);
