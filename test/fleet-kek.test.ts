// Fleet mode, step 1: the key-encryption key. `ech-server fleet kek --out`
// writes a 0600 file; sealing uses the etcd path as additional data; a wrong
// KEK, a moved value or a tampered value is a clear error, never garbage.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { chmod, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { FleetKekError, openSealed, readKekFile, seal, writeNewKekFile } from '../src/fleet/kek.js';

const BIN = fileURLToPath(new URL('../dist/cli/main.js', import.meta.url));
let dir: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'ech-fleet-kek-'));
});
afterAll(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
});

const run = (args: string[]) =>
  promisify(execFile)(process.execPath, [BIN, ...args]).then(
    (r) => ({ code: 0, stdout: r.stdout, stderr: r.stderr }),
    (e: { code: number; stdout: string; stderr: string }) => e,
  );

describe('fleet KEK', () => {
  it('`fleet kek --out FILE` writes 32 random bytes in base64 with mode 0600 and never overwrites', async () => {
    const file = join(dir, 'a.kek');
    const r = await run(['fleet', 'kek', '--out', file]);
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({ file, fingerprint: expect.stringMatching(/^[0-9a-f]{16}$/) });
    expect((await stat(file)).mode & 0o777).toBe(0o600);
    expect(Buffer.from((await readFile(file, 'utf8')).trim(), 'base64')).toHaveLength(32);
    const before = await readFile(file, 'utf8');
    const again = await run(['fleet', 'kek', '--out', file]);
    expect(again.code).toBe(1);
    expect(again.stderr).toMatch(/already exists/);
    expect(again.stderr.trim().split('\n')).toHaveLength(1);
    expect(await readFile(file, 'utf8')).toBe(before);
    expect((await run(['fleet', 'kek'])).code).toBe(2);
  });

  it('seals with the etcd path as AAD: the right KEK opens, a wrong KEK, another path or a flipped bit is a FleetKekError', async () => {
    const a = await writeNewKekFile(join(dir, 'k1.kek'));
    const b = await writeNewKekFile(join(dir, 'k2.kek'));
    const secret = new Uint8Array(Buffer.from('a private key'));
    const sealed = seal(a, '/p/ech/1', secret);
    expect(Buffer.from(sealed).includes(Buffer.from(secret))).toBe(false);
    expect(Buffer.from(openSealed(a, '/p/ech/1', sealed)).toString()).toBe('a private key');
    expect(() => openSealed(b, '/p/ech/1', sealed)).toThrow(FleetKekError);
    expect(() => openSealed(b, '/p/ech/1', sealed)).toThrow(/does not open with the KEK in .*k2\.kek .*fingerprint/);
    expect(() => openSealed(a, '/p/ech/2', sealed)).toThrow(FleetKekError);
    const flipped = new Uint8Array(sealed);
    flipped[20]! ^= 1;
    expect(() => openSealed(a, '/p/ech/1', flipped)).toThrow(FleetKekError);
    expect(() => openSealed(a, '/p/ech/1', new Uint8Array(10))).toThrow(/not a sealed value/);
  });

  it('refuses a KEK file others can read, or one that holds no KEK', async () => {
    const loose = join(dir, 'loose.kek');
    await writeFile(loose, `${Buffer.alloc(32, 1).toString('base64')}\n`, { mode: 0o600 });
    await chmod(loose, 0o644);
    await expect(readKekFile(loose)).rejects.toThrow(/readable by others \(mode 0644\)/);
    const bad = join(dir, 'bad.kek');
    await writeFile(bad, 'not a key\n', { mode: 0o600 });
    await expect(readKekFile(bad)).rejects.toThrow(/does not hold a KEK/);
    await expect(readKekFile(join(dir, 'missing.kek'))).rejects.toThrow(/cannot read .*ENOENT/);
  });

  it('`fleet status` errors: one line and exit 1 for a config without a fleet section or an etcd that does not answer', async () => {
    const none = join(dir, 'none.json');
    await writeFile(none, JSON.stringify({ listen: '127.0.0.1:0', keys: 'k', publicName: { cert: 'c', key: 'k' } }));
    const a = await run(['fleet', 'status', '--config', none]);
    expect(a.code).toBe(1);
    expect(a.stderr).toMatch(/^ech-server fleet status: .*none\.json has no "fleet" section\n$/);
    const down = join(dir, 'down.json');
    await writeFile(down, JSON.stringify({ listen: '127.0.0.1:0', publicName: { cert: 'c', key: 'k' }, fleet: { etcd: { endpoints: ['http://127.0.0.1:1'] }, prefix: '/x', member: 'a', kekFile: 'k' } }));
    const b = await run(['fleet', 'status', '--config', down]);
    expect(b.code).toBe(1);
    expect(b.stderr).toMatch(/^ech-server fleet status: etcd at http:\/\/127\.0\.0\.1:1: .*\n$/);
    expect(b.stderr.trim().split('\n')).toHaveLength(1);
  });
});
