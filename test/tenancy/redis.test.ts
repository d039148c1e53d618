import { test, after, before } from "node:test";
import assert from "node:assert/strict";
import { createServer, type Server, type Socket } from "node:net";
import { HttpError } from "../../src/http/errors.js";
import { freePort } from "../../bench/support/cli.js";
import { RedisLimiter } from "../../src/tenancy/redis-limiter.js";
import { LocalLimiter, type Grant } from "../../src/tenancy/limiter.js";
import { RedisConnection, RedisUnavailable } from "../../src/tenancy/redis-connection.js";
import { redisSkip, startRedis, type RedisProc } from "./redis-server.js";

const skip = redisSkip();
let redis: RedisProc;
let prefixN = 0;

before(async () => {
  if (!skip) redis = await startRedis();
});
after(async () => {
  await redis?.stop();
});

function limiter(opts: Partial<ConstructorParameters<typeof RedisLimiter>[0]> = {}, prefix?: string) {
  return new RedisLimiter({
    url: redis.url,
    prefix: prefix ?? `t${prefixN++}:`,
    onError: "open",
    // a hang guard: a real Redis on a loaded machine can take longer than 500 ms, and a timed-out
    // call would fall back to local limits and miscount
    timeout: 5_000,
    leaseTtl: 60_000,
    replicas: 1,
    ...opts,
  });
}

const L = (o: Partial<Record<string, number>>) => ({
  requestsPerMinute: 0,
  promptTokensPerMinute: 0,
  completionTokensPerMinute: 0,
  maxConcurrent: 0,
  ...o,
});

async function outcome<T = Grant>(p: Promise<T>): Promise<T | HttpError> {
  try {
    return await p;
  } catch (err) {
    if (err instanceof HttpError) return err;
    throw err;
  }
}

test(
  "the Redis connection: commands pipelined and answered in order, an error reply rejects its command alone",
  { skip },
  async () => {
    const c = new RedisConnection({ url: redis.url });
    assert.equal(await c.run((r) => r.ping()), "PONG");
    const big = "x".repeat(100_000);
    const replies = await Promise.all([
      c.run((r) => r.set("k", big)),
      c.run((r) => r.get("k")),
      c.run((r) => r.get("missing")),
    ]);
    assert.deepEqual(replies, ["OK", big, null]);
    await assert.rejects(
      c.run((r) => r.call("NOSUCHCOMMAND")),
      /unknown command/i,
    );
    await c.run((r) => r.rpush("l", "a", "b", 3));
    assert.deepEqual(await c.run((r) => r.lrange("l", 0, -1)), ["a", "b", "3"]);
    assert.equal(await c.run((r) => r.incr("n")), 1);
    c.close();
    await assert.rejects(
      c.run((r) => r.ping()),
      RedisUnavailable,
    );
  },
);

test(
  "a Redis that refuses connections: commands fail, then fail at once while the client waits to reconnect",
  { skip },
  async () => {
    const port = await freePort(); // nothing listens
    const c = new RedisConnection({ url: `redis://127.0.0.1:${port}`, timeout: 200 });
    await assert.rejects(c.run((r) => r.ping()));
    // once an attempt has failed the client waits a second before the next: meanwhile nothing is sent.
    // Polled until the client is in that wait, however long a busy machine takes to get there (the
    // test runner's timeout is the hang guard; no wall-clock bound is asserted)
    for (;;) {
      const err = await c
        .run((r) => r.ping())
        .then(
          () => undefined,
          (e: unknown) => e,
        );
      // until then a command may still try a connection: it fails as unavailable too, never otherwise
      assert.ok(err instanceof RedisUnavailable, `not a RedisUnavailable: ${String(err)}`);
      if (/reconnecting/.test(err.message)) break;
      await new Promise((res) => setTimeout(res, 20));
    }
    c.close();
  },
);

test("two replicas share one requests-per-minute limit exactly", { skip }, async () => {
  const prefix = `share${prefixN++}:`;
  const r1 = limiter({}, prefix);
  const r2 = limiter({}, prefix);
  const limits = L({ requestsPerMinute: 25 });
  // interleaved and concurrent: 100 attempts, 25 may pass wherever they land
  const all = await Promise.all(
    Array.from({ length: 100 }, (_, i) => outcome((i % 2 ? r1 : r2).admit("a", limits, 0))),
  );
  const ok = all.filter((x) => !(x instanceof HttpError));
  assert.equal(ok.length, 25);
  const e = all.find((x) => x instanceof HttpError) as HttpError;
  assert.equal(e.status, 429);
  assert.match(e.message, /requests per minute limit \(25\)/);
  assert.equal(e.headers["retry-after"], "3");
  // another tenant has its own bucket
  assert.ok(!((await outcome(r1.admit("b", limits, 0))) instanceof HttpError));
  await r1.close();
  await r2.close();
});

test(
  "a reservation raised once a chunked body is read: one of 8 admitted at 0 gets the prompt budget, 7 get its 429, on either replica",
  { skip },
  async () => {
    const prefix = `reserve${prefixN++}:`;
    const r1 = limiter({}, prefix);
    const r2 = limiter({}, prefix);
    const limits = L({ promptTokensPerMinute: 2000 });
    // admitted at the headers with no length declared: nothing reserved yet
    const grants = await Promise.all(
      Array.from({ length: 8 }, (_, i) => (i % 2 ? r1 : r2).admit("a", limits, 0)),
    );
    const raised = await Promise.all(grants.map((g, i) => outcome((i % 2 ? r1 : r2).reserve(g, 6000))));
    const refused = raised.filter((x) => x instanceof HttpError) as HttpError[];
    assert.equal(refused.length, 7);
    for (const e of refused) assert.equal(e.headers["x-ratelimit-limit"], "prompt_tokens_per_minute");
    assert.equal(grants.filter((g) => g.promptReserved === 6000).length, 1);
    await r1.close();
    await r2.close();
  },
);

test("two replicas share concurrency; release on one frees a slot for the other", { skip }, async () => {
  const prefix = `conc${prefixN++}:`;
  const r1 = limiter({}, prefix);
  const r2 = limiter({}, prefix);
  const limits = L({ maxConcurrent: 3 });
  const g1 = await r1.admit("a", limits, 0);
  const g2 = await r2.admit("a", limits, 0);
  await r1.admit("a", limits, 0);
  const e = await outcome(r2.admit("a", limits, 0));
  assert.ok(e instanceof HttpError && /concurrent requests limit \(3\)/.test(e.message));
  r1.release(g1);
  r1.release(g1);
  await r1.flush();
  const g4 = await r2.admit("a", limits, 0);
  assert.ok((await outcome(r1.admit("a", limits, 0))) instanceof HttpError, "three in flight across both");
  r2.release(g2);
  r2.release(g4);
  await r2.flush();
  await r1.close();
  await r2.close();
});

test("a dead replica's concurrency leases expire", { skip }, async () => {
  const prefix = `lease${prefixN++}:`;
  const dead = limiter({ leaseTtl: 1000 }, prefix);
  const limits = L({ maxConcurrent: 1 });
  await dead.admit("a", limits, 0);
  await dead.close(); // never releases
  const alive = limiter({ leaseTtl: 1000 }, prefix);
  assert.ok((await outcome(alive.admit("a", limits, 0))) instanceof HttpError);
  await new Promise((r) => setTimeout(r, 1100));
  assert.ok(!((await outcome(alive.admit("a", limits, 0))) instanceof HttpError));
  await alive.close();
});

test(
  "tokens per minute across replicas: prompt reserved, usage settled, completion debt",
  { skip },
  async () => {
    const prefix = `tpm${prefixN++}:`;
    const r1 = limiter({}, prefix);
    const r2 = limiter({}, prefix);
    const limits = L({ promptTokensPerMinute: 1000, completionTokensPerMinute: 600 });
    const g = await r1.admit("a", limits, 700);
    const e = await outcome(r2.admit("a", limits, 700));
    assert.ok(e instanceof HttpError && /prompt tokens per minute limit \(1000\)/.test(e.message));
    const recordedBy = performance.now();
    r1.record(g, { promptTokens: 100, completionTokens: 1200 });
    await r1.flush();
    // prompt refunded (600 back), but completion is 600 in debt
    const e2 = await outcome(r2.admit("a", limits, 700));
    assert.ok(
      e2 instanceof HttpError && /completion tokens per minute limit \(600\)/.test(e2.message),
      String(e2),
    );
    // the 600-token debt refills at 600 a minute: 601 tokens take 60.1 s from the moment it was
    // recorded, less the time passed since, rounded up. The lower bound moves with the time this
    // machine actually took, so a slow machine cannot break it
    const retry = Number(e2.headers["retry-after"]);
    const passed = (performance.now() - recordedBy) / 1000;
    assert.ok(retry <= 61 && retry >= 60 - passed, `retry-after ${retry} with ${passed.toFixed(1)} s passed`);
    await r1.close();
    await r2.close();
  },
);

test("Redis down, onError open: falls back to the per-replica split", { skip }, async () => {
  const port = await freePort(); // nothing listens
  const r = new RedisLimiter({
    url: `redis://127.0.0.1:${port}`,
    prefix: "x:",
    onError: "open",
    timeout: 200,
    leaseTtl: 60_000,
    replicas: 2,
    fallback: new LocalLimiter(),
  });
  const limits = L({ requestsPerMinute: 10 });
  const got = await Promise.all(Array.from({ length: 8 }, () => outcome(r.admit("a", limits, 0))));
  assert.equal(got.filter((g) => !(g instanceof HttpError)).length, 5); // 10 / 2 replicas
  for (const g of got) if (!(g instanceof HttpError)) r.release(g);
  assert.ok(r.errors > 0);
  await r.close();
});

test("Redis down, onError closed: 503 with Retry-After", { skip }, async () => {
  const port = await freePort();
  const r = new RedisLimiter({
    url: `redis://127.0.0.1:${port}`,
    prefix: "x:",
    onError: "closed",
    timeout: 200,
    leaseTtl: 60_000,
    replicas: 1,
  });
  const e = await outcome(r.admit("a", L({ requestsPerMinute: 10 }), 0));
  assert.ok(e instanceof HttpError);
  assert.equal(e.status, 503);
  assert.equal(e.headers["retry-after"], "1");
  await r.close();
});

test("a hung Redis times out fast and falls back; a killed Redis comes back", { skip }, async () => {
  const sockets: Socket[] = [];
  const hung: Server = createServer((s) => sockets.push(s)); // accepts, never answers
  await new Promise<void>((r) => hung.listen(0, "127.0.0.1", () => r()));
  const port = (hung.address() as { port: number }).port;
  const r = new RedisLimiter({
    url: `redis://127.0.0.1:${port}`,
    prefix: "x:",
    onError: "open",
    timeout: 150,
    leaseTtl: 60_000,
    replicas: 1,
  });
  // a hang would be the runner's test timeout; how long the fallback took is not asserted
  const g = await outcome(r.admit("a", L({ requestsPerMinute: 10 }), 0));
  assert.ok(!(g instanceof HttpError), "the call timed out and fell back to local limits");
  await r.close();
  for (const s of sockets) s.destroy();
  await new Promise((res) => hung.close(res));

  // a real Redis killed mid-run, then restarted on the same port
  const own = await startRedis();
  const r2 = new RedisLimiter({
    url: own.url,
    prefix: "k:",
    onError: "closed",
    timeout: 5_000, // a stopped Redis refuses at once; a slow answer is no outage
    leaseTtl: 60_000,
    replicas: 1,
  });
  const limits = L({ requestsPerMinute: 1000 });
  assert.ok(!((await outcome(r2.admit("a", limits, 0))) instanceof HttpError));
  await own.stop();
  const down = await outcome(r2.admit("a", limits, 0));
  assert.ok(down instanceof HttpError && down.status === 503);
  const back = await startRedis(own.port);
  // the client reconnects after its backoff (at most a second); polled, as a loaded machine is slower
  const deadline = Date.now() + 30_000; // timing-ok: a hang guard, polled
  while ((await outcome(r2.admit("a", limits, 0))) instanceof HttpError) {
    assert.ok(Date.now() < deadline, "the client never used the restarted Redis");
    await new Promise((res) => setTimeout(res, 100));
  }
  await r2.close();
  await back.stop();
});
