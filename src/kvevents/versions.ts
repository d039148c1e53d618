// vLLM version strings, as GET /version reports them, and the event layout each release publishes.
import { MAP_LAYOUT_SINCE, type KvEventLayout } from "./events.js";

/** "0.11.0rc2.dev3+g..." → [0, 11, 0]; unparseable → null */
export function parseVersion(v: string): number[] | null {
  const m = /^v?(\d+)\.(\d+)(?:\.(\d+))?/.exec(v.trim());
  return m ? [Number(m[1]), Number(m[2]), Number(m[3] ?? 0)] : null;
}

export function versionAtLeast(v: string, min: string): boolean {
  const a = parseVersion(v);
  const b = parseVersion(min);
  if (!a || !b) return false;
  for (let i = 0; i < 3; i++) if (a[i] !== b[i]) return a[i]! > b[i]!;
  return true;
}

/** The layout a vLLM release writes its KV events in: tagged maps since 0.24.0, tagged arrays before. */
export function layoutForVersion(v: string): KvEventLayout {
  return versionAtLeast(v, MAP_LAYOUT_SINCE) ? "map" : "array";
}
