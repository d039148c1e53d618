// A backend reached over cleartext HTTP/2 (`protocol: h2c`): the upstream here is node:http2 without
// HTTP/1.1 fallback, so every answer it gives proves the router spoke h2c. Through the router with
// the openai client: JSON and SSE answers, streams multiplexed on one connection (and spread over
// several at the per-connection stream cap), a client abort resetting only its own upstream stream,
// an upstream dying or resetting a stream mid-response ending the client's stream with an SSE error
// event and [DONE] as over HTTP/1.1, and the health, /v1/models and /metrics loops over h2c.
import { test } from "node:test";
import assert from "node:assert/strict";
import {
  createServer,
  type Http2Server,
  type Http2Session,
  type IncomingHttpHeaders,
  type ServerHttp2Stream,
} from "node:http2";
import { request as httpRequest } from "node:http";
import type { AddressInfo } from "node:net";
import OpenAI from "openai";
import { parseConfig, startRouter } from "../../../src/router/index.js";
import { post, routerFor, waitUntil } from "../../helpers/router.js";

const MODEL = "h2/m";

type StreamFault = "none" | "die" | "rst";

interface GenerationRecord {
  /** the stream was reset by the router (RST_STREAM) before the upstream ended it */
  aborted: boolean;
  /** chunks written before it closed */
  sent: number;
  closed: boolean;
  session: Http2Session | undefined;
}

interface H2Upstream {
  url: string;
  /** h2 sessions that carried a request so far, and those open now (an HTTP/1.1 request to this
   * h2-only server gets a session too, which fails at the preface: those are not counted) */
  sessionsUsed: number;
  readonly sessionsOpen: number;
  /** GET paths answered, by path */
  gets: Map<string, number>;
  generations: GenerationRecord[];
  /** the next streamed generation dies (whole session destroyed) or is reset after `faultAfter` chunks */
  fault: StreamFault;
  faultAfter: number;
  tokenIntervalMs: number;
  /** non-streaming answers are held (in `held`) until the test releases them: several requests in
   * flight at once, however fast or slow the router forwards them */
  holdJson: boolean;
  held: (() => void)[];
  /** the most streams open at once on one h2 session */
  peakStreamsPerSession: number;
  close(): Promise<void>;
}

async function startH2Upstream(): Promise<H2Upstream> {
  const sessions = new Set<Http2Session>();
  const timers = new Set<NodeJS.Timeout>();
  const server: Http2Server = createServer();
  const up: H2Upstream = {
    url: "",
    sessionsUsed: 0,
    get sessionsOpen() {
      return sessions.size;
    },
    gets: new Map(),
    generations: [],
    fault: "none",
    faultAfter: 2,
    tokenIntervalMs: 20,
    holdJson: false,
    held: [],
    peakStreamsPerSession: 0,
    close: async () => {
      for (const t of timers) clearTimeout(t);
      // every session, not only those that carried a stream: server.close() waits for all of them, and
      // a router's idle h2c connection can outlive Router.close() (seen on a loaded machine)
      for (const s of connected) s.destroy();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
  const connected = new Set<Http2Session>();
  server.on("session", (s: Http2Session) => {
    connected.add(s);
    s.on("close", () => connected.delete(s));
  });
  const later = (ms: number, fn: () => void) => {
    const t = setTimeout(() => {
      timers.delete(t);
      fn();
    }, ms);
    timers.add(t);
  };
  const openStreams = new Map<Http2Session, number>();
  server.on("stream", (stream: ServerHttp2Stream, headers: IncomingHttpHeaders) => {
    stream.on("error", () => undefined);
    const s = stream.session;
    if (s && !sessions.has(s)) {
      up.sessionsUsed++;
      sessions.add(s);
      s.on("close", () => sessions.delete(s));
    }
    if (s) {
      const open = (openStreams.get(s) ?? 0) + 1;
      openStreams.set(s, open);
      up.peakStreamsPerSession = Math.max(up.peakStreamsPerSession, open);
      stream.once("close", () => {
        const left = openStreams.get(s)! - 1;
        if (left === 0) openStreams.delete(s);
        else openStreams.set(s, left);
      });
    }
    const path = String(headers[":path"] ?? "/").split("?")[0]!;
    if (headers[":method"] === "GET") {
      up.gets.set(path, (up.gets.get(path) ?? 0) + 1);
      if (path === "/v1/models") {
        stream.respond({ ":status": 200, "content-type": "application/json" });
        stream.end(
          JSON.stringify({
            object: "list",
            data: [{ id: MODEL, object: "model", created: 1, owned_by: "vllm", root: MODEL, parent: null }],
          }),
        );
      } else if (path === "/metrics") {
        stream.respond({ ":status": 200, "content-type": "text/plain" });
        stream.end("vllm:num_requests_running 0\nvllm:num_requests_waiting 0\n");
      } else {
        stream.respond({ ":status": path === "/health" ? 200 : 404 });
        stream.end();
      }
      return;
    }
    const chunks: Buffer[] = [];
    stream.on("data", (c: Buffer) => chunks.push(c));
    stream.on("end", () => {
      const doc = JSON.parse(Buffer.concat(chunks).toString("utf8")) as {
        max_tokens?: number;
        stream?: boolean;
      };
      const n = doc.max_tokens ?? 4;
      if (doc.stream !== true) {
        const answer = () => {
          if (stream.closed) return;
          stream.respond({ ":status": 200, "content-type": "application/json" });
          stream.end(
            JSON.stringify({
              id: "cmpl-h2",
              object: "text_completion",
              created: 1,
              model: MODEL,
              choices: [{ index: 0, text: "tok ".repeat(n).trimEnd(), finish_reason: "length" }],
              usage: { prompt_tokens: 1, completion_tokens: n, total_tokens: n + 1 },
            }),
          );
        };
        if (up.holdJson) up.held.push(answer);
        else answer();
        return;
      }
      streamTokens(stream, n);
    });
  });

  const streamTokens = (stream: ServerHttp2Stream, n: number) => {
    const rec: GenerationRecord = { aborted: false, sent: 0, closed: false, session: stream.session };
    up.generations.push(rec);
    const fault = up.fault;
    up.fault = "none";
    stream.on("aborted", () => (rec.aborted = true));
    stream.on("close", () => (rec.closed = true));
    stream.respond({ ":status": 200, "content-type": "text/event-stream; charset=utf-8" });
    const tick = () => {
      if (stream.closed || stream.destroyed) return;
      if (fault !== "none" && rec.sent === up.faultAfter) {
        // destroy with an error sends RST_STREAM(INTERNAL_ERROR); close(code) would end the
        // response cleanly (END_STREAM) before resetting
        if (fault === "die") stream.session?.destroy();
        else stream.destroy(new Error("upstream reset"));
        return;
      }
      if (rec.sent < n) {
        stream.write(
          `data: {"id":"c","object":"text_completion","created":1,"model":"${MODEL}","choices":[{"index":0,"text":" tok${rec.sent}","finish_reason":null}]}\n\n`,
        );
        rec.sent++;
        later(up.tokenIntervalMs, tick);
        return;
      }
      stream.end("data: [DONE]\n\n");
    };
    tick();
  };

  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  up.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return up;
}

/** POST the way `curl --http2 http://…` does: HTTP/1.1 offering an h2c upgrade, HTTP2-Settings included. */
function postOfferingUpgrade(url: string, body: unknown): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(`${url}/v1/completions`, {
      method: "POST",
      headers: {
        "content-type": "application/json",
        connection: "Upgrade, HTTP2-Settings",
        upgrade: "h2c",
        "http2-settings": "AAMAAABkAAQCAAAAAAIAAAAA",
      },
    });
    req.on("response", (res) => {
      let text = "";
      res.setEncoding("utf8");
      res.on("data", (c: string) => (text += c));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, text }));
    });
    req.on("error", reject);
    req.end(JSON.stringify(body));
  });
}

const client = (url: string) =>
  new OpenAI({ baseURL: `${url}/v1`, apiKey: "x", maxRetries: 0, timeout: 10_000 });

async function collectStream(
  c: OpenAI,
  maxTokens: number,
  onChunk?: (text: string) => void,
): Promise<string[]> {
  const s = await c.completions.create({ model: MODEL, prompt: "x", max_tokens: maxTokens, stream: true });
  const texts: string[] = [];
  for await (const chunk of s) {
    const t = chunk.choices[0]?.text ?? "";
    texts.push(t);
    onChunk?.(t);
  }
  return texts;
}

test("config: protocol h2c, the h2c:// shorthand, and what does not combine", () => {
  const c = parseConfig({
    backends: [
      "h2c://e0:8000/",
      { url: "h2c://e1:8000", weight: 0.5 },
      { url: "http://e2:8000", protocol: "h2c", maxConcurrentStreams: 500 },
      "http://e3:8000",
    ],
  });
  assert.deepEqual(c.backends, [
    { url: "http://e0:8000", weight: 1, protocol: "h2c" },
    { url: "http://e1:8000", weight: 0.5, protocol: "h2c" },
    { url: "http://e2:8000", weight: 1, protocol: "h2c", maxConcurrentStreams: 500 },
    { url: "http://e3:8000", weight: 1 },
  ]);
  assert.throws(
    () => parseConfig({ backends: [{ url: "https://e:1", protocol: "h2c" }] }),
    /backends\.0\.url/,
  );
  assert.throws(() => parseConfig({ backends: [{ url: "h2c://e:1", protocol: "http1" }] }), /protocol/);
  assert.throws(
    () => parseConfig({ backends: [{ url: "http://e:1", maxConcurrentStreams: 8 }] }),
    /maxConcurrentStreams/,
  );
  assert.throws(() => parseConfig({ backends: [{ url: "h2c://e:1", protocol: "quic" }] }), /protocol/);
});

test("h2c backend: health, models and metrics loops; JSON and SSE answers, streams multiplexed", async () => {
  const up = await startH2Upstream();
  const router = await routerFor([`${up.url.replace("http://", "h2c://")}`], { policy: "round-robin" });
  try {
    const engine = router.router.registry.engines.get(up.url)!;
    assert.equal(engine.protocol, "h2c");
    // readiness needed /health and /v1/models answered by an h2-only server
    assert.ok((up.gets.get("/health") ?? 0) >= 1);
    assert.ok((up.gets.get("/v1/models") ?? 0) >= 1);
    await waitUntil(() => (up.gets.get("/metrics") ?? 0) >= 2, 3000, "metrics scraped over h2c");
    const models = await (await fetch(`${router.url}/v1/models`)).json();
    assert.deepEqual(
      (models as { data: { id: string }[] }).data.map((m) => m.id),
      [MODEL],
    );

    const c = client(router.url);
    const done = await c.completions.create({ model: MODEL, prompt: "x", max_tokens: 3 });
    assert.equal(done.choices[0]!.text, "tok tok tok");
    assert.equal(done.usage?.completion_tokens, 3);
    // HTTP/2 forbids connection-specific headers such as HTTP2-Settings: they must not go upstream
    const offered = await postOfferingUpgrade(router.url, { model: MODEL, prompt: "x", max_tokens: 2 });
    assert.equal(offered.status, 200, offered.text);
    assert.equal((JSON.parse(offered.text) as { choices: { text: string }[] }).choices[0]!.text, "tok tok");

    // chunk by chunk: the first chunk reaches the client while the upstream still has some to send
    up.tokenIntervalMs = 30;
    const n = 8;
    let sentAtFirstChunk = -1;
    const texts = await collectStream(c, n, () => {
      if (sentAtFirstChunk < 0) sentAtFirstChunk = up.generations.at(-1)!.sent;
    });
    assert.deepEqual(
      texts,
      Array.from({ length: n }, (_, i) => ` tok${i}`),
    );
    assert.ok(sentAtFirstChunk >= 1 && sentAtFirstChunk < n, `upstream had sent ${sentAtFirstChunk}`);

    // 20 concurrent streams fit in the connections already open (100 streams each): no new one
    up.tokenIntervalMs = 20;
    const before = up.generations.length;
    const sessionsBefore = up.sessionsUsed;
    const many = await Promise.all(Array.from({ length: 20 }, () => collectStream(c, 5)));
    for (const t of many) assert.equal(t.length, 5);
    assert.equal(up.generations.length - before, 20);
    assert.equal(up.sessionsUsed, sessionsBefore, "the streams shared the open h2 connections");
    assert.ok(up.sessionsOpen <= 2, `${up.sessionsOpen} sessions open`);
  } finally {
    await router.close(0);
    await up.close();
  }
});

test("h2c backend: maxConcurrentStreams caps the streams per connection; more connections open beyond", async () => {
  const up = await startH2Upstream();
  // every answer held until the test releases it: 12 requests in flight at once whatever the pace of
  // the machine (with a fixed answer delay, early answers freed their slots before the last requests
  // came, or arrived while a connection was still opening and got one of their own)
  up.holdJson = true;
  const router = await routerFor([{ url: up.url, protocol: "h2c", maxConcurrentStreams: 4 }], {
    // probed once at start: no probe takes a stream slot the counts below expect
    health: { interval: 600_000 },
    discovery: { metricsInterval: 600_000, modelsInterval: 600_000 },
  });
  const release = () => {
    for (const answer of up.held.splice(0)) answer();
  };
  const c = client(router.url);
  const wave = async (): Promise<void> => {
    const pending = Promise.all(
      Array.from({ length: 12 }, () => c.completions.create({ model: MODEL, prompt: "x", max_tokens: 2 })),
    );
    pending.catch(() => undefined);
    await waitUntil(() => up.held.length === 12, 30_000, "12 requests held at the upstream");
    assert.ok(up.peakStreamsPerSession <= 4, `${up.peakStreamsPerSession} streams on one connection`);
    release();
    for (const a of await pending) assert.equal(a.choices[0]!.text, "tok tok");
  };
  try {
    // 12 held at once, at most 4 per connection: at least 3 connections. How many more depends on how
    // many requests came while a connection was still opening (undici gives each its own).
    await wave();
    const opened = up.sessionsUsed;
    assert.ok(opened >= 3, `${opened} sessions for 12 requests at 4 streams each`);
    // the connections now open have room for 12 streams: another 12 share them, none is opened
    await wave();
    assert.equal(up.sessionsUsed, opened, "the second 12 shared the open connections");
  } finally {
    up.holdJson = false;
    release();
    await router.close(0);
    await up.close();
  }
});

test("h2c backend: a client abort resets only its own upstream stream", async () => {
  const up = await startH2Upstream();
  up.tokenIntervalMs = 40;
  const router = await routerFor([{ url: up.url, protocol: "h2c" }]);
  try {
    const c = client(router.url);
    // a neighbour on the same session that must not notice
    const neighbour = collectStream(c, 20);
    await waitUntil(() => up.generations.length === 1, 3000, "neighbour streaming");
    // leaving the loop early aborts the openai stream: the client's connection closes
    const s = await c.completions.create({ model: MODEL, prompt: "x", max_tokens: 200, stream: true });
    let got = 0;
    for await (const chunk of s) {
      assert.equal(chunk.choices[0]!.text, ` tok${got}`);
      if (++got === 2) break;
    }
    const rec = up.generations[1]!;
    await waitUntil(() => rec.closed, 3000, "the upstream stream closed");
    assert.equal(rec.aborted, true, "the upstream saw RST_STREAM");
    assert.ok(rec.sent < 200, "the upstream stopped generating");
    assert.equal((await neighbour).length, 20, "the neighbour stream arrived whole");
    assert.equal(up.generations[0]!.aborted, false);
    assert.equal(rec.session?.destroyed, false, "the reset closed a stream, not the connection");
    await waitUntil(() => router.router.metrics.inFlight === 0, 3000, "router in-flight back to 0");
  } finally {
    await router.close(0);
    await up.close();
  }
});

test("h2c backend: an upstream dying or resetting mid-stream, with no other engine to move to, ends the client's stream with an SSE error and [DONE]", async () => {
  const up = await startH2Upstream();
  const router = await routerFor([{ url: up.url, protocol: "h2c" }]);
  const body = { model: MODEL, prompt: "x", max_tokens: 10, stream: true };
  try {
    for (const fault of ["die", "rst"] as const) {
      up.fault = fault;
      const r = await post(`${router.url}/v1/completions`, body);
      assert.equal(r.status, 200);
      const text = await r.text();
      const events = text
        .split("\n\n")
        .filter((e) => e.startsWith("data: "))
        .map((e) => e.slice(6));
      assert.equal(events.length, 4, `${fault}: ${text}`);
      assert.match(events[0]!, / tok0/);
      assert.match(events[1]!, / tok1/);
      const err = JSON.parse(events[2]!) as { error: { code: number; message: string } };
      assert.equal(err.error.code, 502, `${fault}: ${events[2]}`);
      assert.match(
        err.error.message,
        /engine connection lost mid-response.*could not move to another engine/,
      );
      assert.equal(events[3], "[DONE]");
      const rec = up.generations.at(-1)!;
      assert.equal(rec.session?.destroyed, fault === "die", `${fault}: the session survives a stream reset`);
      // the router reconnects (die) or keeps using the session (rst) for the next request
      const after = await client(router.url).completions.create({ model: MODEL, prompt: "x", max_tokens: 1 });
      assert.equal(after.choices[0]!.text, "tok");
    }
  } finally {
    await router.close(0);
    await up.close();
  }
});

test("h2c backend: a reload that changes the protocol swaps the engine's pool", async () => {
  const up = await startH2Upstream();
  const base = {
    host: "127.0.0.1",
    port: 0,
    // timeouts a loaded machine meets (the upstream is in this process): see routerFor
    health: { interval: 100, timeout: 2_000 },
    discovery: { modelsInterval: 300, metricsInterval: 100, metricsTimeout: 2_000 },
  };
  // HTTP/1.1 against an h2-only server: health checks fail, the engine never enters rotation
  const router = await startRouter({ ...base, backends: [up.url] });
  try {
    const reg = router.router.registry;
    await waitUntil(() => reg.engines.get(up.url)!.healthFailures >= 2, 3000, "http1 probes failing");
    assert.equal(reg.anyReady(), false);
    assert.equal(up.sessionsUsed, 0);
    router.router.reconfigure(parseConfig({ ...base, backends: [{ url: up.url, protocol: "h2c" }] }));
    assert.equal(reg.engines.get(up.url)!.protocol, "h2c");
    await waitUntil(() => reg.anyReady(), 3000, "the engine in rotation over h2c");
    const r = await client(router.url).completions.create({ model: MODEL, prompt: "x", max_tokens: 2 });
    assert.equal(r.choices[0]!.text, "tok tok");
  } finally {
    await router.close(0);
    await up.close();
  }
});
