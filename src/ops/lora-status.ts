// The LoRA part of `switchyard status`: which adapters each engine holds (its row of the router's
// `GET /engines`: slots, host cache, loaded, running, waiting) and how the router's adapter requests
// split between adapters (switchyard_lora_adapter_requests: the top adapters by name and "other"),
// over the window between two samples when the named set stayed the same, else since the router
// started. Pure functions of the samples.
import type { Sample } from "../protocol/prometheus-text.js";

const FAMILY = "switchyard_lora_adapter_requests";

/** an engine's `lora` in the router's `GET /engines` (src/router/engines/adapters.ts, LoraResidencyRow) */
export interface LoraRow {
  maxLoras?: number;
  maxCpuLoras?: number | null;
  loaded?: string[] | null;
  loadedCount?: number | null;
  loading?: string[];
  running?: string[];
  waiting?: string[];
}

export interface EngineLoraStatus {
  /** GPU slots (max_loras) and host-cache size (max_cpu_loras; null when the router does not know it) */
  maxLoras: number | null;
  maxCpuLoras: number | null;
  /** adapters loaded there (null: the router keeps no books for it), the most recent when many */
  loaded: string[] | null;
  loadedCount: number | null;
  loading: string[];
  /** adapters of the requests the engine's scheduler runs and keeps waiting */
  running: string[];
  waiting: string[];
}

export interface AdapterShare {
  adapter: string;
  requests: number;
  /** of the adapter requests routed (over the span) */
  share: number;
}

export interface AdapterShares {
  span: "window" | "total";
  /** adapter requests routed over the span */
  requests: number;
  /** the top adapters by name, then "other" (the rest), as the router names them */
  adapters: AdapterShare[];
}

const list = (v: unknown): string[] =>
  Array.isArray(v) ? v.filter((x): x is string => typeof x === "string") : [];
const num = (v: unknown): number | null => (typeof v === "number" && Number.isFinite(v) ? v : null);

export function engineLora(row: LoraRow | null | undefined): EngineLoraStatus | null {
  if (!row || typeof row !== "object") return null;
  const loaded = Array.isArray(row.loaded) ? list(row.loaded) : null;
  return {
    maxLoras: num(row.maxLoras),
    maxCpuLoras: num(row.maxCpuLoras),
    loaded,
    loadedCount: num(row.loadedCount) ?? (loaded ? loaded.length : null),
    loading: list(row.loading),
    running: list(row.running),
    waiting: list(row.waiting),
  };
}

function counts(samples: readonly Sample[]): Map<string, number> {
  const out = new Map<string, number>();
  for (const s of samples) if (s.name === FAMILY && s.labels.adapter) out.set(s.labels.adapter, s.value);
  return out;
}

/**
 * Each named adapter's share of the adapter requests: the window's when both samples name the same
 * adapters (or the first names none) and requests came in it, else the totals since the router
 * started; null without LoRA traffic
 */
export function adapterShares(
  after: readonly Sample[],
  before: readonly Sample[] | null,
): AdapterShares | null {
  const now = counts(after);
  if (now.size === 0) return null;
  let span: AdapterShares["span"] = "total";
  let used = now;
  if (before) {
    const was = counts(before);
    // no series before: no adapter request had been routed, so the window holds every one
    const same = was.size === 0 || (was.size === now.size && [...now.keys()].every((k) => was.has(k)));
    if (same) {
      const win = new Map([...now].map(([k, v]) => [k, Math.max(0, v - (was.get(k) ?? 0))]));
      if ([...win.values()].some((v) => v > 0)) {
        used = win;
        span = "window";
      }
    }
  }
  const total = [...used.values()].reduce((a, v) => a + v, 0);
  if (total <= 0) return null;
  const adapters = [...used]
    .map(([adapter, requests]) => ({ adapter, requests, share: requests / total }))
    // by requests, "other" last (it is the rest, not an adapter)
    .sort(
      (a, b) =>
        Number(a.adapter === "other") - Number(b.adapter === "other") ||
        b.requests - a.requests ||
        a.adapter.localeCompare(b.adapter),
    );
  return { span, requests: total, adapters };
}
