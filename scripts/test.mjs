#!/usr/bin/env node
// `npm test`: the same suite on every machine and in CI, nothing skipped. It says which Node runs it
// (npm puts node_modules/.bin first on PATH, so where the machine's Node is older, the Node 24 that the
// `node` dev dependency installed), installs the tools the tests drive where they are missing
// (.ci/install-tools.sh, seconds once they are there), builds (incremental tsc) and runs the tests,
// with the lint lane (scripts/lint.mjs, cached) beside all of it: it needs a fraction of a core while
// the test files wait on the servers they start. Under it a test whose tool is missing fails instead of skipping
// (SWITCHYARD_REQUIRE_TOOLS=1). Every step's time is printed at the end.
// Usage: npm test [-- <substring-of-a-test-path> ...]   (the filters go to scripts/run-tests.mjs)
import { spawn } from "node:child_process";
import { homedir } from "node:os";
import { delimiter, join, resolve } from "node:path";

// every step's Node processes (tsc, eslint, prettier, the tests and what they start) reuse compiled
// code from the last run: see run-tests.mjs
process.env.NODE_COMPILE_CACHE ??= resolve("dist/.node-compile-cache");
// where the machine's python3 is externally managed (PEP 668), the Python packages and commands the
// tests drive live in a venv of the tools cache (.ci/pip-install.sh): first on PATH for every step
const toolsVenv = process.env.SWITCHYARD_TOOLS_VENV ?? join(homedir(), ".cache", "switchyard-tools", "venv");
process.env.PATH = `${join(toolsVenv, "bin")}${delimiter}${process.env.PATH ?? ""}`;
const times = [];
const since = (t0) => ((performance.now() - t0) / 1000).toFixed(1);
const fromBin = process.execPath.includes("node_modules") ? " (the `node` dev dependency)" : "";
console.log(`npm test: Node ${process.version}${fromBin}`);

/** Runs a step to its end with its output shown; stops `npm test` (and the lint lane) on failure. */
async function step(name, cmd, args) {
  const t0 = performance.now();
  const child = spawn(cmd, args, { stdio: "inherit" });
  const [code, signal] = await new Promise((resolve) => child.on("close", (c, s) => resolve([c, s])));
  times.push(`${name} ${since(t0)} s`);
  if (code !== 0) {
    console.error(`npm test: ${name} failed (exit ${code ?? signal})`);
    lintChild.kill();
    process.exit(code || 1);
  }
}

// the lint lane, from the start (it reads only the sources): its output held back until the tests are
// done, so the two do not interleave
const lintStart = performance.now();
const lintChild = spawn(process.execPath, ["scripts/lint.mjs"], { stdio: ["ignore", "pipe", "pipe"] });
const lint = new Promise((resolve) => {
  let out = "";
  lintChild.stdout.on("data", (c) => (out += c));
  lintChild.stderr.on("data", (c) => (out += c));
  lintChild.on("close", (code) => {
    times.push(`lint ${since(lintStart)} s (beside the rest)`);
    resolve({ code: code ?? 1, out });
  });
});

await step("tools", "bash", [".ci/install-tools.sh"]);
await step("build", process.execPath, ["node_modules/typescript/bin/tsc", "-p", "tsconfig.json"]);

const testStart = performance.now();
const tests = await new Promise((resolve) => {
  const child = spawn(process.execPath, ["scripts/run-tests.mjs", ...process.argv.slice(2)], {
    stdio: "inherit",
    env: { ...process.env, SWITCHYARD_REQUIRE_TOOLS: "1" },
  });
  child.on("close", (code) => resolve(code ?? 1));
});
times.push(`tests ${since(testStart)} s`);
const linted = await lint;
if (linted.out) process.stdout.write(linted.out);
console.log(`npm test: Node ${process.version}; ${times.join(", ")}`);
if (linted.code !== 0) console.error("npm test: lint failed (above)");
if (tests !== 0) console.error("npm test: tests failed (above)");
process.exit(linted.code !== 0 || tests !== 0 ? 1 : 0);
