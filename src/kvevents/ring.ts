// A bounded FIFO that grows lazily up to its cap and evicts the oldest item when full: the one
// structure behind the publisher's send queue, its replay buffer and the subscriber's reorder buffer.
export class BoundedQueue<T> {
  private items: (T | undefined)[] = [];
  private head = 0;
  private count = 0;

  constructor(readonly cap: number) {
    if (!Number.isInteger(cap) || cap < 1)
      throw new RangeError(`queue cap must be a positive integer, got ${cap}`);
  }

  get size(): number {
    return this.count;
  }

  /** Appends; returns the evicted oldest item when the queue was full. */
  push(x: T): T | undefined {
    let evicted: T | undefined;
    if (this.count === this.cap) {
      evicted = this.items[this.head];
      this.items[this.head] = x;
      this.head = (this.head + 1) % this.items.length;
      return evicted;
    }
    if (this.count === this.items.length) this.grow();
    this.items[(this.head + this.count) % this.items.length] = x;
    this.count++;
    return undefined;
  }

  shift(): T | undefined {
    if (this.count === 0) return undefined;
    const x = this.items[this.head];
    this.items[this.head] = undefined;
    this.head = (this.head + 1) % this.items.length;
    this.count--;
    return x;
  }

  /** i-th oldest item (0 = oldest) */
  at(i: number): T | undefined {
    if (i < 0 || i >= this.count) return undefined;
    return this.items[(this.head + i) % this.items.length];
  }

  clear(): void {
    this.items = [];
    this.head = 0;
    this.count = 0;
  }

  private grow(): void {
    const size = Math.min(this.cap, Math.max(16, this.items.length * 2));
    const next = new Array<T | undefined>(size);
    for (let i = 0; i < this.count; i++) next[i] = this.items[(this.head + i) % this.items.length];
    this.items = next;
    this.head = 0;
  }
}
