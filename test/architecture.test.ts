// The shape of the code base as rules a reviewer would otherwise enforce by eye. Every import edge
// between folders is one the layer table (test/architecture-layers.ts) lists, every listed edge is
// still used, and each points up the table's order of layers; the top-level folder graph has no
// cycle, and no file-level import cycle exists (type-only imports included: they still tie two files'
// designs together). The pure folders do no I/O and read
// no clock. Each folder stays inside its line budget. Read from the sources (.ts, and the scripts'
// .mjs), so a clean clone checks what a reviewer reads.
import { test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { dirname, join, normalize } from "node:path";
import { repoRoot } from "./deploy/tools.js";
import {
  BUDGET_SLACK,
  DOWNWARD,
  EVERYWHERE,
  FILE_CEILING,
  PURE,
  PURITY_EXCEPTIONS,
  ROOMS,
  SRC_FILE_CEILING,
  TEST_IMPORTS,
} from "./architecture-layers.js";

const IMPORT =
  /(?:^|\n)\s*(?:import|export)\b[^;]*?\bfrom\s*["'](\.{1,2}\/[^"']+)["']|\bimport\(\s*["'](\.{1,2}\/[^"']+)["']\s*\)/g;
/** package imports: `from "x"`, `import "x"` and `import("x")` of anything not relative */
const PACKAGE_IMPORT = /(?:\bfrom|^\s*import|\bimport\()\s*["']([^."'][^"']*)["']/gm;
/** the scripts load the compiled package by path */
const DIST_PATH = /\bdist\/((?:src|bench)\/[\w/.-]+?)\/[\w.-]+\.js\b/g;

interface SourceFile {
  path: string; // relative to the repo root, e.g. src/router/edge/server.ts
  text: string;
  lines: number;
  /** folders (repository paths) it imports from, with the specifier as written */
  imports: { folder: string; file: string; spec: string }[];
  packages: string[];
}

function read(roots: readonly string[]): SourceFile[] {
  const root = repoRoot();
  const out: SourceFile[] = [];
  const walk = (dir: string): void => {
    if (!existsSync(join(root, dir))) return;
    for (const name of readdirSync(join(root, dir)).sort()) {
      const rel = join(dir, name);
      if (statSync(join(root, rel)).isDirectory()) walk(rel);
      else if (name.endsWith(".ts") || name.endsWith(".mjs")) {
        const text = readFileSync(join(root, rel), "utf8");
        const imports: SourceFile["imports"] = [];
        for (const m of text.matchAll(IMPORT)) {
          const spec = (m[1] ?? m[2])!;
          const file = normalize(join(dirname(rel), spec)).replace(/\.js$/, ".ts");
          imports.push({ folder: dirname(file), file, spec });
        }
        if (name.endsWith(".mjs")) {
          for (const m of text.matchAll(DIST_PATH)) imports.push({ folder: m[1]!, file: m[0], spec: m[0] });
        }
        const packages = [...code(text).matchAll(PACKAGE_IMPORT)].map((m) => m[1]!);
        const lines = text.split("\n").length - (text.endsWith("\n") ? 1 : 0);
        out.push({ path: rel, text, lines, imports, packages });
      }
    }
  };
  for (const r of roots) walk(r);
  return out;
}

/** The text without its comments, so that a comment naming Date.now is not a use of it. */
function code(text: string): string {
  return text.replace(/\/\*[\s\S]*?\*\//g, "").replace(/(^|[\s;{}(),])\/\/.*$/gm, "$1");
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

/** `src/router/kv` → `src/router`; `bench/support` → `bench` */
function topFolder(folder: string): string {
  return folder
    .split("/")
    .slice(0, 2)
    .join("/")
    .replace(/^(bench|scripts)\/.*/, "$1");
}

const files = read(["src", "bench", "scripts"]);
const sources = files.filter((f) => f.path.endsWith(".ts"));

test("no source file imports a file that imports it back, even for types", () => {
  const graph = new Map(sources.map((f) => [f.path, new Set(f.imports.map((i) => i.file))]));
  assert.deepEqual(cycles(graph), []);
});

test("the tests import the package, their own helpers and the benchmarks' support folder, never a benchmark script", () => {
  const wrong: string[] = [];
  for (const f of read(["test"])) {
    for (const i of f.imports) {
      if (TEST_IMPORTS.some((p) => i.folder === p || i.folder.startsWith(`${p}/`))) continue;
      wrong.push(
        `${f.path} imports ${i.spec}: ${i.folder} is not in TEST_IMPORTS (test/architecture-layers.ts)`,
      );
    }
  }
  assert.deepEqual(wrong, []);
});

test("the top-level folders import downward only: their graph has no cycle", () => {
  const graph = new Map<string, Set<string>>();
  for (const f of sources.filter((s) => s.path.startsWith("src/"))) {
    const from = topFolder(dirname(f.path));
    const set = graph.get(from) ?? new Set<string>();
    graph.set(from, set);
    for (const i of f.imports) if (topFolder(i.folder) !== from) set.add(topFolder(i.folder));
  }
  assert.deepEqual(cycles(graph), []);
});

test("every folder has a row in the layer table, and every row is a folder with sources", () => {
  const folders = new Set(files.map((f) => dirname(f.path)));
  const missing = [...folders]
    .filter((d) => !ROOMS[d])
    .map((d) => `${d}: no row in test/architecture-layers.ts`);
  const empty = Object.keys(ROOMS)
    .filter((d) => !folders.has(d))
    .map((d) => `${d}: a row, but no sources there`);
  assert.deepEqual([...missing, ...empty], []);
});

test("every import between folders is an edge the layer table lists", () => {
  const wrong: string[] = [];
  for (const f of files) {
    const from = dirname(f.path);
    const allowed = ROOMS[from]?.imports ?? [];
    for (const i of f.imports) {
      if (i.folder === from || allowed.includes(i.folder) || EVERYWHERE.includes(i.folder)) continue;
      wrong.push(`${f.path} imports ${i.spec}: ${from} → ${i.folder} is not in test/architecture-layers.ts`);
    }
  }
  assert.deepEqual(wrong, []);
});

test("every edge the layer table lists is one some file still uses", () => {
  const used = new Set<string>();
  for (const f of files) for (const i of f.imports) used.add(`${dirname(f.path)} → ${i.folder}`);
  const stale: string[] = [];
  for (const [from, room] of Object.entries(ROOMS)) {
    for (const to of room.imports) {
      if (!used.has(`${from} → ${to}`))
        stale.push(`${from} → ${to}: no file imports it; delete it from the row`);
    }
  }
  assert.deepEqual(stale, []);
});

test("the table's order is the layers' order: every listed edge points to a row above its own", () => {
  const order = Object.keys(ROOMS);
  const wrong: string[] = [];
  const used = new Set<string>();
  for (const [from, room] of Object.entries(ROOMS)) {
    for (const to of room.imports) {
      if (!ROOMS[to] || order.indexOf(to) < order.indexOf(from)) continue;
      const named = DOWNWARD.find(([f, t]) => f === from && t === to);
      if (named) used.add(`${from} → ${to}`);
      else
        wrong.push(
          `${from} → ${to}: ${to} is not above ${from} in the table (an upward import, or a row out of order)`,
        );
    }
  }
  for (const [f, t] of DOWNWARD)
    if (!used.has(`${f} → ${t}`)) wrong.push(`${f} → ${t}: in DOWNWARD, but not a downward edge`);
  assert.deepEqual(wrong, []);
});

test("the layer table keeps the fixed rules: nothing imports the CLI, discovery knows nothing of the router", () => {
  const wrong: string[] = [];
  for (const [from, room] of Object.entries(ROOMS)) {
    for (const to of room.imports) {
      if (to === from) wrong.push(`${from} lists itself`);
      if (to === "src/cli" && !from.startsWith("scripts")) wrong.push(`${from} → src/cli`);
      if (from.startsWith("src/discovery") && to.startsWith("src/router")) wrong.push(`${from} → ${to}`);
      if (from.startsWith("src/") && !to.startsWith("src/"))
        wrong.push(`${from} → ${to}: the package imports only src`);
    }
  }
  for (const e of EVERYWHERE) if ((ROOMS[e]?.imports ?? ["(no row)"]).length > 0) wrong.push(`${e} imports`);
  assert.deepEqual(wrong, []);
});

/** what a pure folder may not use: I/O modules, and (in code, not comments) clocks, timers, Math.random */
const IO_MODULES =
  /^(?:node:)?(?:fs|fs\/promises|net|http|https|http2|tls|dgram|dns|child_process|worker_threads|cluster|readline|os|process|perf_hooks|timers|timers\/promises|inspector)$|^(?:undici|zeromq|ioredis|pino|prom-client|@grpc\/grpc-js)(?:\/|$)/;
const IMPURE_CALLS = [
  /\bDate\.now\b/g,
  /\bnew Date\(/g,
  /\bperformance\.now\b/g,
  /\bprocess\.hrtime\b/g,
  /\bsetTimeout\b/g,
  /\bsetInterval\b/g,
  /\bsetImmediate\b/g,
  /\bMath\.random\b/g,
  /\bfetch\(/g,
  /\bconsole\./g,
];

function impurities(f: SourceFile): string[] {
  const found = new Set<string>();
  for (const p of f.packages) if (IO_MODULES.test(p)) found.add(`import ${p}`);
  const body = code(f.text);
  for (const re of IMPURE_CALLS) for (const m of body.matchAll(re)) found.add(m[0]);
  return [...found];
}

test("the pure folders (engine, routing, workload) do no I/O and read no clock", () => {
  const wrong: string[] = [];
  const excused = new Set<string>();
  for (const f of sources.filter((s) => PURE.some((p) => s.path.startsWith(`${p}/`)))) {
    for (const use of impurities(f)) {
      const ok = PURITY_EXCEPTIONS.find((e) => e.file === f.path && e.uses === use);
      if (ok) excused.add(`${ok.file} ${ok.uses}`);
      else wrong.push(`${f.path}: ${use}`);
    }
  }
  const stale = PURITY_EXCEPTIONS.filter((e) => !excused.has(`${e.file} ${e.uses}`)).map(
    (e) => `${e.file}: the exception for ${e.uses} no longer applies; delete it`,
  );
  assert.deepEqual([...wrong, ...stale], []);
});

test("the purity scan sees I/O imports and clock reads in code, not in comments", () => {
  const f = (text: string): SourceFile => ({
    path: "x.ts",
    text,
    lines: 1,
    imports: [],
    packages: [...code(text).matchAll(PACKAGE_IMPORT)].map((m) => m[1]!),
  });
  assert.deepEqual(
    impurities(f(`// Date.now() is not read here\nimport { z } from "zod";\nconst u = "http://x";`)),
    [],
  );
  assert.deepEqual(impurities(f(`import { readFileSync } from "node:fs";\nconst t = performance.now();`)), [
    "import node:fs",
    "performance.now",
  ]);
  assert.deepEqual(impurities(f(`import "undici";\nsetTimeout(f, 1); /* Math.random */`)), [
    "import undici",
    "setTimeout",
  ]);
});

test("every folder stays inside its line budget, and no file is over the sanity ceiling", (t) => {
  const used = new Map<string, number>();
  for (const f of files) used.set(dirname(f.path), (used.get(dirname(f.path)) ?? 0) + f.lines);
  const rows = Object.entries(ROOMS).map(([folder, room]) => ({
    folder,
    used: used.get(folder) ?? 0,
    budget: room.lines,
  }));
  const width = Math.max(...rows.map((r) => r.folder.length));
  t.diagnostic(`${"folder".padEnd(width)}   lines  budget   use`);
  for (const r of rows) {
    const pct = Math.round((100 * r.used) / r.budget);
    t.diagnostic(
      `${r.folder.padEnd(width)} ${String(r.used).padStart(7)} ${String(r.budget).padStart(7)} ${String(pct).padStart(4)}%`,
    );
  }
  const over = rows
    .filter((r) => r.used > r.budget)
    .map((r) => `${r.folder}: ${r.used} lines, budget ${r.budget}`);
  const long = files
    .filter((f) => f.lines > FILE_CEILING)
    .map((f) => `${f.path}: ${f.lines} lines, ceiling ${FILE_CEILING}`);
  assert.deepEqual([...over, ...long], []);
});

test("the import reader sees imports, re-exports, dynamic imports and the scripts' dist paths", () => {
  const text = `import a from "./a.js";\nexport { b } from "../b.js";\nimport type {\n  C,\n} from "./c/c.js";\nconst d = await import("./d.js");`;
  const specs = [...text.matchAll(IMPORT)].map((m) => m[1] ?? m[2]);
  assert.deepEqual(specs, ["./a.js", "../b.js", "./c/c.js", "./d.js"]);
  const script = `await import(join(root, "dist/src/ops/dashboards.js"));\nrun(["dist/src/cli/main.js"]);`;
  assert.deepEqual(
    [...script.matchAll(DIST_PATH)].map((m) => m[1]),
    ["src/ops", "src/cli"],
  );
});

test("every source folder has a README.md that names each of its files", () => {
  const root = repoRoot();
  const byFolder = new Map<string, string[]>();
  for (const f of sources.filter((s) => s.path.startsWith("src/"))) {
    const list = byFolder.get(dirname(f.path)) ?? [];
    list.push(f.path.slice(dirname(f.path).length + 1));
    byFolder.set(dirname(f.path), list);
  }
  const wrong: string[] = [];
  for (const [folder, names] of byFolder) {
    const readme = join(root, folder, "README.md");
    if (!existsSync(readme)) {
      wrong.push(`${folder}: no README.md`);
      continue;
    }
    const text = readFileSync(readme, "utf8");
    for (const n of names) if (!text.includes(n)) wrong.push(`${folder}/README.md does not name ${n}`);
  }
  assert.deepEqual(wrong, []);
});

test("no file of the package is over the 600-line cap", () => {
  const long = sources
    .filter((f) => f.path.startsWith("src/") && f.lines > SRC_FILE_CEILING)
    .map((f) => `${f.path}: ${f.lines} lines, cap ${SRC_FILE_CEILING}`);
  assert.deepEqual(long, []);
});

test("each layer row's budget is within a ninth of its use, or the row says why it grows", () => {
  const used = new Map<string, number>();
  for (const f of files) used.set(dirname(f.path), (used.get(dirname(f.path)) ?? 0) + f.lines);
  const slack = Object.entries(ROOMS)
    .filter(([folder, room]) => !room.grows && room.lines > Math.ceil((used.get(folder) ?? 0) / BUDGET_SLACK))
    .map(
      ([folder, room]) =>
        `${folder}: ${used.get(folder) ?? 0} of ${room.lines} lines; trim the budget to ${Math.ceil((used.get(folder) ?? 0) / BUDGET_SLACK)} or say why it grows`,
    );
  const empty = Object.entries(ROOMS)
    .filter(([, room]) => room.grows !== undefined && room.grows.trim().length < 10)
    .map(([folder]) => `${folder}: grows needs a reason`);
  assert.deepEqual([...slack, ...empty], []);
});
