// What a client can learn or forge about others through the router's HTTP edge, against a live router
// and recording engines: the headers, query parameters and body fields that reach an engine (only
// what vLLM reads, nothing a client could use to steer an engine or impersonate the router), the debug
// explanation (the admin's alone once the router has keys), /metrics (every tenant's usage: the
// admin's alone), request ids (random, so they tell nothing of the fleet's volume) and a tenant's
// concurrency slots (taken at the headers, so slow bodies cannot hold more than the tenant's limit).
import { test } from "node:test";
import assert from "node:assert/strict";
import { connect, type Socket } from "node:net";
import { hashKey } from "../../../src/tenancy/keys.js";
import { newRequestId } from "../../../src/router/dataplane/request-context.js";
import { startPdEngine, PREFILL_KV } from "../../../bench/support/fakes/pd-engine.js";
import { startFakeVllm } from "../../../bench/support/fakes/fake-vllm.js";
import { routerFor, post, waitUntil } from "../../helpers/router.js";

const MODEL = "fake/model-a";
const KEY_A = "sk-edge-tenant-a-000000000";
const KEY_B = "sk-edge-tenant-b-000000000";
const ADMIN = "sk-edge-admin-00000000000";

function tenancy(limits: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    tenants: { a: { limits }, b: {} },
    keys: [
      { hash: hashKey(KEY_A), tenant: "a" },
      { hash: hashKey(KEY_B), tenant: "b" },
    ],
    adminKeys: [hashKey(ADMIN)],
  };
}

const HOSTILE_HEADERS = {
  cookie: "session=tenant-a-secret",
  "x-api-key": "sk-gateway-key",
  "x-forwarded-for": "6.6.6.6",
  "x-forwarded-host": "evil.example",
  "x-data-parallel-rank": "1",
  "x-switchyard-debug": "1",
  "x-switchyard-debug-key": ADMIN,
  "x-custom-thing": "anything",
};

const STOLEN_KV = {
  do_remote_prefill: true,
  remote_host: "evil.example",
  remote_port: 5600,
  remote_engine_id: "someone-elses-engine",
  remote_block_ids: [1, 2, 3],
};

test("with tenancy on, a client's cookie, x-api-key, x-forwarded-*, x-data-parallel-rank, query string, kv_transfer_params and request_id never reach an engine", async () => {
  const engine = await startFakeVllm("e");
  const r = await routerFor([engine.url], { tenancy: tenancy() });
  try {
    const res = await post(
      `${r.url}/v1/chat/completions?api_key=sk-x&foo=bar`,
      {
        model: MODEL,
        messages: [{ role: "user", content: "hi" }],
        kv_transfer_params: STOLEN_KV,
        request_id: "tenant-b-request",
      },
      { authorization: `Bearer ${KEY_A}`, "user-agent": "edge-test/1", ...HOSTILE_HEADERS },
    );
    assert.equal(res.status, 200, await res.clone().text());
    await res.arrayBuffer();
    const got = engine.seen.at(-1)!;
    assert.equal(got.url, "/v1/chat/completions", "no query string upstream");
    for (const h of Object.keys(HOSTILE_HEADERS))
      if (h !== "x-forwarded-for") assert.equal(got.headers[h], undefined, `${h} stops at the router`);
    // the router's own x-forwarded-for: the client's address, never what the client claimed
    assert.match(String(got.headers["x-forwarded-for"]), /^(::ffff:)?127\.0\.0\.1$/);
    assert.equal(got.headers["user-agent"], "edge-test/1");
    assert.equal(got.headers["content-type"], "application/json");
    assert.match(String(got.headers["x-request-id"]), /^[0-9a-f-]{36}$/);
    assert.equal(got.headers.authorization, undefined);
    const body = JSON.parse(got.body) as Record<string, unknown>;
    assert.equal(body.kv_transfer_params, undefined, "a client's kv_transfer_params is removed");
    assert.equal(body.request_id, undefined);
    assert.deepEqual(body.messages, [{ role: "user", content: "hi" }]);

    // the one route whose query vLLM reads keeps those parameters, and only those
    const stored = await post(
      `${r.url}/v1/responses`,
      { model: MODEL, input: "hi" },
      { authorization: `Bearer ${KEY_A}` },
    );
    const id = ((await stored.json()) as { id: string }).id;
    const back = await fetch(`${r.url}/v1/responses/${id}?stream=false&secret=1&starting_after=2`, {
      headers: { authorization: `Bearer ${KEY_A}` },
    });
    assert.equal(back.status, 200);
    await back.arrayBuffer();
    assert.equal(engine.seen.at(-1)!.url, `/v1/responses/${id}?stream=false&starting_after=2`);
  } finally {
    await r.close();
    await engine.close();
  }
});

test("a non-admin client's x-switchyard-debug changes nothing in the answer; the admin key in x-switchyard-debug-key gets the explanation", async () => {
  const engine = await startFakeVllm("e");
  const r = await routerFor([engine.url], { tenancy: tenancy() });
  const ask = async (extra: Record<string, string>) => {
    const res = await post(
      `${r.url}/v1/completions`,
      { model: MODEL, prompt: "the same prompt" },
      { authorization: `Bearer ${KEY_A}`, "x-request-id": "fixed-id", ...extra },
    );
    const headers = Object.fromEntries([...res.headers].filter(([k]) => k !== "date"));
    return { status: res.status, headers, body: await res.text() };
  };
  try {
    const plain = await ask({});
    assert.equal(plain.status, 200);
    const variants: Array<Record<string, string>> = [
      { "x-switchyard-debug": "1" },
      { "x-switchyard-debug": "1", "x-switchyard-debug-key": KEY_B },
      { "x-switchyard-debug": "1", "x-switchyard-debug-key": "sk-wrong-000000000000" },
    ];
    for (const extra of variants) {
      const asked = await ask(extra);
      assert.deepEqual(asked, plain, `${JSON.stringify(extra)}: the answer is the same`);
    }
    const admin = await ask({ "x-switchyard-debug": "1", "x-switchyard-debug-key": ADMIN });
    assert.match(admin.headers["x-switchyard-route"] ?? "", /engine=http:\/\/127\.0\.0\.1:\d+/);
    assert.equal(
      engine.seen.at(-1)!.headers["x-switchyard-debug-key"],
      undefined,
      "the admin key stops here",
    );
  } finally {
    await r.close();
    await engine.close();
  }
});

test("debug.allowHeader: off hides the explanation from everyone, open shows it to every client", async () => {
  const engine = await startFakeVllm("e");
  const off = await routerFor([engine.url], { debug: { allowHeader: "off" } });
  const open = await routerFor([engine.url], { tenancy: tenancy(), debug: { allowHeader: "open" } });
  try {
    const a = await post(
      `${off.url}/v1/completions`,
      { model: MODEL, prompt: "x" },
      { "x-switchyard-debug": "1" },
    );
    assert.equal(a.headers.get("x-switchyard-route"), null);
    await a.arrayBuffer();
    const b = await post(
      `${open.url}/v1/completions`,
      { model: MODEL, prompt: "x" },
      { "x-switchyard-debug": "1", authorization: `Bearer ${KEY_B}` },
    );
    assert.match(b.headers.get("x-switchyard-route") ?? "", /engine=/);
    await b.arrayBuffer();
  } finally {
    await off.close();
    await open.close();
    await engine.close();
  }
});

test("/metrics with tenancy on needs the admin key; metrics.access: open serves it to anyone", async () => {
  const engine = await startFakeVllm("e");
  const guarded = await routerFor([engine.url], { tenancy: tenancy() });
  const open = await routerFor([engine.url], { tenancy: tenancy(), metrics: { access: "open" } });
  try {
    const get = (url: string, key?: string) =>
      fetch(`${url}/metrics`, { headers: key ? { authorization: `Bearer ${key}` } : {} });
    const anon = await get(guarded.url);
    assert.equal(anon.status, 401);
    assert.match(await anon.text(), /"type":"AuthenticationError"/);
    const tenant = await get(guarded.url, KEY_A);
    assert.equal(tenant.status, 403);
    await tenant.arrayBuffer();
    const admin = await get(guarded.url, ADMIN);
    assert.equal(admin.status, 200);
    assert.match(await admin.text(), /switchyard_requests_in_flight/);
    const anyone = await get(open.url);
    assert.equal(anyone.status, 200);
    await anyone.arrayBuffer();
  } finally {
    await guarded.close();
    await open.close();
    await engine.close();
  }
});

test("request ids are random UUIDs: unique, version 4, and consecutive ones tell nothing of how many came between", () => {
  const ids = Array.from({ length: 2000 }, () => newRequestId());
  assert.equal(new Set(ids).size, ids.length);
  for (const id of ids)
    assert.match(id, /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
  // a counter behind a fixed prefix shares its first 24 characters across ids; random ones do not
  const prefixes = new Set(ids.map((id) => id.slice(0, 24)));
  assert.equal(prefixes.size, ids.length);
});

test("with tenancy on, the router's own P/D kv_transfer_params reach prefill and decode engines, a client's never", async () => {
  const prefill = await startPdEngine(MODEL);
  const decode = await startPdEngine(MODEL);
  const r = await routerFor(
    [
      { url: prefill.url, role: "prefill" },
      { url: decode.url, role: "decode" },
    ],
    { tenancy: tenancy() },
  );
  try {
    const res = await post(
      `${r.url}/v1/chat/completions`,
      { model: MODEL, messages: [{ role: "user", content: "hi" }], kv_transfer_params: STOLEN_KV },
      { authorization: `Bearer ${KEY_A}` },
    );
    assert.equal(res.status, 200, await res.clone().text());
    await res.arrayBuffer();
    assert.equal(prefill.bodies.length, 1);
    assert.equal(
      (prefill.bodies[0]!.kv_transfer_params as { do_remote_decode: boolean }).do_remote_decode,
      true,
    );
    assert.deepEqual(decode.bodies.at(-1)!.kv_transfer_params, PREFILL_KV);
    for (const b of [...prefill.bodies, ...decode.bodies])
      assert.ok(!JSON.stringify(b).includes("evil.example"), "the client's params reached no engine");
  } finally {
    await r.close();
    await prefill.close();
    await decode.close();
  }
});

/** Sends a request's headers and the first bytes of its body, then holds the rest back. */
function trickle(port: number, key: string): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = connect(port, "127.0.0.1");
    s.on("error", () => undefined);
    s.once("connect", () => {
      s.write(
        `POST /v1/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${key}\r\n` +
          `Content-Type: application/json\r\nContent-Length: 200\r\n\r\n{"model":`,
      );
      resolve(s);
    });
    s.once("close", () => reject(new Error("closed before it was held")));
  });
}

test("a tenant's slot is taken at its headers: two trickled bodies hold a limit of 2, the third request gets the tenant's 429 at once, and the slots come back when they go", async () => {
  const engine = await startFakeVllm("e");
  const r = await routerFor([engine.url], { tenancy: tenancy({ maxConcurrent: 2 }) });
  const port = Number(new URL(r.url).port);
  const state = r.router.tenancy;
  const held: Socket[] = [];
  try {
    held.push(await trickle(port, KEY_A), await trickle(port, KEY_A));
    await waitUntil(() => state.localInFlight("a") === 2, 10_000, "both slots held mid-body");
    const third = await post(
      `${r.url}/v1/completions`,
      { model: MODEL, prompt: "x" },
      { authorization: `Bearer ${KEY_A}` },
    );
    assert.equal(third.status, 429);
    assert.equal(third.headers.get("x-ratelimit-limit"), "concurrent_requests");
    assert.match(await third.text(), /"type":"RateLimitError"|concurrent requests/);
    // another tenant is not held up by a's slow bodies
    const other = await post(
      `${r.url}/v1/completions`,
      { model: MODEL, prompt: "x" },
      { authorization: `Bearer ${KEY_B}` },
    );
    assert.equal(other.status, 200);
    await other.arrayBuffer();
    for (const s of held) s.destroy();
    await waitUntil(() => state.localInFlight("a") === 0, 10_000, "slots released when the clients left");
    const after = await post(
      `${r.url}/v1/completions`,
      { model: MODEL, prompt: "x" },
      { authorization: `Bearer ${KEY_A}` },
    );
    assert.equal(after.status, 200);
    await after.arrayBuffer();
  } finally {
    for (const s of held) s.destroy();
    await r.close();
    await engine.close();
  }
});
