#!/usr/bin/env node
// Runs every compiled test file under dist/test with node's test runner (`npm test` runs it after the
// tools, the build and beside the lint, scripts/test.mjs). Node 22+ could take a glob for --test, but
// listing the files here lets a filter pick some and lets the longest start first.
// Usage: node scripts/run-tests.mjs [substring-filter ...]
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
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

// How long each file took last time (scripts/test-durations.mjs writes it; the build folder, so
// `npm ci` keeps it). The longest start first: with the files in name order, a slow one that happens
// to come late runs alone at the end while the other lanes are idle. A file with no record yet takes
// its figure from SEED, or goes after the rest.
const DURATIONS = "dist/.test-durations.json";
function readDurations() {
  try {
    return JSON.parse(readFileSync(DURATIONS, "utf8"));
  } catch {
    return {};
  }
}
// The files that took longest in a full run under Node 24 (seconds, summed over their tests, on a
// busy two-core box), for a fresh clone or CI, where nothing is recorded yet.
const SEED = {
  "dist/test/planner/slo.test.js": 190,
  "dist/test/router/cluster/cluster.test.js": 157,
  "dist/test/planner/pd.test.js": 128,
  "dist/test/deploy/plan-values.test.js": 92,
  "dist/test/tenancy/router-fuzz.test.js": 87,
  "dist/test/calibrate/calibrate.test.js": 64,
  "dist/test/planner/cli.test.js": 54,
  "dist/test/router/cluster/response-affinity-workers.test.js": 42,
  "dist/test/tokenizer/offload.test.js": 40,
  "dist/test/deploy/helm.test.js": 34,
  "dist/test/deploy/prometheus-scrape.test.js": 34,
  "dist/test/router/migration/migration-exact.test.js": 30,
  "dist/test/sim/admin.test.js": 28,
  "dist/test/router/telemetry/access-log.test.js": 25,
  "dist/test/router/migration/migration.test.js": 25,
};
const last = readDurations();
const known = (f) => last[f] ?? (SEED[f] ?? 0) * 1000;

const filters = process.argv.slice(2);
// a compiled test whose source was since moved or deleted stays in dist (tsc removes nothing): it would
// test old expectations and count twice, so only files with their source beside them run
const hasSource = (f) => existsSync(f.replace(/^dist\//, "").replace(/\.js$/, ".ts"));
const files = walk("dist/test", [])
  .filter(hasSource)
  .filter((f) => filters.length === 0 || filters.some((s) => f.includes(s)))
  .sort()
  .sort((a, b) => known(b) - known(a));
if (files.length === 0) {
  console.error("no test files found under dist/test (did the build run?)");
  process.exit(1);
}
console.log(`run-tests: ${files.length} files on Node ${process.version}`);
// Files run side by side, one more than the cores (at most 4): a file spends much of its time
// waiting on the servers it starts (a third file on two cores took the suite from 517 s to 467 s
// under Node 20). A fourth on two cores was tried: the quiet suite took 220 s, but on a loaded
// machine hang guards of 30 s ran out, so the suite keeps the count that holds on a busy box
// (SWITCHYARD_TEST_CONCURRENCY=N to choose, 1 for one at a time): no test asserts a wall-clock
// timing, waits are hang guards, servers bind port 0 or ports claimed across processes
// (bench/support/cli.ts freePortBlock), and every file has its own temp dir.
const concurrency =
  Number(process.env.SWITCHYARD_TEST_CONCURRENCY) || Math.min(availableParallelism() + 1, 4);
const tmp = mkdtempSync(join(tmpdir(), "switchyard-run-tests-"));
const record = join(tmp, "durations.json");
const res = spawnSync(
  process.execPath,
  [
    // each file's report written whole before its process exits (scripts/test-child-report.mjs)
    "--import",
    resolve("scripts/test-child-report.mjs"),
    "--test",
    `--test-concurrency=${concurrency}`,
    // a test that leaves a server open (say, after failing in its setup) must not hang the run:
    // each file exits when its tests are done, and no single test may run past 5 minutes
    "--test-force-exit",
    "--test-timeout=300000",
    "--test-reporter=spec",
    "--test-reporter-destination=stdout",
    "--test-reporter=./scripts/test-durations.mjs",
    `--test-reporter-destination=${record}`,
    ...files,
  ],
  {
    stdio: "inherit",
    env: {
      ...process.env,
      SWITCHYARD_LOG_LEVEL: process.env.SWITCHYARD_LOG_LEVEL ?? "warn",
      // V8's compiled code for every module, kept on disk (keyed by the source's content): each test
      // file and each sim, router or stack it starts is a new process loading the same modules, and
      // with the cache they skip compiling them, about a tenth of the suite's CPU time
      NODE_COMPILE_CACHE: process.env.NODE_COMPILE_CACHE ?? resolve("dist/.node-compile-cache"),
    },
  },
);
// keep what this run measured, and the rest of the last record (a filtered run sees only some files)
try {
  const measured = JSON.parse(readFileSync(record, "utf8"));
  const cwd = process.cwd() + "/";
  const next = { ...readDurations() };
  for (const [file, ms] of Object.entries(measured))
    next[file.startsWith(cwd) ? file.slice(cwd.length) : file] = ms;
  writeFileSync(DURATIONS, JSON.stringify(next, null, 1) + "\n");
} catch {
  // no record (the runner stopped early): the order stays as it was
}
rmSync(tmp, { recursive: true, force: true });
process.exit(res.status ?? 1);
