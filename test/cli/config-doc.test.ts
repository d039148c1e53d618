// docs/configuration.md must list every flag each command accepts; regenerate it with
// `node scripts/gen-config-doc.mjs` after changing flags.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { spawnSync } from "node:child_process";
import { cliCommand } from "../helpers/cli.js";
import { fixturePath } from "../helpers/vectors.js";

const COMMANDS = ["sim", "router", "up", "bench", "status", "smoke", "cache-server", "simulate", "plan"];

test("docs/configuration.md lists every flag of every command", () => {
  const doc = readFileSync(fixturePath("../../docs/configuration.md"), "utf8");
  const { cmd, args } = cliCommand();
  let checked = 0;
  for (const c of COMMANDS) {
    const res = spawnSync(cmd, [...args, c, "--help"], {
      encoding: "utf8",
      env: { ...process.env, SWITCHYARD_LOG_LEVEL: "error" },
    });
    if (res.status !== 0) continue; // a command not built yet
    const flags = [...res.stdout.matchAll(/^\s+--([a-z0-9-]+)/gm)].map((m) => m[1]!);
    assert.ok(flags.length > 0, `switchyard ${c} --help lists no flags`);
    for (const f of flags) {
      assert.ok(
        doc.includes(`--${f}`),
        `--${f} of 'switchyard ${c}' is missing from docs/configuration.md (run node scripts/gen-config-doc.mjs)`,
      );
      checked++;
    }
  }
  assert.ok(checked > 50, `only ${checked} flags checked`);
});
