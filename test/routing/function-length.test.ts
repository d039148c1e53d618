// Routing plugins stay small, GIE's way: no function in src/routing is longer than 80 lines, read from
// the sources with the TypeScript compiler's parser. A function still over it is named in LONG with its
// length today, so the list only shrinks: one that grows, or a new long one, fails; one that got short
// must leave the list.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readdirSync, readFileSync, statSync } from "node:fs";
import { join, relative } from "node:path";
import ts from "typescript";
import { repoRoot } from "../deploy/tools.js";

const MAX_LINES = 80;

/** the functions still over MAX_LINES ("file: name" → lines), to be cut into plugins */
const LONG: Readonly<Record<string, number>> = {};

function sources(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir).sort()) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) out.push(...sources(p));
    else if (name.endsWith(".ts")) out.push(p);
  }
  return out;
}

function nameOf(node: ts.Node, file: ts.SourceFile): string {
  const named = (node as { name?: ts.Node }).name;
  if (named) return named.getText(file);
  const parent = node.parent;
  if (parent && (ts.isVariableDeclaration(parent) || ts.isPropertyAssignment(parent)))
    return parent.name.getText(file);
  return `(anonymous at line ${file.getLineAndCharacterOfPosition(node.getStart(file)).line + 1})`;
}

/** every function-like node of the file over MAX_LINES, "file: name" → its lines */
function longFunctions(path: string): Map<string, number> {
  const file = ts.createSourceFile(path, readFileSync(path, "utf8"), ts.ScriptTarget.Latest, true);
  const rel = relative(repoRoot(), path);
  const out = new Map<string, number>();
  const visit = (node: ts.Node): void => {
    if (ts.isFunctionLike(node) && (node as { body?: ts.Node }).body) {
      const from = file.getLineAndCharacterOfPosition(node.getStart(file)).line;
      const to = file.getLineAndCharacterOfPosition(node.getEnd()).line;
      if (to - from + 1 > MAX_LINES) out.set(`${rel}: ${nameOf(node, file)}`, to - from + 1);
    }
    ts.forEachChild(node, visit);
  };
  visit(file);
  return out;
}

test(`no function in src/routing is longer than ${MAX_LINES} lines but those still listed, and none grows`, () => {
  const found = new Map<string, number>();
  for (const path of sources(join(repoRoot(), "src", "routing")))
    for (const [key, lines] of longFunctions(path)) found.set(key, lines);
  const wrong: string[] = [];
  for (const [key, lines] of found) {
    const allowed = LONG[key];
    if (allowed === undefined) wrong.push(`${key}: ${lines} lines (at most ${MAX_LINES})`);
    else if (lines > allowed) wrong.push(`${key}: ${lines} lines, grown from ${allowed}`);
  }
  for (const key of Object.keys(LONG))
    if (!found.has(key)) wrong.push(`${key}: no longer over ${MAX_LINES} lines; take it off the list`);
  assert.deepEqual(wrong, []);
});
