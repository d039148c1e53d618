// Tracing: the router's spans (OpenTelemetry's SDK and OTLP/HTTP exporter) reach a local receiver as
// OTLP JSON with the GenAI semantic conventions' attributes; the client's trace is continued and our
// attempt span is the engine's parent; usage is read from what passes by (never injected); the
// exporter's queue is bounded and drops count.
import { test } from "node:test";
import assert from "node:assert/strict";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { SPAN_KIND, Tracer, isSampled, parseTraceparent, traceparentOf } from "../../src/obs/tracing.js";
import { startFakeEngine } from "../../bench/support/fakes/fake-engine.js";
import { post, routerFor } from "../helpers/router.js";
import { freePort } from "../../bench/support/cli.js";

/** span kinds as OTLP numbers them (SPAN_KIND_INTERNAL = 1, SERVER = 2, CLIENT = 3) */
const OTLP_KIND = { internal: 1, server: 2, client: 3 } as const;

interface OtlpAttr {
  key: string;
  value: {
    stringValue?: string;
    intValue?: string | number;
    doubleValue?: number;
    boolValue?: boolean;
    arrayValue?: { values: { stringValue?: string }[] };
  };
}
interface OtlpSpan {
  traceId: string;
  spanId: string;
  parentSpanId?: string;
  name: string;
  kind: number;
  startTimeUnixNano: string;
  endTimeUnixNano: string;
  attributes: OtlpAttr[];
  events?: { name: string; timeUnixNano: string }[];
  status: { code: number };
}

async function otlpReceiver(): Promise<{
  url: string;
  bodies: unknown[];
  spans: () => OtlpSpan[];
  server: Server;
}> {
  const bodies: unknown[] = [];
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      assert.equal(req.method, "POST");
      assert.equal(req.url, "/v1/traces");
      assert.match(String(req.headers["content-type"]), /application\/json/);
      bodies.push(JSON.parse(Buffer.concat(chunks).toString("utf8")));
      res.writeHead(200, { "content-type": "application/json" });
      res.end("{}");
    });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const spans = () =>
    bodies.flatMap((b) =>
      (b as { resourceSpans: { scopeSpans: { spans: OtlpSpan[] }[] }[] }).resourceSpans.flatMap((rs) =>
        rs.scopeSpans.flatMap((ss) => ss.spans),
      ),
    );
  return { url, bodies, spans, server };
}

function attrs(s: OtlpSpan): Record<string, string | number | boolean | undefined> {
  const out: Record<string, string | number | boolean | undefined> = {};
  for (const a of s.attributes) {
    const v = a.value;
    out[a.key] =
      v.stringValue ?? (v.intValue !== undefined ? Number(v.intValue) : (v.doubleValue ?? v.boolValue));
  }
  return out;
}

test("parseTraceparent accepts W3C version 00 headers and rejects malformed or all-zero ids", () => {
  const tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
  const sc = parseTraceparent(tp)!;
  assert.equal(sc.traceId, "4bf92f3577b34da6a3ce929d0e0e4736");
  assert.equal(sc.spanId, "00f067aa0ba902b7");
  assert.equal(isSampled(sc), true);
  assert.equal(isSampled(parseTraceparent(tp.replace(/-01$/, "-00"))!), false);
  assert.equal(parseTraceparent("00-00000000000000000000000000000000-00f067aa0ba902b7-01"), undefined);
  assert.equal(parseTraceparent("ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"), undefined);
  assert.equal(parseTraceparent("garbage"), undefined);
  assert.equal(parseTraceparent(undefined), undefined);
});

test("a span under a client's traceparent names the same trace and itself in the next hop's traceparent, sampled as a trusted client asked", async () => {
  const t = new Tracer({ endpoint: "http://127.0.0.1:1", flushInterval: 60_000, trustClientSampling: true });
  try {
    const client = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    const span = t.startSpan("s", SPAN_KIND.server, parseTraceparent(client));
    const next = parseTraceparent(traceparentOf(span))!;
    assert.equal(next.traceId, "4bf92f3577b34da6a3ce929d0e0e4736");
    assert.equal(next.spanId, span.spanContext().spanId);
    assert.notEqual(next.spanId, "00f067aa0ba902b7");
    assert.equal(isSampled(next), true);
    const unsampled = t.startSpan("u", SPAN_KIND.server, parseTraceparent(client.replace(/-01$/, "-00")));
    assert.equal(isSampled(parseTraceparent(traceparentOf(unsampled))!), false);
  } finally {
    await t.shutdown();
  }
});

test("a client's sampled flag is ignored unless trusted: with sampleRatio 0 its span records nothing and the next hop is told not to sample", async () => {
  const client = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
  const untrusted = new Tracer({ endpoint: "http://127.0.0.1:1", flushInterval: 60_000, sampleRatio: 0 });
  const trusted = new Tracer({
    endpoint: "http://127.0.0.1:1",
    flushInterval: 60_000,
    sampleRatio: 0,
    trustClientSampling: true,
  });
  const always = new Tracer({ endpoint: "http://127.0.0.1:1", flushInterval: 60_000, sampleRatio: 1 });
  try {
    const u = untrusted.startSpan("u", SPAN_KIND.server, parseTraceparent(client));
    assert.equal(u.isRecording(), false);
    const next = parseTraceparent(traceparentOf(u))!;
    assert.equal(next.traceId, "4bf92f3577b34da6a3ce929d0e0e4736", "the client's trace is still named");
    assert.equal(isSampled(next), false);
    assert.equal(trusted.startSpan("t", SPAN_KIND.server, parseTraceparent(client)).isRecording(), true);
    // the router's own ratio decides either way: at 1 a client's unsampled flag is recorded too
    const off = parseTraceparent(client.replace(/-01$/, "-00"));
    assert.equal(always.startSpan("a", SPAN_KIND.server, off).isRecording(), true);
  } finally {
    await Promise.all([untrusted.shutdown(), trusted.shutdown(), always.shutdown()]);
  }
});

test("through the router with sampleRatio 0: a client's sampled traceparent makes no span unless tracing.trustClientSampling", async () => {
  const otlp = await otlpReceiver();
  const engine = await startFakeEngine({ models: ["fake/m"] });
  const tp = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
  try {
    for (const trust of [false, true]) {
      const router = await routerFor([engine.url], {
        tracing: { otlpEndpoint: otlp.url, sampleRatio: 0, trustClientSampling: trust },
      });
      try {
        const before = otlp.spans().length;
        const r = await post(
          `${router.url}/v1/completions`,
          { model: "fake/m", prompt: "x", max_tokens: 2 },
          { traceparent: tp },
        );
        assert.equal(r.status, 200);
        await r.arrayBuffer();
        await router.router.tracer!.flush();
        const made = otlp.spans().length - before;
        const upstream = parseTraceparent(engine.lastHeaders?.traceparent)!;
        if (trust) {
          assert.ok(made >= 2, `a trusted client's flag makes the server and attempt spans (${made})`);
          assert.equal(isSampled(upstream), true);
        } else {
          assert.equal(made, 0, "no span for a client's flag");
          assert.equal(isSampled(upstream), false, "the engine is told not to sample either");
        }
      } finally {
        await router.close();
      }
    }
  } finally {
    await engine.close();
    await new Promise<void>((r) => otlp.server.close(() => r()));
  }
});

test("router spans: GenAI attributes, client trace continued, attempt span as the engine's parent, usage as it passed", async () => {
  const otlp = await otlpReceiver();
  const engine = await startFakeEngine({ models: ["fake/m"] });
  const router = await routerFor([engine.url], { tracing: { otlpEndpoint: otlp.url } });
  const clientTrace = "0af7651916cd43dd8448eb211c80319c";
  const clientSpan = "b7ad6b7169203331";
  try {
    const r1 = await post(
      `${router.url}/v1/chat/completions`,
      { model: "fake/m", messages: [{ role: "user", content: "hi" }], max_tokens: 3, temperature: 0.5 },
      { traceparent: `00-${clientTrace}-${clientSpan}-01`, "x-request-id": "req-1" },
    );
    assert.equal(r1.status, 200);
    await r1.json();
    const upstream = parseTraceparent(engine.lastHeaders?.traceparent);
    assert.ok(upstream, "the engine got a traceparent");
    assert.equal(upstream.traceId, clientTrace, "same trace as the client's");
    assert.notEqual(upstream.spanId, clientSpan, "the router's attempt span is the engine's parent");

    const streamBody = {
      model: "fake/m",
      prompt: "hello",
      max_tokens: 5,
      stream: true,
      stream_options: { include_usage: true },
    };
    const r2 = await post(`${router.url}/v1/completions`, streamBody, { "x-request-id": "req-2" });
    assert.equal(r2.status, 200);
    await r2.text();
    // tracing changes nothing in the body; the one field added is migration's request for token ids
    assert.deepEqual(
      JSON.parse(engine.lastBody),
      { ...streamBody, return_token_ids: true },
      "request body unchanged but for return_token_ids",
    );

    const r3 = await post(
      `${router.url}/v1/completions`,
      { model: "fake/m", prompt: "hello", max_tokens: 4, stream: true },
      { "x-request-id": "req-3" },
    );
    await r3.text();
    assert.equal(JSON.parse(engine.lastBody).stream_options, undefined, "no include_usage injected");
  } finally {
    await router.close(); // flushes the exporter
    await engine.close();
  }
  try {
    const spans = otlp.spans();
    const body = otlp.bodies[0] as { resourceSpans: { resource: { attributes: OtlpAttr[] } }[] };
    assert.deepEqual(
      body.resourceSpans[0]!.resource.attributes.find((a) => a.key === "service.name")?.value,
      { stringValue: "switchyard-router" },
    );
    for (const s of spans) {
      assert.match(s.traceId, /^[0-9a-f]{32}$/);
      assert.match(s.spanId, /^[0-9a-f]{16}$/);
      assert.match(s.startTimeUnixNano, /^\d{19}$/);
      assert.ok(BigInt(s.endTimeUnixNano) >= BigInt(s.startTimeUnixNano));
    }
    const server = (id: string) =>
      spans.find((s) => s.kind === OTLP_KIND.server && attrs(s)["switchyard.request_id"] === id)!;

    const chat = server("req-1");
    assert.ok(chat, "server span of the chat request");
    assert.equal(chat.name, "chat fake/m");
    assert.equal(chat.traceId, clientTrace);
    assert.equal(chat.parentSpanId, clientSpan);
    const a = attrs(chat);
    assert.equal(a["gen_ai.operation.name"], "chat");
    assert.equal(a["gen_ai.provider.name"], "vllm");
    assert.equal(a["gen_ai.system"], "vllm");
    assert.equal(a["gen_ai.request.model"], "fake/m");
    assert.equal(a["gen_ai.response.model"], "fake/m");
    assert.equal(a["gen_ai.request.max_tokens"], 3);
    assert.equal(a["gen_ai.request.temperature"], 0.5);
    assert.equal(a["gen_ai.usage.input_tokens"], 7);
    assert.equal(a["gen_ai.usage.output_tokens"], 3);
    assert.equal(a["http.response.status_code"], 200);
    assert.ok(
      typeof a["gen_ai.server.time_to_first_token"] === "number" &&
        a["gen_ai.server.time_to_first_token"] > 0,
    );
    assert.ok(chat.events?.some((e) => e.name === "gen_ai.first_token"));
    const attempt = spans.find((s) => s.parentSpanId === chat.spanId);
    assert.ok(attempt, "attempt span under the server span");
    assert.equal(attempt.kind, OTLP_KIND.client);
    assert.equal(attrs(attempt)["http.response.status_code"], 200);

    const streamed = attrs(server("req-2"));
    assert.equal(streamed["gen_ai.operation.name"], "text_completion");
    assert.equal(streamed["gen_ai.usage.input_tokens"], 7, "from the final usage chunk");
    assert.equal(streamed["gen_ai.usage.output_tokens"], 5);
    const noUsage = server("req-3");
    assert.notEqual(noUsage.traceId, clientTrace, "a request without traceparent starts its own trace");
    assert.equal(noUsage.parentSpanId, undefined);
    assert.equal(attrs(noUsage)["gen_ai.usage.output_tokens"], undefined, "nothing invented");
  } finally {
    await new Promise<void>((r) => otlp.server.close(() => r()));
  }
});

test("a client's X-Request-Id of kilobytes goes into the span cut to 200 characters, and no string attribute passes 256", async () => {
  const otlp = await otlpReceiver();
  const engine = await startFakeEngine({ models: ["fake/m"] });
  const router = await routerFor([engine.url], { tracing: { otlpEndpoint: otlp.url } });
  const long = "r".repeat(12_000);
  try {
    const r = await post(
      `${router.url}/v1/completions`,
      { model: "fake/m", prompt: "x", max_tokens: 1 },
      { "x-request-id": long },
    );
    assert.equal(r.status, 200);
    await r.arrayBuffer();
  } finally {
    await router.close(); // flushes the exporter
    await engine.close();
  }
  try {
    const server = otlp.spans().find((s) => s.kind === OTLP_KIND.server)!;
    assert.ok(server, "the request's span");
    assert.equal(attrs(server)["switchyard.request_id"], long.slice(0, 200));
    for (const s of otlp.spans())
      for (const a of s.attributes)
        assert.ok((a.value.stringValue ?? "").length <= 256, `${a.key}: ${a.value.stringValue?.length}`);
  } finally {
    await new Promise<void>((r) => otlp.server.close(() => r()));
  }
});

test("tracing off: the client's traceparent passes through untouched and nothing is exported", async () => {
  const engine = await startFakeEngine({ models: ["fake/m"] });
  const router = await routerFor([engine.url]);
  try {
    const tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    const r = await post(
      `${router.url}/v1/completions`,
      { model: "fake/m", prompt: "x" },
      { traceparent: tp },
    );
    await r.arrayBuffer();
    assert.equal(engine.lastHeaders?.traceparent, tp);
    assert.equal(router.router.tracer, undefined);
    const m = await (await fetch(`${router.url}/metrics`)).text();
    assert.match(m, /^switchyard_tracing_spans_exported_total 0$/m);
  } finally {
    await router.close();
    await engine.close();
  }
});

test("exporter: bounded queue drops and counts; an unreachable collector counts failed spans; shutdown flushes", async () => {
  const dead = await freePort();
  const t = new Tracer({
    endpoint: `http://127.0.0.1:${dead}`,
    maxQueue: 2,
    flushInterval: 60_000,
    exportTimeout: 2000,
  });
  for (let i = 0; i < 5; i++) t.startSpan(`s${i}`, SPAN_KIND.internal).end();
  assert.equal(t.dropped.queue_full, 3);
  await t.shutdown();
  assert.equal(t.dropped.export_failed, 2);
  assert.equal(t.exported, 0);
  t.startSpan("late", SPAN_KIND.internal).end();
  assert.equal(t.dropped.queue_full, 4, "no spans taken after shutdown");

  const otlp = await otlpReceiver();
  try {
    const u = new Tracer({ endpoint: `${otlp.url}/v1/traces`, maxBatch: 3, flushInterval: 60_000 });
    const unsampled = new Tracer({ endpoint: otlp.url, sampleRatio: 0 });
    unsampled.startSpan("never", SPAN_KIND.internal).end();
    await unsampled.shutdown();
    for (let i = 0; i < 7; i++) u.startSpan(`s${i}`, SPAN_KIND.internal).setAttribute("i", i).end();
    await u.shutdown();
    assert.equal(u.exported, 7);
    assert.deepEqual(
      otlp.spans().map((s) => s.name),
      ["s0", "s1", "s2", "s3", "s4", "s5", "s6"],
    );
    assert.ok(otlp.bodies.length >= 3, "batches of at most 3");
  } finally {
    await new Promise<void>((r) => otlp.server.close(() => r()));
  }
});
