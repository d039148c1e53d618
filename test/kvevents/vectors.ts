// The shared vLLM KV-event vectors, and a mapping from their `decoded` JSON form to typed batches.
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import type { KvEvent, KvEventBatch } from "../../src/kvevents/events.js";

export interface EventVector {
  name: string;
  note?: string;
  topic: string;
  seq: number;
  frames_hex: [string, string, string];
  decoded: unknown[];
}

// A copy of the shared vectors lives beside the tests so that CI needs nothing outside the repo; compiled
// tests run from dist/test/kvevents and read the copy in the source tree.
const here = import.meta.url.endsWith(".ts")
  ? new URL("./", import.meta.url)
  : new URL("../../../test/kvevents/", import.meta.url);
const VECTORS_PATH = process.env.SWITCHYARD_KV_VECTORS ?? fileURLToPath(new URL("vllm-kv-events.json", here));

export function loadVectors(): EventVector[] {
  const raw = JSON.parse(readFileSync(VECTORS_PATH, "utf8")) as { frames: EventVector[] };
  return raw.frames;
}

/** Vector JSON writes integers beyond 2^53 as decimal strings; hashes are bigints whatever their size. */
function hash(x: unknown): bigint {
  return BigInt(x as string | number);
}

/** vLLM's array form (as JSON) → the typed batch decodeBatch should produce. */
export function typedFromVectorForm(decoded: unknown[]): KvEventBatch {
  const [ts, events, rank] = decoded as [number, unknown[][], number | null | undefined];
  return {
    ts,
    dataParallelRank: rank ?? null,
    events: events.map((e): KvEvent => {
      switch (e[0]) {
        case "BlockStored": {
          const ev: KvEvent = {
            type: "BlockStored",
            blockHashes: (e[1] as unknown[]).map(hash),
            parentBlockHash: e[2] === null ? null : hash(e[2]),
            tokenIds: e[3] as number[],
            blockSize: e[4] as number,
            loraId: (e[5] as number | null | undefined) ?? null,
            medium: (e[6] as string | null | undefined) ?? null,
          };
          if (e.length > 7) ev.loraName = e[7] as string | null;
          return ev;
        }
        case "BlockRemoved":
          return {
            type: "BlockRemoved",
            blockHashes: (e[1] as unknown[]).map(hash),
            medium: (e[2] as string | null | undefined) ?? null,
          };
        case "AllBlocksCleared":
          return { type: "AllBlocksCleared" };
        default:
          throw new Error(`vector event type ${String(e[0])}`);
      }
    }),
  };
}
