// The adapters the router may load, its LoRA catalog: a scanned folder's subfolders (`--lora-dir`,
// each a PEFT adapter named by its folder) and the config's entries (`lora.adapters`, `--lora-adapter`:
// folders elsewhere and Hub repositories), each with its base model, its size (what a load is priced
// at) and the tenants it is private to. Read once at start-up and at a config reload; the loads
// themselves are adapters.ts's.
import { readdirSync, readFileSync, statSync } from "node:fs";
import { join, resolve } from "node:path";
import { CapacityError, InputFileError, InvalidConfigError } from "../../errors/index.js";
/** one registry entry: the adapter's name, its folder as the engines read it, its base and size */
export interface AdapterEntry {
  name: string;
  path: string;
  /** the base model (adapter_config.json's base_model_name_or_path, or the config's); null: any */
  base: string | null;
  bytes: number;
  /** the tenants it is private to (undefined: every tenant's) */
  tenants?: ReadonlySet<string> | undefined;
}

/** a registry entry as the configuration gives it (`lora.adapters`) */
export interface AdapterConfigEntry {
  name: string;
  path?: string | undefined;
  hub?: string | undefined;
  base?: string | undefined;
  bytes?: number | undefined;
  tenants?: readonly string[] | undefined;
}

/** adapters in one registry at most */
export const MAX_ADAPTERS = 100_000;
/** adapter bytes assumed when the router cannot read the folder (the engines read it, not the router) */
const UNKNOWN_ADAPTER_BYTES = 50e6;

function weightBytes(dir: string): number {
  for (const f of ["adapter_model.safetensors", "adapter_model.bin"]) {
    try {
      const s = statSync(join(dir, f));
      if (s.isFile()) return s.size;
    } catch {
      // next
    }
  }
  return UNKNOWN_ADAPTER_BYTES;
}

function baseOf(dir: string): string | null {
  try {
    const cfg = JSON.parse(readFileSync(join(dir, "adapter_config.json"), "utf8")) as Record<string, unknown>;
    const b = cfg.base_model_name_or_path;
    return typeof b === "string" && b ? b : null;
  } catch {
    return null;
  }
}

/** The adapters the router may load: a scanned folder's subfolders, then the config's entries. */
export class AdapterCatalog {
  readonly adapters = new Map<string, AdapterEntry>();

  constructor(dir: string | undefined, entries: readonly AdapterConfigEntry[] = []) {
    if (dir) {
      const root = resolve(dir);
      let names: string[];
      try {
        names = readdirSync(root);
      } catch (err) {
        throw new InputFileError(`--lora-dir ${dir}: ${(err as Error).message}`);
      }
      for (const n of names.sort()) {
        const p = join(root, n);
        try {
          if (!statSync(join(p, "adapter_config.json")).isFile()) continue;
        } catch {
          continue; // not an adapter folder
        }
        this.add({ name: n, path: p, base: baseOf(p), bytes: weightBytes(p) });
      }
    }
    for (const e of entries) {
      const tenants = e.tenants ? { tenants: new Set(e.tenants) } : {};
      if (e.hub === undefined && e.path === undefined) {
        // a folder of --lora-dir, named here for its tenants
        const found = this.adapters.get(e.name);
        if (!found)
          throw new InvalidConfigError(
            `lora.adapters: '${e.name}' gives no path or hub, so it names a folder of lora.dir, which has none of that name`,
          );
        found.tenants = tenants.tenants;
        continue;
      }
      if (e.hub !== undefined) {
        // the engines download it (vLLM resolves a load's path that is no folder as a Hub repository):
        // the router hands them the id, which is also the path vLLM 0.32 hashes into the blocks
        this.add({
          name: e.name,
          path: e.hub,
          base: e.base ?? null,
          bytes: e.bytes ?? UNKNOWN_ADAPTER_BYTES,
          ...tenants,
        });
        continue;
      }
      const path = e.path!;
      this.add({
        name: e.name,
        path,
        base: e.base ?? baseOf(path),
        bytes: e.bytes ?? weightBytes(path),
        ...tenants,
      });
    }
  }

  private add(e: AdapterEntry): void {
    if (this.adapters.size >= MAX_ADAPTERS) throw new CapacityError(`at most ${MAX_ADAPTERS} LoRA adapters`);
    this.adapters.set(e.name, e);
  }

  get(name: string): AdapterEntry | undefined {
    return this.adapters.get(name);
  }

  /** the tenants a registry adapter is private to; undefined: not a registry adapter, or not private */
  privateTo(name: string): ReadonlySet<string> | undefined {
    return this.adapters.get(name)?.tenants;
  }

  get size(): number {
    return this.adapters.size;
  }
}
