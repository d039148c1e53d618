// The router's engine list is `engines:` in the glossary's words and `backends:` in the schema's; a
// config file or a programmatic config may use either name, never both, and `--backend` still
// replaces the file's list whichever name the file used.
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { loadConfig, parseConfig } from "../../../src/router/config/config.js";

test("a config that lists its engines under engines: reads the same as one under backends:", () => {
  const a = parseConfig({ engines: ["http://e1:8000", { url: "http://e2:8000", weight: 0.5 }] }, {});
  const b = parseConfig({ backends: ["http://e1:8000", { url: "http://e2:8000", weight: 0.5 }] }, {});
  assert.deepEqual(a, b);
  assert.equal(a.backends.length, 2);
});

test("a config that gives both engines: and backends: is refused with both names in the message", () => {
  assert.throws(
    () => parseConfig({ engines: ["http://e1:8000"], backends: ["http://e2:8000"] }, {}),
    /engines and backends name one list/,
  );
});

test("a config file's engines: list is read, and --backend replaces it as it replaces backends:", () => {
  const dir = mkdtempSync(join(tmpdir(), "sy-engines-"));
  try {
    const file = join(dir, "router.yaml");
    writeFileSync(file, "engines:\n  - http://e1:8000\n  - http://e2:8000\n");
    assert.deepEqual(
      loadConfig({}, file).backends.map((b) => b.url),
      ["http://e1:8000", "http://e2:8000"],
    );
    assert.deepEqual(
      loadConfig({ backends: ["http://e3:8000"] }, file).backends.map((b) => b.url),
      ["http://e3:8000"],
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
