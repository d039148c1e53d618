// The image Dockerfile: hadolint clean, multi-stage, non-root, one entry point for every subcommand.
// No Docker engine runs in CI, so the build itself is not exercised here.
import assert from "node:assert/strict";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, it } from "node:test";
import { repoRoot, requireTool, run } from "./tools.js";

const dockerfile = join(repoRoot(), "deploy", "docker", "Dockerfile");
const text = readFileSync(dockerfile, "utf8");

describe("Dockerfile", () => {
  it("passes hadolint", (t) => {
    const hadolint = requireTool(t, "hadolint");
    if (!hadolint) return;
    const r = run(hadolint, [dockerfile]);
    assert.equal(r.status, 0, r.stdout + r.stderr);
  });

  it("builds in one stage and runs from a slim one as a numeric non-root user", () => {
    const stages = [...text.matchAll(/^FROM\s+(\S+)/gm)].map((m) => m[1]);
    assert.ok(stages.length >= 2, "multi-stage");
    // the Node the tests run on: the active LTS, with `reusePort` (the router listens on several sockets with it)
    assert.match(text, /^ARG NODE_IMAGE=node:24-slim$/m);
    const lastStage = text.slice(text.lastIndexOf("\nFROM "));
    assert.match(
      lastStage,
      /^USER [1-9][0-9]*:[1-9][0-9]*$/m,
      "the runtime stage runs as a numeric non-root user",
    );
    assert.doesNotMatch(
      lastStage,
      /npm (ci|install)(?!.*--omit=dev)/,
      "no dev dependencies in the runtime stage",
    );
    assert.match(lastStage, /^ENTRYPOINT \["node", "\/app\/dist\/src\/cli\/main\.js"\]$/m);
  });

  it("copies only what the image needs, and those paths exist", () => {
    const ignore = readFileSync(join(repoRoot(), "deploy", "docker", "Dockerfile.dockerignore"), "utf8");
    for (const m of text.matchAll(/^COPY (?!--from)(.+) \S+$/gm)) {
      for (const src of m[1]!.split(/\s+/)) {
        assert.ok(existsSync(join(repoRoot(), src)), `COPY ${src}: not in the repository`);
        assert.ok(ignore.includes(`!${src}`), `COPY ${src}: excluded by Dockerfile.dockerignore`);
      }
    }
  });

  it("runs the Node the tests run on: the image, .nvmrc and the node dev dependency name one major", () => {
    const pkg = JSON.parse(readFileSync(join(repoRoot(), "package.json"), "utf8"));
    const image = /^ARG NODE_IMAGE=node:(\d+)-slim$/m.exec(text)?.[1];
    const nvmrc = readFileSync(join(repoRoot(), ".nvmrc"), "utf8").trim();
    const dev = /^\D*(\d+)\./.exec(pkg.devDependencies.node)?.[1];
    assert.deepEqual([image, nvmrc, dev], ["24", "24", "24"]);
    // the floor: the first Node with listen({ reusePort }), which --listen-sockets uses
    assert.equal(pkg.engines.node, ">=22.12");
    // npm runs the node package's install script, which fetches the binary from the npm registry
    assert.equal(pkg.allowScripts.node, true);
  });
});
