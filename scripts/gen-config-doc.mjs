#!/usr/bin/env node
// Writes docs/configuration.md from every command's own --help, so the reference can't drift from the
// flag definitions (test/cli/config-doc.test.ts fails when it does). The commands are those
// `switchyard --help` lists, with the subcommands below, so a new command is covered without a word
// here. Run after `npm run build`:
//   node scripts/gen-config-doc.mjs
import { execFileSync } from "node:child_process";
import { writeFileSync, readFileSync, existsSync } from "node:fs";

/** commands within a command, documented after it */
const SUBCOMMANDS = { bench: ["bench compare"] };

function cli(args) {
  try {
    return execFileSync(process.execPath, ["dist/src/cli/main.js", ...args], {
      encoding: "utf8",
      stdio: ["ignore", "pipe", "ignore"],
      env: { ...process.env, SWITCHYARD_LOG_LEVEL: "error" },
    });
  } catch {
    // a command that is not built yet
    return null;
  }
}

/** the commands `switchyard --help` lists, in its order */
function commands() {
  const text = cli(["--help"]) ?? "";
  const listed = text.split("\ncommands:\n")[1]?.split("\n\n")[0] ?? "";
  const names = [...listed.matchAll(/^ {2}(\S+)/gm)].map((m) => m[1]);
  return names.flatMap((name) => [name, ...(SUBCOMMANDS[name] ?? [])]);
}

const intro = readFileSync("scripts/config-doc-intro.md", "utf8");
const parts = [intro.trimEnd(), ""];
for (const cmd of commands()) {
  const text = cli([...cmd.split(" "), "--help"]);
  if (text === null) continue;
  parts.push(`## \`switchyard ${cmd}\``, "", "```text", text.trimEnd(), "```", "");
  const extra = `scripts/config-doc-${cmd.replace(/ /g, "-")}.md`;
  if (existsSync(extra)) parts.push(readFileSync(extra, "utf8").trimEnd(), "");
}
writeFileSync("docs/configuration.md", parts.join("\n"));
console.log("wrote docs/configuration.md");
