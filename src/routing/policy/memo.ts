// Per-request memos (a request's prepared prompt, its scored candidates, its routing note) kept on the
// RequestView itself under a private symbol, so they die with the request.
//
// Not a WeakMap keyed by the request: a long-lived WeakMap's table sits in the old generation, and
// V8's young-generation GC keeps the values of an old table's entries alive, so every request's memo
// survived into the old generation and waited for a full GC (measured: 73 MB promoted in a 5-second
// hybrid-policy run, 10 MB with memos on the request; 6–9 µs less CPU per request, A/B both orders).
import type { RequestView } from "./views.js";

type Slots = Record<symbol, unknown>;

export class RequestMemo<T> {
  private readonly slot: symbol;

  constructor(name: string) {
    this.slot = Symbol(name);
  }

  get(req: RequestView): T | undefined {
    return (req as unknown as Slots)[this.slot] as T | undefined;
  }

  set(req: RequestView, value: T): void {
    (req as unknown as Slots)[this.slot] = value;
  }
}
