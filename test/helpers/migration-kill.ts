// The mid-stream migration scenario the migration tests share: eight greedy streams through a
// round-robin router over two `switchyard sim` processes, the same eight on a third sim nobody
// kills, and the second engine SIGKILLed once every stream it carries is under way. Each test then
// holds the moved streams to the unbroken ones in its own terms (text, token ids, usage).
import assert from "node:assert/strict";
import { freePorts, spawnCli, waitForHttp, type Spawned } from "../../bench/support/cli.js";
import { routerFor, waitUntil } from "./router.js";
import { readStream, type StreamRead } from "../../bench/support/sse-client.js";

/** One stream's request: which API it speaks, and its body. */
export type StreamRequest = { kind: "chat" | "completion"; body: Record<string, unknown> };

/** What a killed run leaves to check, while the router is still up. */
export interface KilledRun {
  routerUrl: string;
  /** the streams through the router, in request order */
  streams: StreamRead[];
  /** the same requests on the reference sim */
  unbroken: StreamRead[];
}

/** `n` sim processes of `model` on free loopback ports, each answering /health. */
export async function spawnSims(
  model: string,
  flags: string[],
  n: number,
): Promise<{ sims: Spawned[]; urls: string[] }> {
  const ports = await freePorts(n);
  const sims = ports.map((p) =>
    spawnCli(["sim", model, "--host", "127.0.0.1", "--port", String(p), ...flags]),
  );
  const urls = ports.map((p) => `http://127.0.0.1:${p}`);
  await Promise.all(urls.map((u, i) => waitForHttp(`${u}/health`, 60_000, 200, sims[i])));
  return { sims, urls };
}

/**
 * Runs the eight streams (`requestOf(0..7)`; round-robin puts the odd ones on the engine that is
 * killed), waits for every one to end, and hands them to `check`. `flags` must make the sims slow
 * and their answers long enough that the kill lands mid-stream.
 */
export async function eightStreamsOneEngineKilled(
  model: string,
  flags: string[],
  requestOf: (i: number) => StreamRequest,
  check: (run: KilledRun) => Promise<void>,
): Promise<void> {
  const { sims, urls } = await spawnSims(model, flags, 3);
  const [a, b, reference] = urls as [string, string, string];
  try {
    const router = await routerFor([a, b], { policy: "round-robin" });
    try {
      await waitUntil(() => router.router.registry.snapshot().every((v) => v.healthy), 10_000, "both sims");
      const streams: StreamRead[] = [];
      const unbroken: StreamRead[] = [];
      for (let i = 0; i < 8; i++) {
        const { kind, body } = requestOf(i);
        streams.push(readStream(router.url, body, kind));
        unbroken.push(readStream(reference, body, kind));
      }
      const onB = () => streams.filter((s) => s.route.includes(b));
      await waitUntil(() => onB().length === 4 && onB().every((s) => s.events >= 10), 60_000, "streams on b");
      assert.ok(
        onB().every((s) => s.dones === 0),
        "the streams on b were still running",
      );
      await sims[1]!.stop("SIGKILL");
      await Promise.all([...streams, ...unbroken].map((s) => s.done));
      await check({ routerUrl: router.url, streams, unbroken });
    } finally {
      await router.close();
    }
  } finally {
    for (const s of sims) await s.stop("SIGKILL");
  }
}

/** Streams the router's metrics count as moved and continued, over every label set. */
export function continuedMigrations(metricsText: string): number {
  return [
    ...metricsText.matchAll(/switchyard_migrations_total\{[^}]*outcome="continued"[^}]*\} (\d+)/g),
  ].reduce((n, x) => n + Number(x[1]), 0);
}
