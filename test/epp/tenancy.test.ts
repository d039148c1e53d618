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
import { startFakeVllm, type FakeVllm } from "../../bench/support/fakes/fake-vllm.js";
import { post, routerFor, waitUntil } from "../helpers/router.js";
import { freePorts } from "../../bench/support/cli.js";
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
const KEYS = {
  salted: "sk-salted-0000000000",
  conc: "sk-conc-000000000000",
  admin: "sk-admin-00000000000",
  narrow: "sk-narrow-0000000000",
};
const HEADERS = { ":method": "POST", ":path": "/v1/chat/completions", "content-type": "application/json" };
const CHAT = { model: MODEL, messages: [{ role: "user", content: "hi" }], max_tokens: 2 };
/** the recording vLLM's model (stored responses) */
const MODEL_V = "fake/model-a";
const RESPONSES = { ":method": "POST", ":path": "/v1/responses", "content-type": "application/json" };
const b64 = (s: string) => Buffer.from(s, "base64").toString();

function immediate(r: Reply): { status: string; body: unknown; headers: Record<string, string> } {
  assert.ok(r.msg?.immediateResponse, `expected an ImmediateResponse, got ${JSON.stringify(r)}`);
  const ir = r.msg.immediateResponse;
  const headers: Record<string, string> = {};
  for (const o of ir.headers?.setHeaders ?? [])
    headers[o.header.key] = o.header.rawValue !== undefined ? b64(o.header.rawValue) : o.header.value;
  return { status: ir.status.code, body: JSON.parse(b64(ir.body)), headers };
}

/** The endpoint a bodyless request was sent to. */
function destination(r: Reply): string | undefined {
  assert.ok(r.msg?.requestHeaders, `expected a pick, got ${JSON.stringify(r)}`);
  return setHeader(r.msg.requestHeaders.response, "x-gateway-destination-endpoint");
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
        tenants: {
          salted: { cacheIsolation: true },
          conc: { limits: { maxConcurrent: 1 } },
          narrow: { models: ["other/*"] },
        },
        keys: [
          { hash: hashKey(KEYS.salted), tenant: "salted" },
          { hash: hashKey(KEYS.conc), tenant: "conc" },
          { hash: hashKey(KEYS.narrow), tenant: "narrow" },
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

  it("a model outside the tenant's list: the 404 of a model that exists nowhere, as over HTTP, and no engine picked", async (t) => {
    const c = start(t);
    if (!c) return;
    const auth = { authorization: `Bearer ${KEYS.narrow}` };
    const answers: Record<string, unknown>[] = [];
    for (const model of [MODEL, "zz/nowhere"]) {
      const id = `narrow-${model}`;
      await c.open(id);
      await c.send(id, requestHeaders({ ...HEADERS, ...auth }));
      await c.send(id, requestBody(JSON.stringify({ ...CHAT, model })));
      const ir = immediate(await c.recv(id));
      assert.equal(ir.status, "NotFound", model);
      const http = await post(`${router.url}/v1/chat/completions`, { ...CHAT, model }, auth);
      assert.equal(http.status, 404);
      assert.deepEqual(ir.body, await http.json(), model);
      answers.push(ir.body as Record<string, unknown>);
    }
    assert.equal(JSON.stringify(answers[0]), JSON.stringify(answers[1]).replaceAll("zz/nowhere", MODEL));
    assert.equal(engineInFlight(), 0, "no engine slot taken");
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

  it("through the gateway too: a tenant's x-switchyard-debug is ignored without the admin key, its kv_transfer_params, priority and vllm_xargs dropped; the admin key explains and stops at the picker", async (t) => {
    const c = start(t);
    if (!c) return;
    const auth = { authorization: `Bearer ${KEYS.salted}` };
    const withParams = {
      ...CHAT,
      kv_transfer_params: { remote_host: "evil.example", remote_block_ids: [1] },
      priority: -100,
      vllm_xargs: { kv_transfer_params: { remote_host: "evil.example" } },
    };
    const route = async (id: string, extra: Record<string, string>) => {
      await c.open(id);
      await c.send(id, requestHeaders({ ...HEADERS, ...auth, "x-switchyard-debug": "1", ...extra }));
      await c.send(id, requestBody(JSON.stringify(withParams)));
      const p = await picked(c, id);
      assert.equal(p.body.kv_transfer_params, undefined, `${id}: the client's kv_transfer_params removed`);
      assert.equal(p.body.priority, undefined, `${id}: the client's priority dropped`);
      assert.equal(p.body.vllm_xargs, undefined, `${id}: vllm_xargs cut to the allowed keys`);
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

  it("body mode NONE with tenant keys: a JSON-bodied route is refused with a 501 ImmediateResponse naming the fix, no engine picked; a bodyless GET is still routed", async (t) => {
    const c = start(t);
    if (!c) return;
    const auth = { authorization: `Bearer ${KEYS.salted}` };
    const none = { protocolConfig: { requestBodyMode: "NONE", responseBodyMode: "NONE" } };
    const hits = engine.hits;
    for (const [id, path] of [
      ["none-chat", "/v1/chat/completions"],
      ["none-responses", "/v1/responses"],
      ["none-messages", "/v1/messages"],
      ["none-generate", "/inference/v1/generate"],
    ] as const) {
      await c.open(id);
      await c.send(id, requestHeaders({ ...HEADERS, ":path": path, ...auth }, none));
      const ir = immediate(await c.recv(id));
      assert.equal(ir.status, "NotImplemented", id);
      const msg = (ir.body as { error: { message: string } }).error.message;
      assert.match(msg, /request_body_mode NONE/);
      assert.match(msg, /FULL_DUPLEX_STREAMED/);
      assert.equal((await c.recv(id)).eof, true);
      assert.equal(engineInFlight(), 0, "no engine slot taken");
    }
    assert.equal(engine.hits, hits, "nothing reached the engine");
    // a route without a body is decided on the headers, as before
    await c.open("none-get");
    await c.send(
      "none-get",
      requestHeaders({ ":method": "GET", ":path": "/v1/models", ...auth }, { ...none, endOfStream: true }),
    );
    assert.ok(destination(await c.recv("none-get")));
    await c.cancel("none-get");
  });
});

describe(
  "endpoint picker (ext_proc): the endpoint table, stored responses' owners, the header allow-list",
  { timeout: 120_000 },
  () => {
    const ENGINE_KEY = "sk-engine-only-0000000000";
    const TENANT_A = "sk-picker-tenant-a-0000000";
    const TENANT_B = "sk-picker-tenant-b-0000000";
    const A = { authorization: `Bearer ${TENANT_A}` };
    const B = { authorization: `Bearer ${TENANT_B}` };
    let bin: string | undefined;
    let engines: FakeVllm[];
    let router: RunningRouter;
    let client: EppClient;

    before(async () => {
      engines = [await startFakeVllm("a"), await startFakeVllm("b")];
      router = await routerFor(
        engines.map((e) => e.url),
        {
          policy: "round-robin",
          engineApiKey: ENGINE_KEY,
          epp: { port: 0 },
          tenancy: {
            tenants: { a: {}, b: {} },
            keys: [
              { hash: hashKey(TENANT_A), tenant: "a" },
              { hash: hashKey(TENANT_B), tenant: "b" },
            ],
          },
        },
      );
    });

    after(async () => {
      await client?.stop();
      await router?.close(500);
      for (const e of engines ?? []) await e.close();
    });

    function start(t: TestContext): EppClient | undefined {
      bin ??= clientBinary(t);
      if (!bin) return undefined;
      client ??= EppClient.start(bin, `127.0.0.1:${router.eppPort}`);
      return client;
    }

    const notFound = (id: string) => ({
      error: {
        message: `Response with id '${id}' not found.`,
        type: "invalid_request_error",
        param: "response_id",
        code: 404,
      },
    });

    /** One bodyless request through the picker: its first answer. */
    async function bodyless(
      c: EppClient,
      id: string,
      method: string,
      path: string,
      auth: Record<string, string>,
    ) {
      await c.open(id);
      await c.send(id, requestHeaders({ ":method": method, ":path": path, ...auth }, { endOfStream: true }));
      const r = await c.recv(id);
      await c.cancel(id);
      return r;
    }

    it("through the picker, /v1/unload_lora_adapter and the other per-engine routes with a tenant key get the HTTP path's 404, and no engine key leaves the router", async (t) => {
      const c = start(t);
      if (!c) return;
      const before = engines.map((e) => e.seen.length);
      for (const path of [
        "/v1/unload_lora_adapter",
        "/v1/load_lora_adapter",
        "/reset_prefix_cache",
        "/sleep",
        "/scale_elastic_ep",
        "/no/such/route",
      ]) {
        const r = await bodyless(c, `eo${path}`, "POST", path, A);
        const ir = immediate(r);
        assert.equal(ir.status, "NotFound", path);
        const http = await post(`${router.url}${path}`, { lora_name: "x" }, A);
        assert.equal(http.status, 404, path);
        assert.deepEqual(ir.body, await http.json(), `${path}: the HTTP edge's answer`);
        assert.ok(!JSON.stringify(r).includes(Buffer.from(`Bearer ${ENGINE_KEY}`).toString("base64")), path);
        assert.ok(!JSON.stringify(r).includes(ENGINE_KEY), `${path}: no engine key`);
      }
      // the router's own routes are not an engine's to answer through the gateway either
      assert.equal(immediate(await bodyless(c, "metrics", "GET", "/metrics", A)).status, "NotFound");
      assert.deepEqual(
        engines.map((e) => e.seen.length),
        before,
        "no engine reached",
      );
      // a relayed route still gets the engine's key (the tenant's stays at the picker)
      const ok = await bodyless(c, "version", "GET", "/version", A);
      assert.equal(setHeader(ok.msg.requestHeaders.response, "authorization"), `Bearer ${ENGINE_KEY}`);
    });

    it("tenant B's stored response: tenant A's GET, cancel and previous_response_id through the picker get the 404 HTTP gives; B's go to the engine that holds it", async (t) => {
      const c = start(t);
      if (!c) return;
      const made = await post(`${router.url}/v1/responses`, { model: MODEL_V, input: "hi" }, B);
      const id = ((await made.json()) as { id: string }).id;
      const home = engines.find((e) => e.stored.has(id))!;
      for (const [method, path] of [
        ["GET", `/v1/responses/${id}`],
        ["POST", `/v1/responses/${id}/cancel`],
      ] as const) {
        const ir = immediate(await bodyless(c, `a-${method}`, method, path, A));
        assert.equal(ir.status, "NotFound");
        assert.deepEqual(ir.body, notFound(id));
        const http = await fetch(`${router.url}${path}`, { method, headers: A });
        assert.deepEqual(await http.json(), ir.body, "as over HTTP");
        const own = await bodyless(c, `b-${method}`, method, path, B);
        assert.equal(destination(own), new URL(home.url).host, "the owner's goes to its engine");
      }
      // a cancel that comes with a body (full duplex): to the engine that holds it, the body sent on
      await c.open("b-cancel-body");
      await c.send(
        "b-cancel-body",
        requestHeaders({ ":method": "POST", ":path": `/v1/responses/${id}/cancel`, ...B }),
      );
      await c.send("b-cancel-body", requestBody("{}"));
      const cancelled = await picked(c, "b-cancel-body");
      assert.equal(cancelled.endpoint, new URL(home.url).host);
      assert.deepEqual(cancelled.body, {});
      await c.cancel("b-cancel-body");
      const follow = JSON.stringify({ model: MODEL_V, input: "more", previous_response_id: id });
      await c.open("a-prev");
      await c.send("a-prev", requestHeaders({ ...RESPONSES, ...A }));
      await c.send("a-prev", requestBody(follow));
      const ir = immediate(await c.recv("a-prev"));
      assert.equal(ir.status, "NotFound");
      assert.deepEqual(ir.body, notFound(id));
      await c.cancel("a-prev");
      await c.open("b-prev");
      await c.send("b-prev", requestHeaders({ ...RESPONSES, ...B }));
      await c.send("b-prev", requestBody(follow));
      assert.equal((await picked(c, "b-prev")).endpoint, new URL(home.url).host);
      await c.cancel("b-prev");
    });

    it("a response made through the picker is learned off its answer with its tenant: another tenant's GET over HTTP is a 404", async (t) => {
      const c = start(t);
      if (!c) return;
      await c.open("learn");
      await c.send("learn", requestHeaders({ ...RESPONSES, ...B }));
      await c.send("learn", requestBody(JSON.stringify({ model: MODEL_V, input: "hi" })));
      const p = await picked(c, "learn");
      await c.send("learn", responseHeaders({ ":status": "200", "content-type": "application/json" }));
      await c.recv("learn");
      await c.send(
        "learn",
        responseBody(JSON.stringify({ id: "resp_through_gw1", object: "response" }), true),
      );
      await c.recv("learn");
      await c.cancel("learn");
      const home = router.router.affinity.home("resp_through_gw1");
      assert.equal(home?.owner, "b");
      assert.equal(new URL(home!.engine).host, p.endpoint?.split(",")[0], "the primary pick");
      assert.equal((await fetch(`${router.url}/v1/responses/resp_through_gw1`, { headers: A })).status, 404);
    });

    it("in a router group, a picker request that overtakes its response's entry waits for it, as over HTTP", async (t) => {
      const c = start(t);
      if (!c) return;
      const [port] = await freePorts(1);
      const grouped = await routerFor(
        engines.map((e) => e.url),
        {
          epp: { port: 0 },
          tenancy: router.router.config.tenancy,
          peers: { bind: `tcp://127.0.0.1:${port!}`, interval: 1000, expireAfter: 3000 },
        },
      );
      const c2 = EppClient.start(bin!, `127.0.0.1:${grouped.eppPort}`);
      try {
        await c2.open("late");
        await c2.send(
          "late",
          requestHeaders(
            { ":method": "GET", ":path": "/v1/responses/resp_late1", ...B },
            { endOfStream: true },
          ),
        );
        await waitUntil(() => grouped.router.affinity.waitingRequests > 0, 10_000, "the request to wait");
        // the replica's report comes after the request did
        grouped.router.affinity.applyFromPeer(
          [["resp_late1", engines[1]!.url, MODEL_V, "", "b"]],
          true,
          true,
        );
        assert.equal(destination(await c2.recv("late")), new URL(engines[1]!.url).host);
        await c2.cancel("late");
      } finally {
        await c2.stop();
        await grouped.close(0);
      }
    });

    it("through the picker only the router's header allow-list reaches the engine: a client's X-Request-Id is replaced by the picker's own, its cookie removed", async (t) => {
      const c = start(t);
      if (!c) return;
      await c.open("rid");
      await c.send(
        "rid",
        requestHeaders({
          ...HEADERS,
          ...A,
          "x-request-id": "tenant-b-guessed-id",
          cookie: "s=1",
          "x-api-key": "k",
        }),
      );
      await c.send("rid", requestBody(JSON.stringify({ ...CHAT, model: MODEL_V })));
      const r = await c.recv("rid");
      const common = r.msg.requestHeaders.response;
      const rid = setHeader(common, "x-request-id");
      assert.match(rid ?? "", /^[0-9a-f-]{36}$/, "the picker's own id");
      const removed = (common.headerMutation?.removeHeaders ?? []) as string[];
      for (const h of ["cookie", "x-api-key"]) assert.ok(removed.includes(h), h);
      assert.ok(!removed.includes("content-type"), "what vLLM reads stays");
      await c.cancel("rid");
    });
  },
);
