// Every command's options are declared once, as fields of a zod schema that name their flags
// (src/config/command.ts); the router layers its schema's flags over its file (src/router/cli.ts). A
// command that wrote its own table of flags, types and defaults would drift from its schema, its help
// and docs/configuration.md, so no source file outside src/config and src/router writes one.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join, relative } from "node:path";
import { fixturePath } from "../helpers/vectors.js";
import { filesUnder } from "../helpers/files.js";

const root = fixturePath("../..");
/** the parser's home, and the router, whose one hand-written flag (--config) names its file */
const EXEMPT = [join("src", "config"), join("src", "router")];

/** a flag spec written by hand: `{ type: "int", ..., help: ... }` with no braces between */
const HAND_SPEC = /\btype:\s*"(?:string|number|int|boolean|list|size)"[^{}]*\bhelp:/;

test("no command outside the router writes a table of flags by hand: each reads its flags from its schema", () => {
  const found: string[] = [];
  let commands = 0;
  for (const file of filesUnder(join(root, "src"))) {
    const rel = relative(root, file);
    if (EXEMPT.some((e) => rel.startsWith(e + "/"))) continue;
    const code = readFileSync(file, "utf8");
    if (/\bFlagSpecs?\b/.test(code)) found.push(`${rel}: declares a FlagSpecs table`);
    if (HAND_SPEC.test(code)) found.push(`${rel}: writes a flag spec literal ({ type, help })`);
    if (/\bparseCommand\(/.test(code)) found.push(`${rel}: parses with parseCommand, not its schema`);
    if (/\bcommandFlags\(/.test(code)) commands++;
  }
  assert.deepEqual(found, []);
  // status, smoke, cache-server, calibrate, plan, simulate, up, bench, bench compare, sim
  assert.ok(commands >= 9, `only ${commands} files read a command's flags from a schema`);
});

test("the check finds a flag table written by hand", () => {
  const table = `const specs = {\n  port: { type: "int", default: 8000, min: 0, help: "HTTP port" },\n};`;
  assert.ok(HAND_SPEC.test(table));
  const jsonSchema = `{ answer: { type: "string" }, confidence: { type: "number", minimum: 0 } }`;
  assert.ok(!HAND_SPEC.test(jsonSchema));
});
