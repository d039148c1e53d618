// Walking the source tree in tests that read the code itself (which files write what by hand).
import { readdirSync, statSync } from "node:fs";
import { join } from "node:path";

/** Every file under `dir` whose name matches `name` (default: TypeScript sources), depth first. */
export function filesUnder(dir: string, name: RegExp = /\.ts$/, out: string[] = []): string[] {
  for (const entry of readdirSync(dir)) {
    const p = join(dir, entry);
    if (statSync(p).isDirectory()) filesUnder(p, name, out);
    else if (name.test(entry)) out.push(p);
  }
  return out;
}
