// Locating the external tools the deploy tests drive (helm, promtool, kubernetes-validate, hadolint)
// and the repository root, from test/deploy under tsx or dist/test/deploy after the build.
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { homedir } from "node:os";
import { delimiter, dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import type { TestContext } from "node:test";

export function repoRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, "package.json")) || !existsSync(join(dir, "deploy"))) {
    const up = dirname(dir);
    if (up === dir) throw new Error("repository root (package.json + deploy/) not found");
    dir = up;
  }
  return dir;
}

/** Where deploy/ci/install-k8s-tools.sh caches binaries it builds. */
export const TOOLS_BIN =
  process.env.SWITCHYARD_TOOLS_BIN ?? join(homedir(), ".cache", "switchyard-tools", "bin");

/** Absolute path of a tool on PATH or in the tools cache, or undefined. */
export function findTool(name: string): string | undefined {
  const dirs = [...(process.env.PATH ?? "").split(delimiter), TOOLS_BIN];
  for (const d of dirs) {
    const p = join(d, name);
    if (d && existsSync(p)) return p;
  }
  return undefined;
}

/**
 * Whether a missing tool fails the test instead of skipping it: under `npm test` (which installs the
 * tools first, .ci/install-tools.sh, and sets SWITCHYARD_REQUIRE_TOOLS=1) and under CI=true. A test
 * file run on its own (`node --test`, `node scripts/run-tests.mjs <filter>`) skips with the reason.
 */
export function toolsRequired(): boolean {
  const on = (v: string | undefined) => v === "true" || v === "1";
  return on(process.env.SWITCHYARD_REQUIRE_TOOLS) || on(process.env.CI);
}

/** A missing tool: throws where tools are required, else returns the reason as node:test's `skip`. */
export function missingTool(msg: string): string {
  if (toolsRequired()) throw new Error(`${msg} (npm test installs it: .ci/install-tools.sh)`);
  return msg;
}

/** A missing tool inside a test: fails it where tools are required, else skips it with the reason. */
export function skipForTool(t: TestContext, msg: string): void {
  t.skip(missingTool(msg));
}

/** The tool's path, or undefined after skipping the test (failing it where tools are required). */
export function requireTool(t: TestContext, name: string): string | undefined {
  const p = findTool(name);
  if (p) return p;
  skipForTool(t, `${name} not found on PATH or in ${TOOLS_BIN}: run deploy/ci/install-k8s-tools.sh`);
  return undefined;
}

/**
 * python3 with these modules, or undefined after skipping (failing where tools are required): a test
 * checks for every module its script imports, so a neighbour's cache does not pass for its own.
 */
export function requirePython(t: TestContext, modules: string[], pipNames: string[]): string | undefined {
  const python = requireTool(t, "python3");
  if (!python) return undefined;
  const r = spawnSync(python, ["-c", `import ${modules.join(", ")}`], { stdio: "ignore" });
  if (r.status === 0) return python;
  skipForTool(t, `python3 cannot import ${modules.join(", ")}: pip install ${pipNames.join(" ")}`);
  return undefined;
}

export interface RunResult {
  status: number | null;
  stdout: string;
  stderr: string;
}

export function run(cmd: string, args: string[], opts: { cwd?: string; timeoutMs?: number } = {}): RunResult {
  const r = spawnSync(cmd, args, {
    cwd: opts.cwd ?? repoRoot(),
    encoding: "utf8",
    // a hang guard: helm and the validators are several times slower on a machine whose cores are busy
    timeout: opts.timeoutMs ?? 120_000,
    maxBuffer: 64 * 2 ** 20,
  });
  if (r.error) throw r.error;
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** Where deploy/ci/fetch-crds.sh caches the published CRDs the chart's custom objects are checked against. */
export const CRD_DIR =
  process.env.SWITCHYARD_CRD_DIR ?? join(homedir(), ".cache", "switchyard-tools", "crds");

/** The CRD cache, like requireTool: where tools are required its absence fails the test, elsewhere it skips. */
export function requireCrds(t: TestContext): string | undefined {
  if (existsSync(join(CRD_DIR, "SOURCES"))) return CRD_DIR;
  skipForTool(
    t,
    `no CRDs in ${CRD_DIR}: run deploy/ci/install-k8s-tools.sh (it runs deploy/ci/fetch-crds.sh)`,
  );
  return undefined;
}
