// The shape of src/ as rules a reviewer would otherwise enforce by eye: folders import downward only
// (the folder graph has no cycle, nothing imports the CLI entry point, discovery knows nothing of the
// router), no file-level import cycle (type-only imports included: they still tie two files' designs
// together), and no source file over 600 lines. Read from the .ts sources, so a clean clone checks
// what a reviewer reads.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readdirSync, readFileSync, statSync } from "node:fs";
import { dirname, join, normalize, relative } from "node:path";
import { repoRoot } from "./deploy/tools.js";

const MAX_LINES = 600;
const IMPORT =
  /(?:^|\n)\s*(?:import|export)\b[^;]*?\bfrom\s*["'](\.{1,2}\/[^"']+)["']|\bimport\(\s*["'](\.{1,2}\/[^"']+)["']\s*\)/g;

interface SourceFile {
  path: string; // relative to the repo root, e.g. src/router/proxy.ts
  lines: number;
  imports: string[]; // resolved, relative to the repo root
}

function sources(): SourceFile[] {
  const root = repoRoot();
  const out: SourceFile[] = [];
  const walk = (dir: string): void => {
    for (const name of readdirSync(join(root, dir))) {
      const rel = join(dir, name);
      if (statSync(join(root, rel)).isDirectory()) walk(rel);
      else if (name.endsWith(".ts")) {
        const text = readFileSync(join(root, rel), "utf8");
        const imports: string[] = [];
        for (const m of text.matchAll(IMPORT)) {
          const spec = (m[1] ?? m[2])!;
          imports.push(normalize(join(dirname(rel), spec)).replace(/\.js$/, ".ts"));
        }
        out.push({ path: rel, lines: text.split("\n").length - (text.endsWith("\n") ? 1 : 0), imports });
      }
    }
  };
  walk("src");
  return out;
}

/** `src/router/kv/x.ts` → `router`; `src/x.ts` → `.` */
function folderOf(path: string): string {
  const parts = relative("src", path).split("/");
  return parts.length > 1 ? parts[0]! : ".";
}

/** Strongly connected components with more than one member (Tarjan), each as a sorted list. */
function cycles(graph: Map<string, Set<string>>): string[][] {
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const found: string[][] = [];
  let counter = 0;
  const visit = (v: string): void => {
    index.set(v, counter);
    low.set(v, counter++);
    stack.push(v);
    onStack.add(v);
    for (const w of graph.get(v) ?? []) {
      if (!graph.has(w)) continue;
      if (!index.has(w)) {
        visit(w);
        low.set(v, Math.min(low.get(v)!, low.get(w)!));
      } else if (onStack.has(w)) low.set(v, Math.min(low.get(v)!, index.get(w)!));
    }
    if (low.get(v) === index.get(v)) {
      const comp: string[] = [];
      for (;;) {
        const w = stack.pop()!;
        onStack.delete(w);
        comp.push(w);
        if (w === v) break;
      }
      if (comp.length > 1) found.push(comp.sort());
    }
  };
  for (const v of graph.keys()) if (!index.has(v)) visit(v);
  return found;
}

const files = sources();

test("no source file imports a file that imports it back, even for types", () => {
  const graph = new Map(files.map((f) => [f.path, new Set(f.imports)]));
  assert.deepEqual(cycles(graph), []);
});

test("folders import downward only: the folder graph has no cycle", () => {
  const graph = new Map<string, Set<string>>();
  for (const f of files) {
    const from = folderOf(f.path);
    const set = graph.get(from) ?? new Set<string>();
    graph.set(from, set);
    for (const i of f.imports) if (folderOf(i) !== from) set.add(folderOf(i));
  }
  assert.deepEqual(cycles(graph), []);
});

test("nothing outside src/cli imports from it, and src/discovery imports nothing from src/router", () => {
  const wrong: string[] = [];
  for (const f of files) {
    for (const i of f.imports) {
      if (folderOf(i) === "cli" && folderOf(f.path) !== "cli") wrong.push(`${f.path} → ${i}`);
      if (folderOf(f.path) === "discovery" && folderOf(i) === "router") wrong.push(`${f.path} → ${i}`);
    }
  }
  assert.deepEqual(wrong, []);
});

test(`no source file is over ${MAX_LINES} lines`, () => {
  const long = files.filter((f) => f.lines > MAX_LINES).map((f) => `${f.path}: ${f.lines}`);
  assert.deepEqual(long, []);
});

test("the import reader sees imports, re-exports and dynamic imports", () => {
  const text = `import a from "./a.js";\nexport { b } from "../b.js";\nimport type {\n  C,\n} from "./c/c.js";\nconst d = await import("./d.js");`;
  const specs = [...text.matchAll(IMPORT)].map((m) => m[1] ?? m[2]);
  assert.deepEqual(specs, ["./a.js", "../b.js", "./c/c.js", "./d.js"]);
});
