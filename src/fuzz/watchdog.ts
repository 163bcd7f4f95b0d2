/**
 * A watchdog thread for the fuzzer: a target that loops forever inside a
 * synchronous call blocks the event loop, so no timer of the fuzzer's own
 * can report it. The watchdog shares the current target name, input and
 * input count through a SharedArrayBuffer; when one call has used more than
 * `limitMs` of CPU, or has not returned after `stallMs` of wall time (a
 * thread blocked on a lock uses no CPU: a deadlock inside node:crypto was
 * seen that way), it writes the failure, the reproducer (hex) and the
 * summary line straight to stdout and kills the process (non-zero exit).
 *
 * @module
 */
import { Worker } from 'node:worker_threads';

/** Largest input the watchdog can report (longer ones are reported truncated). */
const MAX_INPUT = 1 << 17;
const NAME_AT = 32;
const NAME_MAX = 64;
const DATA_AT = NAME_AT + NAME_MAX;

// Runs in the worker (plain script: `eval: true`). State: [seq, active, len, nameLen, inputs].
const WORKER = `
const { workerData } = require('node:worker_threads');
const { writeSync } = require('node:fs');
const { sab, limitMs, stallMs } = workerData;
const s = new Int32Array(sab, 0, 8);
const cpu = () => { const u = process.cpuUsage(); return (u.user + u.system) / 1000; };
let seq = -1;
let start = 0;
let wallStart = 0;
setInterval(() => {
  const now = Atomics.load(s, 0);
  if (!Atomics.load(s, 1) || now !== seq) { seq = now; start = cpu(); wallStart = Date.now(); return; }
  const used = cpu() - start;
  const wall = Date.now() - wallStart;
  // A thread blocked on a lock (a deadlock) uses no CPU: the wall clock
  // catches it (stallMs: past the engine's own timeout for a promise that
  // never settles, with room for a loaded machine).
  const stalled = used < limitMs && wall >= stallMs;
  if (used < limitMs && !stalled) return;
  const name = Buffer.from(new Uint8Array(sab, ${NAME_AT}, Atomics.load(s, 3))).toString();
  const len = Atomics.load(s, 2);
  const hex = Buffer.from(new Uint8Array(sab, ${DATA_AT}, Math.min(len, ${MAX_INPUT}))).toString('hex');
  const what = stalled
    ? 'stalled: one call has not returned after ' + wall + ' ms (' + Math.round(used) + ' ms of CPU): blocked, e.g. a deadlock'
    : 'hang: one call used ' + Math.round(used) + ' ms of CPU without returning';
  writeSync(1, 'fuzz: FAILURE in ' + name + ': ' + what + '\\n' +
    '  reproducer (' + len + ' bytes, hex' + (len > ${MAX_INPUT} ? ', truncated' : '') + '): ' + hex + '\\n' +
    'fuzz: ' + Atomics.load(s, 4) + ' inputs, 1 failures\\n');
  process.kill(process.pid, 'SIGKILL');
}, 100);
`;

/**
 * Watches the fuzzer's calls from another thread (see the module comment).
 * @group Fuzz
 * @example
 * ```ts
 * const dog = new Watchdog(30_000);
 * dog.begin('record', input); target.run(input); dog.end();
 * dog.stop();
 * ```
 */
export class Watchdog {
  private readonly state: Int32Array;
  private readonly bytes: Uint8Array;
  private readonly worker: Worker;
  private inputs = 0;

  /**
   * @param limitMs CPU time one call may use before the process is killed
   * @param stallMs wall time one call may take while using less than
   *   `limitMs` of CPU (blocked: a deadlock) before the process is killed;
   *   default twice `limitMs`
   */
  constructor(limitMs: number, stallMs = 2 * limitMs) {
    const sab = new SharedArrayBuffer(DATA_AT + MAX_INPUT);
    this.state = new Int32Array(sab, 0, 8);
    this.bytes = new Uint8Array(sab);
    // execArgv: [] so that a parent started with e.g. --input-type=module still runs this as a script.
    this.worker = new Worker(WORKER, { eval: true, execArgv: [], workerData: { sab, limitMs, stallMs } });
    this.worker.on('error', (e) => process.stderr.write(`fuzz: the watchdog thread failed (endless loops will not be reported): ${e.message}\n`));
    this.worker.unref();
  }

  /** A call of `target` on `input` starts. */
  begin(target: string, input: Uint8Array): void {
    const name = Buffer.from(target).subarray(0, NAME_MAX);
    this.bytes.set(name, NAME_AT);
    this.bytes.set(input.subarray(0, MAX_INPUT), DATA_AT);
    Atomics.store(this.state, 3, name.length);
    Atomics.store(this.state, 2, input.length);
    Atomics.store(this.state, 4, ++this.inputs);
    Atomics.add(this.state, 0, 1);
    Atomics.store(this.state, 1, 1);
  }

  /** The call returned. */
  end(): void {
    Atomics.store(this.state, 1, 0);
  }

  /** Stop the thread. */
  async stop(): Promise<void> {
    await this.worker.terminate();
  }
}
