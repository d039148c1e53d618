// Routing plugins live in rooms, GIE's way: every folder under src/routing/plugins/ has its README, a
// row in the plugins' README table, and a test of its own named after it under test/routing/plugins/.
import { test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { repoRoot } from "../deploy/tools.js";

const plugins = join(repoRoot(), "src", "routing", "plugins");
const folders = readdirSync(plugins)
  .filter((name) => statSync(join(plugins, name)).isDirectory())
  .sort();

test("every plugin folder has its README, its row in the plugins' README and its test under test/routing/plugins/", () => {
  const table = readFileSync(join(plugins, "README.md"), "utf8");
  const wrong: string[] = [];
  for (const name of folders) {
    if (!existsSync(join(plugins, name, "README.md"))) wrong.push(`${name}: no README.md`);
    if (!table.includes(`| \`${name}/\``)) wrong.push(`${name}: no row in src/routing/plugins/README.md`);
    const testFile = join(repoRoot(), "test", "routing", "plugins", `${name}.test.ts`);
    if (!existsSync(testFile)) wrong.push(`${name}: no test/routing/plugins/${name}.test.ts`);
  }
  assert.deepEqual(wrong, []);
  assert.ok(folders.length >= 18, `${folders.length} plugin folders`);
});
