// docs/configuration.md must hold each command's --help as the command prints it, for every command
// `switchyard --help` lists and the subcommands within them; regenerate it with `npm run docs:config`
// after changing options.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { spawn } from "node:child_process";
import { cliCommand } from "../../bench/support/cli.js";
import { fixturePath } from "../helpers/vectors.js";

/** commands within a command (as scripts/gen-config-doc.mjs documents them) */
const SUBCOMMANDS: Record<string, string[]> = { bench: ["bench compare"] };

/** `switchyard <args>`: its exit code and what it printed. */
function cli(argv: string[]): Promise<{ status: number | null; stdout: string }> {
  const { cmd, args } = cliCommand();
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, [...args, ...argv], {
      env: { ...process.env, SWITCHYARD_LOG_LEVEL: "error" },
      stdio: ["ignore", "pipe", "ignore"],
    });
    let stdout = "";
    child.stdout.on("data", (b: Buffer) => (stdout += b.toString("utf8")));
    child.once("error", reject);
    child.once("close", (status) => resolve({ status, stdout }));
  });
}

test("docs/configuration.md holds every command's help as the command prints it", async () => {
  const doc = readFileSync(fixturePath("../../docs/configuration.md"), "utf8");
  const top = await cli(["--help"]);
  const listed = top.stdout.split("\ncommands:\n")[1]?.split("\n\n")[0] ?? "";
  const commands = [...listed.matchAll(/^ {2}(\S+)/gm)].flatMap((m) => [
    m[1]!,
    ...(SUBCOMMANDS[m[1]!] ?? []),
  ]);
  assert.ok(commands.length >= 10, `switchyard --help lists ${commands.length} commands`);
  // side by side: each start loads the whole CLI
  const helps = await Promise.all(commands.map((c) => cli([...c.split(" "), "--help"])));
  let flags = 0;
  for (const [i, c] of commands.entries()) {
    const res = helps[i]!;
    assert.equal(res.status, 0, `switchyard ${c} --help failed`);
    assert.ok(/^\s+--[a-z0-9-]+/m.test(res.stdout), `switchyard ${c} --help lists no flags`);
    flags += [...res.stdout.matchAll(/^\s+--([a-z0-9-]+)/gm)].length;
    const section = `## \`switchyard ${c}\`\n\n\`\`\`text\n${res.stdout.trimEnd()}\n\`\`\``;
    assert.ok(
      doc.includes(section),
      `the help of 'switchyard ${c}' differs from docs/configuration.md (run npm run docs:config)`,
    );
  }
  assert.ok(flags > 50, `only ${flags} flags checked`);
});
