// Issue 9: per-tenant limits hold across router replicas. Two real `switchyard router` processes
// watch one YAML file whose `tenancy.redis` points at a real redis-server (through a TCP proxy this
// file controls, so a network partition can be cut and healed while Redis keeps its data). Every
// assertion goes through HTTP with the openai client: requests per minute counted once across both
// replicas (and 2N admitted with local limits, the contrast that makes the check able to fail),
// concurrency slots shared and freed across replicas, token usage recorded at one replica charged at
// the other, a hot-reloaded limit applied by both, and the failure rule when Redis goes away.
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { connect, createServer, type Server, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import OpenAI from "openai";
import { stringify } from "yaml";
import { freePorts, spawnCli, waitForHttp, type Spawned } from "../../bench/support/cli.js";
import { hashKey } from "../../src/tenancy/keys.js";
import { startFakeEngine, type FakeEngine } from "../../bench/support/fakes/fake-engine.js";
import { waitUntil } from "../helpers/router.js";
import { redisSkip, startRedis, type RedisProc } from "./redis-server.js";

const skip = redisSkip();
const MODEL = "fake/model-a";
const TENANTS = ["rpm", "local", "conc", "tok", "hot", "lower", "lease", "down", "free", "back"] as const;
type TenantName = (typeof TENANTS)[number];
const keyOf = (t: TenantName) => `sk-${t}-0123456789abcdef`;

interface Replica {
  name: "A" | "B";
  url: string;
  proc: Spawned;
}

/** What one request came back with, seen by the client. */
interface Outcome {
  router: "A" | "B";
  status: number;
  limit: string | null;
  retryAfter: number | null;
  message: string;
}

/**
 * A TCP proxy in front of redis-server: `cut()` drops every connection and refuses new ones (a
 * partition: Redis keeps its data), `heal()` lets them through again.
 */
async function redisProxy(redisPort: number): Promise<{
  url: string;
  cut: () => void;
  heal: () => void;
  close: () => Promise<void>;
}> {
  let up = true;
  const open = new Set<Socket>();
  const track = (s: Socket) => {
    open.add(s);
    s.once("close", () => open.delete(s));
    s.on("error", () => s.destroy());
  };
  const server: Server = createServer((client) => {
    track(client);
    if (!up) return void client.destroy();
    const upstream = connect(redisPort, "127.0.0.1");
    track(upstream);
    client.pipe(upstream);
    upstream.pipe(client);
    client.once("close", () => upstream.destroy());
    upstream.once("close", () => client.destroy());
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
  const port = (server.address() as { port: number }).port;
  const dropAll = () => {
    for (const s of open) s.destroy();
  };
  return {
    url: `redis://127.0.0.1:${port}`,
    cut: () => {
      up = false;
      dropAll();
    },
    heal: () => {
      up = true;
    },
    close: async () => {
      dropAll();
      await new Promise((r) => server.close(r));
    },
  };
}

test(
  "two router replicas share tenant limits through Redis (RPM, concurrency, tokens, reload, Redis down)",
  { skip, timeout: 180_000 },
  async (t) => {
    const dir = mkdtempSync(join(tmpdir(), "sy-replicas-"));
    const file = join(dir, "router.yaml");
    const engine: FakeEngine = await startFakeEngine({ tokenDelayMs: 50 });
    let redis: RedisProc | undefined = await startRedis();
    const proxy = await redisProxy(redis.port);
    const replicas: Replica[] = [];

    const limits: Record<TenantName, Record<string, number>> = {
      rpm: { requestsPerMinute: 5 },
      local: { requestsPerMinute: 5 },
      conc: { maxConcurrent: 2 },
      tok: { completionTokensPerMinute: 10 },
      hot: { requestsPerMinute: 2 },
      lower: { requestsPerMinute: 1000 },
      lease: { maxConcurrent: 1 },
      down: { requestsPerMinute: 4 },
      free: {},
      back: { requestsPerMinute: 3 },
    };
    // the one file both replicas watch; `redis: undefined` = local limits on each replica
    const config = (redisBlock: Record<string, unknown> | undefined, replicaCount = 2) => ({
      backends: [engine.url],
      // timeouts far above what a loaded machine needs: an engine that answers late is no fault here
      health: { interval: 200, timeout: 5_000 },
      discovery: { modelsInterval: 500, metricsInterval: 200, metricsTimeout: 5_000 },
      // no admin key here: the tenant series are read from an open page
      metrics: { access: "open" },
      tenancy: {
        tenants: Object.fromEntries(TENANTS.map((n) => [n, { limits: limits[n] }])),
        keys: TENANTS.map((n) => ({ hash: hashKey(keyOf(n)), tenant: n })),
        // sizes the fail-open fallback: each replica then enforces limit / 2
        replicas: replicaCount,
        ...(redisBlock ? { redis: redisBlock } : {}),
      },
    });
    const prefix = `sy-test-${process.pid}:`;
    const shared = (extra: Record<string, unknown> = {}) => ({
      url: proxy.url,
      prefix,
      // a slow answer is not an outage (a refused or cut connection fails at once whatever this is);
      // 250 ms timed out on a loaded machine and silently fell back to the per-replica split
      timeout: "5s",
      onError: "open",
      ...extra,
    });
    const write = (cfg: unknown) => {
      // a rename, as editors and kubelet do: a replica never reads half a file
      writeFileSync(`${file}.tmp`, stringify(cfg));
      renameSync(`${file}.tmp`, file);
    };
    const applied = (r: Replica) => r.proc.output().split('"configuration applied"').length - 1;
    /** Rewrites the watched file and waits until both replicas applied it. */
    const reloadBoth = async (cfg: unknown) => {
      const before = replicas.map(applied);
      write(cfg);
      const deadline = Date.now() + 30_000; // timing-ok: a hang guard, polled
      while (!replicas.every((r, i) => applied(r) > before[i]!)) {
        for (const r of replicas)
          if (r.proc.output().includes("config reload failed"))
            assert.fail(`replica ${r.name} refused the reload:\n${r.proc.output().slice(-2000)}`);
        if (Date.now() > deadline) assert.fail("a replica did not apply the edited config within 30 s");
        await new Promise((res) => setTimeout(res, 25));
      }
    };

    const client = (r: Replica, tenant: TenantName) =>
      new OpenAI({ baseURL: `${r.url}/v1`, apiKey: keyOf(tenant), maxRetries: 0, timeout: 10_000 });
    const outcome = async (r: Replica, p: Promise<unknown>): Promise<Outcome> => {
      try {
        await p;
        return { router: r.name, status: 200, limit: null, retryAfter: null, message: "" };
      } catch (err) {
        if (!(err instanceof OpenAI.APIError) || err.status === undefined) throw err;
        const ra = err.headers?.get("retry-after");
        return {
          router: r.name,
          status: err.status,
          limit: err.headers?.get("x-ratelimit-limit") ?? null,
          retryAfter: ra == null ? null : Number(ra),
          message: err.message,
        };
      }
    };
    const complete = (r: Replica, tenant: TenantName) =>
      outcome(r, client(r, tenant).completions.create({ model: MODEL, prompt: "x", max_tokens: 1 }));
    /** A long stream (2000 tokens at 50 ms): admitted once its headers arrive; abort() frees it. */
    const openStream = (r: Replica, tenant: TenantName) =>
      client(r, tenant).chat.completions.create({
        model: MODEL,
        messages: [{ role: "user", content: "hi" }],
        max_tokens: 2000,
        stream: true,
      });
    const metrics = async (r: Replica) => (await fetch(`${r.url}/metrics`)).text();

    try {
      write(config(shared()));
      const ports = await freePorts(2);
      for (const [i, name] of (["A", "B"] as const).entries()) {
        const proc = spawnCli(
          [
            "router",
            `--config=${file}`,
            "--host=127.0.0.1",
            `--port=${ports[i]}`,
            "--drain-timeout=1s",
            // the reload wait counts "configuration applied" lines (info), whatever level the runner sets
          ],
          { SWITCHYARD_LOG_LEVEL: "info" },
        );
        replicas.push({ name, url: `http://127.0.0.1:${ports[i]}`, proc });
      }
      await Promise.all(replicas.map((r) => waitForHttp(`${r.url}/ready`, 20_000, 200, r.proc)));
      const [A, B] = replicas as [Replica, Replica];

      await t.test("requests per minute: exactly N across both replicas, then 429 from either", async () => {
        // 15 concurrent attempts, alternating replicas, against 5 per minute
        const all = await Promise.all(Array.from({ length: 15 }, (_, i) => complete(i % 2 ? B : A, "rpm")));
        const ok = all.filter((o) => o.status === 200);
        assert.equal(
          ok.length,
          5,
          `admitted ${ok.length} of 15 against rpm 5 shared by two replicas: ${JSON.stringify(all)}`,
        );
        const refused = all.filter((o) => o.status !== 200);
        for (const o of refused) {
          assert.equal(o.status, 429, o.message);
          assert.equal(o.limit, "requests_per_minute");
          assert.match(o.message, /tenant 'rpm' is over its requests per minute limit \(5\)/);
          // one request's refill at 5 per minute is 12 s
          assert.ok(o.retryAfter !== null && o.retryAfter >= 1 && o.retryAfter <= 12, `${o.retryAfter}`);
        }
        assert.ok(refused.some((o) => o.router === "A") && refused.some((o) => o.router === "B"));
        // sequentially too: the next one is refused at either replica
        for (const r of [A, B]) assert.equal((await complete(r, "rpm")).status, 429);
      });

      await t.test("contrast: the same traffic with local limits admits 2N", async () => {
        await reloadBoth(config(undefined, 1));
        const all = await Promise.all(Array.from({ length: 15 }, (_, i) => complete(i % 2 ? B : A, "local")));
        const ok = all.filter((o) => o.status === 200);
        assert.equal(ok.length, 10, "each replica admits its own 5");
        assert.equal(ok.filter((o) => o.router === "A").length, 5);
        await reloadBoth(config(shared()));
      });

      await t.test(
        "concurrency: C slots across both replicas; a slot freed on A is used from B",
        async () => {
          const s1 = await openStream(A, "conc");
          const s2 = await openStream(B, "conc");
          const held = [s1, s2];
          try {
            for (const r of [A, B]) {
              const o = await outcome(r, openStream(r, "conc"));
              assert.equal(o.status, 429, `replica ${r.name} admitted a third stream`);
              assert.equal(o.limit, "concurrent_requests");
              assert.equal(o.retryAfter, 1);
              assert.match(o.message, /tenant 'conc' is over its concurrent requests limit \(2\)/);
            }
            s1.controller.abort(); // frees A's slot
            let s3: Awaited<ReturnType<typeof openStream>> | undefined;
            const deadline = Date.now() + 30_000; // timing-ok: a hang guard, polled
            while (!s3) {
              try {
                s3 = await openStream(B, "conc");
              } catch (err) {
                assert.ok(err instanceof OpenAI.RateLimitError, String(err));
                if (Date.now() > deadline) assert.fail("the slot freed on A never became usable from B");
                await new Promise((res) => setTimeout(res, 50));
              }
            }
            held.push(s3);
            const again = await outcome(A, openStream(A, "conc"));
            assert.equal(again.status, 429, "two streams are in flight again (one on each replica)");
          } finally {
            for (const s of held) s.controller.abort();
          }
        },
      );

      await t.test("tokens per minute: usage recorded at A is charged at B", async () => {
        // streamed, without include_usage: A asks the engine for usage and records the 12 tokens
        const s = await client(A, "tok").chat.completions.create({
          model: MODEL,
          messages: [{ role: "user", content: "hi" }],
          max_tokens: 12,
          stream: true,
        });
        for await (const chunk of s) assert.equal(chunk.usage ?? null, null);
        const deadline = Date.now() + 30_000; // timing-ok: a hang guard, polled
        while (
          !/switchyard_tenant_tokens_total\{tenant="tok",kind="completion"\} 12/.test(await metrics(A))
        ) {
          if (Date.now() > deadline) assert.fail("A never counted the stream's 12 completion tokens");
          await new Promise((res) => setTimeout(res, 25));
        }
        // B never saw that usage; the 2-token debt (10 - 12) reaches it through Redis
        assert.doesNotMatch(await metrics(B), /switchyard_tenant_tokens_total\{tenant="tok"/);
        for (const r of [B, A]) {
          const o = await complete(r, "tok");
          assert.equal(o.status, 429, `replica ${r.name} admitted a tenant 2 tokens in debt`);
          assert.equal(o.limit, "completion_tokens_per_minute");
          assert.match(o.message, /completion tokens per minute limit \(10\)/);
          // 3 tokens (out of the debt, plus the one a request needs) at 10 per minute: 18 s, less what
          // refilled since; a bucket merely empty (no debt carried over) would say 6 s at most
          assert.ok(o.retryAfter !== null && o.retryAfter > 6 && o.retryAfter <= 18, `${o.retryAfter}`);
        }
      });

      await t.test("a limit hot-reloaded in the watched file applies on both replicas", async () => {
        assert.equal((await complete(A, "hot")).status, 200);
        assert.equal((await complete(B, "hot")).status, 200);
        for (const r of [A, B]) assert.equal((await complete(r, "hot")).status, 429);
        for (const r of [A, B, A]) assert.equal((await complete(r, "lower")).status, 200);

        limits.hot = { requestsPerMinute: 60_000 };
        limits.lower = { requestsPerMinute: 1 };
        await reloadBoth(config(shared()));
        // raised: the bucket refills at 1 000/s now, so both replicas admit again at once
        for (const r of [A, B]) assert.equal((await complete(r, "hot")).status, 200, `hot at ${r.name}`);
        // lowered: the bucket is capped at 1, so one more passes and then both refuse, naming the new limit
        assert.equal((await complete(A, "lower")).status, 200);
        for (const r of [B, A]) {
          const o = await complete(r, "lower");
          assert.equal(o.status, 429, `lower at ${r.name}`);
          assert.match(o.message, /requests per minute limit \(1\)/);
        }
      });

      await t.test(
        "a partition: a slot released while Redis is unreachable is freed once it heals",
        async () => {
          const s = await openStream(A, "lease");
          const blocked = await outcome(B, openStream(B, "lease"));
          assert.equal(blocked.status, 429);
          proxy.cut();
          s.controller.abort(); // A's release cannot reach Redis
          // A logs the failed release (its first Redis failure, so the log is not rate-limited away)
          await waitUntil(
            () => /"op":"release"[^\n]*redis limit store failed/.test(A.proc.output()),
            30_000,
            "replica A to fail the release during the partition",
          );
          proxy.heal();
          // with the default leaseTtl (1 h) the slot would stay taken for an hour unless A retries
          const deadline = Date.now() + 30_000; // timing-ok: a hang guard, polled
          for (;;) {
            const o = await outcome(
              B,
              openStream(B, "lease").then((st) => st.controller.abort()),
            );
            if (o.status === 200) break;
            assert.equal(o.limit, "concurrent_requests", o.message);
            if (Date.now() > deadline) assert.fail("the slot released during the partition stayed taken");
            await new Promise((res) => setTimeout(res, 100));
          }
        },
      );

      await t.test("redis-server stopped: onError open falls back to limit / replicas on each", async () => {
        await redis!.stop();
        // down: 4 per minute, 2 replicas → 2 per replica while Redis is gone
        for (const r of [A, B]) {
          assert.equal((await complete(r, "down")).status, 200);
          assert.equal((await complete(r, "down")).status, 200);
          const o = await complete(r, "down");
          assert.equal(o.status, 429, `replica ${r.name} admitted a third while down`);
          assert.match(o.message, /requests per minute limit \(2\)/, "the per-replica share is named");
        }
        for (const r of [A, B])
          assert.match(
            r.proc.output(),
            /redis limit store failed; per-replica limits apply until it answers/,
          );
        for (const r of [A, B]) {
          const ready = await fetch(`${r.url}/ready`);
          assert.equal(ready.status, 200, "a Redis outage does not take the replica out of the fleet");
        }
      });

      await t.test("onError closed (hot-reloaded): 503 + Retry-After for limited tenants only", async () => {
        await reloadBoth(config(shared({ onError: "closed" })));
        for (const r of [A, B]) {
          const o = await complete(r, "back");
          assert.equal(o.status, 503, `replica ${r.name}: ${o.message}`);
          assert.equal(o.retryAfter, 1);
          assert.match(o.message, /rate-limit store is unreachable/);
          // a tenant without limits has nothing to enforce: Redis is not asked
          assert.equal((await complete(r, "free")).status, 200, `free at ${r.name}`);
        }
      });

      await t.test("redis-server back on its port: limits shared again", async () => {
        redis = await startRedis(redis!.port);
        // the client retries a refused connection after at most a second
        const deadline = Date.now() + 30_000; // timing-ok: a hang guard, polled
        while ((await complete(A, "back")).status === 503) {
          if (Date.now() > deadline) assert.fail("replica A never used the restarted Redis");
          await new Promise((res) => setTimeout(res, 100));
        }
        // A took one of back's 3; B and A share the other 2
        const rest = [];
        for (let i = 0; i < 6; i++) rest.push(await complete(i % 2 ? A : B, "back"));
        assert.equal(rest.filter((o) => o.status === 200).length, 2, JSON.stringify(rest));
        assert.ok(rest.every((o) => o.status === 200 || o.limit === "requests_per_minute"));
      });
    } finally {
      await Promise.all(replicas.map((r) => r.proc.stop()));
      await proxy.close();
      await redis?.stop();
      await engine.close();
      rmSync(dir, { recursive: true, force: true });
    }
  },
);
