import { test } from "node:test";
import assert from "node:assert/strict";
import { parseCommand, parseFlags, parseSize, CliError, type FlagSpecs } from "../../src/config/args.js";

const specs: FlagSpecs = {
  port: { type: "int", default: 8000, help: "port", min: 0, max: 65535 },
  "enable-prefix-caching": { type: "boolean", default: true, negatable: true, help: "" },
  backend: { type: "list", help: "" },
  "max-memory": { type: "size", default: "1GiB", help: "" },
  ratio: { type: "number", help: "" },
};

test("flags: values, =, negation, lists, underscores", () => {
  const p = parseFlags(
    [
      "MODEL",
      "--port=9000",
      "--no-enable-prefix-caching",
      "--backend",
      "a",
      "--backend=b",
      "--max_memory",
      "16GiB",
    ],
    specs,
  );
  assert.deepEqual(p.positionals, ["MODEL"]);
  assert.equal(p.flags.port, 9000);
  assert.equal(p.flags["enable-prefix-caching"], false);
  assert.deepEqual(p.flags.backend, ["a", "b"]);
  assert.equal(p.flags["max-memory"], 16 * 2 ** 30);
  assert.ok(p.given.has("port") && !p.given.has("ratio"));
});

test("flags: errors name the flag", () => {
  assert.throws(
    () => parseFlags(["--port", "x"], specs),
    (e: Error) => e instanceof CliError && /--port/.test(e.message),
  );
  assert.throws(() => parseFlags(["--port", "70000"], specs), /<= 65535/);
  assert.throws(() => parseFlags(["--nope"], specs), /unknown flag --nope/);
  assert.throws(() => parseFlags(["--ratio"], specs), /needs a value/);
});

test("sizes", () => {
  assert.equal(parseSize("512MiB"), 512 * 2 ** 20);
  assert.equal(parseSize("2GB"), 2e9);
  assert.equal(parseSize("100"), 100);
  assert.throws(() => parseSize("lots"), /cannot read/);
});

test("size defaults reach the command as bytes; choices are enforced", () => {
  const p = parseFlags([], specs);
  assert.equal(p.flags["max-memory"], 2 ** 30);
  const withChoices: FlagSpecs = {
    format: { type: "string", default: "md", choices: ["md", "json"], help: "" },
  };
  assert.equal(parseFlags(["--format", "json"], withChoices).flags.format, "json");
  assert.throws(
    () => parseFlags(["--format", "yaml"], withChoices),
    /--format: expected md or json, got 'yaml'/,
  );
});

test("parseCommand: help returns null, stray arguments are refused", () => {
  const log = console.log;
  console.log = () => {};
  try {
    assert.equal(parseCommand(["--help"], "usage: x", specs), null);
  } finally {
    console.log = log;
  }
  assert.throws(() => parseCommand(["extra"], "usage: x", specs), /unexpected argument 'extra'/);
  assert.deepEqual(parseCommand(["MODEL"], "usage: x", specs, { maxPositionals: 1 })!.positionals, ["MODEL"]);
});
