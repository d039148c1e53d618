import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, mkdirSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { HttpError } from "../../src/http/errors.js";
import { parseTenancyConfig, readKeysDir, TenancyConfigError } from "../../src/tenancy/config.js";
import { hashKey } from "../../src/tenancy/keys.js";
import { TenancyState } from "../../src/tenancy/state.js";

const KEY_A = "sk-team-a-0123456789";
const KEY_B = "sk-team-b-abcdefghij";
const ADMIN = "sk-admin-zzzzzzzzzz";

function cfg(extra: Record<string, unknown> = {}) {
  return {
    tenants: { a: { weight: 2 }, b: { priority: 1 } },
    keys: [
      { hash: hashKey(KEY_A), tenant: "a" },
      { hash: `sha256:${hashKey(KEY_B).toUpperCase()}`, tenant: "b" },
    ],
    adminKeys: [hashKey(ADMIN)],
    ...extra,
  };
}

function httpErr(fn: () => unknown): HttpError {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof HttpError, `expected an HttpError, got ${String(err)}`);
    return err;
  }
  assert.fail("expected a throw");
}

test("off until keys are configured", () => {
  const s = new TenancyState({});
  assert.equal(s.enabled, false);
  assert.equal(s.adminGuarded, false);
  s.authenticateAdmin(undefined); // open while off
  const adminOnly = new TenancyState({ adminKeys: [hashKey(ADMIN)] });
  assert.equal(adminOnly.enabled, false);
  assert.equal(adminOnly.adminGuarded, true);
  assert.equal(httpErr(() => adminOnly.authenticateAdmin(undefined)).status, 401);
});

test("no key, bad key, good key: 401 in OpenAI format and the tenant", () => {
  const s = new TenancyState(cfg());
  assert.equal(s.enabled, true);
  for (const h of [undefined, "", "Basic abc", "Bearer", ["Bearer x", "Bearer y"]]) {
    const e = httpErr(() => s.authenticate(h as string | undefined));
    assert.equal(e.status, 401);
    assert.equal(e.type, "AuthenticationError");
    assert.match(e.message, /didn't provide an API key/);
    assert.ok(e.headers["www-authenticate"]);
  }
  for (const bad of [
    "Bearer nope",
    `Bearer ${KEY_A}x`,
    `Bearer ${"k".repeat(10_000)}`,
    `Bearer ${hashKey(KEY_A)}`,
  ]) {
    const e = httpErr(() => s.authenticate(bad));
    assert.equal(e.status, 401);
    assert.equal(e.message, "Incorrect API key provided.");
    assert.ok(!e.message.includes("nope"));
  }
  assert.equal(s.authenticate(`Bearer ${KEY_A}`).name, "a");
  assert.equal(s.authenticate(`bearer   ${KEY_B} `).name, "b");
  assert.equal(s.authenticate(`Bearer ${KEY_A}`).weight, 2);
  assert.equal(s.authenticate(`Bearer ${KEY_B}`).priority, 1);
});

test("admin key on admin paths; tenant keys refused there; admin key refused for inference", () => {
  const s = new TenancyState(cfg());
  s.authenticateAdmin(`Bearer ${ADMIN}`);
  assert.equal(httpErr(() => s.authenticateAdmin(undefined)).status, 401);
  assert.equal(httpErr(() => s.authenticateAdmin("Bearer wrong")).status, 401);
  const e = httpErr(() => s.authenticateAdmin(`Bearer ${KEY_A}`));
  assert.equal(e.status, 403);
  assert.equal(e.type, "PermissionDeniedError");
  assert.equal(httpErr(() => s.authenticate(`Bearer ${ADMIN}`)).status, 403);
  // keys on but no admin key: admin endpoints are closed, not open
  const noAdmin = new TenancyState(cfg({ adminKeys: [] }));
  assert.match(httpErr(() => noAdmin.authenticateAdmin(`Bearer ${KEY_A}`)).message, /no admin key/);
});

test("config refuses plain keys and names the field, never echoing the value", () => {
  assert.throws(
    () => parseTenancyConfig({ keys: [{ hash: "sk-plain-secret-key", tenant: "a" }] }),
    (e: Error) =>
      e instanceof TenancyConfigError &&
      /tenancy\.keys\.0\.hash/.test(e.message) &&
      !e.message.includes("sk-plain"),
  );
  assert.throws(() => parseTenancyConfig({ tenants: { "bad name": {} } }), /tenancy\.tenants/);
  assert.throws(() => parseTenancyConfig({ tenants: { a: { cacheIsolation: true } } }), /cacheSaltSecret/);
  assert.throws(() => parseTenancyConfig({ tenants: { a: { limits: { rpm: 3 } } } }), /rpm/);
  const c = parseTenancyConfig({ queue: { timeout: "2s" }, redis: { url: "redis://127.0.0.1:6379" } });
  assert.equal(c.queue.timeout, 2000);
  assert.equal(c.redis!.onError, "open");
});

test("an invalid reload keeps the old keys", () => {
  const s = new TenancyState(cfg());
  assert.throws(() => s.apply({ keys: [{ hash: "nothex", tenant: "a" }] }));
  assert.equal(s.authenticate(`Bearer ${KEY_A}`).name, "a");
});

test("keys from a mounted Kubernetes Secret directory", () => {
  const dir = mkdtempSync(join(tmpdir(), "keys-"));
  try {
    // kubelet layout: real files in a timestamped dir, ..data symlink, visible names are symlinks
    const data = join(dir, "..2024_01_01_00_00_00.000");
    mkdirSync(data);
    writeFileSync(
      join(data, "team-c"),
      `# rotated 2024-01\n${hashKey("sk-c-1")}\n\nsha256:${hashKey("sk-c-2")}\n`,
    );
    writeFileSync(join(data, "_admin"), hashKey("sk-admin-dir") + "\n");
    symlinkSync(data, join(dir, "..data"));
    symlinkSync(join("..data", "team-c"), join(dir, "team-c"));
    symlinkSync(join("..data", "_admin"), join(dir, "_admin"));
    const got = readKeysDir(dir);
    assert.equal(got.keys.length, 2);
    assert.deepEqual(got.adminKeys, [hashKey("sk-admin-dir")]);
    const s = new TenancyState({ keysDir: dir, tenants: { "team-c": { limits: { maxConcurrent: 3 } } } });
    assert.equal(s.authenticate("Bearer sk-c-1").name, "team-c");
    assert.equal(s.authenticate("Bearer sk-c-2").limits.maxConcurrent, 3);
    s.authenticateAdmin("Bearer sk-admin-dir");
    // rotation in the Secret: remove sk-c-1, reload
    writeFileSync(join(data, "team-c"), hashKey("sk-c-2") + "\n");
    s.reloadKeys();
    assert.equal(httpErr(() => s.authenticate("Bearer sk-c-1")).status, 401);
    assert.equal(s.authenticate("Bearer sk-c-2").name, "team-c");
    // a plain key pasted into the Secret: error names file and line, not the key
    writeFileSync(join(data, "team-c"), "sk-plain-oops\n");
    assert.throws(
      () => readKeysDir(dir),
      (e: Error) => /team-c line 1/.test(e.message) && !e.message.includes("sk-plain"),
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("rotation mid-load: concurrent admits while the key set changes", async () => {
  const s = new TenancyState({
    tenants: { a: { limits: { maxConcurrent: 1000 } } },
    keys: [{ hash: hashKey("old-key"), tenant: "a" }],
  });
  const inFlight: Promise<void>[] = [];
  let oldOk = 0;
  let oldRefusedAfter = 0;
  let newOk = 0;
  let rotated = false;
  for (let i = 0; i < 400; i++) {
    if (i === 200) {
      s.apply({
        tenants: { a: { limits: { maxConcurrent: 1000 } } },
        keys: [{ hash: hashKey("new-key"), tenant: "a" }],
      });
      rotated = true;
    }
    const key = i % 2 === 0 ? "old-key" : "new-key";
    let t;
    try {
      t = s.authenticate(`Bearer ${key}`);
    } catch (err) {
      assert.equal((err as HttpError).status, 401);
      if (key === "old-key") {
        assert.ok(rotated, "old key refused before rotation");
        oldRefusedAfter++;
      } else assert.ok(!rotated, "new key refused after rotation");
      continue;
    }
    if (key === "old-key") {
      assert.ok(!rotated, "old key accepted after rotation");
      oldOk++;
    } else newOk++;
    const adm = await s.admit(t, 10);
    // requests admitted under the old key finish after the swap and release their slot
    inFlight.push(
      new Promise<void>((r) => setImmediate(r)).then(() => {
        s.record(adm, { promptTokens: 10, completionTokens: 5 });
        s.release(adm);
      }),
    );
  }
  assert.equal(s.localInFlight("a"), oldOk + newOk);
  await Promise.all(inFlight);
  assert.equal(oldOk, 100);
  assert.equal(oldRefusedAfter, 100);
  assert.equal(newOk, 100);
  assert.equal(s.localInFlight("a"), 0);
});

test("cache salts: stable per tenant, distinct across tenants and secrets, only with isolation on", () => {
  const secret = "a-router-secret-of-some-length";
  const s = new TenancyState(
    cfg({ cacheSaltSecret: secret, tenants: { a: { cacheIsolation: true }, b: {} } }),
  );
  const a = s.authenticate(`Bearer ${KEY_A}`);
  const b = s.authenticate(`Bearer ${KEY_B}`);
  const salt = s.cacheSaltFor(a)!;
  assert.match(salt, /^[A-Za-z0-9_-]{43}$/);
  assert.equal(s.cacheSaltFor(b), undefined);
  const again = new TenancyState(
    cfg({ cacheSaltSecret: secret, tenants: { a: { cacheIsolation: true }, b: {} } }),
  );
  assert.equal(again.cacheSaltFor(again.authenticate(`Bearer ${KEY_A}`)), salt, "same on every replica");
  const other = new TenancyState(
    cfg({ cacheSaltSecret: secret + "x", tenants: { a: { cacheIsolation: true } } }),
  );
  assert.notEqual(other.cacheSaltFor(other.authenticate(`Bearer ${KEY_A}`)), salt);
  const iso = new TenancyState(
    cfg({ cacheSaltSecret: secret, tenants: { a: { cacheIsolation: true }, b: { cacheIsolation: true } } }),
  );
  assert.notEqual(iso.cacheSaltFor(iso.authenticate(`Bearer ${KEY_B}`)), salt);
  // a client's own salt partitions inside the tenant
  assert.notEqual(s.cacheSaltFor(a, "x"), salt);
  assert.equal(s.cacheSaltFor(a, "x"), s.cacheSaltFor(a, "x"));
});
