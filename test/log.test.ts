// The JSON-lines log sink: the line format (the same bytes as
// JSON.stringify of `{ time, ...event }`), and the batching mode `serve`
// uses (one write per event-loop turn, nothing lost at exit).
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, it, vi } from 'vitest';
import { jsonLines } from '../src/log/log.js';

const LOG_MODULE = fileURLToPath(new URL('../dist/log/log.js', import.meta.url));

function capture(batch?: boolean) {
  const writes: string[] = [];
  const log = jsonLines({ write: (s: string) => writes.push(s) }, batch === undefined ? {} : { batch });
  return { writes, log };
}

const tick = () => new Promise((r) => setImmediate(r));

describe('jsonLines', () => {
  it('writes what JSON.stringify({ time, ...event }) writes, field for field and in order', () => {
    const events: Record<string, unknown>[] = [
      { event: 'handshake', status: 'accepted', outer: 'cover.example', route: 'routes[0]', inner: undefined, remote: '127.0.0.1', remotePort: 40000, alpn: null, cipher: 'TLS_AES_128_GCM_SHA256', group: 'X25519' },
      { event: 'x', n: Number.NaN, inf: Number.POSITIVE_INFINITY, neg: -0, big: 1e21, small: 1e-7, ok: true, no: false },
      { event: 'nested', retry: [1, 2, 3], servers: { a: { up: true } }, when: new Date(0), fn: () => 1, sym: Symbol('s') },
      { event: 'quote"s \\ \n\u2028 ünï', 'key "q"': 'v' },
      { time: 'mine', event: 'time first, with the given value' },
      { event: 'time undefined', time: undefined },
      { 2: 'index keys', event: 'e', 1: 'one' },
      {},
    ];
    const { writes, log } = capture();
    for (const e of events) log(e);
    expect(writes).toHaveLength(events.length);
    for (const [i, e] of events.entries()) {
      const w = writes[i]!;
      expect(w.endsWith('\n')).toBe(true);
      const parsed = JSON.parse(w) as Record<string, unknown>;
      // The timestamp is the only part that differs between two renderings.
      const expected = JSON.stringify({ time: parsed['time'], ...e });
      if ('time' in e) expect(w).toBe(`${JSON.stringify({ time: 'x', ...e })}\n`);
      else expect(w).toBe(`${expected}\n`);
      if (!('time' in e)) expect(parsed['time']).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
    }
  });

  it('without batch, each line is written when it is logged', () => {
    const { writes, log } = capture();
    log({ event: 'a' });
    log({ event: 'b' });
    expect(writes.map((w) => JSON.parse(w).event)).toEqual(['a', 'b']);
  });

  it('batch: the lines of one event-loop turn go out in one write, at the end of that turn', async () => {
    const { writes, log } = capture(true);
    for (let i = 0; i < 50; i++) log({ event: 'handshake', i });
    expect(writes).toHaveLength(0);
    await tick();
    expect(writes).toHaveLength(1);
    const lines = writes[0]!.split('\n');
    expect(lines.pop()).toBe('');
    expect(lines.map((l) => JSON.parse(l).i)).toEqual([...Array(50).keys()]);
    log({ event: 'next turn' });
    await tick();
    expect(writes).toHaveLength(2);
    expect(JSON.parse(writes[1]!).event).toBe('next turn');
  });

  it('batch: flush() writes what is waiting at once (serve flushes before its listening line)', async () => {
    const { writes, log } = capture(true);
    log({ event: 'worker_started', worker: 1 });
    log({ event: 'worker_started', worker: 2 });
    log.flush();
    expect(writes).toHaveLength(1);
    expect(writes[0]!.trim().split('\n').map((l) => JSON.parse(l).worker)).toEqual([1, 2]);
    await tick();
    expect(writes).toHaveLength(1);
    jsonLines({ write: (s: string) => writes.push(s) }).flush(); // unbatched: nothing to do
    expect(writes).toHaveLength(1);
  });

  it('batch: a turn that logs more than 64 KiB writes before the end of the turn, in order', async () => {
    const { writes, log } = capture(true);
    const pad = 'x'.repeat(1000);
    for (let i = 0; i < 100; i++) log({ event: 'big', i, pad });
    expect(writes.length).toBeGreaterThanOrEqual(1);
    await tick();
    const all = writes.join('').trim().split('\n').map((l) => JSON.parse(l).i);
    expect(all).toEqual([...Array(100).keys()]);
  });

  // A child process logs with the batching sink to its stderr, then leaves
  // in the same turn: every line must be on stderr.
  const child = (ending: string) =>
    spawnSync(
      process.execPath,
      [
        '--input-type=module',
        '-e',
        `import { jsonLines } from ${JSON.stringify(LOG_MODULE)};
         const log = jsonLines(process.stderr, { batch: true });
         for (let i = 0; i < 1000; i++) log({ event: 'handshake', i });
         ${ending}`,
      ],
      { encoding: 'utf8', timeout: 20_000 },
    );
  const lines = (stderr: string) =>
    stderr
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => (JSON.parse(l) as { i: number }).i);

  it.each([
    ['process.exit() in the same turn', 'process.exit(3);', 3],
    ['an uncaught exception in the same turn', "throw new Error('boom');", 1],
    ['SIGTERM handled by exiting in the same turn', "process.on('SIGTERM', () => process.exit(0)); process.kill(process.pid, 'SIGTERM'); setTimeout(() => {}, 10000);", 0],
    ['the loop running empty', '', 0],
  ])('batch: no line lost at exit: %s', (_name, ending, code) => {
    const r = child(ending);
    expect(r.status).toBe(code);
    expect(lines(r.stderr)).toEqual([...Array(1000).keys()]);
  });
});

describe('jsonLines timestamps', () => {
  it('are new Date().toISOString() at the time of the line, across seconds, with one Date formatted per second, not per line', () => {
    vi.useFakeTimers();
    const iso = vi.spyOn(Date.prototype, 'toISOString');
    try {
      const { writes, log } = capture();
      const times = [Date.UTC(2026, 10, 29, 2, 59, 59, 998), Date.UTC(2026, 10, 29, 2, 59, 59, 999), Date.UTC(2026, 10, 29, 3, 0, 0, 0), Date.UTC(2026, 10, 29, 3, 0, 0, 7), Date.UTC(2026, 10, 29, 3, 0, 0, 42), Date.UTC(2026, 10, 29, 3, 0, 0, 420)];
      for (const t of times) {
        vi.setSystemTime(t);
        log({ event: 'e' });
      }
      expect(writes.map((w) => JSON.parse(w).time)).toEqual(times.map((t) => new Date(t).toISOString()));
      // Two seconds seen (plus the expectations' own calls above).
      expect(iso.mock.calls.length - times.length).toBe(2);
    } finally {
      iso.mockRestore();
      vi.useRealTimers();
    }
  });
});
