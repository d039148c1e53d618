// A key set that empties on reload (a Secret emptied, a keys file truncated): keys are what turn
// tenancy on, so taking them all away would open every route to anyone without a word. The reload is
// refused instead, the last good keys stay in force, the log says why and the router's metrics show
// it until a good key set arrives.
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { hashKey } from "../../src/tenancy/keys.js";
import { EmptyKeySetError, TenancyState } from "../../src/tenancy/state.js";
import { startFakeEngine } from "../../bench/support/fakes/fake-engine.js";
import { post, routerFor, waitUntil } from "../helpers/router.js";

const KEY = "sk-team-a-0123456789abcdef";
const NEW = "sk-team-a-new-0123456789ab";

test("a reload that leaves no tenant keys is refused: the previous keys stay in force and the refusal is recorded", () => {
  const s = new TenancyState({ keys: [{ hash: hashKey(KEY), tenant: "a" }] });
  assert.throws(() => s.apply({ keys: [] }), EmptyKeySetError);
  assert.equal(s.enabled, true, "tenancy stays on");
  assert.equal(s.authenticate(`Bearer ${KEY}`).name, "a");
  assert.equal(s.keyReloads.emptied, 1);
  assert.match(s.keysError ?? "", /no tenant keys/);
  s.apply({ keys: [{ hash: hashKey(NEW), tenant: "a" }] });
  assert.equal(s.keysError, undefined, "a good reload clears the error");
  assert.equal(s.authenticate(`Bearer ${NEW}`).name, "a");
  // a router started without keys runs without tenancy, as configured
  assert.equal(new TenancyState({}).enabled, false);
});

test("a watched keys directory emptied to zero keys: the router keeps the last good keys and its metrics say the set is stale", async () => {
  const eng = await startFakeEngine();
  const dir = mkdtempSync(join(tmpdir(), "sy-keys-empty-"));
  const writeKeys = (...keys: string[]) => {
    writeFileSync(join(dir, ".a.tmp"), keys.map((k) => `sha256:${hashKey(k)}\n`).join(""));
    renameSync(join(dir, ".a.tmp"), join(dir, "a"));
  };
  writeKeys(KEY);
  const r = await routerFor([eng.url], { tenancy: { keysDir: dir, tenants: { a: {} } } });
  const metrics = () => r.router.metrics.registry.metrics();
  const chat = async (key?: string) => {
    const res = await post(
      `${r.url}/v1/chat/completions`,
      { model: "fake/model-a", messages: [{ role: "user", content: "hi" }], max_tokens: 1 },
      key ? { authorization: `Bearer ${key}` } : {},
    );
    await res.arrayBuffer();
    return res.status;
  };
  try {
    assert.equal(await chat(KEY), 200);
    writeKeys();
    await waitUntil(
      async () => /switchyard_tenancy_key_reloads_refused_total\{reason="emptied"\} 1/.test(await metrics()),
      10_000,
      "the emptied key set refused",
    );
    const text = await metrics();
    assert.match(text, /^switchyard_tenancy_keys_stale 1$/m);
    assert.match(text, /^switchyard_tenancy_keys 1$/m);
    assert.equal(await chat(), 401, "a request without a key is still refused");
    assert.equal(await chat(KEY), 200, "the last good key still works");

    writeKeys(NEW);
    await waitUntil(
      async () => /^switchyard_tenancy_keys_stale 0$/m.test(await metrics()),
      10_000,
      "a good key set in force",
    );
    assert.equal(await chat(NEW), 200);
    assert.equal(await chat(KEY), 401);
  } finally {
    await r.close();
    await eng.close();
    rmSync(dir, { recursive: true, force: true });
  }
});
