// The tenancy Redis with a password, against a real redis-server run with --requirepass: the password
// comes from `tenancy.redis.passwordFile` (a mounted Secret) or $SWITCHYARD_REDIS_PASSWORD, never from
// the URL; a client without it is refused by the server; a URL with a password beside passwordFile is
// refused by the config.
import { test, after, before } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { HttpError } from "../../src/http/errors.js";
import { hashKey } from "../../src/tenancy/keys.js";
import { RedisConnection } from "../../src/tenancy/redis-connection.js";
import { TenancyState } from "../../src/tenancy/state.js";
import { TenancyConfigError } from "../../src/tenancy/config.js";
import { redisSkip, startRedis, type RedisProc } from "./redis-server.js";

const skip = redisSkip();
const PASSWORD = "s3cret-for-the-limits_store";
let redis: RedisProc;
let dir: string;
let n = 0;

before(async () => {
  dir = mkdtempSync(join(tmpdir(), "sy-redis-pw-"));
  if (!skip) redis = await startRedis(undefined, ["--requirepass", PASSWORD]);
});
after(async () => {
  await redis?.stop();
  rmSync(dir, { recursive: true, force: true });
});

function config(redisExtra: Record<string, unknown>): Record<string, unknown> {
  return {
    tenants: { a: { limits: { requestsPerMinute: 2 } } },
    keys: [{ hash: hashKey("sk-redis-password-tenant-a"), tenant: "a" }],
    redis: { url: redis.url, prefix: `pw${n++}:`, onError: "closed", timeout: 5_000, ...redisExtra },
  };
}

/** the statuses of `count` admissions of tenant a (200 admitted, else the refusal's) */
async function statuses(state: TenancyState, count: number): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < count; i++) {
    try {
      const a = await state.admit(state.tenant("a")!);
      state.release(a);
      out.push(200);
    } catch (err) {
      if (!(err instanceof HttpError)) throw err;
      out.push(err.status);
    }
  }
  return out;
}

test(
  "a Redis client without the password is refused by the server; with it, it is served",
  { skip },
  async () => {
    const without = new RedisConnection({ url: redis.url, timeout: 5_000 });
    const withIt = new RedisConnection({ url: redis.url, password: PASSWORD, timeout: 5_000 });
    try {
      await assert.rejects(() => without.run((r) => r.ping()), /NOAUTH/);
      assert.equal(await withIt.run((r) => r.ping()), "PONG");
    } finally {
      without.close();
      withIt.close();
    }
  },
);

test(
  "tenancy.redis.passwordFile: limits are counted in a Redis that requires a password, the URL carrying none",
  { skip },
  async () => {
    const file = join(dir, "password");
    writeFileSync(file, `${PASSWORD}\n`);
    const state = new TenancyState(config({ passwordFile: file }), { env: {} });
    try {
      assert.deepEqual(await statuses(state, 3), [200, 200, 429], "RPM 2 held in Redis");
    } finally {
      await state.close();
    }
    // the same without any password: Redis refuses, and onError closed answers 503
    const bare = new TenancyState(config({}), { env: {} });
    try {
      assert.deepEqual(await statuses(bare, 1), [503]);
    } finally {
      await bare.close();
    }
  },
);

test("$SWITCHYARD_REDIS_PASSWORD serves when no passwordFile is set", { skip }, async () => {
  const state = new TenancyState(config({}), { env: { SWITCHYARD_REDIS_PASSWORD: PASSWORD } });
  try {
    assert.deepEqual(await statuses(state, 3), [200, 200, 429]);
  } finally {
    await state.close();
  }
});

test("a password inside the Redis URL beside passwordFile is refused, and an unreadable file is named without content", () => {
  assert.throws(
    () =>
      new TenancyState({
        keys: [{ hash: hashKey("sk-redis-password-tenant-a"), tenant: "a" }],
        redis: { url: "redis://:inline@127.0.0.1:6379", passwordFile: "/nonexistent" },
      }),
    /tenancy\.redis\.url: the URL carries a password and passwordFile is set/,
  );
  assert.throws(
    () =>
      new TenancyState({
        keys: [{ hash: hashKey("sk-redis-password-tenant-a"), tenant: "a" }],
        redis: { url: "redis://127.0.0.1:6379", passwordFile: join(dir, "missing") },
      }),
    (err: unknown) =>
      err instanceof TenancyConfigError &&
      /cannot read tenancy\.redis\.passwordFile .*ENOENT/.test(err.message),
  );
});
