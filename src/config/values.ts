// Value schemas shared by every config file (router, routing, tenancy): durations and sizes are
// written the way people write them ("30s", "5m", "32MiB") and reach the code as numbers.
import { z } from "zod";
import { parseSize } from "./args.js";

const DURATION_UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

/** A duration in milliseconds: a number (ms) or text like "250ms", "30s", "5m". */
export const duration = z.union([z.number().nonnegative(), z.string()]).transform((v, ctx) => {
  if (typeof v === "number") return v;
  const m = /^\s*([0-9]+(?:\.[0-9]+)?)\s*(ms|s|m|h)?\s*$/.exec(v);
  if (!m) {
    ctx.addIssue({ code: "custom", message: `cannot read '${v}' as a duration (examples: 500ms, 30s, 5m)` });
    return z.NEVER;
  }
  return Number(m[1]) * DURATION_UNITS[m[2] ?? "ms"]!;
});

/** A size in bytes: a positive integer or text like "512MiB", "16GiB". */
export const size = z.union([z.number().int().positive(), z.string()]).transform((v, ctx) => {
  if (typeof v === "number") return v;
  try {
    return parseSize(v);
  } catch (err) {
    ctx.addIssue({ code: "custom", message: (err as Error).message });
    return z.NEVER;
  }
});
