import { test } from "node:test";
import assert from "node:assert/strict";
import { HttpError } from "../../src/http/errors.js";
import { hashKey } from "../../src/tenancy/keys.js";
import { LocalLimiter } from "../../src/tenancy/limiter.js";
import { TenancyState } from "../../src/tenancy/state.js";

function clock(start = 1_000_000) {
  const c = { t: start, now: () => c.t };
  return c;
}

async function refused(p: Promise<unknown>): Promise<HttpError> {
  try {
    await p;
  } catch (err) {
    assert.ok(err instanceof HttpError);
    return err;
  }
  assert.fail("expected a refusal");
}

function stateWith(limits: Record<string, number>, c = clock(), extra: Record<string, unknown> = {}) {
  const s = new TenancyState(
    {
      tenants: { a: { limits }, b: {} },
      keys: [
        { hash: hashKey("ka"), tenant: "a" },
        { hash: hashKey("kb"), tenant: "b" },
      ],
      ...extra,
    },
    { now: c.now },
  );
  return { s, a: s.authenticate("Bearer ka"), b: s.authenticate("Bearer kb"), c };
}

test("requests per minute: a minute's burst, then 429 naming the limit with Retry-After, then refill", async () => {
  const { s, a, b, c } = stateWith({ requestsPerMinute: 6 });
  for (let i = 0; i < 6; i++) s.release(await s.admit(a));
  const e = await refused(s.admit(a));
  assert.equal(e.status, 429);
  assert.equal(e.type, "RateLimitError");
  assert.match(e.message, /tenant 'a' is over its requests per minute limit \(6\)/);
  assert.equal(e.headers["retry-after"], "10"); // one request refills in 60/6 s
  assert.equal(e.headers["x-ratelimit-limit"], "requests_per_minute");
  // other tenants are untouched
  for (let i = 0; i < 20; i++) s.release(await s.admit(b));
  c.t += 9_999;
  await refused(s.admit(a));
  c.t += 1;
  s.release(await s.admit(a));
  await refused(s.admit(a));
});

test("prompt tokens per minute: reserved at admission, settled from usage", async () => {
  const { s, a, c } = stateWith({ promptTokensPerMinute: 1000 });
  const g1 = await s.admit(a, 600);
  const e = await refused(s.admit(a, 600));
  assert.match(e.message, /prompt tokens per minute limit \(1000\)/);
  assert.equal(e.headers["retry-after"], "12"); // 200 short at 1000/min
  // the estimate was high: usage refunds the difference
  s.record(g1, { promptTokens: 100, completionTokens: 0 });
  s.release(g1);
  const g2 = await s.admit(a, 600); // 900 left
  s.record(g2, { promptTokens: 1500, completionTokens: 0 }); // underestimate: now in debt (-600)
  s.release(g2);
  const e2 = await refused(s.admit(a, 1));
  assert.equal(e2.headers["retry-after"], "37"); // 601 tokens to refill at 1000/min
  c.t += 36_060;
  s.release(await s.admit(a, 1));
  // a prompt bigger than a whole minute's budget passes on a full bucket (never otherwise)
  c.t += 120_000;
  s.release(await s.admit(a, 5000));
  await refused(s.admit(a, 1));
});

test("completion tokens per minute: paid from usage, the next request waits out the debt", async () => {
  const { s, a, c } = stateWith({ completionTokensPerMinute: 600 });
  const g = await s.admit(a);
  const g2 = await s.admit(a); // nothing spent yet
  s.record(g, { promptTokens: 0, completionTokens: 900 });
  s.record(g, { promptTokens: 0, completionTokens: 900 }); // recorded once only
  s.release(g);
  s.release(g2);
  const e = await refused(s.admit(a));
  assert.match(e.message, /completion tokens per minute limit \(600\)/);
  assert.equal(e.headers["retry-after"], "31"); // from -300 to +1 at 10 tokens/s
  c.t += 30_100;
  s.release(await s.admit(a));
});

test("concurrency: max in flight, release frees a slot, release is idempotent", async () => {
  const { s, a } = stateWith({ maxConcurrent: 2 });
  const g1 = await s.admit(a);
  const g2 = await s.admit(a);
  const e = await refused(s.admit(a));
  assert.match(e.message, /concurrent requests limit \(2\)/);
  assert.equal(e.headers["retry-after"], "1");
  s.release(g1);
  s.release(g1);
  const g3 = await s.admit(a);
  await refused(s.admit(a));
  s.release(g2);
  s.release(g3);
  assert.equal(s.localInFlight("a"), 0);
});

test("a refused request takes nothing from any bucket", async () => {
  const { s, a } = stateWith({ requestsPerMinute: 2, promptTokensPerMinute: 100 });
  s.release(await s.admit(a, 90));
  for (let i = 0; i < 50; i++) await refused(s.admit(a, 50)); // prompt refusals
  s.release(await s.admit(a, 10)); // the second request still there
});

test("per-replica split without Redis", async () => {
  const { s, a } = stateWith({ requestsPerMinute: 9, maxConcurrent: 4 }, clock(), { replicas: 3 });
  assert.equal(a.limits.requestsPerMinute, 3);
  assert.equal(a.limits.maxConcurrent, 1);
  s.release(await s.admit(a));
  s.release(await s.admit(a));
  s.release(await s.admit(a));
  assert.match((await refused(s.admit(a))).message, /requests per minute limit \(3\)/);
});

test("limits hot-reload: new limits apply to the next request, in-flight ones release", async () => {
  const c = clock();
  const { s, a } = stateWith({ maxConcurrent: 1 }, c);
  const g = await s.admit(a);
  await refused(s.admit(a));
  s.apply({ tenants: { a: { limits: { maxConcurrent: 3 } } }, keys: [{ hash: hashKey("ka"), tenant: "a" }] });
  const a2 = s.authenticate("Bearer ka");
  const g2 = await s.admit(a2);
  const g3 = await s.admit(a2);
  await refused(s.admit(a2));
  s.release(g); // admitted before the reload
  const g4 = await s.admit(a2);
  for (const x of [g2, g3, g4]) s.release(x);
  assert.equal(s.localInFlight("a"), 0);
});

test("bounded memory: 100k tenants over a long run keep at most the cap, idle states go", () => {
  const c = clock();
  const l = new LocalLimiter({ now: c.now, idleEvictAfter: 60_000, maxStates: 5_000 });
  const limits = {
    requestsPerMinute: 60,
    promptTokensPerMinute: 6000,
    completionTokensPerMinute: 0,
    maxConcurrent: 4,
  };
  let maxSize = 0;
  for (let i = 0; i < 100_000; i++) {
    c.t += 10; // 1000 s in all
    const g = l.admitNow(`t${i % 20_000}`, limits, 100);
    assert.ok(!(g instanceof HttpError));
    l.record(g, { promptTokens: 50, completionTokens: 10 });
    l.release(g);
    maxSize = Math.max(maxSize, l.size);
  }
  assert.ok(maxSize <= 5_000, `states ${maxSize}`);
  // after everyone goes quiet, the next sweep drops every full, idle state
  c.t += 120_000;
  l.admitNow("last", limits, 1);
  assert.equal(l.size, 1);
  // a state in debt or in flight is kept (dropping it would forgive the debt / lose the count)
  const g = l.admitNow("busy", limits, 1);
  assert.ok(!(g instanceof HttpError));
  c.t += 120_000;
  l.admitNow("other", limits, 1);
  assert.equal(l.inFlight("busy"), 1);
});
