// Shared per-duration deadlines (src/tls13/deadlines.ts): the first
// flight's, the handshake's and the linger's timeouts of every connection on
// one Node timer per duration.
import { createHook } from 'node:async_hooks';
import { describe, expect, it } from 'vitest';
import { deadline } from '../src/tls13/deadlines.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('deadline', () => {
  it('runs each live callback once, no sooner than its duration, in order; cancelled ones never', async () => {
    const set: number[] = [];
    const fired: Array<[number, number]> = [];
    const ds = [];
    for (let i = 0; i < 6; i++) {
      set.push(performance.now());
      const d = deadline(40, () => fired.push([i, performance.now()]));
      if (i === 0 || i === 3) d.cancel();
      ds.push(d);
      await sleep(3);
    }
    await sleep(120);
    expect(fired.map(([i]) => i)).toEqual([1, 2, 4, 5]);
    for (const [i, t] of fired) expect(t - set[i]!).toBeGreaterThanOrEqual(39.5);
    ds[1]!.cancel(); // after it ran: nothing happens
  });

  it('durations are independent; a callback may set a new deadline', async () => {
    const order: string[] = [];
    deadline(60, () => order.push('60'));
    deadline(20, () => {
      order.push('20');
      deadline(20, () => order.push('20 again'));
    });
    await sleep(120);
    expect(order).toEqual(['20', '20 again', '60']);
  });

  it('a callback setting a deadline of its own duration (a handshake timeout starting a linger) does not make the pending ones late', async () => {
    const fired: Record<string, number> = {};
    const setAt: Record<string, number> = {};
    setAt['a'] = performance.now();
    deadline(100, () => {
      fired['a'] = performance.now();
      setAt['c'] = performance.now();
      deadline(100, () => (fired['c'] = performance.now()));
    });
    await sleep(50);
    setAt['b'] = performance.now();
    deadline(100, () => (fired['b'] = performance.now()));
    await sleep(300);
    expect(Object.keys(fired).sort()).toEqual(['a', 'b', 'c']);
    // b is due 100 ms after it was set, not 100 ms after a's callback ran.
    expect(fired['b']! - setAt['b']!).toBeLessThan(140);
    expect(fired['b']! - setAt['b']!).toBeGreaterThanOrEqual(99.5);
    expect(fired['c']! - setAt['c']!).toBeGreaterThanOrEqual(99.5);
  });

  it('many deadlines of one duration, nearly all cancelled at once, share one Node timer', async () => {
    let timeouts = 0;
    const hook = createHook({
      init(_id, type) {
        if (type === 'Timeout') timeouts++;
      },
    });
    let fired = 0;
    hook.enable();
    try {
      for (let i = 0; i < 200; i++) {
        const d = deadline(30, () => fired++);
        if (i !== 150) d.cancel();
      }
    } finally {
      hook.disable();
    }
    expect(timeouts).toBe(1);
    await sleep(80);
    expect(fired).toBe(1);
  });
});
