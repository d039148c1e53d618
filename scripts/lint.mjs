#!/usr/bin/env node
// `npm run lint` (and the lint lane of `npm test`): eslint over the repository and prettier's check of
// src, test and bench, side by side. Both keep a cache in dist/ (which `npm ci` leaves alone, unlike
// node_modules/.cache), keyed by file content, so a second run re-reads only what changed.
// Usage: node scripts/lint.mjs
import { spawn } from "node:child_process";
import { mkdirSync } from "node:fs";

const eslint = [
  "node_modules/eslint/bin/eslint.js",
  "--cache",
  "--cache-strategy",
  "content",
  "--cache-location",
  "dist/.eslintcache",
  ".",
];
const prettier = [
  "node_modules/prettier/bin/prettier.cjs",
  "--check",
  "--cache",
  "--cache-location",
  "dist/.prettiercache",
  "--no-error-on-unmatched-pattern",
  "src/**/*.ts",
  "test/**/*.ts",
  "bench/**/*.ts",
];

/** Runs one linter with its output held back, so the two do not interleave. */
function run(name, args) {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, args, { stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    child.stdout.on("data", (c) => (out += c));
    child.stderr.on("data", (c) => (out += c));
    child.on("close", (code, signal) => resolve({ name, code: code ?? (signal ? 1 : 0), out }));
  });
}

mkdirSync("dist", { recursive: true });
const results = await Promise.all([run("eslint", eslint), run("prettier", prettier)]);
let failed = false;
for (const r of results) {
  if (r.code === 0) continue;
  failed = true;
  process.stderr.write(`${r.name} failed (exit ${r.code}):\n${r.out}\n`);
}
process.exit(failed ? 1 : 0);
