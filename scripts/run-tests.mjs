#!/usr/bin/env node
// Runs every compiled test file under dist/test with node's test runner.
// Node 20 has no glob support for --test, so we list the files ourselves.
// Usage: node scripts/run-tests.mjs [substring-filter ...]
import { readdirSync, statSync } from "node:fs";
import { join } from "node:path";
import { spawnSync } from "node:child_process";
import { availableParallelism } from "node:os";

function walk(dir, out) {
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) walk(p, out);
    else if (name.endsWith(".test.js")) out.push(p);
  }
  return out;
}

const filters = process.argv.slice(2);
const files = walk("dist/test", [])
  .filter((f) => filters.length === 0 || filters.some((s) => f.includes(s)))
  .sort();
if (files.length === 0) {
  console.error("no test files found under dist/test (did the build run?)");
  process.exit(1);
}
// Files run side by side, one more than the cores (at most 4: a file
// spends part of its time waiting on the servers it starts, so a third file on two cores took the
// suite from 517 s to 467 s; SWITCHYARD_TEST_CONCURRENCY=1 runs them one at a
// time): no test asserts a wall-clock timing, waits are hang guards, servers bind port 0 or ports
// claimed across processes (bench/support/cli.ts freePortBlock), and every file has its own temp dir.
const concurrency =
  Number(process.env.SWITCHYARD_TEST_CONCURRENCY) || Math.min(availableParallelism() + 1, 4);
const res = spawnSync(
  process.execPath,
  [
    "--test",
    `--test-concurrency=${concurrency}`,
    // a test that leaves a server open (say, after failing in its setup) must not hang the run:
    // each file exits when its tests are done, and no single test may run past 5 minutes
    "--test-force-exit",
    "--test-timeout=300000",
    "--test-reporter=spec",
    ...files,
  ],
  {
    stdio: "inherit",
    env: { ...process.env, SWITCHYARD_LOG_LEVEL: process.env.SWITCHYARD_LOG_LEVEL ?? "warn" },
  },
);
process.exit(res.status ?? 1);
