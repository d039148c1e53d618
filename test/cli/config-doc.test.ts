// docs/configuration.md must list every flag each command accepts; regenerate it with
// `node scripts/gen-config-doc.mjs` after changing flags.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { spawn } from "node:child_process";
import { cliCommand } from "../../bench/support/cli.js";
import { fixturePath } from "../helpers/vectors.js";

const COMMANDS = ["sim", "router", "up", "bench", "status", "smoke", "cache-server", "simulate", "plan"];

/** `switchyard <command> --help`: its exit code and what it printed. */
function help(command: string): Promise<{ status: number | null; stdout: string }> {
  const { cmd, args } = cliCommand();
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, [...args, command, "--help"], {
      env: { ...process.env, SWITCHYARD_LOG_LEVEL: "error" },
      stdio: ["ignore", "pipe", "ignore"],
    });
    let stdout = "";
    child.stdout.on("data", (b: Buffer) => (stdout += b.toString("utf8")));
    child.once("error", reject);
    child.once("close", (status) => resolve({ status, stdout }));
  });
}

test("docs/configuration.md lists every flag of every command", async () => {
  const doc = readFileSync(fixturePath("../../docs/configuration.md"), "utf8");
  // side by side: each start loads the whole CLI
  const helps = await Promise.all(COMMANDS.map(help));
  let checked = 0;
  for (const [i, c] of COMMANDS.entries()) {
    const res = helps[i]!;
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
