// Every relative link in the project's Markdown (README.md, docs/, bench/, every folder README, the
// scripts' doc fragments) reaches a file that exists, and every `#anchor` names a heading of its page
// as GitHub slugs it, so a page that moves or a heading that is renamed fails here, not in a reader's
// browser. Read from the sources, so a clean clone checks what GitHub renders.
import { test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { dirname, join, relative } from "node:path";
import { repoRoot } from "../deploy/tools.js";
import { githubSlug, headingAnchors, markdownLinks, namedRepoPaths } from "./markdown.js";

const SKIP_DIRS = new Set(["node_modules", "dist", ".git", ".ci"]);

function markdownFiles(dir: string, out: string[] = []): string[] {
  for (const name of readdirSync(dir)) {
    if (SKIP_DIRS.has(name)) continue;
    const path = join(dir, name);
    if (statSync(path).isDirectory()) markdownFiles(path, out);
    // the configuration doc's fragments are checked where they land, in docs/configuration.md
    else if (name.endsWith(".md") && !name.startsWith("config-doc-")) out.push(path);
  }
  return out;
}

const root = repoRoot();
const files = markdownFiles(root).sort();
const anchorsOf = new Map<string, Set<string>>();
function anchors(path: string): Set<string> {
  let found = anchorsOf.get(path);
  if (!found) {
    found = headingAnchors(readFileSync(path, "utf8"));
    anchorsOf.set(path, found);
  }
  return found;
}

test("GitHub's slug of a heading drops punctuation and inline markup and joins words with hyphens", () => {
  assert.equal(githubSlug("Calibrating the engine model"), "calibrating-the-engine-model");
  assert.equal(githubSlug("`switchyard plan`: the stack decider"), "switchyard-plan-the-stack-decider");
  assert.equal(githubSlug("P/D (disaggregated) — prefill & decode"), "pd-disaggregated--prefill--decode");
  assert.equal(githubSlug("[vLLM](https://docs.vllm.ai) v0.32"), "vllm-v032");
  assert.equal(githubSlug("snake_case stays"), "snake_case-stays");
});

test("a page's anchors include numbered repeats of a heading and explicit HTML ids", () => {
  const found = headingAnchors('# A\n## Setup\n```\n# not a heading\n```\n## Setup\n<a id="here"></a>\n');
  assert.deepEqual([...found].sort(), ["a", "here", "setup", "setup-1"]);
});

test("links inside code fences and inline code are not links", () => {
  const links = markdownLinks("see [a](a.md)\n```\n[b](b.md)\n```\n`[c](c.md)`\n[d]: d.md\n");
  assert.deepEqual(
    links.map((l) => l.target),
    ["a.md", "d.md"],
  );
});

test("the project's Markdown has pages to check, the index and the main README among them", () => {
  const names = files.map((f) => relative(root, f));
  assert.ok(names.includes("README.md"));
  assert.ok(names.includes(join("docs", "README.md")));
  assert.ok(names.includes(join("bench", "README.md")));
});

test("every relative link and anchor in the project's Markdown reaches a file and a heading that exist", () => {
  const dead: string[] = [];
  for (const file of files) {
    for (const { target, line } of markdownLinks(readFileSync(file, "utf8"))) {
      if (/^[a-z][a-z0-9+.-]*:/i.test(target)) continue; // https:, mailto: ...
      const hash = target.indexOf("#");
      const pathPart = decodeURIComponent(hash < 0 ? target : target.slice(0, hash));
      const anchor = hash < 0 ? "" : target.slice(hash + 1);
      const where = `${relative(root, file)}:${line}: ${target}`;
      const resolved =
        pathPart === ""
          ? file
          : pathPart.startsWith("/")
            ? join(root, pathPart)
            : join(dirname(file), pathPart);
      if (!existsSync(resolved)) {
        dead.push(`${where} (no such file)`);
        continue;
      }
      // anchors into source files (#L10) are line numbers GitHub makes up; only Markdown has headings
      if (
        anchor !== "" &&
        resolved.endsWith(".md") &&
        !anchors(resolved).has(decodeURIComponent(anchor).toLowerCase())
      ) {
        dead.push(`${where} (no such heading)`);
      }
    }
  }
  assert.deepEqual(dead, [], `dead links:\n${dead.join("\n")}`);
});

test("every source, test and bench path a page names in code exists, so a moved file is not described at its old place", () => {
  const gone: string[] = [];
  for (const file of files) {
    for (const { target, line } of namedRepoPaths(readFileSync(file, "utf8"))) {
      const path = join(root, target);
      // a compiled name (`bench/x.js`) stands for its source
      if (!existsSync(path) && !existsSync(path.replace(/\.js$/, ".ts")))
        gone.push(`${relative(root, file)}:${line}: ${target}`);
    }
  }
  assert.deepEqual(gone, [], `paths that do not exist:\n${gone.join("\n")}`);
});

test("docs/README.md indexes every page in docs/", () => {
  const docs = join(root, "docs");
  const index = join(docs, "README.md");
  const linked = new Set(
    markdownLinks(readFileSync(index, "utf8")).map((l) =>
      join(docs, decodeURIComponent(l.target.split("#")[0]!)),
    ),
  );
  const missing = files
    .filter((f) => f.startsWith(docs + "/") && f !== index && !linked.has(f))
    .map((f) => relative(root, f));
  assert.deepEqual(missing, [], "pages docs/README.md does not name");
});
