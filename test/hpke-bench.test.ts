/**
 * The benchmark harness behind `npm run bench` (src/bench/harness.ts):
 * quantiles, bounds, interleaving, async cases.
 */
import { describe, expect, it } from 'vitest';
import { measure, runCases, summarize } from '../src/bench/harness.js';

describe('bench harness', () => {
  it('summarize reports median, p90 and min in µs', () => {
    const ms = Array.from({ length: 10 }, (_, i) => (i + 1) / 1000); // 1..10 µs, shuffled below
    const m = summarize('x', [...ms].reverse());
    expect(m.iterations).toBe(10);
    expect(m.median_us).toBeCloseTo(5, 9);
    expect(m.p90_us).toBeCloseTo(9, 9);
    expect(m.min_us).toBeCloseTo(1, 9);
    expect(Number.isNaN(summarize('empty', []).median_us)).toBe(true);
  });

  it('measure respects maxIterations and awaits async functions inside the timed span', async () => {
    let calls = 0;
    const m = await measure('sleep', () => new Promise((r) => setTimeout(() => { calls++; r(undefined); }, 2)), {
      warmup: 1,
      maxIterations: 5,
      maxTimeMs: 10_000,
    });
    expect(m.iterations).toBe(5);
    expect(calls).toBe(6);
    // libuv may fire a 2 ms timer a little early against performance.now()
    // (its clock is the loop's cached time); an un-awaited promise would time
    // in microseconds, so half a millisecond already proves the await.
    expect(m.min_us).toBeGreaterThanOrEqual(500);
  });

  it('runCases interleaves cases in batches and stops each at its own bound', async () => {
    const order: string[] = [];
    const results = await runCases(
      [
        { field: 'a_us', label: 'a', setup: () => () => order.push('a'), options: { warmup: 0, maxIterations: 6 } },
        { field: 'b_us', label: 'b', setup: () => () => order.push('b'), options: { warmup: 0, maxIterations: 2 } },
      ],
      2,
    );
    expect(order.join('')).toBe('aabbaaaa');
    expect(results.get('a_us')?.iterations).toBe(6);
    expect(results.get('b_us')?.iterations).toBe(2);
  });
});
