// A binary heap whose members know their position, so update and remove are O(log n).

export class IndexedHeap<T> {
  private readonly items: T[] = [];

  constructor(
    /** true when a goes before b */
    private readonly before: (a: T, b: T) => boolean,
    private readonly getPos: (t: T) => number,
    private readonly setPos: (t: T, i: number) => void,
  ) {}

  get size(): number {
    return this.items.length;
  }

  peek(): T | undefined {
    return this.items[0];
  }

  has(t: T): boolean {
    const i = this.getPos(t);
    return i >= 0 && this.items[i] === t;
  }

  push(t: T): void {
    this.items.push(t);
    this.setPos(t, this.items.length - 1);
    this.up(this.items.length - 1);
  }

  pop(): T | undefined {
    const top = this.items[0];
    if (top !== undefined) this.removeAt(0);
    return top;
  }

  remove(t: T): void {
    if (this.has(t)) this.removeAt(this.getPos(t));
  }

  /** Restores order after t's key changed. */
  update(t: T): void {
    if (!this.has(t)) return;
    const i = this.getPos(t);
    this.up(i);
    this.down(this.getPos(t));
  }

  private removeAt(i: number): void {
    const last = this.items.pop()!;
    const removed = i < this.items.length ? this.items[i]! : last;
    this.setPos(removed, -1);
    if (i < this.items.length) {
      this.items[i] = last;
      this.setPos(last, i);
      this.up(i);
      this.down(this.getPos(last));
    }
  }

  private up(i: number): void {
    const a = this.items;
    const t = a[i]!;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (!this.before(t, a[p]!)) break;
      a[i] = a[p]!;
      this.setPos(a[i]!, i);
      i = p;
    }
    a[i] = t;
    this.setPos(t, i);
  }

  private down(i: number): void {
    const a = this.items;
    const n = a.length;
    const t = a[i]!;
    for (;;) {
      const l = 2 * i + 1;
      if (l >= n) break;
      const r = l + 1;
      const c = r < n && this.before(a[r]!, a[l]!) ? r : l;
      if (!this.before(a[c]!, t)) break;
      a[i] = a[c]!;
      this.setPos(a[i]!, i);
      i = c;
    }
    a[i] = t;
    this.setPos(t, i);
  }
}
