// Stored responses kept through the restarts a router's own upgrades cause, with tenancy on: a
// response is stored by the engine that made it (vLLM's VLLM_ENABLE_RESPONSES_API_STORE), and its
// owner must still reach it (GET, and `previous_response_id`) after the router that saw it is gone —
// a restart of a real router process (SIGTERM, a new process, the same config), a rolling restart of
// two replicas with and without Redis — while another tenant gets the 404 of an id nobody made. The
// owner's tag travels with the response (its metadata), so no table must survive. Also: the table
// that remains is fair, one tenant's volume evicting none of another's ids.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { RunningSim } from "../../../src/sim/app.js";
import type { RunningRouter } from "../../../src/router/index.js";
import { ResponseAffinity } from "../../../src/router/dataplane/response-affinity.js";
import { hashKey } from "../../../src/tenancy/keys.js";
import { startSimWithEnv } from "../../sim/sse.js";
import { routerFor } from "../../helpers/router.js";
import { freePort, spawnCli, waitForHttp } from "../../../bench/support/cli.js";
import { redisSkip, startRedis } from "../../tenancy/redis-server.js";

const MODEL = "meta-llama/Llama-3.1-8B-Instruct";
const keyOf = (tenant: string) => `sk-${tenant}-`.padEnd(24, "0");
const TENANTS = ["a", "b"];

let sims: RunningSim[] = [];

before(async () => {
  sims = await Promise.all(
    [0, 1].map(() =>
      startSimWithEnv(MODEL, ["--time-scale", "0.02", "--output-len-mean", "20"], {
        VLLM_ENABLE_RESPONSES_API_STORE: "1",
      }),
    ),
  );
});

after(async () => {
  await Promise.all(sims.map((s) => s.close()));
});

/** The router config every router here runs with (the same secret on every replica). */
function config(extraTenancy: Record<string, unknown> = {}) {
  return {
    backends: sims.map((s) => s.url),
    health: { interval: 200, timeout: 5_000 },
    discovery: { modelsInterval: 500, metricsInterval: 200, metricsTimeout: 5_000 },
    tenancy: {
      tenants: Object.fromEntries(TENANTS.map((t) => [t, {}])),
      keys: TENANTS.map((t) => ({ hash: hashKey(keyOf(t)), tenant: t })),
      cacheSaltSecret: "a-router-secret-of-some-length",
      ...extraTenancy,
    },
  };
}

async function call(
  url: string,
  tenant: string,
  path: string,
  body?: unknown,
): Promise<{ status: number; json: Record<string, unknown> }> {
  const res = await fetch(`${url}${path}`, {
    method: body === undefined ? "GET" : "POST",
    headers: { "content-type": "application/json", authorization: `Bearer ${keyOf(tenant)}` },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return { status: res.status, json: (await res.json()) as Record<string, unknown> };
}

/** Responses stored through `url` by tenant a, spread over both engines by the router's policy. */
async function store(url: string, n: number): Promise<string[]> {
  const ids: string[] = [];
  for (let i = 0; i < n; i++) {
    const r = await call(url, "a", "/v1/responses", {
      model: MODEL,
      input: `remember number ${i}`,
      max_output_tokens: 5,
      store: true,
    });
    assert.equal(r.status, 200, JSON.stringify(r.json));
    ids.push(r.json.id as string);
  }
  return ids;
}

/** Each id: its owner reads it and continues it; the other tenant gets 404 for both. */
async function ownedThrough(url: string, ids: string[], label: string): Promise<void> {
  for (const id of ids) {
    const mine = await call(url, "a", `/v1/responses/${id}`);
    assert.equal(mine.status, 200, `${label}: the owner's GET of ${id}: ${JSON.stringify(mine.json)}`);
    assert.equal(mine.json.id, id);
    const theirs = await call(url, "b", `/v1/responses/${id}`);
    assert.equal(theirs.status, 404, `${label}: another tenant's GET of ${id}`);
    const next = { model: MODEL, input: "and then?", max_output_tokens: 5, previous_response_id: id };
    const cont = await call(url, "a", "/v1/responses", next);
    assert.equal(cont.status, 200, `${label}: the owner continues ${id}: ${JSON.stringify(cont.json)}`);
    assert.equal(cont.json.previous_response_id, id);
    assert.equal((await call(url, "b", "/v1/responses", next)).status, 404, `${label}: another continues`);
  }
}

test("a stored response made before a router restart (SIGTERM, a new process, the same config) is its owner's after it, and a 404 for another tenant", async () => {
  const dir = mkdtempSync(join(tmpdir(), "sy-restart-"));
  const file = join(dir, "router.json");
  writeFileSync(file, JSON.stringify(config()));
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const start = async () => {
    const p = spawnCli(["router", `--config=${file}`, "--host=127.0.0.1", `--port=${port}`]);
    await waitForHttp(`${url}/ready`, 30_000, 200, p);
    return p;
  };
  let proc = await start();
  try {
    const ids = await store(url, 4);
    await ownedThrough(url, ids.slice(0, 1), "before the restart");
    assert.equal(await proc.stop("SIGTERM"), 0);
    proc = await start();
    await ownedThrough(url, ids, "after the restart");
  } finally {
    await proc.stop();
  }
});

for (const withRedis of [false, true]) {
  const skip = withRedis ? redisSkip() : false;
  test(
    `a rolling restart of two replicas ${withRedis ? "with" : "without"} Redis: every stored response stays its owner's on either replica`,
    { skip },
    async () => {
      const redis = withRedis ? await startRedis() : undefined;
      const cfg = config(redis ? { redis: { url: redis.url, prefix: `sy-restart-${process.pid}:` } } : {});
      const replicas: RunningRouter[] = [];
      try {
        replicas.push(await routerFor(cfg.backends, cfg), await routerFor(cfg.backends, cfg));
        const ids = [...(await store(replicas[0]!.url, 2)), ...(await store(replicas[1]!.url, 2))];
        // the first replica goes (its table with it) and comes back; the other serves meanwhile
        await replicas[0]!.close();
        await ownedThrough(replicas[1]!.url, ids, "the remaining replica");
        replicas[0] = await routerFor(cfg.backends, cfg);
        // then the second: the restarted first serves every response, those the second made included
        await replicas[1]!.close();
        await ownedThrough(replicas[0]!.url, ids, "the restarted replica");
        replicas[1] = await routerFor(cfg.backends, cfg);
        await ownedThrough(replicas[1]!.url, ids.slice(0, 1), "the second restarted");
      } finally {
        await Promise.all(replicas.map((r) => r.close().catch(() => {})));
        await redis?.stop();
      }
    },
  );
}

test("the response table is fair: 50 responses of one tenant evict none of another's", () => {
  const t = new ResponseAffinity(50);
  for (let i = 0; i < 5; i++) t.remember(`resp_b${i}`, "e1", "m", undefined, "b");
  for (let i = 0; i < 50; i++) t.remember(`resp_c${i}`, "e1", "m", undefined, "c");
  assert.equal(t.size, 50);
  for (let i = 0; i < 5; i++) assert.equal(t.home(`resp_b${i}`)?.owner, "b", `b's response ${i}`);
  assert.equal(t.ownedBy("b"), 5);
  assert.equal(t.ownedBy("c"), 45);
  // c's newest stay, its oldest went
  assert.equal(t.home("resp_c49")?.owner, "c");
  assert.equal(t.home("resp_c0"), undefined);
  // and once b is the largest owner, b's least recently used goes first
  for (let i = 5; i < 40; i++) t.remember(`resp_b${i}`, "e1", "m", undefined, "b");
  assert.equal(t.size, 50);
  assert.ok(t.ownedBy("c") >= 25, `c kept ${t.ownedBy("c")}`);
  assert.equal(t.ownedBy("b") + t.ownedBy("c"), 50);
});
