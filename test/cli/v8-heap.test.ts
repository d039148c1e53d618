// The router's young generation: `switchyard router` re-executes itself once with V8's semi-space
// ceiling set (the same process, seen from outside), unless the operator sized it or the process has an
// IPC channel to its parent; `switchyard up` passes the flag to the router it starts.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { freePort, spawnCli, waitForHttp } from "../../bench/support/cli.js";
import { startFakeEngine } from "../../bench/support/fakes/fake-engine.js";
import {
  heapReexecArgs,
  pretenuringOff,
  routerNodeFlags,
  SEMI_SPACE_MB,
  type HeapLaunch,
} from "../../src/cli/v8-heap.js";

const FLAG = `--max-semi-space-size=${SEMI_SPACE_MB}`;
const launch = (over: Partial<HeapLaunch> = {}): HeapLaunch => ({
  execPath: "/usr/bin/node",
  execArgv: ["--import", "tsx"],
  argv: ["/usr/bin/node", "/app/main.js", "router", "--port", "8080"],
  env: {},
  execve: (() => {
    throw new Error("not called");
  }) as HeapLaunch["execve"],
  channel: false,
  ...over,
});

test("the router re-executes with the semi-space flag first, then its own node flags and arguments", () => {
  assert.deepEqual(heapReexecArgs(launch()), [
    "/usr/bin/node",
    FLAG,
    "--import",
    "tsx",
    "/app/main.js",
    "router",
    "--port",
    "8080",
  ]);
});

test("an operator's own semi-space size, on the command line or in NODE_OPTIONS, is left as it is", () => {
  assert.equal(heapReexecArgs(launch({ execArgv: ["--max-semi-space-size=32"] })), null);
  assert.equal(heapReexecArgs(launch({ execArgv: ["--max_semi_space_size=2"] })), null);
  assert.equal(
    heapReexecArgs(launch({ env: { NODE_OPTIONS: "--enable-source-maps --max-semi-space-size=64" } })),
    null,
  );
  assert.deepEqual(routerNodeFlags({ NODE_OPTIONS: "--max-semi-space-size=64" }), []);
  assert.deepEqual(routerNodeFlags({}), [FLAG]);
});

test("the router turns V8's allocation-site pretenuring off unless the operator gave the flag either way", () => {
  assert.equal(pretenuringOff([], {}), true);
  assert.equal(pretenuringOff(["--allocation-site-pretenuring"], {}), false);
  assert.equal(pretenuringOff(["--no-allocation-site-pretenuring"], {}), false);
  assert.equal(pretenuringOff([], { NODE_OPTIONS: "--no_allocation_site_pretenuring" }), false);
});

test("the router is not re-executed twice, nor without execve, nor with an IPC channel to its parent", () => {
  assert.equal(heapReexecArgs(launch({ env: { SWITCHYARD_HEAP_SET: "1" } })), null);
  assert.equal(heapReexecArgs(launch({ execve: undefined })), null);
  assert.equal(heapReexecArgs(launch({ channel: true })), null);
});

test("a started `switchyard router` runs with the flag in the same process it was spawned as", async () => {
  // the suite runs on Node 24 on Linux (process.execve, /proc)
  const e = await startFakeEngine({ models: ["fake/m"] });
  const port = await freePort();
  const r = spawnCli(["router", "--backend", e.url, "--host", "127.0.0.1", "--port", String(port)]);
  try {
    await waitForHttp(`http://127.0.0.1:${port}/ready`, 20_000, 200, r);
    const cmdline = readFileSync(`/proc/${r.child.pid}/cmdline`, "utf8").split("\0");
    assert.ok(cmdline.includes(FLAG), cmdline.join(" "));
    assert.equal(cmdline.filter((a) => a.startsWith("--max-semi-space-size")).length, 1);
  } finally {
    await r.stop();
    await e.close();
  }
});
