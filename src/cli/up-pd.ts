// `switchyard up --prefill N --decode M`: the stack as a disaggregated fleet, the layout
// `switchyard plan` chooses for long prompts (docs/disaggregated.md). Engines 0..N-1 are prefill
// engines (the sim's NixlConnector as kv_producer), engines N..N+M-1 decode engines (kv_consumer), each
// role with its own tensor-parallel size when the plan gives them different ones. The router learns
// the pools from a config file listing each engine with its role (the router's flags name URLs only),
// written in a private temporary directory and removed when the stack stops; its own flags still apply
// over the file. Everything else (ports, KV events, signals, stopping) is `up`'s as for any stack.
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { z } from "zod";
import { CliError } from "../config/args.js";
import { flag } from "../config/schema-flags.js";

/** The P/D flags of `switchyard up`: fields of its option schema (src/cli/up-options.ts). */
export const PD_OPTIONS = {
  prefill: flag(z.number().int().min(0).max(64).default(0), {
    flag: "prefill",
    help: "prefill engines: with --decode, a disaggregated stack (NixlConnector kv_producer engines first, the router in its P/D mode) in place of --engines",
  }),
  decode: flag(z.number().int().min(0).max(64).default(0), {
    flag: "decode",
    help: "decode engines, with --prefill (NixlConnector kv_consumer, after the prefill engines)",
  }),
  prefillTp: flag(z.number().int().min(1).max(8).optional(), {
    flag: "prefill-tp",
    help: "tensor-parallel size of the prefill engines (default: a --tensor-parallel-size given for every engine, else 1)",
  }),
  decodeTp: flag(z.number().int().min(1).max(8).optional(), {
    flag: "decode-tp",
    help: "tensor-parallel size of the decode engines (default: as --prefill-tp's)",
  }),
};

export type PdRole = "prefill" | "decode";

/** One engine of the stack: its P/D role (null: it serves whole requests) and the sim flags it adds. */
export interface EngineSlot {
  role: PdRole | null;
  /** its tensor-parallel size when its role sets one, else null (the pass-through flags decide) */
  tp: number | null;
  /** sim flags for this engine alone, after the pass-through ones with its role's TP removed */
  args: (passThrough: readonly string[]) => string[];
}

/** The value of `--name V` / `--name=V` in pass-through flags, or undefined. */
export function flagValue(args: readonly string[], name: string): string | undefined {
  let v: string | undefined;
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    if (a === name && args[i + 1] !== undefined) v = args[++i];
    else if (a.startsWith(`${name}=`)) v = a.slice(name.length + 1);
  }
  return v;
}

/** Pass-through flags without `--name V` / `--name=V`. */
function withoutFlag(args: readonly string[], name: string): string[] {
  const out: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    if (a === name) i++;
    else if (!a.startsWith(`${name}=`)) out.push(a);
  }
  return out;
}

/**
 * The stack's engines: `engines` whole-request engines, or with --prefill and --decode the two pools.
 * Throws CliError on a half-given layout or on flags the roles set themselves.
 */
export function engineSlots(
  flags: Record<string, unknown>,
  given: ReadonlySet<string>,
  passThrough: readonly string[],
): EngineSlot[] {
  const p = flags.prefill as number;
  const d = flags.decode as number;
  const pd = given.has("prefill") || given.has("decode");
  if (!pd) {
    for (const f of ["prefill-tp", "decode-tp"])
      if (given.has(f)) throw new CliError(`--${f} needs --prefill and --decode`);
    const plain: EngineSlot = { role: null, tp: null, args: (pt) => [...pt] };
    return Array.from({ length: flags.engines as number }, () => plain);
  }
  if (p < 1 || d < 1)
    throw new CliError(
      "a disaggregated stack needs at least one engine of each role: --prefill N --decode M",
    );
  if (given.has("engines"))
    throw new CliError("--engines and --prefill/--decode are two layouts: give one of them");
  for (const f of ["--kv-transfer-config", "--kv-offloading-backend"])
    if (flagValue(passThrough, f) !== undefined)
      throw new CliError(`${f} is set per role by --prefill/--decode (NixlConnector): leave it out`);
  const common = Number(flagValue(passThrough, "--tensor-parallel-size") ?? 1);
  if (!Number.isInteger(common) || common < 1)
    throw new CliError("--tensor-parallel-size must be a whole number of GPUs, 1 or more");
  const prefillTp = (flags["prefill-tp"] as number | undefined) ?? common;
  const decodeTp = (flags["decode-tp"] as number | undefined) ?? prefillTp;
  const slot = (role: PdRole, tp: number): EngineSlot => ({
    role,
    tp,
    args: (pt) => [
      ...withoutFlag(pt, "--tensor-parallel-size"),
      "--tensor-parallel-size",
      String(tp),
      "--kv-transfer-config",
      JSON.stringify({
        kv_connector: "NixlConnector",
        kv_role: role === "prefill" ? "kv_producer" : "kv_consumer",
      }),
    ],
  });
  const prefill = slot("prefill", prefillTp);
  const decode = slot("decode", decodeTp);
  return [...Array.from({ length: p }, () => prefill), ...Array.from({ length: d }, () => decode)];
}

/** True when the stack is disaggregated (its engines have roles). */
export function isDisaggregated(slots: readonly EngineSlot[]): boolean {
  return slots.some((s) => s.role !== null);
}

/**
 * The router's flags that name the engines: `--backend` per URL, or for a disaggregated stack a config
 * file giving each its role (removed when this process exits).
 */
export function routerBackendArgs(slots: readonly EngineSlot[], urls: readonly string[]): string[] {
  if (!isDisaggregated(slots)) return urls.flatMap((u) => ["--backend", u]);
  const dir = mkdtempSync(join(tmpdir(), "switchyard-up-pd-"));
  process.on("exit", () => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, "router.yaml");
  // JSON is YAML; the order of the backends is the engines' order (KV events by index follow it)
  const backends = urls.map((url, i) => ({ url, role: slots[i]!.role }));
  writeFileSync(file, `${JSON.stringify({ backends }, null, 2)}\n`, { mode: 0o600 });
  return ["--config", file];
}

/** The TP the predictive policy times engines with: in P/D the prefill pool's, whose pick sets TTFT. */
export function routerTp(slots: readonly EngineSlot[]): number | null {
  return slots.find((s) => s.role === "prefill")?.tp ?? null;
}

/** The summary's description of the engines, and each engine's tag. */
export function describeSlots(slots: readonly EngineSlot[]): { fleet: string; tag: (i: number) => string } {
  if (!isDisaggregated(slots)) return { fleet: `${slots.length}`, tag: () => "" };
  const count = (r: PdRole) => slots.filter((s) => s.role === r).length;
  const tp = (r: PdRole) => slots.find((s) => s.role === r)!.tp;
  return {
    fleet: `${count("prefill")} prefill (TP ${tp("prefill")}) + ${count("decode")} decode (TP ${tp("decode")}), disaggregated,`,
    tag: (i) => ` (${slots[i]!.role})`,
  };
}
