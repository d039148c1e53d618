// Test files run side by side, and each asks bench/support/cli.ts for ports its children will bind
// seconds later: two processes must never be handed the same port in that window.
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { freePortBlock } from "../../bench/support/cli.js";

const BLOCKS = 100;
const OFFSETS = [0, 1, 100];

test("ports handed to two processes at the same time never overlap, though neither binds them", async () => {
  const helper = new URL("../../bench/support/cli.js", import.meta.url).href;
  const script = `import { freePortBlock } from ${JSON.stringify(helper)};
const got = [];
for (let i = 0; i < ${BLOCKS}; i++) got.push(await freePortBlock(${JSON.stringify(OFFSETS)}));
console.log(JSON.stringify(got));`;
  const other = promisify(execFile)(process.execPath, ["--input-type=module", "-e", script]);
  const mine: number[] = [];
  for (let i = 0; i < BLOCKS; i++) mine.push(await freePortBlock(OFFSETS));
  const theirs = JSON.parse((await other).stdout) as number[];
  const ports = (bases: number[]) => new Set(bases.flatMap((b) => OFFSETS.map((o) => b + o)));
  const a = ports(mine);
  const b = ports(theirs);
  assert.equal(a.size, BLOCKS * OFFSETS.length, "no port twice within a process");
  assert.equal(b.size, BLOCKS * OFFSETS.length);
  assert.deepEqual(
    [...a].filter((p) => b.has(p)),
    [],
  );
});
