// The endpoint picker behind the same tenancy gate as the router's HTTP edge, driven by the client
// built from Envoy's published ext_proc protos (test/epp/client): with API keys configured, a request
// through the gateway without a valid key must get no engine, no slot and no cache — it is answered
// with the 401 the router's HTTP edge gives — and a tenant's request meets its limits and its
// cache_salt exactly as it would over HTTP.
import { after, before, describe, it, type TestContext } from "node:test";
import assert from "node:assert/strict";
import type { RunningRouter } from "../../src/router/index.js";
import { hashKey } from "../../src/tenancy/keys.js";
import { startFakeEngine, type FakeEngine } from "../../bench/support/fakes/fake-engine.js";
import { post, routerFor } from "../helpers/router.js";
import {
  clientBinary,
  EppClient,
  requestBody,
  requestHeaders,
  responseBody,
  responseHeaders,
  setHeader,
  type Reply,
} from "./client.js";

const MODEL = "fake/model-a";
const KEYS = { salted: "sk-salted-0000000000", conc: "sk-conc-000000000000", admin: "sk-admin-00000000000" };
const HEADERS = { ":method": "POST", ":path": "/v1/chat/completions", "content-type": "application/json" };
const CHAT = { model: MODEL, messages: [{ role: "user", content: "hi" }], max_tokens: 2 };
const b64 = (s: string) => Buffer.from(s, "base64").toString();

function immediate(r: Reply): { status: string; body: unknown; headers: Record<string, string> } {
  assert.ok(r.msg?.immediateResponse, `expected an ImmediateResponse, got ${JSON.stringify(r)}`);
  const ir = r.msg.immediateResponse;
  const headers: Record<string, string> = {};
  for (const o of ir.headers?.setHeaders ?? [])
    headers[o.header.key] = o.header.rawValue !== undefined ? b64(o.header.rawValue) : o.header.value;
  return { status: ir.status.code, body: JSON.parse(b64(ir.body)), headers };
}

/** The request-phase answer of a full-duplex pick: endpoints, header mutation, then the body sent on. */
async function picked(client: EppClient, id: string) {
  const r = await client.recv(id);
  assert.ok(r.msg?.requestHeaders, `expected a pick, got ${JSON.stringify(r)}`);
  const common = r.msg.requestHeaders.response;
  const parts: string[] = [];
  for (;;) {
    const s = (await client.recv(id)).msg.requestBody.response.bodyMutation.streamedResponse;
    parts.push(b64(s.body));
    if (s.endOfStream) break;
  }
  return {
    endpoint: setHeader(common, "x-gateway-destination-endpoint"),
    contentLength: setHeader(common, "content-length"),
    removed: (common.headerMutation?.removeHeaders ?? []) as string[],
    body: JSON.parse(parts.join("")) as Record<string, unknown>,
  };
}

describe("endpoint picker (ext_proc) behind the tenancy gate", { timeout: 120_000 }, () => {
  let bin: string | undefined;
  let engine: FakeEngine;
  let router: RunningRouter;
  let client: EppClient;

  before(async () => {
    engine = await startFakeEngine();
    router = await routerFor([engine.url], {
      epp: { port: 0 },
      tenancy: {
        cacheSaltSecret: "a-secret-of-sixteen-or-more",
        tenants: { salted: { cacheIsolation: true }, conc: { limits: { maxConcurrent: 1 } } },
        keys: [
          { hash: hashKey(KEYS.salted), tenant: "salted" },
          { hash: hashKey(KEYS.conc), tenant: "conc" },
        ],
        adminKeys: [hashKey(KEYS.admin)],
      },
    });
  });

  after(async () => {
    await client?.stop();
    await router?.close(500);
    await engine?.close();
  });

  function start(t: TestContext): EppClient | undefined {
    bin ??= clientBinary(t);
    if (!bin) return undefined;
    client ??= EppClient.start(bin, `127.0.0.1:${router.eppPort}`);
    return client;
  }

  const engineInFlight = () => router.router.registry.engines.get(engine.url)!.view.inFlight;

  it("no key, a wrong key, the admin key: the HTTP edge's 401/403 as an ImmediateResponse, and no slot taken", async (t) => {
    const c = start(t);
    if (!c) return;
    const cases: Array<[string, Record<string, string>, string, number]> = [
      ["nokey", {}, "Unauthorized", 401],
      ["wrongkey", { authorization: "Bearer sk-not-a-key-0000000" }, "Unauthorized", 401],
      ["admin", { authorization: `Bearer ${KEYS.admin}` }, "Forbidden", 403],
    ];
    for (const [id, auth, status, code] of cases) {
      await c.open(id);
      // refused on the headers: no body is ever asked for or buffered
      await c.send(id, requestHeaders({ ...HEADERS, ...auth }));
      const ir = immediate(await c.recv(id));
      assert.equal(ir.status, status, id);
      assert.equal(ir.headers["content-type"], "application/json");
      // byte for byte what the router's HTTP edge answers the same credential
      const http = await post(`${router.url}/v1/chat/completions`, CHAT, auth);
      assert.equal(http.status, code);
      assert.deepEqual(ir.body, await http.json(), id);
      assert.equal((await c.recv(id)).eof, true, "the stream ends after the ImmediateResponse");
      assert.equal(engineInFlight(), 0, "no engine slot taken");
      assert.equal(router.router.metrics.inFlight, 0, "nothing counted in flight");
    }
    // a bodyless request (a GET through the gateway) is refused the same way
    await c.open("get");
    await c.send("get", requestHeaders({ ":method": "GET", ":path": "/v1/models" }, { endOfStream: true }));
    assert.equal(immediate(await c.recv("get")).status, "Unauthorized");
    assert.equal(engine.hits, 0, "no request reached the engine");
  });

  it("a tenant's key: picked, its cache_salt in the body exactly as HTTP ingress injects it, its key kept from the engine", async (t) => {
    const c = start(t);
    if (!c) return;
    const auth = { authorization: `Bearer ${KEYS.salted}` };
    await c.open("salted");
    await c.send("salted", requestHeaders({ ...HEADERS, ...auth }));
    await c.send("salted", requestBody(JSON.stringify(CHAT)));
    const p = await picked(c, "salted");
    assert.equal(p.endpoint, new URL(engine.url).host);
    const salt = router.router.tenancy.cacheSaltFor(router.router.tenancy.tenant("salted")!);
    assert.ok(salt);
    assert.equal(p.body.cache_salt, salt);
    assert.equal(p.contentLength, String(Buffer.byteLength(JSON.stringify(p.body))));
    assert.ok(p.removed.includes("authorization"), "the tenant's key is the router's credential only");
    assert.equal(engineInFlight(), 1, "the pick holds a slot");
    await c.send("salted", responseHeaders({ ":status": "200", "content-type": "application/json" }));
    await c.recv("salted");
    await c.send("salted", responseBody("{}", true));
    await c.recv("salted");
    assert.equal(engineInFlight(), 0);
    await c.cancel("salted");

    // the same request over HTTP: the engine gets the same salt
    const res = await post(`${router.url}/v1/chat/completions`, CHAT, auth);
    assert.equal(res.status, 200);
    await res.arrayBuffer();
    assert.equal(JSON.parse(engine.lastBody).cache_salt, salt);
    // a client's own salt is mixed with the tenant's, as over HTTP
    const own = { ...CHAT, cache_salt: "mine" };
    await c.open("own");
    await c.send("own", requestHeaders({ ...HEADERS, ...auth }));
    await c.send("own", requestBody(JSON.stringify(own)));
    const mixed = (await picked(c, "own")).body.cache_salt;
    await c.cancel("own");
    const r2 = await post(`${router.url}/v1/chat/completions`, own, auth);
    await r2.arrayBuffer();
    assert.equal(mixed, JSON.parse(engine.lastBody).cache_salt);
    assert.notEqual(mixed, salt);
  });

  it("through the gateway too: a tenant's x-switchyard-debug is ignored without the admin key, its kv_transfer_params dropped; the admin key explains and stops at the picker", async (t) => {
    const c = start(t);
    if (!c) return;
    const auth = { authorization: `Bearer ${KEYS.salted}` };
    const withParams = {
      ...CHAT,
      kv_transfer_params: { remote_host: "evil.example", remote_block_ids: [1] },
    };
    const route = async (id: string, extra: Record<string, string>) => {
      await c.open(id);
      await c.send(id, requestHeaders({ ...HEADERS, ...auth, "x-switchyard-debug": "1", ...extra }));
      await c.send(id, requestBody(JSON.stringify(withParams)));
      const p = await picked(c, id);
      assert.equal(p.body.kv_transfer_params, undefined, `${id}: the client's kv_transfer_params removed`);
      await c.send(id, responseHeaders({ ":status": "200", "content-type": "application/json" }));
      const rh = await c.recv(id);
      await c.send(id, responseBody("{}", true));
      await c.recv(id);
      await c.cancel(id);
      return { removed: p.removed, route: setHeader(rh.msg.responseHeaders.response, "x-switchyard-route") };
    };
    const plain = await route("dbg-tenant", {});
    assert.equal(plain.route, undefined, "no explanation for a tenant");
    const wrong = await route("dbg-wrong", { "x-switchyard-debug-key": KEYS.conc });
    assert.equal(wrong.route, undefined, "a tenant key is not the admin key");
    const admin = await route("dbg-admin", { "x-switchyard-debug-key": KEYS.admin });
    assert.match(admin.route ?? "", /engine=/);
    assert.ok(admin.removed.includes("x-switchyard-debug-key"), "the admin key never reaches the engine");
  });

  it("a tenant at its concurrency limit: 429 ImmediateResponse naming the limit, no engine slot; freed, the next is picked", async (t) => {
    const c = start(t);
    if (!c) return;
    const auth = { authorization: `Bearer ${KEYS.conc}` };
    await c.open("c1");
    await c.send("c1", requestHeaders({ ...HEADERS, ...auth }));
    await c.send("c1", requestBody(JSON.stringify(CHAT)));
    await picked(c, "c1");
    assert.equal(router.router.tenancy.localInFlight("conc"), 1);
    assert.equal(engineInFlight(), 1);

    await c.open("c2");
    await c.send("c2", requestHeaders({ ...HEADERS, ...auth }));
    await c.send("c2", requestBody(JSON.stringify(CHAT)));
    const ir = immediate(await c.recv("c2"));
    assert.equal(ir.status, "TooManyRequests");
    const body = ir.body as { error: { code: number; message: string; type: string } };
    assert.equal(body.error.code, 429);
    assert.match(body.error.message, /tenant 'conc' is over its concurrent requests limit/);
    assert.equal(ir.headers["x-ratelimit-limit"], "concurrent_requests");
    assert.ok(Number(ir.headers["retry-after"]) >= 1);
    assert.equal(engineInFlight(), 1, "the refused request took no engine slot");

    // the first ends (the gateway drops its stream): the tenant's slot comes back
    await c.cancel("c1");
    for (let i = 0; i < 200 && router.router.tenancy.localInFlight("conc") > 0; i++)
      await new Promise((r) => setTimeout(r, 20));
    assert.equal(router.router.tenancy.localInFlight("conc"), 0);
    assert.equal(engineInFlight(), 0);
    await c.open("c3");
    await c.send("c3", requestHeaders({ ...HEADERS, ...auth }));
    await c.send("c3", requestBody(JSON.stringify(CHAT)));
    assert.equal((await picked(c, "c3")).endpoint, new URL(engine.url).host);
    await c.cancel("c3");

    const metrics = await (
      await fetch(`${router.url}/metrics`, { headers: { authorization: `Bearer ${KEYS.admin}` } })
    ).text();
    assert.match(metrics, /switchyard_tenant_rejected_total\{tenant="conc",limit="concurrent_requests"\} 1/);
  });
});
