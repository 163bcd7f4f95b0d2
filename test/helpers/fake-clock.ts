// Test-only: a clock whose time moves only when the test says so, for the
// key manager's schedule (no sleeping).
import type { EchClock, EchKeyManager } from '../../src/keys/manager.js';

export class FakeClock implements EchClock {
  t: number;
  #timers: { at: number; fn: () => void; id: number }[] = [];
  #next = 1;
  constructor(start = Date.UTC(2026, 5, 1)) {
    this.t = start;
  }
  now(): number {
    return this.t;
  }
  setTimer(fn: () => void, ms: number): unknown {
    const id = this.#next++;
    this.#timers.push({ at: this.t + ms, fn, id });
    return id;
  }
  clearTimer(h: unknown): void {
    this.#timers = this.#timers.filter((x) => x.id !== h);
  }
  get pending(): number {
    return this.#timers.length;
  }
  /** Move time forward, firing due timers in order and letting each step finish. */
  async advance(ms: number, manager: EchKeyManager): Promise<void> {
    const end = this.t + ms;
    for (;;) {
      this.#timers.sort((a, b) => a.at - b.at);
      const first = this.#timers[0];
      if (!first || first.at > end) break;
      this.#timers.shift();
      this.t = Math.max(this.t, first.at);
      first.fn();
      await manager.whenIdle();
    }
    this.t = end;
  }
}
