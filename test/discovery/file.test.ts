// File discovery: the router's engine set follows a watched YAML/JSON backends file; an invalid
// rewrite keeps the previous engines.
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { readBackendsFile } from "../../src/discovery/file.js";
import { startFakeEngine } from "../../bench/support/fakes/fake-engine.js";
import { post, routerFor, waitUntil } from "../helpers/router.js";
import type { RunningRouter } from "../../src/router/index.js";

const set = (r: RunningRouter) =>
  [...r.router.registry.engines.values()]
    .filter((e) => !e.draining)
    .map((e) => `${e.url}#${e.spec.weight}`)
    .sort()
    .join(" ");

test("readBackendsFile: YAML list, {backends} map, JSON; errors name the field", (t) => {
  const dir = mkdtempSync(join(tmpdir(), "file-disc-"));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const y = join(dir, "b.yaml");
  writeFileSync(y, "- http://a:8000/\n- url: http://b:8000\n  weight: 0.5\n  role: prefill\n");
  assert.deepEqual(
    readBackendsFile(y).map((s) => [s.url, s.weight, s.role]),
    [
      ["http://a:8000", 1, undefined],
      ["http://b:8000", 0.5, "prefill"],
    ],
  );
  const j = join(dir, "b.json");
  writeFileSync(j, JSON.stringify({ backends: [{ url: "http://c:8000", kvEvents: "tcp://c:5557" }] }));
  assert.deepEqual(readBackendsFile(j)[0]!.kvEvents, { endpoint: "tcp://c:5557" });
  writeFileSync(y, "backends:\n  - url: http://a:8000\n    weight: -1\n");
  assert.throws(() => readBackendsFile(y), /backends\.0\.weight|0\.weight/);
  writeFileSync(y, "- ftp://a\n");
  assert.throws(() => readBackendsFile(y), /b\.yaml/);
});

test("the engine set follows the file: rename-replace, in-place writes; a bad file keeps the last good set", async (t) => {
  const dir = mkdtempSync(join(tmpdir(), "file-disc-"));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, "backends.yaml");
  const e1 = await startFakeEngine({ models: ["fake/m"] });
  const e2 = await startFakeEngine({ models: ["fake/m"] });
  writeFileSync(file, `- ${e1.url}\n`);
  let router: RunningRouter | undefined;
  try {
    router = await routerFor([], { discovery: { mode: "file", file } });
    assert.equal(set(router), `${e1.url}#1`);
    const r = await post(`${router.url}/v1/completions`, { model: "fake/m", prompt: "x" });
    assert.equal(r.status, 200);
    await r.arrayBuffer();
    // ConfigMap-style update: a new file renamed over the old one
    writeFileSync(join(dir, ".tmp"), `backends:\n  - ${e1.url}\n  - url: ${e2.url}\n    weight: 0.25\n`);
    renameSync(join(dir, ".tmp"), file);
    const both = [`${e1.url}#1`, `${e2.url}#0.25`].sort().join(" ");
    await waitUntil(() => set(router!) === both, 3000, "both engines");
    writeFileSync(file, "backends: [oops");
    await new Promise((res) => setTimeout(res, 400));
    assert.equal(set(router), both, "invalid file ignored");
    writeFileSync(file, `- ${e2.url}\n`);
    await waitUntil(() => set(router!) === `${e2.url}#1`, 3000, "e1 removed");
  } finally {
    await router?.close();
    await e1.close();
    await e2.close();
  }
});
