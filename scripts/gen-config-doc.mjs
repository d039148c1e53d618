#!/usr/bin/env node
// Writes docs/configuration.md from every command's own --help, so the reference can't drift from the
// flag definitions (test/cli/config-doc.test.ts fails when it does). Run after `npm run build`:
//   node scripts/gen-config-doc.mjs
import { execFileSync } from "node:child_process";
import { writeFileSync, readFileSync, existsSync } from "node:fs";

export const COMMANDS = ["sim", "router", "up", "bench", "status", "smoke", "cache-server", "simulate", "plan"];

function help(cmd) {
  try {
    return execFileSync(process.execPath, ["dist/src/cli/main.js", ...cmd.split(" "), "--help"], {
      encoding: "utf8",
      stdio: ["ignore", "pipe", "ignore"],
      env: { ...process.env, SWITCHYARD_LOG_LEVEL: "error" },
    });
  } catch {
    // a command that is not built yet
    return null;
  }
}

const intro = readFileSync("scripts/config-doc-intro.md", "utf8");
const parts = [intro.trimEnd(), ""];
for (const cmd of COMMANDS) {
  const text = help(cmd);
  if (text === null) continue;
  parts.push(`## \`switchyard ${cmd}\``, "", "```text", text.trimEnd(), "```", "");
  const extra = `scripts/config-doc-${cmd}.md`;
  if (existsSync(extra)) parts.push(readFileSync(extra, "utf8").trimEnd(), "");
}
writeFileSync("docs/configuration.md", parts.join("\n"));
console.log("wrote docs/configuration.md");
