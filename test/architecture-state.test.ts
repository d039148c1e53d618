// Module-level mutable state is shared by everything in a process (every router, every sim an embedder
// starts), so it is a design decision, not a convenience: src holds at most three module-level `let`s,
// and each module-level binding that holds such state says, in the comment above it, why it must be
// process-wide. Read from the sources.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readdirSync, readFileSync, statSync } from "node:fs";
import { join, relative } from "node:path";
import { repoRoot } from "./deploy/tools.js";

function sources(dir: string): { path: string; lines: string[] }[] {
  const out: { path: string; lines: string[] }[] = [];
  for (const name of readdirSync(dir).sort()) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) out.push(...sources(p));
    else if (name.endsWith(".ts"))
      out.push({ path: relative(repoRoot(), p), lines: readFileSync(p, "utf8").split("\n") });
  }
  return out;
}

const files = sources(join(repoRoot(), "src"));

/** the comment lines right above line `i` */
function commentAbove(lines: string[], i: number): string {
  const out: string[] = [];
  for (let j = i - 1; j >= 0 && /^\s*(\/\/|\/\*|\*)/.test(lines[j]!); j--) out.unshift(lines[j]!);
  return out.join("\n");
}

/** the most module-level `let`s src may hold */
const MAX_MODULE_LETS = 3;

test("src holds at most three module-level lets, each saying why it must be process-wide", () => {
  const lets = files.flatMap((f) =>
    f.lines.flatMap((l, i) => (/^(export\s+)?let\s/.test(l) ? [{ at: `${f.path}:${i + 1}`, f, i }] : [])),
  );
  assert.ok(lets.length <= MAX_MODULE_LETS, `module-level lets: ${lets.map((l) => l.at).join(", ")}`);
  assert.deepEqual(
    lets.filter((l) => !/process-wide/.test(commentAbove(l.f.lines, l.i))).map((l) => l.at),
    [],
  );
});

test("a module-level holder of mutable state says why it must be process-wide", () => {
  // the holders: module-level objects whose fields the module reassigns (`holder.field =` or `++`)
  const wrong: string[] = [];
  for (const f of files) {
    const text = f.lines.join("\n");
    f.lines.forEach((l, i) => {
      const m = /^const (\w+)(?::[^=]+)? = \{/.exec(l);
      if (!m) return;
      const name = m[1]!;
      const assigned = new RegExp(
        `(?<![.\\w])${name}\\.\\w+\\s*(?:[-+*]?=(?!=)|\\+\\+|--|\\?\\?=)|\\+\\+${name}\\.`,
      );
      if (assigned.test(text) && !/process-wide/.test(commentAbove(f.lines, i)))
        wrong.push(`${f.path}:${i + 1} ${name}`);
    });
  }
  assert.deepEqual(wrong, []);
});
