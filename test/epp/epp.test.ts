// The endpoint picker against a client built from Envoy's published ext_proc protos (go-control-plane
// and grpc-go, test/epp/client): live sims publishing KV events over real ZMQ, a router with
// `epp.port`, and the test playing the gateway's part of the GIE protocol — request headers and
// body in, the destination header and metadata out, the request sent where they say, the response
// streamed back through the picker.
import { after, before, describe, it, type TestContext } from "node:test";
import assert from "node:assert/strict";
import { startSim } from "../../src/sim/app.js";
import { parseSimArgs } from "../../src/sim/config/config.js";
import { kvEventsOf } from "../sim/helpers.js";
import type { RouterConfigInput, RunningRouter } from "../../src/router/index.js";
import { freePorts } from "../../bench/support/cli.js";
import { post, routerFor, waitUntil } from "../helpers/router.js";
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

const MODEL = "meta-llama/Llama-3.1-8B-Instruct";
type Sim = Awaited<ReturnType<typeof startSim>>;

async function sim(port: number, kvPort: number, replayPort: number): Promise<Sim> {
  // a replay endpoint: the router rebuilds what it missed before its subscription joined
  const kv = JSON.stringify({
    enable_kv_cache_events: true,
    publisher: "zmq",
    endpoint: `tcp://*:${kvPort}`,
    replay_endpoint: `tcp://*:${replayPort}`,
  });
  const args = [MODEL, "--host", "127.0.0.1", "--port", String(port), "--kv-events-config", kv];
  return startSim(parseSimArgs([...args, "--time-scale", "0.05"], {}));
}

const LONG =
  "You are a careful assistant. " + "Answer every question about the rivers of Europe. ".repeat(30);
const chat = (topic: string) => ({
  model: MODEL,
  messages: [
    { role: "system", content: `${topic} ${LONG}` },
    { role: "user", content: "Which is longest?" },
  ],
  max_tokens: 2,
});
const HEADERS = { ":method": "POST", ":path": "/v1/chat/completions", "content-type": "application/json" };

const endpointOf = (s: Sim) => new URL(s.url).host;
const b64 = (s: string) => Buffer.from(s, "base64").toString();

/** The request-phase answer: the endpoints in the header, and in the dynamic metadata. */
function destination(r: Reply, phase = "requestHeaders"): { header?: string; metadata?: string } {
  assert.ok(r.msg?.[phase], `expected a ${phase} response, got ${JSON.stringify(r)}`);
  const common = r.msg[phase].response;
  assert.equal(common.clearRouteCache, true);
  return {
    header: setHeader(common, "x-gateway-destination-endpoint"),
    metadata: r.msg.dynamicMetadata?.["envoy.lb"]?.["x-gateway-destination-endpoint"],
  };
}

function immediate(r: Reply): { status: string; body: { error: { code: number; message: string } } } {
  assert.ok(r.msg?.immediateResponse, `expected an ImmediateResponse, got ${JSON.stringify(r)}`);
  const ir = r.msg.immediateResponse;
  return { status: ir.status.code, body: JSON.parse(b64(ir.body)) };
}

describe(
  "endpoint picker (ext_proc) with a client from Envoy's published protos",
  { timeout: 120_000 },
  () => {
    let bin: string | undefined;
    let sims: Sim[] = [];
    const routers: RunningRouter[] = [];
    const clients: EppClient[] = [];

    before(async () => {
      const ports = await freePorts(6);
      sims = [await sim(ports[0]!, ports[2]!, ports[4]!), await sim(ports[1]!, ports[3]!, ports[5]!)];
    });

    after(async () => {
      for (const c of clients) await c.stop();
      for (const r of routers) await r.close(500);
      for (const s of sims) await s.close();
    });

    async function setup(t: TestContext, extra: RouterConfigInput = {}) {
      bin ??= clientBinary(t);
      if (!bin) return undefined;
      const router = await routerFor(
        sims.map((s) => ({
          url: s.url,
          kvEvents: kvEventsOf(s),
        })),
        { ...extra, epp: { port: 0, ...extra.epp } },
      );
      routers.push(router);
      await waitUntil(
        () => router.router.registry.snapshot().every((v) => v.healthy && v.blockSize === 16),
        10_000,
        "sims in rotation",
      );
      const client = EppClient.start(bin, `127.0.0.1:${router.eppPort}`);
      clients.push(client);
      return { router, client };
    }

    const inFlight = (router: RunningRouter, s: Sim) =>
      router.router.registry.engines.get(s.url)!.view.inFlight;

    it("names the engine whose KV events announced the prompt's prefix, in the header and the metadata", async (t) => {
      const got = await setup(t);
      if (!got) return;
      const { router, client } = got;
      const cache = router.router.cache;
      // each engine serves one prompt directly (not through the router): only its KV events tell
      for (const [i, s] of sims.entries()) {
        const res = await post(`${s.url}/v1/chat/completions`, chat(`topic ${i}`));
        assert.equal(res.status, 200);
        await res.arrayBuffer();
        await waitUntil(() => cache.kv.blocksOf(s.url) > 10, 10_000, "KV events indexed");
        await waitUntil(() => cache.kvRouted(s.url), 10_000, "engine routed by KV events");
      }
      assert.equal(
        cache.prefix.index.enginesHeld().size,
        0,
        "the prefix index knows nothing: no request went through the router",
      );
      for (const [i, s] of sims.entries()) {
        const other = sims[1 - i]!;
        const id = `kv${i}`;
        await client.open(id);
        const body = JSON.stringify(chat(`topic ${i}`));
        await client.send(id, requestHeaders({ ...HEADERS, "x-switchyard-debug": "1" }));
        await client.send(id, requestBody(body));
        const d = destination(await client.recv(id));
        // primary: the engine holding the prefix; then the fallback the policy ranks next
        assert.equal(d.header, `${endpointOf(s)},${endpointOf(other)}`);
        assert.equal(d.metadata, d.header, "header and metadata must be identical");
        const echoed = (await client.recv(id)).msg.requestBody.response.bodyMutation.streamedResponse;
        assert.equal(b64(echoed.body), body, "full duplex: the body goes on unchanged");
        assert.equal(echoed.endOfStream, true);
        assert.equal(inFlight(router, s), 1, "the pick holds an in-flight slot on the engine");

        // the gateway sends the request where the header says, and streams the answer back through
        const res = await post(`http://${d.header!.split(",")[0]}/v1/chat/completions`, JSON.parse(body));
        const text = await res.text();
        await client.send(
          id,
          responseHeaders({ ":status": String(res.status), "content-type": "application/json" }),
        );
        const rh = await client.recv(id);
        const route = setHeader(rh.msg.responseHeaders.response, "x-switchyard-route") ?? "";
        assert.match(route, new RegExp(`engine=${s.url}; policy=predictive; source=kv; reason=kv-hit`));
        await client.send(id, responseBody(text, true));
        const rb = (await client.recv(id)).msg.responseBody.response.bodyMutation.streamedResponse;
        assert.equal(b64(rb.body), text);
        assert.equal(rb.endOfStream, true);
        assert.equal(inFlight(router, s), 0, "the slot is released at the end of the response");
        await client.close(id);
        assert.equal(
          (await client.recv(id)).eof,
          true,
          "the picker ends the stream once the gateway half-closes",
        );
      }
      const metrics = await (await fetch(`${router.url}/metrics`)).text();
      for (const s of sims)
        assert.match(
          metrics,
          new RegExp(
            `switchyard_requests_total\\{model="${MODEL}",engine="${s.url}",status="200",policy="predictive"\\} 1`,
          ),
        );
      assert.match(
        metrics,
        /switchyard_routing_decisions_total\{policy="predictive",source="kv",reason="kv-hit"\} 2/,
      );
    });

    it("every engine saturated: 429 ImmediateResponse once the router's queue is full; a freed slot is picked", async (t) => {
      const got = await setup(t, { admission: { maxInFlightPerEngine: 1, queueSize: 0 } });
      if (!got) return;
      const { router, client } = got;
      const held: string[] = [];
      for (const id of ["h0", "h1"]) {
        await client.open(id);
        await client.send(id, requestHeaders(HEADERS));
        await client.send(id, requestBody(JSON.stringify(chat(id))));
        held.push(destination(await client.recv(id)).header!.split(",")[0]!);
        await client.recv(id);
      }
      assert.deepEqual(held.sort(), sims.map(endpointOf).sort(), "one request on each engine");
      assert.deepEqual(
        sims.map((s) => inFlight(router, s)),
        [1, 1],
      );
      await client.open("shed");
      await client.send("shed", requestHeaders(HEADERS));
      await client.send("shed", requestBody(JSON.stringify(chat("shed"))));
      const r = await client.recv("shed");
      const ir = immediate(r);
      assert.equal(ir.status, "TooManyRequests");
      assert.equal(ir.body.error.code, 429);
      assert.match(ir.body.error.message, /wait queue is full/);
      const hdrs = r.msg.immediateResponse.headers.setHeaders.map(
        (o: { header: { key: string } }) => o.header.key,
      );
      assert.ok(hdrs.includes("retry-after") && hdrs.includes("content-type"), hdrs.join(","));
      assert.equal((await client.recv("shed")).eof, true, "the stream ends after the ImmediateResponse");
      // the gateway drops one request (its HTTP stream ends): its slot is free again
      await client.cancel("h0");
      await waitUntil(() => sims.some((s) => inFlight(router, s) === 0), 5_000, "slot freed");
      const freed = sims.find((s) => inFlight(router, s) === 0)!;
      await client.open("next");
      await client.send("next", requestHeaders(HEADERS));
      await client.send("next", requestBody(JSON.stringify(chat("next"))));
      assert.equal(destination(await client.recv("next")).header, endpointOf(freed));
      await client.cancel("h1");
      await client.cancel("next");
      const metrics = await (await fetch(`${router.url}/metrics`)).text();
      assert.match(
        metrics,
        new RegExp(
          `switchyard_requests_total\\{model="${MODEL}",engine="none",status="429",policy="predictive"\\} 1`,
        ),
      );
    });

    it("every engine saturated with room in the queue: the request waits and takes the first freed slot", async (t) => {
      const got = await setup(t, {
        admission: { maxInFlightPerEngine: 1, queueSize: 4, queueTimeout: "20s" },
      });
      if (!got) return;
      const { router, client } = got;
      const held = new Map<string, string>();
      for (const id of ["w0", "w1"]) {
        await client.open(id);
        await client.send(id, requestHeaders(HEADERS));
        await client.send(id, requestBody(JSON.stringify(chat(id))));
        held.set(id, destination(await client.recv(id)).header!.split(",")[0]!);
        await client.recv(id);
      }
      await client.open("waits");
      await client.send("waits", requestHeaders(HEADERS));
      await client.send("waits", requestBody(JSON.stringify(chat("waits"))));
      // waiting in the router's own admission queue (polled: a busy machine takes a while to get it there)
      await waitUntil(() => router.router.queue.depth === 1, 30_000, "the request in the admission queue");
      assert.equal((await client.recv("waits", 300)).timeout, true, "no answer while every engine is full");
      assert.equal(router.router.queue.depth, 1, "still waiting");
      await client.send("w1", responseHeaders({ ":status": "200" }));
      await client.recv("w1");
      await client.send("w1", responseBody("{}", true));
      await client.recv("w1");
      const d = destination(await client.recv("waits"));
      assert.equal(d.header!.split(",")[0], held.get("w1"));
      for (const id of ["w0", "w1", "waits"]) await client.cancel(id);
    });

    it("honours the subset hint: picks only from it, and 503 when nothing in it is eligible", async (t) => {
      const got = await setup(t);
      if (!got) return;
      const { client } = got;
      const [a, b] = sims.map(endpointOf) as [string, string];
      const cases: Array<[unknown, string | 503]> = [
        [[b], b],
        [[a], a],
        [`${a}`, a],
        [["127.0.0.1"], `${a},${b}`],
        [[], 503],
        [["10.9.9.9:8000"], 503],
      ];
      for (const [i, [subset, want]] of cases.entries()) {
        const id = `subset${i}`;
        await client.open(id);
        await client.send(id, requestHeaders(HEADERS, { subset }));
        await client.send(id, requestBody(JSON.stringify(chat("topic 0"))));
        const r = await client.recv(id);
        if (want === 503) {
          const ir = immediate(r);
          assert.equal(ir.status, "ServiceUnavailable", JSON.stringify(subset));
          assert.equal(ir.body.error.code, 503);
        } else {
          const got = destination(r).header!;
          if (want.includes(",")) assert.deepEqual(got.split(",").sort(), want.split(",").sort());
          else assert.equal(got, want, `subset ${JSON.stringify(subset)}`);
        }
        await client.cancel(id);
      }
    });

    it("a fallback that served the request takes the slot, and is counted", async (t) => {
      const got = await setup(t);
      if (!got) return;
      const { router, client } = got;
      await client.open("fb");
      await client.send("fb", requestHeaders(HEADERS));
      await client.send("fb", requestBody(JSON.stringify(chat("fallback"))));
      const [primary, fallback] = destination(await client.recv("fb")).header!.split(",") as [string, string];
      await client.recv("fb");
      const simAt = (ep: string) => sims.find((s) => endpointOf(s) === ep)!;
      assert.equal(inFlight(router, simAt(primary)), 1);
      await client.send("fb", responseHeaders({ ":status": "200" }, { served: fallback }));
      await client.recv("fb");
      assert.equal(inFlight(router, simAt(primary)), 0);
      assert.equal(inFlight(router, simAt(fallback)), 1);
      await client.send("fb", responseBody("{}", true));
      await client.recv("fb");
      assert.equal(inFlight(router, simAt(fallback)), 0);
      const metrics = await (await fetch(`${router.url}/metrics`)).text();
      assert.match(metrics, /^switchyard_epp_served_by_fallback_total 1$/m);
      assert.match(metrics, new RegExp(`engine="${simAt(fallback).url}",status="200"`));
    });

    it("bad requests get the contract's ImmediateResponse with an OpenAI error body", async (t) => {
      const got = await setup(t, { limits: { maxBodyBytes: 64 * 1024 }, aliases: { llama: MODEL } });
      if (!got) return;
      const { client } = got;
      const cases: Array<[string, string | Buffer, string, number, RegExp]> = [
        ["json", "{not json", "BadRequest", 400, /malformed JSON/],
        [
          "model",
          JSON.stringify({ ...chat("x"), model: "nope" }),
          "NotFound",
          404,
          /The model `nope` does not exist/,
        ],
        [
          "big",
          JSON.stringify({ ...chat("x"), pad: "x".repeat(70 * 1024) }),
          "PayloadTooLarge",
          413,
          /exceeds the limit/,
        ],
      ];
      for (const [id, body, status, code, why] of cases) {
        await client.open(id);
        await client.send(id, requestHeaders(HEADERS));
        await client.send(id, requestBody(body));
        const ir = immediate(await client.recv(id));
        assert.equal(ir.status, status, id);
        assert.equal(ir.body.error.code, code);
        assert.match(ir.body.error.message, why);
      }
      const metrics = await (await fetch(`${got.router.url}/metrics`)).text();
      for (const code of [400, 413])
        assert.match(
          metrics,
          new RegExp(`switchyard_requests_total\\{model="none",engine="none",status="${code}"`),
        );
      assert.match(
        metrics,
        new RegExp(`switchyard_requests_total\\{model="nope",engine="none",status="404"`),
      );
      // an alias: the engines know the served name, so the body is rewritten and its length with it
      await client.open("alias");
      await client.send("alias", requestHeaders(HEADERS));
      await client.send("alias", requestBody(JSON.stringify({ ...chat("x"), model: "llama" })));
      const r = await client.recv("alias");
      assert.equal(
        setHeader(r.msg.requestHeaders.response, "content-length"),
        String(JSON.stringify(chat("x")).length),
      );
      const sent = (await client.recv("alias")).msg.requestBody.response.bodyMutation.streamedResponse;
      assert.equal(JSON.parse(b64(sent.body)).model, MODEL);
      await client.cancel("alias");
    });

    it("body modes: long bodies come back in chunks; BUFFERED puts the destination in the body response; STREAMED is refused", async (t) => {
      const got = await setup(t, { aliases: { llama: MODEL } });
      if (!got) return;
      const { client } = got;
      // full duplex, a body over one chunk, sent in three pieces
      const big = JSON.stringify({ ...chat("big"), pad: "y".repeat(150_000) });
      await client.open("fd");
      await client.send("fd", requestHeaders(HEADERS));
      await client.send("fd", requestBody(big.slice(0, 40_000), false));
      await client.send("fd", requestBody(big.slice(40_000, 100_000), false));
      await client.send("fd", requestBody(big.slice(100_000), true));
      destination(await client.recv("fd"));
      const parts: Array<{ body: string; endOfStream?: boolean }> = [];
      while (parts.length === 0 || !parts[parts.length - 1]!.endOfStream)
        parts.push((await client.recv("fd")).msg.requestBody.response.bodyMutation.streamedResponse);
      assert.equal(parts.map((p) => b64(p.body)).join(""), big);
      assert.ok(parts.length >= 3 && parts.every((p) => Buffer.from(p.body, "base64").length <= 62_000));
      await client.cancel("fd");

      await client.open("buf");
      await client.send(
        "buf",
        requestHeaders(HEADERS, {
          protocolConfig: { requestBodyMode: "BUFFERED", responseBodyMode: "BUFFERED" },
        }),
      );
      const first = await client.recv("buf");
      assert.deepEqual(first.msg, { requestHeaders: {} }, "BUFFERED: the headers are let through at once");
      await client.send("buf", requestBody(JSON.stringify(chat("buffered"))));
      const d = destination(await client.recv("buf"), "requestBody");
      assert.ok(d.header && d.header === d.metadata);
      await client.open("bufalias");
      await client.send(
        "bufalias",
        requestHeaders(HEADERS, {
          protocolConfig: { requestBodyMode: "BUFFERED", responseBodyMode: "BUFFERED" },
        }),
      );
      await client.recv("bufalias");
      await client.send("bufalias", requestBody(JSON.stringify({ ...chat("buffered"), model: "llama" })));
      const ba = (await client.recv("bufalias")).msg.requestBody.response;
      assert.equal(
        JSON.parse(b64(ba.bodyMutation.body)).model,
        MODEL,
        "BUFFERED: an alias replaces the body",
      );
      assert.equal(setHeader(ba, "content-length"), String(Buffer.from(b64(ba.bodyMutation.body)).length));
      await client.cancel("bufalias");
      await client.send("buf", responseHeaders({ ":status": "200" }));
      await client.recv("buf");
      await client.send("buf", responseBody("{}", true));
      assert.deepEqual(
        (await client.recv("buf")).msg,
        { responseBody: {} },
        "BUFFERED response: no body echo",
      );
      await client.cancel("buf");

      await client.open("st");
      await client.send("st", requestHeaders(HEADERS, { protocolConfig: { requestBodyMode: "STREAMED" } }));
      const st = await client.recv("st");
      assert.equal(st.error?.code, "Unimplemented");
      assert.match(st.error!.message, /FULL_DUPLEX_STREAMED/);

      // a request without a body (a GET): the least busy engine, no model needed
      await client.open("get");
      await client.send(
        "get",
        requestHeaders({ ":method": "GET", ":path": "/v1/models" }, { endOfStream: true }),
      );
      assert.ok(sims.map(endpointOf).includes(destination(await client.recv("get")).header!));
      await client.cancel("get");
    });

    it("gRPC health: liveness, readiness and the ext_proc service name; unknown services are NOT_FOUND", async (t) => {
      const got = await setup(t);
      if (!got) return;
      const { client } = got;
      for (const s of ["liveness", "readiness", "envoy.service.ext_proc.v3.ExternalProcessor", ""])
        assert.equal((await client.health(s)).status, "SERVING", s);
      assert.equal((await client.health("nope")).error?.code, "NotFound");
    });
  },
);
