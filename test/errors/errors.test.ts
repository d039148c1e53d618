// Every error the project throws is a SwitchyardError with a stable code (src/errors): no bare
// `throw new Error(` in src, and every error class's chain reaches the base. Read from the sources, so
// a new class or throw is seen without anyone listing it; the exported classes are then loaded and
// their codes read.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readdirSync, readFileSync, statSync } from "node:fs";
import { join, relative } from "node:path";
import { pathToFileURL } from "node:url";
import { ERROR_CODES, InvalidConfigError, PeerError, SwitchyardError } from "../../src/errors/index.js";
import { HttpError } from "../../src/http/errors.js";
import { repoRoot } from "../deploy/tools.js";

function sources(dir: string): { path: string; text: string }[] {
  const out: { path: string; text: string }[] = [];
  for (const name of readdirSync(dir).sort()) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) out.push(...sources(p));
    else if (name.endsWith(".ts")) out.push({ path: relative(repoRoot(), p), text: readFileSync(p, "utf8") });
  }
  return out;
}

const files = sources(join(repoRoot(), "src"));
const CLASS = /^(export\s+)?(?:abstract\s+)?class\s+(\w+)(?:<[^>]*>)?\s+extends\s+(\w+)/gm;
const classes = files.flatMap((f) =>
  [...f.text.matchAll(CLASS)].map((m) => ({ file: f.path, exported: !!m[1], name: m[2]!, base: m[3]! })),
);
const baseOf = new Map(classes.map((c) => [c.name, c.base]));

/** the chain of bases from a class up to a name no class in src declares (Error, or a library's) */
function chain(name: string): string[] {
  const out = [name];
  for (let b = baseOf.get(name); b !== undefined && out.length < 20; b = baseOf.get(b)) out.push(b);
  return out;
}
const errorClasses = classes.filter((c) => chain(c.name).at(-1) === "Error");

test("no source file throws or makes a bare Error: every one names a coded class", () => {
  const bare = files.flatMap((f) =>
    f.text.split("\n").flatMap((line, i) => (/\bnew Error\(/.test(line) ? [`${f.path}:${i + 1}`] : [])),
  );
  assert.deepEqual(bare, []);
});

test("every error class in src extends SwitchyardError, and only the base extends Error itself", () => {
  assert.ok(errorClasses.length >= 30, `found only ${errorClasses.length} error classes`);
  const wrong = errorClasses
    .filter((c) => c.name !== "SwitchyardError" && !chain(c.name).includes("SwitchyardError"))
    .map((c) => `${c.file}: ${c.name} extends ${chain(c.name).slice(1).join(" → ")}`);
  assert.deepEqual(wrong, []);
});

test("every exported error class carries a code from the table, on the class and on each instance", async () => {
  const known = new Set<string>(Object.values(ERROR_CODES));
  const wrong: string[] = [];
  for (const c of errorClasses.filter((e) => e.exported && e.name !== "SwitchyardError")) {
    const url = pathToFileURL(join(repoRoot(), "dist", c.file.replace(/\.ts$/, ".js"))).href;
    const mod = (await import(url)) as Record<string, unknown>;
    const cls = mod[c.name] as (typeof SwitchyardError & { code: string }) | undefined;
    if (typeof cls !== "function") wrong.push(`${c.file}: ${c.name} is not exported as a class`);
    else if (!(cls.prototype instanceof SwitchyardError))
      wrong.push(`${c.file}: ${c.name} is no SwitchyardError`);
    else if (!known.has(cls.code)) wrong.push(`${c.file}: ${c.name} has code '${cls.code}'`);
  }
  assert.deepEqual(wrong, []);
  assert.equal(new InvalidConfigError("x").code, "SY_ERR_CONFIG");
  assert.equal(new PeerError("x").code, "SY_ERR_PEER");
  const http = new HttpError(404, "no such model");
  assert.equal(http.code, "SY_ERR_HTTP");
  assert.equal(http.message, "no such model");
  assert.ok(http instanceof Error);
});

test("the codes are distinct and each is documented in docs/operations.md", () => {
  const codes = Object.values(ERROR_CODES);
  assert.equal(new Set(codes).size, codes.length);
  const ops = readFileSync(join(repoRoot(), "docs/operations.md"), "utf8");
  assert.deepEqual(
    codes.filter((c) => !ops.includes(`\`${c}\``)),
    [],
  );
});
