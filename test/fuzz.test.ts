// `npm run fuzz` (src/fuzz, built into dist/): a short budget over every
// target must find nothing, and the fuzzer must catch a bug planted in a
// target (so this test can fail).
import { describe, expect, it } from 'vitest';
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { runFuzz, runOne, type FuzzTarget } from '../src/fuzz/engine.js';
import { DecodeError, InvalidArgumentError } from '../src/wire/alert.js';

const FUZZ = fileURLToPath(new URL('../dist/fuzz/main.js', import.meta.url));

function run(args: string[], timeout = 60_000): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [FUZZ, ...args], { timeout }, (err, stdout, stderr) => {
      resolve({ code: err ? ((err as { code?: number }).code ?? null) : 0, stdout, stderr });
    });
  });
}

describe('npm run fuzz', () => {
  it('10 s over every target: 0 failures, and the summary line', async () => {
    const r = await run(['--seconds', '10', '--seed', '20261128'], 170_000);
    expect(r.stderr).toBe('');
    const m = /^fuzz: (\d+) inputs, (\d+) failures$/m.exec(r.stdout);
    expect(m, r.stdout).not.toBeNull();
    expect(Number(m![2]), r.stdout).toBe(0);
    expect(Number(m![1])).toBeGreaterThan(1000);
    for (const t of ['record', 'client-hello', 'extensions', 'ech-config-list', 'ech-decrypt-outer', 'ech-decrypt-inner', 'server-engine']) {
      expect(r.stdout).toMatch(new RegExp(`^fuzz: ${t}: [1-9]\\d* inputs, 0 failures$`, 'm'));
    }
    expect(r.code).toBe(0);
    // The budget is the fuzzer's own; on a CI machine busy with other test
    // files (etcd, serve processes) the wall time can be several times it.
  }, 180_000);

  it('is deterministic given --seed and --max-inputs, and --replay runs one input', async () => {
    const a = await run(['--seed', '3', '--max-inputs', '200', '--target', 'client-hello', '--target', 'ech-config-list']);
    expect(a.stdout).toMatch(/^fuzz: 400 inputs, 0 failures$/m);
    const replay = await run(['--seed', '3', '--replay', 'record', '16030100020100']);
    expect(replay.stdout).toMatch(/replay record: ok/);
    expect(replay.code).toBe(0);
    const usage = await run(['--target', 'nope']);
    expect(usage.stdout).toMatch(/unknown target nope/);
    expect(usage.code).toBe(2);
  }, 60_000);
});

describe('the fuzz engine', () => {
  it('makes the same inputs for the same seed, other inputs for another seed', async () => {
    const record = async (seed: number) => {
      const seen: string[] = [];
      const t: FuzzTarget = {
        name: 'record',
        seeds: [Uint8Array.of(1, 2, 3, 4, 5, 6, 7, 8), Uint8Array.of(0x16, 3, 3, 0, 4, 1, 0, 0, 0)],
        generate: (r) => r.bytes(r.int(10)),
        run: (b) => void seen.push(Buffer.from(b).toString('hex')),
      };
      await runFuzz([t], { seconds: 60, seed, maxInputsPerTarget: 500 });
      return seen;
    };
    const a = await record(7);
    expect(a).toHaveLength(500);
    expect(await record(7)).toEqual(a);
    expect(await record(8)).not.toEqual(a);
    expect(new Set(a).size).toBeGreaterThan(300);
  });
});

describe('the fuzz engine catches planted bugs', () => {
  // A parser with a bug: input with 0x42 at offset 2 and at least 6 bytes
  // dereferences undefined (a TypeError, not the project's typed error).
  const buggy: FuzzTarget = {
    name: 'planted',
    seeds: [new Uint8Array(12)],
    run(b) {
      if (b.length < 2) throw new DecodeError('too short');
      if (b.length >= 6 && b[2] === 0x42) return (undefined as unknown as { x: number }).x;
      return undefined;
    },
  };

  it('a TypeError is a failure, reported with a minimized reproducer that still fails', async () => {
    const lines: string[] = [];
    const report = await runFuzz([buggy], { seconds: 20, seed: 1, log: (l) => lines.push(l), maxFailuresPerTarget: 1 });
    expect(report.failures).toHaveLength(1);
    const f = report.failures[0]!;
    expect(f.target).toBe('planted');
    expect(f.problem).toMatch(/^TypeError/);
    const input = Buffer.from(f.hex, 'hex');
    expect(input.length).toBe(6); // minimized: nothing can be removed
    expect(input[2]).toBe(0x42);
    expect(await runOne(buggy, new Uint8Array(input))).toMatchObject({ problem: expect.stringMatching(/^TypeError/) });
    expect(lines.join('\n')).toMatch(new RegExp(`FAILURE in planted: TypeError[^\\n]*\\n  reproducer \\(6 bytes, hex\\): ${f.hex}`));
  }, 60_000);

  it('a synchronous endless loop is reported by the watchdog thread (reproducer, summary line) and the process exits non-zero', async () => {
    const engine = new URL('../dist/fuzz/engine.js', import.meta.url).href;
    const script = `
      import { runFuzz } from ${JSON.stringify(engine)};
      const t = { name: 'planted-loop', seeds: [new Uint8Array(4)], run: (b) => { if (b.length > 5 && b[0] === 0) for (;;); } };
      await runFuzz([t], { seconds: 30, seed: 1, watchdogMs: 300 });
      console.log('not reached');`;
    const r = await new Promise<{ code: number | null; signal: string | null; stdout: string }>((resolve) => {
      execFile(process.execPath, ['--input-type=module', '-e', script], { timeout: 30_000 }, (err, stdout) =>
        resolve({ code: err ? ((err as { code?: number }).code ?? null) : 0, signal: err ? ((err as { signal?: string }).signal ?? null) : null, stdout }),
      );
    });
    expect(r.stdout).toMatch(/^fuzz: FAILURE in planted-loop: hang: one call used \d+ ms of CPU without returning$/m);
    const hex = /reproducer \((\d+) bytes, hex\): ([0-9a-f]+)$/m.exec(r.stdout);
    expect(hex, r.stdout).not.toBeNull();
    const input = Buffer.from(hex![2]!, 'hex');
    expect(input.length).toBeGreaterThan(5);
    expect(input[0]).toBe(0);
    expect(r.stdout).toMatch(/^fuzz: \d+ inputs, 1 failures$/m);
    expect(r.stdout).not.toMatch(/not reached/);
    expect(r.code !== 0 || r.signal !== null).toBe(true);
  }, 40_000);

  it('a call blocked without using CPU (a deadlock) is reported by the watchdog thread as stalled, and the process exits non-zero', async () => {
    // Atomics.wait blocks the main thread the way a lock does: no CPU is
    // used, so only the wall clock can tell (a Node 20 key export deadlock
    // once looked like this in CI: the fuzz process sat silent until killed).
    const engine = new URL('../dist/fuzz/engine.js', import.meta.url).href;
    const script = `
      import { runFuzz } from ${JSON.stringify(engine)};
      const t = { name: 'planted-lock', seeds: [new Uint8Array(4)], run: (b) => { if (b.length > 5 && b[0] === 0) Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0); } };
      await runFuzz([t], { seconds: 30, seed: 1, watchdogMs: 300, slowMs: 50 });
      console.log('not reached');`;
    const r = await new Promise<{ code: number | null; signal: string | null; stdout: string }>((resolve) => {
      execFile(process.execPath, ['--input-type=module', '-e', script], { timeout: 30_000 }, (err, stdout) =>
        resolve({ code: err ? ((err as { code?: number }).code ?? null) : 0, signal: err ? ((err as { signal?: string }).signal ?? null) : null, stdout }),
      );
    });
    expect(r.stdout).toMatch(/^fuzz: FAILURE in planted-lock: stalled: one call has not returned after \d+ ms \(\d+ ms of CPU\): blocked, e\.g\. a deadlock$/m);
    const hex = /reproducer \((\d+) bytes, hex\): ([0-9a-f]+)$/m.exec(r.stdout);
    expect(hex, r.stdout).not.toBeNull();
    expect(Buffer.from(hex![2]!, 'hex')[0]).toBe(0);
    expect(r.stdout).toMatch(/^fuzz: \d+ inputs, 1 failures$/m);
    expect(r.stdout).not.toMatch(/not reached/);
    expect(r.signal, 'killed by the test timeout, not by the watchdog').not.toBe('SIGTERM');
    expect(r.code !== 0 || r.signal !== null).toBe(true);
  }, 40_000);

  it('a typed error is fine; internal_error for bad input, a slow call and a hang are failures', async () => {
    const typed: FuzzTarget = { name: 'typed', seeds: [new Uint8Array(4)], run: () => { throw new DecodeError('bad'); } };
    const internal: FuzzTarget = { name: 'internal', seeds: [new Uint8Array(4)], run: () => { throw new InvalidArgumentError('oops'); } };
    const slow: FuzzTarget = {
      name: 'slow',
      seeds: [new Uint8Array(4)],
      run: (b) => {
        // 80 ms of CPU for inputs longer than 5 bytes.
        const start = process.cpuUsage();
        while (b.length > 5 && process.cpuUsage(start).user < 80_000);
      },
    };
    const hang: FuzzTarget = { name: 'hang', seeds: [new Uint8Array(4)], run: (b) => (b.length > 5 ? new Promise(() => undefined) : undefined) };
    const report = await runFuzz([typed, internal, slow, hang], { seconds: 4, seed: 2, slowMs: 50, maxFailuresPerTarget: 1 });
    expect(report.perTarget['typed']).toBeGreaterThan(0);
    expect(report.failures.map((f) => f.target)).toEqual(['internal', 'slow', 'hang']);
    expect(report.failures[0]!.problem).toMatch(/internal_error for bad input/);
    expect(report.failures[1]!.problem).toMatch(/^slow: \d+ ms of CPU/);
    expect(report.failures[2]!.problem).toMatch(/^timeout/);
    expect(Buffer.from(report.failures[1]!.hex, 'hex').length).toBe(6);
  }, 60_000);
});
