// Response affinity in a router process group (`--workers 2`): the worker that relays a Responses
// answer tells the others which engine made it, so a follow-up that lands on another worker (another
// connection) still reaches that engine.
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { Client } from "undici";
import { stringify as toYaml } from "yaml";
import { freePort, spawnCli, waitForHttp } from "../../../bench/support/cli.js";
import { startFakeVllm, type FakeVllm } from "../../../bench/support/fakes/fake-vllm.js";
import { hashKey } from "../../../src/tenancy/keys.js";

const MODEL = "fake/model-a";

interface Conn {
  client: Client;
  worker: string;
}

async function call(
  c: Client,
  method: "GET" | "POST",
  path: string,
  body?: unknown,
  auth: Record<string, string> = {},
): Promise<{ status: number; text: string; route: string }> {
  const r = await c.request({
    path,
    method,
    headers: { "content-type": "application/json", "x-switchyard-debug": "1", ...auth },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return {
    status: r.statusCode,
    text: await r.body.text(),
    route: String(r.headers["x-switchyard-route"] ?? ""),
  };
}

/**
 * Keep-alive connections until one has landed on each worker (a connection stays on its worker).
 * /ready answers once the first worker listens; the primary deals connections only to workers that
 * listen, so until the second one does (seconds on a busy machine) every connection lands on the
 * first: keep dealing until the condition holds, not for a fixed number of tries.
 */
async function oneConnectionPerWorker(url: string, auth: Record<string, string> = {}): Promise<Conn[]> {
  const byWorker = new Map<string, Conn>();
  const end = Date.now() + 30_000;
  while (Date.now() < end && byWorker.size < 2) {
    const client = new Client(url, { keepAliveTimeout: 60_000, keepAliveMaxTimeout: 60_000 });
    const r = await call(
      client,
      "POST",
      "/v1/completions",
      { model: MODEL, prompt: "x", max_tokens: 1 },
      auth,
    );
    const worker = /worker \d+\/\d+/.exec(r.route)?.[0] ?? "";
    if (worker && !byWorker.has(worker)) byWorker.set(worker, { client, worker });
    else await client.close();
  }
  assert.equal(byWorker.size, 2, "a connection on each worker");
  return [...byWorker.values()];
}

test("--workers 2: GET and previous_response_id on the other worker reach the storing engine, 4 of 4", async () => {
  const engines: FakeVllm[] = [await startFakeVllm("a"), await startFakeVllm("b")];
  const port = await freePort();
  const file = join(mkdtempSync(join(tmpdir(), "affinity-workers-")), "router.yaml");
  writeFileSync(
    file,
    toYaml({
      host: "127.0.0.1",
      port,
      workers: 2,
      policy: "round-robin",
      backends: engines.map((e) => e.url),
      health: { interval: 100, timeout: 2000, failuresToEject: 2, successesToReadmit: 2 },
      discovery: { modelsInterval: 300, metricsInterval: 100 },
    }),
  );
  const proc = spawnCli(["router", "--config", file]);
  const url = `http://127.0.0.1:${port}`;
  let conns: Conn[] = [];
  try {
    await waitForHttp(`${url}/ready`, 30_000, 200, proc);
    conns = await oneConnectionPerWorker(url);
    let home = 0;
    for (let i = 0; i < 4; i++) {
      const maker = conns[i % 2]!.client;
      const other = conns[(i + 1) % 2]!.client;
      const made = await call(maker, "POST", "/v1/responses", { model: MODEL, input: "hi", stream: i >= 2 });
      assert.equal(made.status, 200);
      const id = /"id":"(resp_[^"]+)"/.exec(made.text)![1]!;
      const owner = engines.find((e) => e.stored.has(id))!;
      const got = await call(other, "GET", `/v1/responses/${id}`);
      assert.equal(got.status, 200, got.text);
      assert.equal((JSON.parse(got.text) as { engine: string }).engine, owner === engines[0] ? "a" : "b");
      const next = await call(other, "POST", "/v1/responses", {
        model: MODEL,
        input: "more",
        previous_response_id: id,
      });
      assert.equal(next.status, 200, next.text);
      const nextId = (JSON.parse(next.text) as { id: string }).id;
      assert.ok(owner.stored.has(nextId), `the follow-up of ${id} reached its engine`);
      home++;
    }
    assert.equal(home, 4);
    // mostly told by the worker that saw the answer; a follow-up that overtakes the group's message
    // (a busy host) asks the engines instead, at most once per id, and is then remembered
    const lookups = engines.flatMap((e) =>
      e.seen.filter((r) => r.method === "GET" && !r.headers["x-request-id"]),
    );
    const ids = lookups.map((r) => r.path);
    assert.equal(new Set(ids).size * engines.length >= ids.length, true, `lookups: ${ids.join(", ")}`);
    assert.ok(ids.length <= 4 * engines.length, `lookups: ${ids.join(", ")}`);
  } finally {
    for (const c of conns) await c.client.close();
    await proc.stop();
    for (const e of engines) await e.close();
    rmSync(dirname(file), { recursive: true, force: true });
  }
});

test("--workers 2 with tenancy: the owner reaches its stored response through the other worker; another tenant gets 404 on GET, cancel and previous_response_id there", async () => {
  const engines: FakeVllm[] = [await startFakeVllm("a"), await startFakeVllm("b")];
  const port = await freePort();
  const file = join(mkdtempSync(join(tmpdir(), "affinity-workers-")), "router.yaml");
  const [keyA, keyB] = ["sk-workers-tenant-a-000000", "sk-workers-tenant-b-000000"];
  const A = { authorization: `Bearer ${keyA}` };
  const B = { authorization: `Bearer ${keyB}` };
  writeFileSync(
    file,
    toYaml({
      host: "127.0.0.1",
      port,
      workers: 2,
      policy: "round-robin",
      backends: engines.map((e) => e.url),
      health: { interval: 100, timeout: 2000, failuresToEject: 2, successesToReadmit: 2 },
      discovery: { modelsInterval: 300, metricsInterval: 100 },
      // the debug header names the worker a connection landed on
      debug: { allowHeader: "open" },
      tenancy: {
        tenants: { a: {}, b: {} },
        keys: [
          { hash: hashKey(keyA), tenant: "a" },
          { hash: hashKey(keyB), tenant: "b" },
        ],
      },
    }),
  );
  const proc = spawnCli(["router", "--config", file]);
  const url = `http://127.0.0.1:${port}`;
  let conns: Conn[] = [];
  try {
    await waitForHttp(`${url}/ready`, 30_000, 200, proc);
    conns = await oneConnectionPerWorker(url, B);
    for (let i = 0; i < 4; i++) {
      const maker = conns[i % 2]!.client;
      const other = conns[(i + 1) % 2]!.client;
      const made = await call(
        maker,
        "POST",
        "/v1/responses",
        { model: MODEL, input: "hi", stream: i >= 2 },
        B,
      );
      assert.equal(made.status, 200, made.text);
      const id = /"id":"(resp_[^"]+)"/.exec(made.text)![1]!;
      for (const [method, path, body] of [
        ["GET", `/v1/responses/${id}`, undefined],
        ["POST", `/v1/responses/${id}/cancel`, undefined],
        ["POST", "/v1/responses", { model: MODEL, input: "more", previous_response_id: id }],
      ] as const) {
        const theirs = await call(other, method, path, body, A);
        assert.equal(theirs.status, 404, `${method} ${path}: ${theirs.text}`);
        const own = await call(other, method, path, body, B);
        assert.equal(own.status, 200, `${method} ${path}: ${own.text}`);
      }
    }
  } finally {
    for (const c of conns) await c.client.close();
    await proc.stop();
    for (const e of engines) await e.close();
    rmSync(dirname(file), { recursive: true, force: true });
  }
});
