// Models and LoRA adapters per tenant, through the live router in front of two LoRA sims: a model a
// tenant may not use is answered byte for byte as one that exists nowhere, on every generating route;
// /v1/models lists only what the caller may use and no adapter's folder; adapter loads are charged to
// the tenant whose request causes them; a failed load tells the client neither the path nor the engine
// and is not tried again inside its backoff; a tenant at its share of an engine's adapter slots cannot
// push out an adapter another tenant is using.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { writePeftAdapter } from "../../bench/support/peft.js";
import type { RunningRouter } from "../../src/router/index.js";
import { parseConfig } from "../../src/router/config/config.js";
import { hashKey } from "../../src/tenancy/keys.js";
import type { TenancyConfigInput } from "../../src/tenancy/config.js";
import { post, routerFor, waitUntil } from "../helpers/router.js";
import type { Json } from "../helpers/json.js";
import { loraSim } from "../helpers/lora-sim.js";
import type { RunningSim } from "../../src/sim/app.js";

const MODEL = "meta-llama/Llama-3.1-8B-Instruct";
const keyOf = (tenant: string) => `sk-${tenant}-`.padEnd(24, "0");
const auth = (tenant: string) => ({ authorization: `Bearer ${keyOf(tenant)}` });
const ADMIN = "sk-admin-0000000000000000";
const metricsText = async () =>
  (await fetch(`${router.url}/metrics`, { headers: { authorization: `Bearer ${ADMIN}` } })).text();
const ADAPTERS = ["a0", "big1", "big2", "big3", "c1", "c2", "c3", "secret"];

let dir: string;
let sims: RunningSim[];
let router: RunningRouter;

function tenancyFor(tenants: NonNullable<TenancyConfigInput["tenants"]>): TenancyConfigInput {
  return {
    tenants,
    keys: Object.keys(tenants).map((t) => ({ hash: hashKey(keyOf(t)), tenant: t })),
    adminKeys: [hashKey(ADMIN)],
  };
}

before(async () => {
  dir = mkdtempSync(join(tmpdir(), "sy-tenant-lora-"));
  for (const n of ADAPTERS)
    writePeftAdapter(join(dir, n), { rank: 8, hidden: 64, layers: 2, baseModel: MODEL });
  sims = [await loraSim(), await loraSim()];
  router = await routerFor(
    sims.map((s) => s.url),
    {
      lora: {
        dir,
        adapters: [
          { name: "secret", tenants: ["alice"] },
          { name: "ghost", path: join(dir, "private", "customer-x", "medical-adapter"), base: MODEL },
        ],
        maxCpuLoras: 2,
      },
      tenancy: tenancyFor({
        alice: { models: ["meta-llama/*", "a0", "secret", "ghost"] },
        bob: { models: ["meta-llama/*", "big*"] },
        carol: { limits: { adapterLoadsPerMinute: 2 } },
      }),
    },
  );
  await waitUntil(() => router.router.registry.snapshot().every((v) => v.healthy), 5000, "both sims");
});

after(async () => {
  await router?.close();
  for (const s of sims ?? []) await s.close();
  rmSync(dir, { recursive: true, force: true });
});

/** Each generating route's body for `model`. */
const ROUTES: [string, (model: string) => Record<string, unknown>][] = [
  [
    "/v1/chat/completions",
    (model) => ({ model, messages: [{ role: "user", content: "hi" }], max_tokens: 2 }),
  ],
  ["/v1/completions", (model) => ({ model, prompt: "hi", max_tokens: 2 })],
  ["/v1/responses", (model) => ({ model, input: "hi", max_output_tokens: 2 })],
  ["/v1/messages", (model) => ({ model, messages: [{ role: "user", content: "hi" }], max_tokens: 2 })],
];

async function answer(path: string, body: unknown, tenant: string) {
  const r = await post(`${router.url}${path}`, body, auth(tenant));
  // the length follows the name; the body is compared whole
  const headers = [...r.headers].filter(([k]) => !["date", "x-request-id", "content-length"].includes(k));
  return { status: r.status, headers, body: await r.text() };
}

test("a model a tenant may not use gets the same 404 as a model that exists nowhere, on chat, completions, Responses and Messages", async () => {
  // alice's request loads a0 on an engine, so it is in that engine's /v1/models with its folder
  const own = await post(`${router.url}/v1/completions`, ROUTES[1]![1]("a0"), auth("alice"));
  assert.equal(own.status, 200, await own.clone().text());
  await own.arrayBuffer();
  for (const [path, body] of ROUTES) {
    const forbidden = await answer(path, body("a0"), "bob");
    const nowhere = await answer(path, body("zz-nowhere"), "bob");
    assert.equal(forbidden.status, 404, `${path}: ${forbidden.body}`);
    assert.deepEqual(forbidden.headers, nowhere.headers, path);
    assert.equal(forbidden.body, nowhere.body.replaceAll("zz-nowhere", "a0"), path);
    // private to alice: carol (no list of her own) cannot use it either
    const priv = await answer(path, body("secret"), "carol");
    assert.equal(priv.body, nowhere.body.replaceAll("zz-nowhere", "secret"), path);
  }
  // a name that is a property of every object is a name like any other
  const ctor = await answer("/v1/completions", ROUTES[1]![1]("constructor"), "alice");
  assert.equal(ctor.status, 404);
  assert.equal(JSON.parse(ctor.body).error.message, "The model `constructor` does not exist.");
  // what the list allows still works: bob's own adapters, the base model
  const big = await post(`${router.url}/v1/completions`, ROUTES[1]![1]("big1"), auth("bob"));
  assert.equal(big.status, 200, await big.clone().text());
  await big.arrayBuffer();
});

test("/v1/models lists only what the caller may use, and never an adapter's folder", async () => {
  const listed = async (tenant: string) => {
    const r = await fetch(`${router.url}/v1/models`, { headers: auth(tenant) });
    assert.equal(r.status, 200);
    return ((await r.json()) as Json).data as Json[];
  };
  // alice's request (re)loads a0 where the router sends it; the listing follows that engine's models
  const ensureLoaded = await post(`${router.url}/v1/completions`, ROUTES[1]![1]("a0"), auth("alice"));
  assert.equal(ensureLoaded.status, 200, await ensureLoaded.clone().text());
  await ensureLoaded.arrayBuffer();
  await waitUntil(
    async () => (await listed("alice")).some((m) => m.id === "a0"),
    30_000,
    "a0 listed for alice",
  );
  const bob = await listed("bob");
  assert.ok(!bob.some((m) => m.id === "a0"), JSON.stringify(bob));
  assert.ok(bob.some((m) => m.id === MODEL));
  const alice = await listed("alice");
  const a0 = alice.find((m) => m.id === "a0");
  assert.ok(a0, JSON.stringify(alice));
  for (const m of [...alice, ...bob]) assert.ok(!String(m.root).includes(dir), JSON.stringify(m));
  assert.equal(a0.root, "a0");
});

test("a failed load names neither the path nor the engine, and is not tried again within its backoff", async () => {
  const stats = router.router.registry.adapters!.stats;
  const before = stats.loadFailures;
  const ids = new Set<string>();
  for (let i = 0; i < 10; i++) {
    const r = await post(`${router.url}/v1/completions`, ROUTES[1]![1]("ghost"), auth("alice"));
    const text = await r.text();
    assert.equal(r.status, 502, text);
    assert.ok(r.headers.get("retry-after"));
    for (const leak of [dir, "medical-adapter", "127.0.0.1", "http://"])
      assert.ok(!text.includes(leak), text);
    const msg = JSON.parse(text).error.message as string;
    assert.match(msg, /^The LoRA adapter `ghost` could not be loaded \(error id lora-[0-9a-f]+\)/);
    ids.add(/error id (lora-[0-9a-f]+)/.exec(msg)![1]!);
  }
  // one attempt per engine at most inside the backoff
  assert.ok(stats.loadFailures - before <= 2, `attempts ${stats.loadFailures - before}`);
  assert.ok(ids.size <= 2);
  const metrics = await metricsText();
  assert.match(metrics, /switchyard_lora_load_failures_total [12]\b/);
});

test("adapter loads are charged to the tenant that causes them: 429 with Retry-After beyond its budget, an adapter already loaded free", async () => {
  const statuses: number[] = [];
  let refusal: Response | undefined;
  for (const name of ["c1", "c2", "c3"]) {
    const r = await post(`${router.url}/v1/completions`, ROUTES[1]![1](name), auth("carol"));
    statuses.push(r.status);
    if (r.status === 429) refusal = r;
    else await r.arrayBuffer();
  }
  assert.deepEqual(statuses, [200, 200, 429]);
  assert.ok(Number(refusal!.headers.get("retry-after")) >= 1);
  assert.equal(refusal!.headers.get("x-ratelimit-limit"), "adapter_loads_per_minute");
  await refusal!.arrayBuffer();
  // c2, the last loaded, is there still: using it again costs no load
  const again = await post(`${router.url}/v1/completions`, ROUTES[1]![1]("c2"), auth("carol"));
  assert.equal(again.status, 200, await again.clone().text());
  await again.arrayBuffer();
  const metrics = await metricsText();
  assert.match(metrics, /switchyard_lora_loads_total\{tenant="carol"\} 2\b/);
  assert.match(
    metrics,
    /switchyard_tenant_rejected_total\{tenant="carol",limit="adapter_loads_per_minute"\} 1\b/,
  );
});

test("a tenant at its share of an engine's adapter slots pushes out only its own adapters, not one another tenant is using", async () => {
  const one = await routerFor([sims[0]!.url], {
    lora: { dir, maxCpuLoras: 2 },
    tenancy: tenancyFor({ alice: {}, bob: {} }),
  });
  try {
    const send = async (tenant: string, model: string) => {
      const r = await post(`${one.url}/v1/completions`, ROUTES[1]![1](model), auth(tenant));
      assert.equal(r.status, 200, await r.clone().text());
      await r.arrayBuffer();
    };
    const engine = [...one.router.registry.engines.values()][0]!;
    await send("alice", "a0");
    // bob cycles three adapters through the engine's two slots: each load pushes out his own
    for (const m of ["big1", "big2", "big3", "big1", "big2"]) {
      await send("bob", m);
      assert.ok(one.router.registry.adapters!.isLoaded(engine, "a0"), `a0 pushed out by ${m}`);
    }
  } finally {
    await one.close();
  }
});

test("a Hub id with a . or .. segment is refused", () => {
  for (const hub of ["a/..", "a/.", "../b"])
    assert.throws(() => parseConfig({ lora: { adapters: [{ name: "x", hub }] } }), /Hub repository id/, hub);
  assert.equal(
    parseConfig({ lora: { adapters: [{ name: "x", hub: "acme/sql.v2" }] } }).lora!.adapters[0]!.hub,
    "acme/sql.v2",
  );
});
