// The benchmark runner (scripts/bench.mjs, `npm run bench -- GROUP/NAME`): its table names a file for
// every benchmark and covers every program under bench/, so a moved or added benchmark cannot drop out
// of `npm run bench -- --list` unnoticed; and a name it does not know is refused with a pointer.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { join } from "node:path";
import { repoRoot } from "../deploy/tools.js";

const runner = (...args: string[]) =>
  spawnSync(process.execPath, [join(repoRoot(), "scripts/bench.mjs"), ...args], { encoding: "utf8" });

test("the runner's table and the benchmark files under bench/ name each other", () => {
  const res = runner("--check");
  assert.equal(res.status, 0, res.stderr);
});

test("the runner lists each benchmark with the command it runs by default", () => {
  const res = runner("--list");
  assert.equal(res.status, 0, res.stderr);
  assert.match(res.stdout, /^router\/overhead\s+node \S*dist\/bench\/router\/overhead\.js$/m);
  assert.match(res.stdout, /^router\/soak\s+node \S*dist\/bench\/router\/soak\.js --duration 600$/m);
  assert.match(
    res.stdout,
    /^micro\/agentic-sessions\s+node --expose-gc \S*dist\/bench\/micro\/agentic-sessions\.js$/m,
  );
});

test("the runner refuses a benchmark it does not know, naming --list", () => {
  const res = runner("router/no-such-bench", "--no-build");
  assert.equal(res.status, 1);
  assert.match(res.stderr, /unknown benchmark router\/no-such-bench; npm run bench -- --list names them/);
});
