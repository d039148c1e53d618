// Failure containment: what one engine, one request or one slow minute may do to the fleet. Probes
// that time out while an engine streams, or while the router itself lags, are not failures; the last
// engines of a model stay in rotation; with none in rotation requests are still routed (panic mode);
// ejection never cuts an attempt in flight; a request that kills the engines serving it is not
// retried forever; a dead fleet answers a clear 503 at once; oversized bodies and prompts are refused
// at the edge. No wall-clock assertions: each property is an outcome, not a duration.
import { test } from "node:test";
import assert from "node:assert/strict";
import { createServer, type Server } from "node:http";
import { connect, type AddressInfo } from "node:net";
import { parseConfig } from "../../../src/router/index.js";
import {
  Health,
  lagAwareTimeout,
  type HealthRecord,
  type ProbeClock,
} from "../../../src/router/engines/health.js";
import { RetryBudget } from "../../../src/router/request/admission.js";
import { AttemptLoop } from "../../../src/router/dataplane/attempt-loop.js";
import { resolveModel } from "../../../src/models/profiles.js";
import { tokenizerForModel } from "../../../src/tokenizer/index.js";
import { WorkCancelled } from "../../../src/eventloop/turns.js";
import { startFakeEngine } from "../../../bench/support/fakes/fake-engine.js";
import { post, routerFor, waitUntil } from "../../helpers/router.js";

function record(url: string, models: string[] = ["m"]): HealthRecord {
  return {
    url,
    state: "healthy",
    draining: false,
    healthFailures: 0,
    healthSuccesses: 0,
    passiveFailures: 0,
    lastError: "",
    lastByteAt: 0,
    withheldLoggedAt: -Infinity,
    drainHeld: false,
    shutdownAt: 0,
    view: { healthy: true, models: new Set(models) },
  };
}

const never = () => new Promise<never>(() => undefined);

/**
 * Virtual time for a probe's timeout: timers fire only when the test moves the clock, at the instant it
 * moves to, so "the router's loop was blocked" is a jump past a timer's due time and "on time" is a move
 * to exactly that time, however busy the machine running the test is.
 */
class VirtualClock implements ProbeClock {
  private t = 1_000;
  private timers = new Map<number, { due: number; fn: () => void }>();
  private nextId = 1;
  now(): number {
    return this.t;
  }
  setTimeout(fn: () => void, ms: number): number {
    const id = this.nextId++;
    this.timers.set(id, { due: this.t + ms, fn });
    return id;
  }
  clearTimeout(id: unknown): void {
    this.timers.delete(id as number);
  }
  setImmediate(fn: () => void): void {
    setImmediate(fn);
  }
  /** the due time of the one pending timer */
  get due(): number {
    assert.equal(this.timers.size, 1, "one timer pending");
    return [...this.timers.values()][0]!.due;
  }
  /** Moves to `to`, fires the timers due by then, and lets their follow-ups (setImmediate) run. */
  async moveTo(to: number): Promise<void> {
    this.t = Math.max(this.t, to);
    for (const [id, timer] of [...this.timers]) {
      if (timer.due > this.t) continue;
      this.timers.delete(id);
      timer.fn();
    }
    await new Promise((r) => setImmediate(r));
    await new Promise((r) => setImmediate(r));
  }
}

/** Fires each timer of a probe's timeout `lateBy` ms after it was due, until `verdict` settles. */
async function runTimers(clock: VirtualClock, verdict: Promise<unknown>, lateBy: number[]): Promise<void> {
  let settled = false;
  void verdict.then(() => (settled = true));
  for (const late of lateBy) {
    if (settled) return;
    await clock.moveTo(clock.due + late);
  }
}

test("a probe that times out while the engine sends bytes on its requests is excused, not a failure", async () => {
  const cfg = parseConfig({ health: { timeout: 50 } });
  const e = record("http://e");
  const clock = new VirtualClock();
  const h = new Health(cfg, new Map([[e.url, e]]), {}, clock);
  // a byte on another request arrives while the probe waits, before its timeout
  let verdict = h.probe(e, never);
  await clock.moveTo(clock.now() + 10);
  e.lastByteAt = clock.now();
  await runTimers(clock, verdict, [0]);
  assert.deepEqual(await verdict, { kind: "excused", why: "progress" });
  // nothing from the engine meanwhile, and the timer on time: a failure
  verdict = h.probe(e, never);
  await runTimers(clock, verdict, [0]);
  assert.equal((await verdict).kind, "failed");
});

test("a probe timeout measured while the router's own event loop was blocked does not count", async () => {
  const clock = new VirtualClock();
  // the router is starved: its timer fires 120 ms after it was due (the timeout is 30 ms), then the
  // extended one on time
  let verdict = lagAwareTimeout(never(), 30, clock);
  await runTimers(clock, verdict, [120, 0]);
  assert.equal(await verdict, "router_lag");
  // starved for good: extended MAX_LAG_EXTENSIONS (3) times, then given up on, still not a failure
  verdict = lagAwareTimeout(never(), 30, clock);
  await runTimers(clock, verdict, [120, 120, 120, 120, 120]);
  assert.equal(await verdict, "router_lag");
  // late by less than half the timeout: the router kept up, the engine did not answer
  verdict = lagAwareTimeout(never(), 30, clock);
  await runTimers(clock, verdict, [14]);
  assert.equal(await verdict, "timeout");
  // an answer wins over the timer
  assert.equal(await lagAwareTimeout(Promise.resolve(), 30, clock), "answered");
  // an answer that arrived in the same turn as a timer fired on time wins too
  let answered!: () => void;
  verdict = lagAwareTimeout(new Promise<void>((r) => (answered = r)), 30, clock);
  const fire = clock.moveTo(clock.due);
  answered();
  await fire;
  assert.equal(await verdict, "answered");
});

test("the retry budget caps retries at a share of the requests (plus a floor) over its window", () => {
  const budget = new RetryBudget({ budgetRatio: 0.2, budgetWindow: 10_000, minRetries: 10 });
  const t0 = 1_000_000;
  for (let i = 0; i < 1000; i++) budget.onRequest(t0 + i);
  let granted = 0;
  for (let i = 0; i < 1000; i++) if (budget.tryRetry(t0 + 1000 + i)) granted++;
  assert.equal(granted, 10 + 0.2 * 1000, "a retry storm gets 20 % of the requests, plus the floor of 10");
  // once the window has passed, the old requests no longer pay for new retries
  assert.equal(budget.tryRetry(t0 + 30_000), true, "the floor again");
  let later = 1;
  for (let i = 0; i < 100; i++) if (budget.tryRetry(t0 + 30_000 + i)) later++;
  assert.equal(later, 10);
});

test("max ejection percent: of two engines one may be ejected, the last one stays in rotation", () => {
  const cfg = parseConfig({ health: { failuresToEject: 1, maxEjectionPercent: 50 } });
  const a = record("http://a");
  const b = record("http://b");
  const withheld: string[] = [];
  const h = new Health(
    cfg,
    new Map([
      [a.url, a],
      [b.url, b],
    ]),
    { onEjectWithheld: (url) => withheld.push(url) },
  );
  h.judge(a, { kind: "failed", error: "refused" });
  assert.equal(a.state, "ejected");
  h.judge(b, { kind: "failed", error: "refused" });
  assert.equal(b.state, "healthy", "the model's last engine in rotation is never ejected");
  assert.deepEqual(withheld, ["http://b"]);
  // a single engine is never ejected below 100 %
  const only = record("http://only", ["solo"]);
  const h1 = new Health(cfg, new Map([[only.url, only]]));
  for (let i = 0; i < 5; i++) h1.reportFailure(only, "answered 500");
  assert.equal(only.state, "healthy");
});

test("the last engine of a model failing its probes stays in rotation and keeps serving", async () => {
  const e = await startFakeEngine({ models: ["fake/m"] });
  const router = await routerFor([e.url]);
  try {
    e.healthMode = "503";
    const withheld = async () =>
      /switchyard_engine_ejections_withheld_total\{[^}]*\} [1-9]/.test(
        await (await fetch(`${router.url}/metrics`)).text(),
      );
    for (let i = 0; i < 100 && !(await withheld()); i++) await new Promise((r) => setTimeout(r, 50));
    assert.ok(await withheld(), "the ejection was withheld and counted");
    assert.equal(router.router.registry.engines.get(e.url)!.state, "healthy");
    const r = await post(`${router.url}/v1/completions`, { model: "fake/m", prompt: "x", max_tokens: 2 });
    assert.equal(r.status, 200);
  } finally {
    await router.close();
    await e.close();
  }
});

test("panic mode: with every engine of a model ejected, requests are still routed, counted and answered", async () => {
  const a = await startFakeEngine({ models: ["fake/m"] });
  const b = await startFakeEngine({ models: ["fake/m"] });
  const router = await routerFor([a.url, b.url], { health: { maxEjectionPercent: 100 } });
  const reg = router.router.registry;
  try {
    await waitUntil(() => reg.snapshot().every((v) => v.healthy), 5000, "both in rotation");
    a.healthMode = "503";
    b.healthMode = "503";
    await waitUntil(() => reg.snapshot().every((v) => !v.healthy), 5000, "both ejected");
    const r = await post(`${router.url}/v1/completions`, { model: "fake/m", prompt: "x", max_tokens: 2 });
    assert.equal(r.status, 200);
    assert.equal(((await r.json()) as { choices: { text: string }[] }).choices[0]!.text, "tok tok");
    const m = await (await fetch(`${router.url}/metrics`)).text();
    assert.match(m, /switchyard_panic_routed_requests_total\{model="fake\/m"\} 1/);
    assert.equal((await fetch(`${router.url}/ready`)).status, 503, "not ready: no engine in rotation");
  } finally {
    await router.close();
    await a.close();
    await b.close();
  }
});

test("every engine dead: a clear 503 with Retry-After, without waiting for any timeout", async () => {
  const a = await startFakeEngine({ models: ["fake/m"] });
  const b = await startFakeEngine({ models: ["fake/m"] });
  // timeouts far longer than the test: an answer proves nothing waited for one
  const router = await routerFor([a.url, b.url], { timeouts: { firstByte: 600_000, total: 600_000 } });
  try {
    await waitUntil(() => router.router.registry.snapshot().every((v) => v.healthy), 5000, "both ready");
    await a.kill();
    await b.kill();
    for (const stream of [false, true]) {
      const r = await post(`${router.url}/v1/completions`, { model: "fake/m", prompt: "x", stream });
      assert.equal(r.status, 503);
      assert.equal(r.headers.get("retry-after"), "1");
      const err = ((await r.json()) as { error: { message: string; type: string } }).error;
      assert.equal(err.type, "ServiceUnavailableError");
      assert.match(err.message, /no engine serving the model `fake\/m` could be reached/);
    }
  } finally {
    await router.close();
    await a.close();
    await b.close();
  }
});

test("ejection never cuts an attempt waiting for its first byte: the request finishes on its engine", async () => {
  const e = await startFakeEngine({ models: ["fake/m"], firstTokenDelayMs: 1500 });
  const router = await routerFor([e.url], { health: { maxEjectionPercent: 100 } });
  try {
    const pending = post(`${router.url}/v1/completions`, { model: "fake/m", prompt: "x", max_tokens: 3 });
    await waitUntil(() => e.active > 0, 5000, "the attempt is on the engine");
    e.healthMode = "503";
    await waitUntil(() => router.router.registry.engines.get(e.url)!.state === "ejected", 5000, "ejected");
    const r = await pending;
    assert.equal(r.status, 200);
    assert.equal(((await r.json()) as { choices: { text: string }[] }).choices[0]!.text, "tok tok tok");
    assert.equal(e.aborted, 0);
  } finally {
    await router.close();
    await e.close();
  }
});

test("a busy engine still streaming is not ejected for probes it cannot answer in time", async () => {
  const e = await startFakeEngine({ models: ["fake/m"], tokenDelayMs: 10 });
  const router = await routerFor([e.url], { health: { maxEjectionPercent: 100 } });
  try {
    const stream = post(`${router.url}/v1/completions`, {
      model: "fake/m",
      prompt: "x",
      max_tokens: 200,
      stream: true,
    }).then((r) => r.text());
    await waitUntil(() => e.active > 0, 5000, "streaming");
    e.healthMode = "hang";
    const excused = async () =>
      /switchyard_health_probe_timeouts_excused_total\{[^}]*why="progress"\} [3-9]/.test(
        await (await fetch(`${router.url}/metrics`)).text(),
      );
    while (e.active > 0 && !(await excused())) await new Promise((r) => setTimeout(r, 50));
    if (e.active > 0) {
      assert.equal(
        router.router.registry.engines.get(e.url)!.state,
        "healthy",
        "in rotation while it streams",
      );
    }
    assert.match(await stream, /data: \[DONE\]\n\n$/);
    // once nothing arrives any more, the hung probes count
    await waitUntil(() => router.router.registry.engines.get(e.url)!.state === "ejected", 10_000, "ejected");
  } finally {
    await router.close();
    await e.close();
  }
});

/**
 * An engine that reads a request and then drops the connection when the body says "poison"; once
 * `broken`, it drops every request's connection and fails its health probes (a crashed engine).
 */
async function poisonable(): Promise<{
  url: string;
  poisoned: number;
  served: number;
  broken: boolean;
  close(): Promise<void>;
}> {
  const state = { url: "", poisoned: 0, served: 0, broken: false, close: async () => undefined };
  const server: Server = createServer((req, res) => {
    const path = (req.url ?? "/").split("?")[0];
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      if (path === "/v1/models") {
        res.writeHead(200, { "content-type": "application/json" });
        return void res.end(JSON.stringify({ data: [{ id: "fake/m", max_model_len: 8192 }] }));
      }
      if (req.method === "GET") {
        if (state.broken) res.statusCode = 500;
        return void res.end();
      }
      if (state.broken) return void req.socket.destroy();
      if (Buffer.concat(chunks).toString().includes("poison")) {
        state.poisoned++;
        return void req.socket.destroy();
      }
      state.served++;
      res.writeHead(200, { "content-type": "application/json" });
      res.end(JSON.stringify({ choices: [{ index: 0, text: "ok" }] }));
    });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
  state.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  state.close = () =>
    new Promise<undefined>((r) => {
      server.closeAllConnections();
      server.close(() => r(undefined));
    });
  return state;
}

test("a request that breaks two engines while they hold it is not retried on a third: 502, x-should-retry false", async () => {
  const engines = [await poisonable(), await poisonable(), await poisonable()];
  const router = await routerFor(
    engines.map((e) => e.url),
    { policy: "round-robin", retry: { maxAttempts: 3 } },
  );
  try {
    await waitUntil(() => router.router.registry.snapshot().every((v) => v.healthy), 5000, "all ready");
    const r = await post(`${router.url}/v1/completions`, { model: "fake/m", prompt: "poison" });
    assert.equal(r.status, 502);
    assert.equal(r.headers.get("x-should-retry"), "false");
    const err = ((await r.json()) as { error: { message: string } }).error;
    assert.match(err.message, /not retried: 2 engines failed while serving it/);
    assert.equal(engines.filter((e) => e.poisoned > 0).length, 2, "no third engine was offered it");
    // a connection that carried the probes, closed under the request: sent there again once, and the
    // second close is the strike the first would have been
    assert.ok(
      engines.every((e) => e.poisoned <= 2),
      engines.map((e) => e.poisoned).join(),
    );
    const m = await (await fetch(`${router.url}/metrics`)).text();
    assert.match(m, /switchyard_poison_requests_total\{model="fake\/m"\} 1/);
    // the engines are fine for everyone else
    const ok = await post(`${router.url}/v1/completions`, { model: "fake/m", prompt: "hello" });
    assert.equal(ok.status, 200);
  } finally {
    await router.close();
    for (const e of engines) await e.close();
  }
});

test("a request on engines that fail for everyone (their probes fail too) is not taken for poison: it reaches the healthy engine", async () => {
  const engines = [await poisonable(), await poisonable(), await poisonable()];
  const router = await routerFor(
    engines.map((e) => e.url),
    {
      policy: "round-robin",
      retry: { maxAttempts: 3, budgetRatio: 1 },
      // the broken engines stay in rotation, so requests keep meeting them
      health: { interval: 100, timeout: 100, failuresToEject: 1_000_000, passiveFailures: 1_000_000 },
    },
  );
  try {
    await waitUntil(() => router.router.registry.snapshot().every((v) => v.healthy), 5000, "all ready");
    engines[0]!.broken = true;
    engines[1]!.broken = true;
    const reg = router.router.registry;
    await waitUntil(
      () => [0, 1].every((i) => reg.engines.get(engines[i]!.url)!.lastError.startsWith("health:")),
      5000,
      "the broken engines' probes failed",
    );
    for (let i = 0; i < 6; i++) {
      const r = await post(`${router.url}/v1/completions`, { model: "fake/m", prompt: "hello" });
      assert.equal(r.status, 200, `request ${i}: ${await r.text()}`);
    }
    assert.equal(engines[2]!.served, 6);
    const m = await (await fetch(`${router.url}/metrics`)).text();
    assert.doesNotMatch(m, /switchyard_poison_requests_total\{model="fake\/m"\} [1-9]/);
  } finally {
    await router.close();
    for (const e of engines) await e.close();
  }
});

test("a body declared larger than the limit is refused with 413 before it is read; a client that keeps sending is cut", async () => {
  const e = await startFakeEngine({ models: ["fake/m"] });
  const router = await routerFor([e.url]);
  try {
    const { port } = new URL(router.url);
    const sock = connect(Number(port), "127.0.0.1");
    let answer = "";
    sock.on("data", (b: Buffer) => (answer += b.toString("latin1")));
    const closed = new Promise<void>((r) => sock.on("close", () => r()));
    sock.on("error", () => undefined);
    // 25 MB announced, 1 KB sent: the answer cannot have waited for the body, and the connection is
    // cut once the client has had time to read it (it never sends the rest)
    sock.write(
      "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n" +
        `Content-Length: ${25 * 1000 * 1000}\r\n\r\n` +
        '{"model":"fake/m","messages":[{"role":"user","content":"' +
        "x".repeat(1000),
    );
    await closed;
    assert.match(answer, /^HTTP\/1\.1 413 /);
    assert.match(answer, /exceeds the limit of 16777216 bytes/);
    assert.equal(e.hits, 0);
  } finally {
    await router.close();
    await e.close();
  }
});

test("a prompt longer than the model's context gets vLLM 0.32's 400 from the router; one that fits is routed, whatever max_tokens it asks up to max_model_len", async () => {
  const model = "Qwen/Qwen2.5-0.5B-Instruct";
  const e = await startFakeEngine({ models: [model] }); // announces max_model_len 8192
  const router = await routerFor([e.url]);
  try {
    const tk = tokenizerForModel(resolveModel(model));
    const long = "the quick brown fox jumps over the lazy dog ".repeat(5000);
    const messages = [{ role: "user", content: long }];
    assert.ok(tk.encodeChat(messages, { addGenerationPrompt: true }).length > 8193);
    const r = await post(`${router.url}/v1/chat/completions`, { model, messages });
    assert.equal(r.status, 400);
    const err = ((await r.json()) as { error: { message: string; param: string } }).error;
    // text is counted no further than one past the context, as vLLM counts it: "at least 8193"
    assert.equal(
      err.message,
      "This model's maximum context length is 8192 tokens. However, your prompt contains at least 8193 input " +
        "tokens, which exceeds this limit even without any output tokens. Please reduce the length of the " +
        "input prompt. (parameter=input_tokens, value=8193)",
    );
    assert.equal(err.param, "input_tokens");
    assert.equal(e.hits, 0, "the engine never saw it");
    // a prompt that fits with max_tokens past the room left is vLLM 0.32's to serve (it cuts max_tokens)
    const fits = "the quick brown fox ".repeat(2000);
    assert.ok(tk.encode(fits).length + 8000 > 8192);
    const r2 = await post(`${router.url}/v1/completions`, { model, prompt: fits, max_tokens: 8000 });
    assert.equal(r2.status, 200);
    assert.equal(e.hits, 1);
    // max_tokens above the context itself is refused, naming the field the client set
    const r3 = await post(`${router.url}/v1/chat/completions`, {
      model,
      messages: [{ role: "user", content: fits }],
      max_completion_tokens: 9000,
    });
    assert.equal(r3.status, 400);
    const err3 = ((await r3.json()) as { error: { message: string; param: string } }).error;
    assert.equal(
      err3.message,
      "max_completion_tokens=9000 cannot be greater than max_model_len=8192. Please request fewer output " +
        "tokens. (parameter=max_completion_tokens, value=9000)",
    );
    assert.equal(err3.param, "max_completion_tokens");
    assert.equal(e.hits, 1);
  } finally {
    await router.close();
    await e.close();
  }
});

test("a prompt of a million words is refused by a floor on its count, saying so, without being counted or routed", async () => {
  const model = "Qwen/Qwen2.5-0.5B-Instruct";
  const e = await startFakeEngine({ models: [model] }); // announces max_model_len 8192
  const router = await routerFor([e.url]);
  try {
    const words = 1_000_000;
    const content = "lorem ".repeat(words);
    const r = await post(`${router.url}/v1/chat/completions`, {
      model,
      messages: [{ role: "user", content }],
    });
    assert.equal(r.status, 400);
    const err = ((await r.json()) as { error: { message: string; param: string } }).error;
    // vLLM counts text no further than one past the context and says "at least" that: so does the
    // floor, which proves as much without counting
    assert.equal(
      err.message,
      "This model's maximum context length is 8192 tokens. However, your prompt contains at least 8193 input " +
        "tokens, which exceeds this limit even without any output tokens. Please reduce the length of the " +
        "input prompt. (parameter=input_tokens, value=8193)",
    );
    assert.equal(err.param, "input_tokens");
    assert.equal(e.hits, 0, "the engine never saw it");
  } finally {
    await router.close();
    await e.close();
  }
});

/** the router counted one request as gone (499), the way a client that left is counted */
async function countedGone(routerUrl: string): Promise<boolean> {
  const m = await (await fetch(`${routerUrl}/metrics`)).text();
  return /^switchyard_requests_total\{[^}]*status="499"[^}]*\} 1$/m.test(m);
}

test("a client that leaves while its long prompt is counted stops the counting, and the engine never sees the request", async () => {
  const model = "Qwen/Qwen2.5-0.5B-Instruct";
  const e = await startFakeEngine({ models: [model], maxModelLen: 131_072 });
  const router = await routerFor([e.url]);
  // the router's tokenizer is this process's: its count is watched, not replaced
  const tk = tokenizerForModel(resolveModel(model));
  const countAsync = tk.countAsync;
  let counting: Promise<unknown> | undefined;
  tk.countAsync = (...args) => (counting = countAsync.apply(tk, args));
  try {
    // ~200K characters of made-up words the tokenizer's piece cache never saw: dozens of ~2 ms slices
    // (under 256K characters, which would be counted on the tokenizer's worker thread instead)
    let x = 12345;
    const letter = () => String.fromCharCode(97 + ((x = Math.imul(x ^ (x >>> 13), 0x5bd1e995) >>> 0) % 26));
    const words: string[] = [];
    for (let n = 0; n < 200_000;) {
      const w = Array.from({ length: 3 + (x % 6) }, letter).join("");
      words.push(w);
      n += w.length + 1;
    }
    const body = JSON.stringify({
      model,
      messages: [{ role: "user", content: words.join(" ") }],
      max_tokens: 1,
    });
    const s = connect(Number(new URL(router.url).port), "127.0.0.1");
    await new Promise((r) => s.once("connect", r));
    // the whole request, then the client's end of the connection at once
    s.end(
      `POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n` +
        `Content-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
    );
    s.resume();
    await waitUntil(() => counting !== undefined, 5000, "the prompt being counted");
    await assert.rejects(counting!, WorkCancelled);
    await waitUntil(() => countedGone(router.url), 5000, "the request counted as 499");
    assert.equal(e.hits, 0, "the engine never saw it");
    s.destroy();
  } finally {
    tk.countAsync = countAsync;
    await router.close();
    await e.close();
  }
});

test("a request whose client left while the ingress awaited is counted as gone (499), not routed", async () => {
  const e = await startFakeEngine({ models: ["m"] });
  const router = await routerFor([e.url]);
  // the data plane takes the request only once its connection has closed, as when the ingress
  // awaits a body parsed on a thread or a tenant's admission and the client leaves meanwhile
  const handle = AttemptLoop.prototype.handle;
  AttemptLoop.prototype.handle = function (this: AttemptLoop, req, res, pr) {
    if (req.socket.destroyed) return handle.call(this, req, res, pr);
    return new Promise<void>((r) => req.socket.once("close", r)).then(() => handle.call(this, req, res, pr));
  };
  try {
    const body = JSON.stringify({ model: "m", prompt: "hi", max_tokens: 1 });
    const s = connect(Number(new URL(router.url).port), "127.0.0.1");
    await new Promise((r) => s.once("connect", r));
    s.end(
      `POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n` +
        `Content-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
    );
    s.resume();
    await waitUntil(() => countedGone(router.url), 5000, "the request counted as 499");
    assert.equal(e.hits, 0, "the engine never saw it");
    s.destroy();
  } finally {
    AttemptLoop.prototype.handle = handle;
    await router.close();
    await e.close();
  }
});

test("tokenizer endpoints are counted on their own, outside the generation metrics", async () => {
  const e = await startFakeEngine({ models: ["fake/m"] });
  const router = await routerFor([e.url]);
  try {
    for (const path of ["/tokenize", "/detokenize", "/tokenize"]) {
      const r = await post(`${router.url}${path}`, { model: "fake/m", prompt: "hi", tokens: [1] });
      assert.equal(r.status, 200);
    }
    const m = await (await fetch(`${router.url}/metrics`)).text();
    assert.match(m, /switchyard_tokenizer_requests_total\{route="\/tokenize",status="200"\} 2/);
    assert.match(m, /switchyard_tokenizer_requests_total\{route="\/detokenize",status="200"\} 1/);
    assert.doesNotMatch(m, /switchyard_requests_total\{/, "no generation request counted");
    assert.doesNotMatch(m, /switchyard_time_to_first_token_seconds_count/);
    // and the process metrics an SRE expects beside the router's own
    for (const name of [
      "process_cpu_seconds_total",
      "process_resident_memory_bytes",
      "nodejs_eventloop_lag_seconds",
    ])
      assert.match(m, new RegExp(`^${name} `, "m"), name);
    assert.match(m, /^switchyard_build_info\{version="[^"]+",node_version="v\d+[^"]*"\} 1$/m);
  } finally {
    await router.close();
    await e.close();
  }
});
