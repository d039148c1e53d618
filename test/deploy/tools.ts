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
 * The tool's path. Under CI=true a missing tool fails the test (CI installs it with
 * deploy/ci/install-k8s-tools.sh); elsewhere the test is skipped with the reason.
 */
export function requireTool(t: TestContext, name: string): string | undefined {
  const p = findTool(name);
  if (p) return p;
  const msg = `${name} not found on PATH or in ${TOOLS_BIN}: run deploy/ci/install-k8s-tools.sh`;
  if (process.env.CI === "true" || process.env.CI === "1") throw new Error(msg);
  t.skip(msg);
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

/** The CRD cache, like requireTool: under CI its absence fails the test, elsewhere it skips. */
export function requireCrds(t: TestContext): string | undefined {
  if (existsSync(join(CRD_DIR, "SOURCES"))) return CRD_DIR;
  const msg = `no CRDs in ${CRD_DIR}: run deploy/ci/install-k8s-tools.sh (it runs deploy/ci/fetch-crds.sh)`;
  if (process.env.CI === "true" || process.env.CI === "1") throw new Error(msg);
  t.skip(msg);
  return undefined;
}
