// `npm run soak` (src/soak, built into dist/): `ech-server serve` as a
// process under a small load of ECH clients and hostile connections; no
// answer lost, descriptors back to baseline, one JSON line.
import { describe, expect, it } from 'vitest';
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const SOAK = fileURLToPath(new URL('../dist/soak/main.js', import.meta.url));

describe('npm run soak', () => {
  it('300 connections (~10 % hostile): one JSON line, nothing lost, fds back to baseline, exit 0', async () => {
    const r = await new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
      execFile(process.execPath, [SOAK, '--connections', '300', '--seconds', '100'], { timeout: 120_000 }, (err, stdout, stderr) =>
        resolve({ code: err ? ((err as { code?: number }).code ?? null) : 0, stdout, stderr }),
      );
    });
    const lines = r.stdout.trim().split('\n');
    expect(lines, r.stderr).toHaveLength(1);
    const report = JSON.parse(lines[0]!) as Record<string, unknown>;
    expect(report).toMatchObject({
      connections: 300,
      lost: 0,
      fds_recovered: true,
      ok: true,
      fds: { before: expect.any(Number), peak: expect.any(Number), after: expect.any(Number) },
      rss: { before: expect.any(Number), peak: expect.any(Number), after: expect.any(Number) },
    });
    const fds = report['fds'] as { before: number; peak: number; after: number };
    expect(fds.before).toBeGreaterThan(0);
    expect(fds.peak).toBeGreaterThan(fds.before); // the sampler saw the load
    expect(fds.after).toBeLessThanOrEqual(fds.before);
    expect(report['handshakes_per_s']).toBeGreaterThan(0);
    expect(report['good'] as number).toBeGreaterThan(200);
    expect(report['hostile'] as number).toBeGreaterThan(10);
    expect(Object.keys(report['hostile_kinds'] as object).sort()).toEqual(
      ['half-open', 'mutated-ech', 'oversized-hello', 'random-bytes', 'stop-mid-handshake', 'truncated-hello'],
    );
    expect(report['hostile_not_closed']).toBe(0);
    expect(r.code).toBe(0);
  }, 130_000);

  it('--half-close (one good client in four sends its request with end()): nothing lost, fds back to baseline', async () => {
    const r = await new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
      execFile(process.execPath, [SOAK, '--connections', '300', '--seconds', '100', '--half-close'], { timeout: 120_000 }, (err, stdout, stderr) =>
        resolve({ code: err ? ((err as { code?: number }).code ?? null) : 0, stdout, stderr }),
      );
    });
    const report = JSON.parse(r.stdout.trim().split('\n')[0]!) as Record<string, unknown>;
    expect(report, r.stderr).toMatchObject({ connections: 300, lost: 0, lost_reasons: [], fds_recovered: true, ok: true });
    expect(r.code).toBe(0);
  }, 130_000);

  it('a bad option is a usage error (exit 2)', async () => {
    const r = await new Promise<{ code: number | null; stderr: string }>((resolve) => {
      execFile(process.execPath, [SOAK, '--connections', 'many'], (err, _o, stderr) => resolve({ code: err ? ((err as { code?: number }).code ?? null) : 0, stderr }));
    });
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/--connections needs a positive whole number/);
  });
});
