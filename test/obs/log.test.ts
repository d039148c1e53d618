// Logs are pretty on a terminal and JSON everywhere else unless SWITCHYARD_LOG_FORMAT says otherwise; a
// pretty line keeps every field and puts an error's stack under it, readable.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { formatPretty, logFormat } from "../../src/obs/log.js";

test("a terminal gets pretty lines and a pipe JSON, unless SWITCHYARD_LOG_FORMAT names one", () => {
  assert.equal(logFormat({}, true), "pretty");
  assert.equal(logFormat({}, false), "json");
  assert.equal(logFormat({ SWITCHYARD_LOG_FORMAT: "json" }, true), "json");
  assert.equal(logFormat({ SWITCHYARD_LOG_FORMAT: "PRETTY" }, false), "pretty");
  assert.equal(logFormat({ SWITCHYARD_LOG_FORMAT: "xml" }, true), "pretty");
});

test("a pretty line has the time, level, component, message and fields; an error's stack follows it", () => {
  const time = Date.UTC(2026, 0, 2, 3, 4, 5, 678);
  const line = formatPretty(
    { level: 30, time, pid: 1, name: "router", msg: "engine models", engine: "http://e:8000", n: 2 },
    false,
  );
  assert.equal(line, "03:04:05.678 INFO  [router] engine models  engine=http://e:8000 n=2");
  const err = formatPretty(
    {
      level: 50,
      time,
      name: "sim.engine",
      msg: "engine step failed",
      err: { type: "Error", message: "boom", stack: "Error: boom\n    at step (engine.ts:1:1)" },
    },
    true,
  );
  const [head, ...stack] = err.split("\n");
  assert.equal(head, '03:04:05.678 \x1b[31mERROR\x1b[0m [sim.engine] engine step failed  err="boom"');
  assert.deepEqual(stack, ["    Error: boom", "        at step (engine.ts:1:1)"]);
});

test("a line serialised by its caller reads exactly as pino's own, and both reach stderr before exit", () => {
  const mod = new URL("../../src/obs/log.js", import.meta.url).href;
  const script = `
    import { infoLineWriter, logger } from ${JSON.stringify(mod)};
    logger("t.x").info({ a: 'x"y', n: 1.5, b: false, u: undefined, s: "ü" }, "hello");
    const w = infoLineWriter("t.x");
    if (w.enabled()) w.write('"a":' + JSON.stringify('x"y') + ',"n":1.5,"b":false,"s":"ü",', "hello");
  `;
  const r = spawnSync(process.execPath, ["--input-type=module", "-e", script], {
    env: { ...process.env, SWITCHYARD_LOG_FORMAT: "json", SWITCHYARD_LOG_LEVEL: "info" },
    encoding: "utf8",
  });
  assert.equal(r.status, 0, r.stderr);
  const lines = r.stderr
    .trim()
    .split("\n")
    .map((l) => l.replace(/"time":\d+/, '"time":0'));
  assert.equal(lines.length, 2, r.stderr);
  assert.equal(lines[1], lines[0]);
  assert.deepEqual(Object.keys(JSON.parse(lines[0]!) as object), [
    "level",
    "time",
    "pid",
    "name",
    "a",
    "n",
    "b",
    "s",
    "msg",
  ]);
});
