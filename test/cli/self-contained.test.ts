// User-facing text must stand on its own: README.md, docs/ and src/ (CLI help and output, plans, comments
// that end up in stack traces) may cite public sources, never the build machine's files, the internal
// design documents or the tracker's issue numbers. A reader has none of them. The fixtures the tests
// read carry their provenance, so a clean clone knows where every byte came from.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { filesUnder } from "../helpers/files.js";
import { homedir } from "node:os";
import { join, relative } from "node:path";
import { repoRoot } from "../deploy/tools.js";

const root = repoRoot();
const TEXT = /\.(md|ts|js|mjs|json|ya?ml|txt|svg|sh|tpl)$/;

const walk = (dir: string): string[] => filesUnder(dir, TEXT);

interface Hit {
  where: string;
  line: string;
}

function scan(files: string[], re: RegExp): Hit[] {
  const hits: Hit[] = [];
  for (const f of files) {
    const lines = readFileSync(f, "utf8").split("\n");
    lines.forEach((line, i) => {
      if (re.test(line))
        hits.push({ where: `${relative(root, f)}:${i + 1}`, line: line.trim().slice(0, 160) });
    });
  }
  return hits;
}

function report(hits: Hit[]): string {
  return hits.map((h) => `  ${h.where}: ${h.line}`).join("\n");
}

const files = [join(root, "README.md"), ...walk(join(root, "docs")), ...walk(join(root, "src"))];

function escape(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}

test("README, docs and src cite no internal reference folder, design document or 'this task'", () => {
  // the same expression as `grep -rnE` in the operator-experience acceptance
  const hits = scan(files, /shared\/(reference|seeds|vectors)|seed (document|0[0-9]{2})|this task/);
  assert.equal(hits.length, 0, `internal references in user-facing text:\n${report(hits)}`);
});

test("README, docs and src hold no absolute path of the build machine", () => {
  const paths = [root, "/work/"];
  const home = homedir();
  if (home.length > 1) paths.push(home + "/");
  // a path starts the token: `src/workload` is not `/work/`
  const re = new RegExp(
    `(?<![\\w.~/-])(${paths.map(escape).join("|")}|/home/[a-z_][\\w-]*/|/Users/[A-Za-z][\\w.-]*/)`,
  );
  const hits = scan(files, re);
  assert.equal(hits.length, 0, `machine paths in user-facing text:\n${report(hits)}`);
});

test("README, docs and src name no tracker issue or acceptance point of this project", () => {
  // public references stay welcome ("vLLM PR #17885", "production-stack #952"); our own tracker's do not
  const re = /\b[Ii]ssue #?\d+|\(#\d+\)|\b[Aa]cceptance \d|\bno GPU machine was lent/i;
  const hits = scan(files, re);
  assert.equal(hits.length, 0, `tracker references in user-facing text:\n${report(hits)}`);
});

test("the README and docs use no words of the team's process ('helper', 'brief')", () => {
  // `test/helpers` is a folder's name; the words as prose are how the work was organised, not the product
  const pages = files.filter((f) => f.endsWith(".md") && !f.startsWith(join(root, "src")));
  const hits = scan(pages, /(?<![/\w])(helpers?|briefs?)\b/i);
  assert.equal(hits.length, 0, `process words in the docs:\n${report(hits)}`);
});

test("every fixture under test/fixtures says where it came from", () => {
  const dir = join(root, "test", "fixtures");
  const provenance = readFileSync(join(dir, "PROVENANCE.md"), "utf8");
  const missing: string[] = [];
  for (const f of walk(dir)) {
    const rel = relative(dir, f);
    if (rel === "PROVENANCE.md") continue;
    if (provenance.includes(`\`${rel}\``)) continue;
    // a row may speak for a whole folder written together (a model folder): `tiny-model/`
    const folders = rel.split("/").slice(0, -1);
    if (folders.some((_, i) => provenance.includes(`\`${folders.slice(0, i + 1).join("/")}/\``))) continue;
    // or a `source` field of its own
    if (f.endsWith(".json")) {
      const doc = JSON.parse(readFileSync(f, "utf8")) as { source?: unknown };
      if (typeof doc.source === "string" && doc.source.length > 0) continue;
    }
    missing.push(rel);
  }
  assert.deepEqual(
    missing,
    [],
    "fixtures without provenance: add a row to test/fixtures/PROVENANCE.md or a `source` field",
  );
});
