// An intrusive doubly linked list: the members carry their own links, so adding and removing allocate
// nothing and a removed member holds no pointers. For per-request membership in long-lived
// collections (armed deadlines, attempts waiting on an engine), where a Set that gains and loses an
// entry per request chains its rehashed tables and drags every request into the old generation (see
// docs/router.md#performance).

/** What a member carries; the list owns these fields. */
export interface Linked<T> {
  prev: T | null;
  next: T | null;
  /** the list it is in, or null */
  list: { remove(n: T): void } | null;
}

export class LinkedList<T extends Linked<T>> {
  head: T | null = null;
  private tail: T | null = null;

  get empty(): boolean {
    return this.head === null;
  }

  /** Appends `n` (moves it to the back when it is already in this list). */
  push(n: T): void {
    if (n.list !== null) n.list.remove(n);
    n.list = this;
    n.prev = this.tail;
    n.next = null;
    if (this.tail) this.tail.next = n;
    else this.head = n;
    this.tail = n;
  }

  /** Removes `n` when it is in this list; otherwise does nothing. */
  remove(n: T): void {
    if (n.list !== this) return;
    if (n.prev) n.prev.next = n.next;
    else this.head = n.next;
    if (n.next) n.next.prev = n.prev;
    else this.tail = n.prev;
    n.prev = n.next = null;
    n.list = null;
  }

  /** A copy of the members, front first, so that callers may remove them while they walk it. */
  toArray(): T[] {
    const out: T[] = [];
    for (let n = this.head; n !== null; n = n.next) out.push(n);
    return out;
  }
}
