/**
 * The fuzzing loop: for each target, inputs made from its seeds by byte
 * mutations or by the target's structure-aware generator, each checked for
 * the project's contract on bad input: it may be refused only with the
 * project's typed error ({@link EchError}, which carries the TLS `alert`),
 * never with another exception, and no call may take more than a second
 * (of CPU time; a promise that never settles is a hang).
 * A failing input is minimized and reported as hex with its target.
 *
 * Deterministic: the i-th input of a target depends only on the seed and
 * the target's position in the list.
 *
 * @module
 */
import { performance } from 'node:perf_hooks';
import { EchError } from '../wire/alert.js';
import { isPromiseLike } from '../wire/thenable.js';
import { mutate } from './mutate.js';
import { Rng } from './rng.js';
import { Watchdog } from './watchdog.js';

/**
 * A fuzz target, ready to run.
 * @group Fuzz
 */
export interface FuzzTarget {
  /** Short name, used in reports and with `--target`/`--replay`. */
  name: string;
  /** Valid (or nearly valid) inputs that mutations start from. */
  seeds: Uint8Array[];
  /**
   * Structure-aware input: e.g. a ClientHello with an extension dropped,
   * repeated or corrupted, re-encoded so the length prefixes hold.
   */
  generate?(rng: Rng, seeds: readonly Uint8Array[]): Uint8Array;
  /** Feed one input. Return or throw synchronously, or return a promise. */
  run(input: Uint8Array): unknown;
  /**
   * Whether an {@link EchError} with alert `internal_error` is an acceptable
   * answer (default false: bad input must get the alert the RFC names).
   */
  allowInternalError?: boolean;
  /** Largest input the mutator makes (default 70,000 bytes). */
  maxLength?: number;
}

/**
 * One failing input, minimized.
 * @group Fuzz
 */
export interface FuzzFailure {
  target: string;
  /** What went wrong: the exception's name and message, or `slow (N ms)`/`timeout`. */
  problem: string;
  /** The minimized input, hex. */
  hex: string;
  /** Length of the input as first found. */
  originalLength: number;
  /** Stack of the exception, when there was one. */
  stack?: string;
}

/**
 * Options of {@link runFuzz}.
 * @group Fuzz
 */
export interface FuzzOptions {
  /** Total time budget, split evenly between targets (seconds). */
  seconds: number;
  seed: number;
  /** Stop a target after this many inputs (default: only the time budget). */
  maxInputsPerTarget?: number;
  /** A call longer than this fails (default 1000 ms). */
  slowMs?: number;
  /** Progress lines (default: none). */
  log?: (line: string) => void;
  /** Stop fuzzing a target after this many distinct failures (default 5). */
  maxFailuresPerTarget?: number;
  /**
   * A call that uses this much CPU without returning (a synchronous endless
   * loop, which blocks every timer) is reported by a watchdog thread, which
   * then kills the process (default 30,000 ms; 0: no watchdog).
   */
  watchdogMs?: number;
}

/**
 * What {@link runFuzz} did.
 * @group Fuzz
 */
export interface FuzzReport {
  inputs: number;
  failures: FuzzFailure[];
  /** Inputs run per target. */
  perTarget: Record<string, number>;
  durationMs: number;
}

/** Outcome of one call: undefined when the contract held. */
interface Verdict {
  problem: string;
  stack?: string;
}

const describeError = (e: unknown): string =>
  e instanceof Error ? `${e.name}: ${e.message.split('\n')[0]!.slice(0, 200)}` : `non-Error thrown: ${String(e).slice(0, 200)}`;

function judge(target: FuzzTarget, err: unknown): Verdict | undefined {
  if (err instanceof EchError && typeof err.alert === 'string' && typeof err.code === 'string') {
    if (err.alert !== 'internal_error' || target.allowInternalError) return undefined;
    return { problem: `internal_error for bad input: ${describeError(err)} (${err.code})`, stack: err.stack };
  }
  return { problem: describeError(err), stack: err instanceof Error ? err.stack : undefined };
}

/** CPU time of this process so far, ms (user + system). */
function cpuMs(): number {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
}

/**
 * Run one input through a target and judge the outcome. "Slow" is judged on
 * the CPU time the call used (more than `slowMs`), so that a busy or
 * overloaded machine descheduling the fuzzer is not taken for a slow parser;
 * a promise that does not settle within ten times `slowMs` of wall time is a
 * `timeout` (a hang).
 * @group Fuzz
 * @example
 * ```ts
 * const v = await runOne(target, input); // undefined: fine
 * ```
 */
export async function runOne(
  target: FuzzTarget,
  input: Uint8Array,
  slowMs = 1000,
  watchdog?: Watchdog,
): Promise<{ problem: string; stack?: string } | undefined> {
  const c0 = cpuMs();
  let timer: NodeJS.Timeout | undefined;
  watchdog?.begin(target.name, input);
  try {
    const r = target.run(input);
    if (isPromiseLike(r)) {
      const timeout = new Promise<'timeout'>((res) => {
        timer = setTimeout(() => res('timeout'), slowMs * 10);
      });
      if ((await Promise.race([Promise.resolve(r).then(() => 'done' as const), timeout])) === 'timeout') {
        return { problem: `timeout: no answer after ${slowMs * 10} ms` };
      }
    }
  } catch (err) {
    const v = judge(target, err);
    if (v) return v;
  } finally {
    watchdog?.end();
    if (timer) clearTimeout(timer);
  }
  const ms = cpuMs() - c0;
  if (ms > slowMs) return { problem: `slow: ${Math.round(ms)} ms of CPU (limit ${slowMs} ms)` };
  return undefined;
}

/** Same kind of failure: the same exception class (the text before the first colon), or both slow. */
const sameKind = (a: string, b: string): boolean =>
  a.startsWith('slow') || a.startsWith('timeout') ? b.startsWith('slow') || b.startsWith('timeout') : a.split(':')[0] === b.split(':')[0];

/**
 * Shrink a failing input while it fails the same way: remove chunks (halves
 * down to single bytes), then zero bytes. Bounded in attempts and time.
 * @group Fuzz
 * @example
 * ```ts
 * const small = await minimize(target, input, 'TypeError: x is undefined');
 * ```
 */
export async function minimize(target: FuzzTarget, input: Uint8Array, problem: string, slowMs = 1000, watchdog?: Watchdog): Promise<Uint8Array> {
  const slow = problem.startsWith('slow') || problem.startsWith('timeout');
  const deadline = performance.now() + (slow ? 20_000 : 10_000);
  let budget = slow ? 30 : 4000;
  let best = input;
  const fails = async (candidate: Uint8Array): Promise<boolean> => {
    if (budget-- <= 0 || performance.now() > deadline) return false;
    const v = await runOne(target, candidate, slowMs, watchdog);
    return v !== undefined && sameKind(v.problem, problem);
  };
  for (let chunk = best.length >> 1; chunk >= 1 && budget > 0; chunk >>= 1) {
    for (let at = 0; at + chunk <= best.length && budget > 0; ) {
      const candidate = new Uint8Array(best.length - chunk);
      candidate.set(best.subarray(0, at));
      candidate.set(best.subarray(at + chunk), at);
      if (await fails(candidate)) best = candidate;
      else at += chunk;
    }
  }
  for (let i = 0; i < best.length && budget > 0; i++) {
    if (best[i] === 0) continue;
    const candidate = best.slice();
    candidate[i] = 0;
    if (await fails(candidate)) best = candidate;
  }
  return best;
}

/**
 * The fuzzing loop over `targets` (see the module comment).
 * @group Fuzz
 * @example
 * ```ts
 * const report = await runFuzz(await projectTargets(1), { seconds: 10, seed: 1 });
 * console.log(`fuzz: ${report.inputs} inputs, ${report.failures.length} failures`);
 * ```
 */
export async function runFuzz(targets: readonly FuzzTarget[], opts: FuzzOptions): Promise<FuzzReport> {
  const started = performance.now();
  const slowMs = opts.slowMs ?? 1000;
  const maxFailures = opts.maxFailuresPerTarget ?? 5;
  const failures: FuzzFailure[] = [];
  const perTarget: Record<string, number> = {};
  let inputs = 0;
  const watchdogMs = opts.watchdogMs ?? 30_000;
  // Stalled (blocked, no CPU): well after runOne's own timeout of ten times slowMs.
  const watchdog = watchdogMs > 0 ? new Watchdog(watchdogMs, Math.max(2 * watchdogMs, 20 * slowMs)) : undefined;
  const share = (opts.seconds * 1000) / Math.max(1, targets.length);
  for (const [index, target] of targets.entries()) {
    const rng = new Rng(opts.seed, index + 1);
    const seen = new Set<string>();
    const until = performance.now() + share;
    const limit = opts.maxInputsPerTarget ?? Number.POSITIVE_INFINITY;
    let n = 0;
    let lastYield = performance.now();
    while (n < limit && seen.size < maxFailures) {
      // The clock is read every 64 inputs so that a given seed and budget
      // make the same inputs whatever the machine's speed within a batch.
      if (n % 64 === 0 && performance.now() > until && opts.maxInputsPerTarget === undefined) break;
      const useGenerator = target.generate !== undefined && rng.chance(0.4);
      const input = useGenerator
        ? target.generate!(rng, target.seeds)
        : mutate(rng, rng.pick(target.seeds), target.seeds, 6, target.maxLength ?? 70_000);
      n++;
      const v = await runOne(target, input, slowMs, watchdog);
      if (v && !seen.has(v.problem)) {
        seen.add(v.problem);
        const small = await minimize(target, input, v.problem, slowMs, watchdog);
        const failure: FuzzFailure = { target: target.name, problem: v.problem, hex: Buffer.from(small).toString('hex'), originalLength: input.length };
        if (v.stack) failure.stack = v.stack;
        failures.push(failure);
        opts.log?.(`fuzz: FAILURE in ${target.name}: ${v.problem}\n  reproducer (${small.length} bytes, hex): ${failure.hex}`);
      }
      if (performance.now() - lastYield > 200) {
        // Let timers and I/O run (targets with sockets need it).
        await new Promise((r) => setImmediate(r));
        lastYield = performance.now();
      }
    }
    perTarget[target.name] = n;
    inputs += n;
    opts.log?.(`fuzz: ${target.name}: ${n} inputs, ${seen.size} failures`);
  }
  await watchdog?.stop();
  return { inputs, failures, perTarget, durationMs: performance.now() - started };
}
