// The interop `otel` group: a real OpenTelemetry Collector (v0.165, built from the Go module proxy by
// build-otelcol.sh, never committed) receives the router's spans over OTLP/HTTP and passes them on to a
// receiver here (its OTLP/HTTP exporter, JSON), which reads them as any backend would: the request's
// SERVER span continuing the client's trace with the GenAI semantic conventions' attributes, the
// engine attempt's CLIENT span under it, the router's resource. The engine is a sim, so the group needs
// none of the Python peers.
import { spawnSync } from "node:child_process";
import { mkdirSync, writeFileSync } from "node:fs";
import { createServer } from "node:http";
import { join } from "node:path";

const HERE = import.meta.dirname;
const MODEL = "Qwen/Qwen2.5-0.5B-Instruct";

/** The collector binary, built once into the peers cache. */
function collectorBinary(peers, log) {
  const t0 = Date.now();
  const r = spawnSync("bash", [join(HERE, "build-otelcol.sh"), join(peers, "otel")], {
    encoding: "utf8",
    timeout: 3600_000,
  });
  if (r.status !== 0)
    throw new Error(`build-otelcol.sh failed (${r.status}): ${(r.stderr || String(r.error)).slice(-1500)}`);
  const secs = (Date.now() - t0) / 1000;
  if (secs > 5) log(`built the OpenTelemetry Collector in ${secs.toFixed(0)} s`);
  return r.stdout.trim().split("\n").at(-1);
}

/** An OTLP/HTTP JSON receiver standing for a tracing backend behind the collector. */
async function backend() {
  const bodies = [];
  const server = createServer((req, res) => {
    const chunks = [];
    req.on("data", (c) => chunks.push(c));
    req.on("end", () => {
      if (req.url === "/v1/traces") {
        try {
          bodies.push(JSON.parse(Buffer.concat(chunks).toString("utf8")));
        } catch {
          // not JSON: counted as nothing
        }
      }
      res.writeHead(200, { "content-type": "application/json" });
      res.end("{}");
    });
  });
  await new Promise((r) => server.listen(0, "127.0.0.1", r));
  return {
    url: `http://127.0.0.1:${server.address().port}`,
    bodies,
    close: () => new Promise((r) => server.close(r)),
  };
}

/** every span the backend got, with its resource's attributes */
function spansOf(bodies) {
  const out = [];
  for (const b of bodies)
    for (const rs of b.resourceSpans ?? [])
      for (const ss of rs.scopeSpans ?? [])
        for (const s of ss.spans ?? []) out.push({ ...s, resource: attrs(rs.resource?.attributes ?? []) });
  return out;
}

function attrs(list) {
  const out = {};
  for (const { key, value } of list)
    out[key] =
      value.stringValue ??
      (value.intValue !== undefined ? Number(value.intValue) : undefined) ??
      value.doubleValue ??
      value.boolValue ??
      value.arrayValue?.values?.map((v) => v.stringValue);
  return out;
}

export async function otelChecks(h) {
  const { start, stop, check, until, freePort, log, RUN, CLI, PEERS } = h;
  const dir = join(RUN, "otel");
  mkdirSync(dir, { recursive: true });

  let bin;
  await check(
    "an OpenTelemetry Collector v0.165 built from the Go module proxy (once, into the peers cache)",
    async () => {
      bin = collectorBinary(PEERS, log);
      const r = spawnSync(bin, ["--version"], { encoding: "utf8" });
      return r.stdout.trim();
    },
  );
  if (!bin) return;

  const sink = await backend();
  const [otlpPort, enginePort, routerPort] = [await freePort(), await freePort(), await freePort()];
  const config = join(dir, "collector.yaml");
  writeFileSync(
    config,
    [
      "receivers:",
      "  otlp:",
      "    protocols:",
      "      http:",
      `        endpoint: 127.0.0.1:${otlpPort}`,
      "processors:",
      "  batch:",
      "    timeout: 200ms",
      "exporters:",
      "  debug:",
      "    verbosity: basic",
      "  otlp_http:",
      `    endpoint: ${sink.url}`,
      "    encoding: json",
      "    compression: none",
      "service:",
      "  telemetry:",
      "    metrics:",
      "      level: none",
      "  pipelines:",
      "    traces:",
      "      receivers: [otlp]",
      "      processors: [batch]",
      "      exporters: [debug, otlp_http]",
      "",
    ].join("\n"),
  );
  const collector = start("otelcol", bin, ["--config", `file:${config}`]);
  const engine = start("otel-sim", process.execPath, [
    CLI,
    "sim",
    MODEL,
    "--host",
    "127.0.0.1",
    "--port",
    String(enginePort),
    "--time-scale",
    "0.05",
  ]);
  let router;
  try {
    await check(
      "the router's spans reach a real OpenTelemetry Collector over OTLP/HTTP and leave it whole",
      async () => {
        await until("the collector", () => /Everything is ready/.test(collector.log()), 60_000, collector);
        await until(
          "the sim",
          async () => (await fetch(`http://127.0.0.1:${enginePort}/health`)).ok,
          60_000,
          engine,
        );
        router = start("otel-router", process.execPath, [
          CLI,
          "router",
          "--host",
          "127.0.0.1",
          "--port",
          String(routerPort),
          "--backend",
          `http://127.0.0.1:${enginePort}`,
          "--otlp-endpoint",
          `http://127.0.0.1:${otlpPort}`,
        ]);
        const base = `http://127.0.0.1:${routerPort}`;
        // ready, not only alive: an engine in rotation with its models known (on a busy machine the
        // first /v1/models probe may come after /health answers)
        await until("the router", async () => (await fetch(`${base}/ready`)).ok, 60_000, router);
        const clientTrace = "0af7651916cd43dd8448eb211c80319c";
        const clientSpan = "b7ad6b7169203331";
        const chat = await fetch(`${base}/v1/chat/completions`, {
          method: "POST",
          headers: {
            "content-type": "application/json",
            traceparent: `00-${clientTrace}-${clientSpan}-01`,
            "x-request-id": "otel-chat",
          },
          body: JSON.stringify({
            model: MODEL,
            messages: [{ role: "user", content: "Hello!" }],
            max_tokens: 8,
          }),
        });
        const answer = await chat.json();
        if (chat.status !== 200) throw new Error(`chat: HTTP ${chat.status} ${JSON.stringify(answer)}`);
        const streamed = await fetch(`${base}/v1/completions`, {
          method: "POST",
          headers: { "content-type": "application/json", "x-request-id": "otel-stream" },
          body: JSON.stringify({
            model: MODEL,
            prompt: "Once upon a time",
            max_tokens: 6,
            stream: true,
            stream_options: { include_usage: true },
          }),
        });
        await streamed.text();
        // the router flushes its exporter as it stops; the collector's batch passes them on within 200 ms
        await stop(router);
        await until("the spans at the backend", () => spansOf(sink.bodies).length >= 4, 30_000, collector);

        const spans = spansOf(sink.bodies);
        const server = (id) => spans.find((s) => attrs(s.attributes)["switchyard.request_id"] === id);
        const c = server("otel-chat");
        if (!c) throw new Error(`no server span for the chat among ${spans.map((s) => s.name).join(", ")}`);
        const a = attrs(c.attributes);
        const problems = [];
        const want = (cond, what) => cond || problems.push(what);
        want(c.traceId === clientTrace, `trace ${c.traceId}, not the client's`);
        want(c.parentSpanId === clientSpan, `parent ${c.parentSpanId}, not the client's span`);
        want(c.kind === 2, `kind ${c.kind}, not SERVER`);
        want(a["gen_ai.operation.name"] === "chat", `gen_ai.operation.name ${a["gen_ai.operation.name"]}`);
        want(a["gen_ai.provider.name"] === "vllm", `gen_ai.provider.name ${a["gen_ai.provider.name"]}`);
        want(a["gen_ai.request.model"] === MODEL, `gen_ai.request.model ${a["gen_ai.request.model"]}`);
        want(
          a["gen_ai.request.max_tokens"] === 8,
          `gen_ai.request.max_tokens ${a["gen_ai.request.max_tokens"]}`,
        );
        want(
          a["gen_ai.usage.input_tokens"] === answer.usage.prompt_tokens,
          `gen_ai.usage.input_tokens ${a["gen_ai.usage.input_tokens"]}, the answer's ${answer.usage.prompt_tokens}`,
        );
        want(
          a["gen_ai.usage.output_tokens"] === answer.usage.completion_tokens,
          `gen_ai.usage.output_tokens ${a["gen_ai.usage.output_tokens"]}, the answer's ${answer.usage.completion_tokens}`,
        );
        want(a["gen_ai.response.id"] === answer.id, `gen_ai.response.id ${a["gen_ai.response.id"]}`);
        want(
          c.resource["service.name"] === "switchyard-router",
          `service.name ${c.resource["service.name"]}`,
        );
        const attempt = spans.find((s) => s.parentSpanId === c.spanId);
        want(attempt?.kind === 3, "no CLIENT span under the server span");
        want(attrs(attempt?.attributes ?? [])["http.response.status_code"] === 200, "the attempt's status");
        const s = server("otel-stream");
        const sa = attrs(s?.attributes ?? []);
        want(
          sa["gen_ai.operation.name"] === "text_completion",
          `streamed: gen_ai.operation.name ${sa["gen_ai.operation.name"]}`,
        );
        want(
          sa["gen_ai.usage.output_tokens"] === 6,
          `streamed: gen_ai.usage.output_tokens ${sa["gen_ai.usage.output_tokens"]}`,
        );
        want(s?.traceId !== clientTrace, "the streamed request has a trace of its own");
        if (problems.length > 0) throw new Error(problems.join("; "));
        // the debug exporter logs each batch it saw: "Traces ... "spans": N"
        let logged = 0;
        for (const m of collector.log().matchAll(/\tTraces\t.*"spans": (\d+)/g)) logged += Number(m[1]);
        return `${spans.length} spans through the collector (its debug exporter logged ${logged}); chat: trace continued, gen_ai.usage ${a["gen_ai.usage.input_tokens"]} in / ${a["gen_ai.usage.output_tokens"]} out as the answer said, attempt span under it; stream: ${sa["gen_ai.usage.output_tokens"]} output tokens from the final usage chunk`;
      },
    );
  } finally {
    if (router) await stop(router);
    await stop(engine);
    await stop(collector);
    await sink.close();
  }
}
