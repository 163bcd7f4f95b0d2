// Shared per-duration deadlines (src/tls13/deadlines.ts): the first
// flight's, the handshake's and the linger's timeouts of every connection on
// one Node timer per duration.
import { createHook } from 'node:async_hooks';
import { describe, expect, it } from 'vitest';
import { type Deadline, deadline } from '../src/tls13/deadlines.js';

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

describe('deadline: what a cancelled one keeps', () => {
  it('a cancelled deadline leaves its queue at once: it is collectable long before it would have fallen due', async () => {
    const { setFlagsFromString } = await import('node:v8');
    const { runInNewContext } = await import('node:vm');
    setFlagsFromString('--expose-gc');
    const gc = runInNewContext('gc') as () => void;
    let fired = 0;
    // A live one first and one last: the shared timer stays armed, the queue non-empty.
    const first = deadline(60_000, () => fired++);
    // In a function of its own: no register of this async function keeps the last one.
    const cancelled = (): Array<WeakRef<Deadline>> => {
      const refs: Array<WeakRef<Deadline>> = [];
      for (let i = 0; i < 2000; i++) {
        const d = deadline(60_000, () => fired++);
        d.cancel();
        refs.push(new WeakRef(d));
      }
      return refs;
    };
    const refs = cancelled();
    const last = deadline(60_000, () => fired++);
    // WeakRef targets are kept until the end of the job that made them.
    await sleep(10);
    gc();
    await sleep(10);
    expect(refs.filter((r) => r.deref() !== undefined).length).toBe(0);
    // The live ones still run (here: cancelled before their time, after the others were dropped).
    first.cancel();
    last.cancel();
    expect(fired).toBe(0);
  });

  it('cancelling the first, a middle and the last deadline of a queue keeps the others due in order', async () => {
    const fired: number[] = [];
    const ds = Array.from({ length: 6 }, (_, i) => deadline(25, () => fired.push(i)));
    ds[0]!.cancel();
    ds[3]!.cancel();
    ds[5]!.cancel();
    ds[3]!.cancel(); // twice: nothing more happens
    await sleep(80);
    expect(fired).toEqual([1, 2, 4]);
    // After the queue emptied, a new deadline of the same duration still runs.
    deadline(25, () => fired.push(6));
    await sleep(80);
    expect(fired).toEqual([1, 2, 4, 6]);
  });
});
