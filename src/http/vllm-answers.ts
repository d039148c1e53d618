// Pieces of vLLM's JSON answers that more than one server writes: the sim answers chats in vLLM's
// shape, and the router assembles the same shape when it answers a non-streamed request it streamed
// from its engines (migration). One definition keeps the two from drifting apart.
import { createHash } from "node:crypto";

/**
 * A chat answer's `message` as vLLM 0.32's ChatMessage dumps it: nulls included, `reasoning` (0.32's
 * name for reasoning_content), and no `tool_calls` key unless there are calls (the tool-call answer
 * adds it).
 */
export function assistantMessage(content: string): Record<string, unknown> {
  return {
    role: "assistant",
    content,
    refusal: null,
    annotations: null,
    audio: null,
    function_call: null,
    reasoning: null,
  };
}

// process-wide: a one-entry memo of the last fingerprint computed (a sim has one configuration)
const memo = { fingerprint: undefined as { key: string; value: string } | undefined };

/**
 * `system_fingerprint` as vLLM 0.32 writes it by default (--fingerprint-mode full):
 * `vllm-<version>[-tp<N>]-<8 hex of the engine's config hash>`. The hash here is of what the sim is
 * configured with, so it is stable per configuration as vLLM's is, not equal to vLLM's.
 */
export function systemFingerprint(version: string, tensorParallelSize: number, config: string): string {
  const key = `${version} ${tensorParallelSize} ${config}`;
  if (memo.fingerprint?.key !== key) {
    const hash = createHash("sha256").update(config).digest("hex").slice(0, 8);
    const tp = tensorParallelSize > 1 ? `-tp${tensorParallelSize}` : "";
    memo.fingerprint = { key, value: `vllm-${version}${tp}-${hash}` };
  }
  return memo.fingerprint.value;
}

/**
 * What vLLM (0.18 through 0.33, read in vllm/entrypoints/launchers/launcher.py and
 * vllm/v1/engine/async_llm.py) answers a new request with while it drains on SIGTERM with
 * `--shutdown-timeout` > 0: its renderer's thread pool is shut down first, so anything it must render
 * fails with Python's RuntimeError, a 500, while `/health` keeps answering 200 and the requests in
 * flight finish. `Server shutting down` is the engine core's answer to a utility call then (core.py).
 */
export const VLLM_SHUTDOWN_MESSAGES = ["cannot schedule new futures after shutdown", "Server shutting down"];

/**
 * What vLLM answers a request whose engine core died while holding it (`EngineDeadError`,
 * vllm/v1/engine/exceptions.py): a drain that ran out of time, a crash.
 */
export const VLLM_ENGINE_DEAD_MESSAGE =
  "EngineCore encountered an issue. See stack trace (above) for the root cause.";

/**
 * What an engine's 500 answer is: that drain's refusal (the request never started), the engine core
 * dead while it held the request, or any other error (null).
 */
export function engineFailureKind(status: number, body: Buffer | undefined): "shutdown" | "dead" | null {
  if (status !== 500 || !body || body.length > 4096) return null;
  let message: unknown;
  try {
    message = (JSON.parse(body.toString("utf8")) as { error?: { message?: unknown } }).error?.message;
  } catch {
    return null;
  }
  if (typeof message !== "string") return null;
  if (VLLM_SHUTDOWN_MESSAGES.includes(message)) return "shutdown";
  return message === VLLM_ENGINE_DEAD_MESSAGE ? "dead" : null;
}
