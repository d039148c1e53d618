// Drivers own the clock. VirtualDriver jumps from event to event for the fleet simulator; the sim's
// RealTimeDriver (src/sim/runtime/real-time-driver.ts) runs an engine against the wall clock. Both use the very
// same beginStep/completeStep, so the two clocks can never model different engines, and the engine
// folder itself reads no clock.
import type { Engine } from "./engine.js";

interface EngineSlot {
  busy: boolean;
  complete: () => void;
}

/**
 * Virtual time for simulators: engines and timed callbacks share one clock that jumps to the next event.
 * Deterministic: ties run in the order they were scheduled.
 */
export class VirtualDriver {
  private nowS = 0;
  private seq = 0;
  /** binary min-heap of pending callbacks by (time, seq) */
  private readonly heap: { t: number; seq: number; fn: () => void }[] = [];
  private readonly engines = new Map<Engine, EngineSlot>();
  private stopped = false;

  get now(): number {
    return this.nowS;
  }

  /** runs fn at absolute virtual time t (>= now) */
  at(t: number, fn: () => void): void {
    const item = { t: Math.max(t, this.nowS), seq: this.seq++, fn };
    const h = this.heap;
    h.push(item);
    let i = h.length - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (this.less(h[p]!, h[i]!)) break;
      [h[p], h[i]] = [h[i]!, h[p]!];
      i = p;
    }
  }

  after(delay: number, fn: () => void): void {
    this.at(this.nowS + delay, fn);
  }

  private less(a: { t: number; seq: number }, b: { t: number; seq: number }): boolean {
    return a.t < b.t || (a.t === b.t && a.seq < b.seq);
  }

  private pop(): { t: number; seq: number; fn: () => void } | undefined {
    const h = this.heap;
    if (h.length === 0) return undefined;
    const top = h[0]!;
    const last = h.pop()!;
    if (h.length > 0) {
      h[0] = last;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < h.length && this.less(h[l]!, h[m]!)) m = l;
        if (r < h.length && this.less(h[r]!, h[m]!)) m = r;
        if (m === i) break;
        [h[m], h[i]] = [h[i]!, h[m]!];
        i = m;
      }
    }
    return top;
  }

  /** registers an engine; call wake(engine) after adding requests to it */
  attach(engine: Engine): void {
    if (this.engines.has(engine)) return;
    // one completion callback per engine, not one closure per step
    const slot: EngineSlot = { busy: false, complete: () => {} };
    slot.complete = () => {
      engine.completeStep(this.nowS);
      this.runStep(engine, slot);
    };
    this.engines.set(engine, slot);
  }

  wake(engine: Engine): void {
    this.attach(engine);
    const st = this.engines.get(engine)!;
    if (st.busy) return;
    this.runStep(engine, st);
  }

  private runStep(engine: Engine, st: EngineSlot): void {
    const plan = engine.beginStep(this.nowS);
    if (!plan) {
      st.busy = false;
      return;
    }
    st.busy = true;
    this.at(this.nowS + plan.duration, st.complete);
  }

  /** makes run() return after the event in progress (a caller that has seen enough) */
  stop(): void {
    this.stopped = true;
  }

  /** processes events until none are left or virtual time would pass `until`; returns the events run */
  run(until = Infinity): number {
    let n = 0;
    this.stopped = false;
    while (!this.stopped) {
      const next = this.heap[0];
      if (!next || next.t > until) break;
      this.pop();
      this.nowS = next.t;
      next.fn();
      n++;
    }
    if (!this.stopped && until !== Infinity && this.nowS < until) this.nowS = until;
    return n;
  }

  get pending(): number {
    return this.heap.length;
  }
}
