// The alert rules pass `promtool check rules`, their unit tests pass `promtool test rules`, and the
// unit tests are strict enough to catch a shortened sustain window.
import assert from "node:assert/strict";
import { copyFileSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it } from "node:test";
import { repoRoot, requireTool, run } from "./tools.js";

const promDir = join(repoRoot(), "deploy", "prometheus");
const ruleFiles = readdirSync(promDir)
  .filter((f) => f.endsWith(".rules.yaml"))
  .sort();
const testFiles = readdirSync(promDir)
  .filter((f) => /test/.test(f) && f.endsWith(".yaml"))
  .sort();

describe("Prometheus rules", { timeout: 180_000 }, () => {
  it("has rule files and a unit-test file for each", () => {
    assert.ok(ruleFiles.length >= 3, `rule files: ${ruleFiles.join(", ")}`);
    for (const r of ruleFiles) {
      const tests = r.replace(/\.rules\.yaml$/, ".test.yaml");
      assert.ok(testFiles.includes(tests), `${r} has no ${tests}`);
    }
  });

  it("promtool check rules", (t) => {
    const promtool = requireTool(t, "promtool");
    if (!promtool) return;
    const r = run(promtool, ["check", "rules", ...ruleFiles], { cwd: promDir });
    assert.equal(r.status, 0, r.stdout + r.stderr);
    assert.match(r.stdout, /SUCCESS/);
  });

  it("promtool test rules", (t) => {
    const promtool = requireTool(t, "promtool");
    if (!promtool) return;
    const r = run(promtool, ["test", "rules", ...testFiles], { cwd: promDir });
    assert.equal(r.status, 0, r.stdout + r.stderr);
    assert.doesNotMatch(r.stdout + r.stderr, /FAILED/);
  });

  it("the KV-usage test fails when the 5-minute sustain window is shortened", (t) => {
    const promtool = requireTool(t, "promtool");
    if (!promtool) return;
    const dir = mkdtempSync(join(tmpdir(), "switchyard-promtool-"));
    try {
      const rules = readFileSync(join(promDir, "engines.rules.yaml"), "utf8");
      const kvRule = /(alert: SwitchyardEngineKVCacheNearlyFull[\s\S]*?for: )5m/;
      assert.match(rules, kvRule);
      writeFileSync(join(dir, "engines.rules.yaml"), rules.replace(kvRule, "$14m"));
      copyFileSync(join(promDir, "engines.test.yaml"), join(dir, "engines.test.yaml"));
      const r = run(promtool, ["test", "rules", "engines.test.yaml"], { cwd: dir });
      assert.notEqual(r.status, 0, "a 4-minute window should fail the 'not before 5m' test");
      assert.match(r.stdout + r.stderr, /SwitchyardEngineKVCacheNearlyFull, time: 4m/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
