// Small helpers for the KV-event tests: configs on ephemeral loopback ports, batches, bounded waits.
import { parseKvEventsConfig, type KvEventsConfig } from "../../src/kvevents/config.js";
import type { KvEventBatch } from "../../src/kvevents/events.js";
import { HANG_GUARD_MS } from "../../bench/support/cli.js";

export function loopbackConfig(over: Record<string, unknown> = {}): KvEventsConfig {
  return parseKvEventsConfig({
    enable_kv_cache_events: true,
    endpoint: "tcp://127.0.0.1:*",
    replay_endpoint: "tcp://127.0.0.1:*",
    ...over,
  });
}

/** A distinct batch per i: one stored block whose hash encodes i (beyond 2^53 to exercise bigints). */
export function batchNo(i: number): KvEventBatch {
  return {
    ts: 1763700000 + i / 4,
    events: [
      {
        type: "BlockStored",
        blockHashes: [(1n << 63n) + BigInt(i)],
        parentBlockHash: i === 0 ? null : (1n << 63n) + BigInt(i - 1),
        tokenIds: [i, i + 1, i + 2, i + 3],
        blockSize: 4,
        loraId: null,
        medium: "GPU",
        loraName: null,
      },
    ],
    dataParallelRank: 0,
  };
}

/**
 * Polls `cond` for up to `timeoutMs`. The default is a hang guard; a short timeout is a deliberate brief
 * wait (publish again if nothing came), which callers catch.
 */
export async function waitFor(cond: () => boolean, what: string, timeoutMs = HANG_GUARD_MS): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
