/**
 * A small benchmark harness: warm-up, then per-iteration timings bounded in
 * count and in time, reported as median and p90 in microseconds.
 *
 * {@link runCases} interleaves several cases round by round and pools their
 * samples, so a burst of load from another process on a shared machine
 * spreads over all cases instead of landing on one.
 *
 * @module
 */
import { performance } from 'node:perf_hooks';
import { isPromiseLike } from '../wire/thenable.js';

/**
 * Bounds of one measurement. Iteration stops at `maxIterations` or after
 * `maxTimeMs`, whichever comes first, but not before `minIterations`.
 * @group Bench
 * @example
 * ```ts
 * const opts: MeasureOptions = { warmup: 20, maxIterations: 400, maxTimeMs: 3000 };
 * ```
 */
export interface MeasureOptions {
  /** Untimed calls before timing (bounded by `warmupTimeMs` too). Default 200. */
  warmup?: number;
  /** Time cap of the warm-up in ms. Default 500. */
  warmupTimeMs?: number;
  /** Default 10. */
  minIterations?: number;
  /** Default 2000. */
  maxIterations?: number;
  /** Default 2000 ms. */
  maxTimeMs?: number;
}

/**
 * Result of a measurement, times in microseconds.
 * @group Bench
 * @example
 * ```ts
 * const m: Measurement = await measure('noop', () => 0);
 * console.log(`${m.median_us} µs (p90 ${m.p90_us})`);
 * ```
 */
export interface Measurement {
  name: string;
  iterations: number;
  median_us: number;
  p90_us: number;
  min_us: number;
}

/**
 * A function to time: synchronous, or returning a promise that is awaited inside the timed span.
 * @group Bench
 * @example
 * ```ts
 * const fn: BenchFn = () => ctx.open(aad, ct);
 * ```
 */
export type BenchFn = () => unknown;

function quantile(sorted: number[], q: number): number {
  if (sorted.length === 0) return Number.NaN;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1));
  return sorted[i] as number;
}

/**
 * Summarises samples (in ms) as a {@link Measurement} in µs.
 * @group Bench
 * @example
 * ```ts
 * summarize('noop', [0.001, 0.002, 0.0015]).median_us; // 1.5
 * ```
 */
export function summarize(name: string, samplesMs: number[]): Measurement {
  const s = [...samplesMs].sort((a, b) => a - b);
  return {
    name,
    iterations: s.length,
    median_us: quantile(s, 0.5) * 1000,
    p90_us: quantile(s, 0.9) * 1000,
    min_us: (s[0] ?? Number.NaN) * 1000,
  };
}

async function warm(fn: BenchFn, opts: MeasureOptions): Promise<void> {
  const n = opts.warmup ?? 200;
  const until = performance.now() + (opts.warmupTimeMs ?? 500);
  for (let i = 0; i < n && performance.now() < until; i++) {
    const r = fn();
    if (isPromiseLike(r)) await r;
  }
}

async function sample(fn: BenchFn, opts: MeasureOptions, out: number[]): Promise<void> {
  const min = opts.minIterations ?? 10;
  const max = opts.maxIterations ?? 2000;
  const until = performance.now() + (opts.maxTimeMs ?? 2000);
  for (let i = 0; i < max && (i < min || performance.now() < until); i++) {
    const t0 = performance.now();
    const r = fn();
    if (isPromiseLike(r)) await r;
    out.push(performance.now() - t0);
  }
}

/**
 * Times `fn`: warm-up, then one timing per call, bounded by `opts`.
 * @group Bench
 * @example
 * ```ts
 * const m = await measure('x25519', () => diffieHellman({ privateKey, publicKey }), { maxTimeMs: 1000 });
 * console.log(m.median_us, m.p90_us);
 * ```
 */
export async function measure(name: string, fn: BenchFn, opts: MeasureOptions = {}): Promise<Measurement> {
  await warm(fn, opts);
  const samples: number[] = [];
  await sample(fn, opts, samples);
  return summarize(name, samples);
}

/**
 * One benchmark case: `field` is its key in the JSON output (e.g.
 * `open_us`); `setup` runs once, untimed, and returns the function to time.
 * @group Bench
 * @example
 * ```ts
 * const c: BenchCase = { field: 'reject_us', label: 'unknown config_id', setup: () => () => decryptClientHello(hello, keys) };
 * ```
 */
export interface BenchCase {
  field: string;
  label: string;
  setup: () => BenchFn | Promise<BenchFn>;
  /** Per-case bounds over the whole run, e.g. fewer iterations for a slow baseline. */
  options?: MeasureOptions;
}

/**
 * Runs `cases` interleaved in batches (`batch` calls of case A, then of B,
 * then of C, then A again, …) until each case reaches its `maxIterations`
 * or has spent its `maxTimeMs` of timed calls, and summarises each case's
 * samples. Warm-up happens once per case before the first batch. On a shared
 * machine this spreads load from other processes over all cases, so ratios
 * of medians stay meaningful.
 * @group Bench
 * @example
 * ```ts
 * const results = await runCases([{ field: 'noop_us', label: 'noop', setup: () => () => 0 }]);
 * results.get('noop_us')?.median_us;
 * ```
 */
export async function runCases(cases: readonly BenchCase[], batch = 50): Promise<Map<string, Measurement>> {
  const fns: BenchFn[] = [];
  for (const c of cases) fns.push(await c.setup());
  for (let i = 0; i < cases.length; i++) await warm(fns[i] as BenchFn, cases[i]?.options ?? {});
  const state = cases.map(() => ({ samples: [] as number[], spentMs: 0 }));
  const done = (i: number): boolean => {
    const o = cases[i]?.options ?? {};
    const st = state[i] as { samples: number[]; spentMs: number };
    if (st.samples.length >= (o.maxIterations ?? 2000)) return true;
    return st.samples.length >= (o.minIterations ?? 10) && st.spentMs >= (o.maxTimeMs ?? 2000);
  };
  while (!cases.every((_, i) => done(i))) {
    for (let i = 0; i < cases.length; i++) {
      if (done(i)) continue;
      const st = state[i] as { samples: number[]; spentMs: number };
      const before = st.samples.length;
      const max = (cases[i]?.options?.maxIterations ?? 2000) - before;
      await sample(fns[i] as BenchFn, { minIterations: 0, maxIterations: Math.min(batch, max), maxTimeMs: Number.POSITIVE_INFINITY }, st.samples);
      for (let j = before; j < st.samples.length; j++) st.spentMs += st.samples[j] as number;
    }
  }
  const out = new Map<string, Measurement>();
  cases.forEach((c, i) => out.set(c.field, summarize(c.label, (state[i] as { samples: number[] }).samples)));
  return out;
}
