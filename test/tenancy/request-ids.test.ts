// Request ids belong to the router: a client's X-Request-Id never reaches an engine (vLLM names the
// request by it, and `/inference/v1/abort_requests` stops whatever ids it is given), and an abort
// reaches only its own tenant's requests in flight — over HTTP and through the endpoint picker.
// A live router in front of a stand-in engine whose token-in requests run until aborted by id.
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import type { RunningRouter } from "../../src/router/index.js";
import { IssuedIds } from "../../src/router/dataplane/issued-ids.js";
import { hashKey } from "../../src/tenancy/keys.js";
import { post, routerFor, waitUntil } from "../helpers/router.js";
import { clientBinary, EppClient, requestBody, requestHeaders, type Reply } from "../epp/client.js";

const MODEL = "fake/model-a";
const KEY_A = "sk-ids-tenant-a-0000000000";
const KEY_B = "sk-ids-tenant-b-0000000000";
const A = { authorization: `Bearer ${KEY_A}` };
const B = { authorization: `Bearer ${KEY_B}` };

/** A vLLM stand-in: token-in requests (`generate-tokens-<X-Request-Id>`) run until an abort names them. */
interface Engine {
  url: string;
  /** X-Request-Id of every generate request, in order */
  ids: string[];
  /** the bodies of the aborts that reached it */
  aborts: unknown[];
  /** generate requests still running, by the id vLLM gives them */
  running: Map<string, ServerResponse>;
  close(): Promise<void>;
}

async function startEngine(): Promise<Engine> {
  const eng: Engine = { url: "", ids: [], aborts: [], running: new Map(), close: async () => {} };
  const json = (res: ServerResponse, status: number, v: unknown) => {
    const s = JSON.stringify(v);
    res.writeHead(status, { "content-type": "application/json", "content-length": Buffer.byteLength(s) });
    res.end(s);
  };
  const server: Server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const path = (req.url ?? "/").split("?")[0];
      if (path === "/health") return json(res, 200, {});
      if (path === "/v1/models")
        return json(res, 200, { object: "list", data: [{ id: MODEL, object: "model" }] });
      if (path === "/metrics") return void res.end("");
      if (path === "/inference/v1/generate") {
        const rid = String(req.headers["x-request-id"]);
        eng.ids.push(rid);
        const id = `generate-tokens-${rid}`;
        eng.running.set(id, res);
        res.on("close", () => eng.running.delete(id));
        res.writeHead(200, { "content-type": "text/event-stream" });
        res.write(`data: ${JSON.stringify({ request_id: id, choices: [{ index: 0, token_ids: [1] }] })}\n\n`);
        return;
      }
      if (path === "/inference/v1/abort_requests") {
        const body = JSON.parse(Buffer.concat(chunks).toString() || "{}") as { request_ids?: string[] };
        eng.aborts.push(body);
        for (const id of body.request_ids ?? []) {
          const r = eng.running.get(id);
          if (r) r.end("data: [DONE]\n\n");
        }
        res.writeHead(200, { "content-length": 0 });
        return void res.end();
      }
      json(res, 404, { detail: "Not Found" });
    });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  eng.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  eng.close = async () => {
    for (const r of eng.running.values()) r.destroy();
    server.closeAllConnections();
    await new Promise<void>((r) => server.close(() => r()));
  };
  return eng;
}

/** A generate request left running: its reader, and the id the engine got. */
async function generate(url: string, auth: Record<string, string>, engine: Engine, clientId?: string) {
  const n = engine.ids.length;
  const ac = new AbortController();
  const res = await fetch(`${url}/inference/v1/generate`, {
    method: "POST",
    headers: {
      "content-type": "application/json",
      ...auth,
      ...(clientId ? { "x-request-id": clientId } : {}),
    },
    body: JSON.stringify({
      model: MODEL,
      token_ids: [1, 2, 3],
      stream: true,
      sampling_params: { max_tokens: 5 },
    }),
    signal: ac.signal,
  });
  assert.equal(res.status, 200);
  const text = res.text().catch(() => "");
  await waitUntil(() => engine.ids.length > n, 5000, "the engine to get it");
  return { upstream: `generate-tokens-${engine.ids[n]!}`, res, text, stop: () => ac.abort() };
}

describe("request ids and aborts", { timeout: 120_000 }, () => {
  let engine: Engine;
  let router: RunningRouter;

  before(async () => {
    engine = await startEngine();
    router = await routerFor([engine.url], {
      epp: { port: 0 },
      tenancy: {
        tenants: { a: {}, b: {} },
        keys: [
          { hash: hashKey(KEY_A), tenant: "a" },
          { hash: hashKey(KEY_B), tenant: "b" },
        ],
      },
    });
  });

  after(async () => {
    await router?.close(0);
    await engine?.close();
  });

  it("a client's X-Request-Id does not reach the engine: the router's own does, and the client gets its own back", async () => {
    const g = await generate(router.url, B, engine, "tenant-b-chosen-id");
    assert.match(engine.ids.at(-1)!, /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    assert.equal(g.res.headers.get("x-request-id"), "tenant-b-chosen-id");
    g.stop();
  });

  it("tenant A cannot abort tenant B's requests, by the engine's id or by B's own; B can, by either", async () => {
    const g = await generate(router.url, B, engine, "b-job-1");
    const before = engine.aborts.length;
    for (const ids of [[g.upstream], ["generate-tokens-b-job-1"], g.upstream]) {
      const res = await post(`${router.url}/inference/v1/abort_requests`, { request_ids: ids }, A);
      assert.equal(res.status, 200, "answered as an engine answers unknown ids");
      await res.arrayBuffer();
    }
    assert.equal(engine.aborts.length, before, "no abort of A's reached the engine");
    assert.ok(engine.running.has(g.upstream), "B's request still runs");
    // B names it as it chose it: the engine gets the id it knows the request by, and nothing of A's
    const res = await post(
      `${router.url}/inference/v1/abort_requests`,
      { request_ids: ["generate-tokens-b-job-1", "generate-tokens-someone-else"] },
      B,
    );
    assert.equal(res.status, 200);
    await res.arrayBuffer();
    assert.deepEqual(engine.aborts.at(-1), { request_ids: [g.upstream] });
    await g.text;
    assert.equal(engine.running.has(g.upstream), false, "aborted");
  });

  it("through the picker too: tenant A's abort of tenant B's request is answered without an engine, B's own reaches it", async (t) => {
    const bin = clientBinary(t);
    if (!bin) return;
    const c = EppClient.start(bin, `127.0.0.1:${router.eppPort}`);
    try {
      const g = await generate(router.url, B, engine);
      const abort = async (id: string, auth: Record<string, string>): Promise<Reply> => {
        await c.open(id);
        await c.send(
          id,
          requestHeaders({
            ":method": "POST",
            ":path": "/inference/v1/abort_requests",
            "content-type": "application/json",
            ...auth,
          }),
        );
        await c.send(id, requestBody(JSON.stringify({ model: MODEL, request_ids: [g.upstream] })));
        const r = await c.recv(id);
        await c.cancel(id);
        return r;
      };
      const a = await abort("a", A);
      assert.equal(a.msg?.immediateResponse?.status?.code, "OK", JSON.stringify(a));
      const b = await abort("b", B);
      assert.ok(b.msg?.requestHeaders, "B's abort is picked");
      g.stop();
    } finally {
      await c.stop();
    }
  });
});

describe("the map of token-in requests in flight", () => {
  it("maps a tenant's names to the engine's id, scopes aborts by owner, keeps unknown ids only with tenancy off, and ends with its request", () => {
    const m = new IssuedIds(8);
    const one = m.add("b", "r-1", "mine");
    assert.deepEqual(m.scope("b", ["generate-tokens-mine", "generate-tokens-r-1"]), ["generate-tokens-r-1"]);
    assert.deepEqual(m.scope("a", ["generate-tokens-mine", "generate-tokens-r-1"]), [], "another tenant's");
    assert.deepEqual(m.scope("", "generate-tokens-direct", true), ["generate-tokens-direct"], "tenancy off");
    // a later request under the same client id keeps its name when the first ends
    const two = m.add("b", "r-2", "mine");
    m.remove(one);
    assert.deepEqual(m.scope("b", ["generate-tokens-mine"]), ["generate-tokens-r-2"]);
    m.remove(two);
    assert.equal(m.size, 0);
    for (let i = 0; i < 20; i++) m.add("b", `r-${i}`, undefined);
    assert.equal(m.size, 8, "bounded");
    assert.equal(m.evictions, 12);
  });
});
