// Responses API answers kept for `GET /v1/responses/{id}`, `previous_response_id` and cancel, as vLLM
// keeps them with VLLM_ENABLE_RESPONSES_API_STORE=1. vLLM's store is a dict that only grows; here it is
// an LRU bounded both in entries and in bytes (a stored conversation can be megabytes), and the oldest
// go first. Like vLLM's, it lives in this engine's memory: a follow-up must reach the engine that
// answered.
import { LruMap } from "../../collections/lru-map.js";
import type { ChatMessage } from "../../protocol/chat-messages.js";

export const STORE_MAX_ENTRIES = 10_000;
export const STORE_MAX_BYTES = 64 * 2 ** 20;

export interface StoredResponse {
  /** the response object as GET answers it (status, output and usage change while it runs) */
  response: Record<string, unknown>;
  /** the conversation the response answered: what a follow-up's previous_response_id prepends */
  messages: ChatMessage[];
  /** the answer's text, appended as the assistant's turn by a follow-up */
  outputText: string;
  /** stops a background response that is still generating */
  cancel: (() => void) | null;
  bytes: number;
}

/**
 * About the bytes an entry holds: the conversation's text, the answer (kept twice: as text and in the
 * response object) and a fixed allowance for the rest. Counted from the strings' lengths, not by
 * serialising, so storing a megabyte conversation costs no pass over it.
 */
export function storedBytes(messages: readonly ChatMessage[], outputText: string): number {
  let chars = 0;
  for (const m of messages) {
    chars += m.role.length + 16;
    if (typeof m.content === "string") chars += m.content.length;
    else if (m.content) for (const p of m.content) chars += (p.text?.length ?? 0) + 16;
  }
  return 2 * (chars + 2 * outputText.length) + 1024;
}

export class ResponseStore {
  private readonly entries = new LruMap<string, StoredResponse>();
  private bytes = 0;

  constructor(
    readonly maxEntries = STORE_MAX_ENTRIES,
    readonly maxBytes = STORE_MAX_BYTES,
  ) {}

  get size(): number {
    return this.entries.size;
  }

  get totalBytes(): number {
    return this.bytes;
  }

  /** The entry, made the most recently used (a client read it). */
  get(id: string): StoredResponse | undefined {
    return this.entries.use(id);
  }

  /** The entry without touching its place (the engine updating a background response). */
  peek(id: string): StoredResponse | undefined {
    return this.entries.get(id);
  }

  /** Stores (or replaces) an entry, then evicts the least recently used until both caps hold. */
  set(id: string, entry: StoredResponse): void {
    const old = this.entries.get(id);
    if (old) this.bytes -= old.bytes;
    this.entries.set(id, entry);
    this.bytes += entry.bytes;
    while (this.entries.size > 1 && (this.entries.size > this.maxEntries || this.bytes > this.maxBytes)) {
      const evicted = this.entries.shift();
      if (!evicted) break;
      this.bytes -= evicted.value.bytes;
    }
  }
}
