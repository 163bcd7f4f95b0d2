// @module-tag peer-knot
// `ech-server rotate` (runRotate): one step per run, for cron. Time passing
// between runs is simulated by moving the state file's timestamps back (no
// sleeping). Publishes to files and, by RFC 2136 + TSIG, to a real Knot.
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { mkdtemp, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ROTATE_USAGE, runRotate } from '../src/cli/rotate.js';
import { decodeEchConfigList } from '../src/ech/config.js';
import { fromBase64 } from '../src/wire/bytes.js';
import { type TestDnsServer, kdig, startKnot } from './peers/dns-server.js';

let dir: string;
let dns: TestDnsServer;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'ech-rotate-cli-'));
  dns = await startKnot({ zone: 'example.test', records: ['www 300 HTTPS 1 . alpn=h2 port=443 ech=AAA='] });
}, 30_000);

afterAll(async () => {
  await dns?.stop();
  await rm(dir, { recursive: true, force: true });
});

async function run(args: string[]): Promise<{ code: number; out: string; err: string; json: Record<string, any> | undefined }> {
  let out = '';
  let err = '';
  const o = vi.spyOn(process.stdout, 'write').mockImplementation((s) => ((out += String(s)), true));
  const e = vi.spyOn(process.stderr, 'write').mockImplementation((s) => ((err += String(s)), true));
  try {
    const code = await runRotate(args);
    let json;
    try {
      json = JSON.parse(out) as Record<string, any>;
    } catch {
      json = undefined;
    }
    return { code, out, err, json };
  } finally {
    o.mockRestore();
    e.mockRestore();
  }
}

/** Pretend `seconds` passed: move every timestamp in the state file back. */
async function age(stateFile: string, seconds: number): Promise<void> {
  const s = JSON.parse(await readFile(stateFile, 'utf8')) as { keys: Record<string, number | null>[]; lastError: { at: number } | null };
  for (const k of s.keys) for (const f of ['created', 'published', 'withdrawn']) if (typeof k[f] === 'number') k[f] = (k[f] as number) - seconds * 1000;
  if (s.lastError) s.lastError.at -= seconds * 1000;
  await writeFile(stateFile, JSON.stringify(s));
}

describe('ech-server rotate', () => {
  it('--help documents every option', async () => {
    const r = await run(['--help']);
    expect(r.code).toBe(0);
    expect(r.out).toBe(ROTATE_USAGE);
    for (const opt of ['--keys', '--state', '--public-name', '--kem', '--max-name-length', '--period', '--ttl', '--margin', '--publish-delay', '--names',
      '--publish-file', '--alpn', '--dns-server', '--zone', '--tsig-name', '--tsig-secret', '--tsig-secret-file', '--tsig-algorithm', '--create-if-missing', '--tcp', '--timeout']) {
      expect(ROTATE_USAGE).toContain(`  ${opt} `);
    }
  });

  it('usage errors exit 2 with the reason', async () => {
    expect(await run(['--state', 's', '--public-name', 'c.example'])).toMatchObject({ code: 2, err: expect.stringContaining('--keys is required') });
    expect(await run(['--keys', 'k', '--state', 's', '--public-name', 'c.example', '--names', 'a.example', '--publish-file', 'p', '--dns-server', '127.0.0.1'])).toMatchObject({ code: 2, err: expect.stringContaining('not both') });
    expect(await run(['--keys', 'k', '--state', 's', '--public-name', 'c.example', '--dns-server', '127.0.0.1', '--names', 'a.example'])).toMatchObject({ code: 2, err: expect.stringContaining('--zone') });
    expect(await run(['--keys', 'k', '--state', 's', '--public-name', 'c.example', '--period', '1h'])).toMatchObject({ code: 2, err: expect.stringContaining('--period') });
    expect(await run(['--bogus'])).toMatchObject({ code: 2 });
  });

  it('with --publish-file: a key on the first run, nothing until due, then a rotation with the old key retired', async () => {
    const keys = join(dir, 'file-keys');
    const state = join(dir, 'file-state.json');
    const prefix = join(dir, 'out', 'https');
    const args = ['--keys', keys, '--state', state, '--public-name', 'cover.example', '--names', 'secret.example,api.example:8443', '--publish-file', prefix, '--alpn', 'h2,http/1.1', '--period', '3600', '--ttl', '300', '--margin', '600'];

    const first = await run(args);
    expect(first.code, first.err).toBe(0);
    expect(first.json).toMatchObject({ created: [expect.any(Number)], withdrawn: [], deleted: [], error: null });
    const id1 = first.json!['created'][0] as number;
    expect(first.json!['published']).toMatchObject({ configIds: [id1], names: ['secret.example', 'api.example:8443'] });
    const zone = await readFile(`${prefix}.zone`, 'utf8');
    const b64 = first.json!['published'].echConfigList as string;
    expect(zone).toContain(`secret.example. 300 IN HTTPS 1 . alpn="h2,http/1.1" ech=${b64}`);
    expect(zone).toContain(`_8443._https.api.example. 300 IN HTTPS 1 api.example. alpn="h2,http/1.1" port=8443 ech=${b64}`);
    const doc = JSON.parse(await readFile(`${prefix}.json`, 'utf8')) as { echConfigList: string; configIds: number[] };
    expect(doc).toMatchObject({ echConfigList: b64, configIds: [id1] });
    expect(decodeEchConfigList(fromBase64(b64)).configs[0]!.publicName).toBe('cover.example');
    expect((await stat(state)).mode & 0o777).toBe(0o600);
    const [f] = (await readdir(keys)).filter((n) => n.endsWith('.pem'));
    expect((await stat(join(keys, f!))).mode & 0o777).toBe(0o600);
    // Private keys never reach the output.
    expect(first.out).not.toMatch(/PRIVATE/);

    const again = await run(args);
    expect(again.json).toMatchObject({ created: [], published: null, withdrawn: [], deleted: [] });

    await age(state, 3600);
    const rotated = await run(args);
    expect(rotated.code).toBe(0);
    const id2 = rotated.json!['created'][0] as number;
    expect(id2).not.toBe(id1);
    expect(rotated.json).toMatchObject({ published: { configIds: [id2] }, withdrawn: [id1], deleted: [] });
    expect((await readdir(keys)).filter((n) => n.endsWith('.retired.pem'))).toHaveLength(1);

    await age(state, 900);
    const cleaned = await run(args);
    expect(cleaned.json).toMatchObject({ created: [], deleted: [id1] });
    expect((await readdir(keys)).filter((n) => n.endsWith('.pem'))).toHaveLength(1);
  });

  it('with --dns-server: updates Knot; a wrong TSIG secret exits 1 and changes nothing', async () => {
    const keys = join(dir, 'dns-keys');
    const state = join(dir, 'dns-state.json');
    const secretFile = join(dir, 'tsig.b64');
    await writeFile(secretFile, `${dns.updateKey.secret}\n`, { mode: 0o600 });
    const base = ['--keys', keys, '--state', state, '--public-name', 'cover.example.test', '--names', 'www.example.test', '--dns-server', dns.address, '--zone', dns.zone, '--tsig-name', dns.updateKey.name, '--timeout', '1000'];

    const ok = await run([...base, '--tsig-secret-file', secretFile]);
    expect(ok.code, ok.err).toBe(0);
    const b64 = ok.json!['published'].echConfigList as string;
    expect(kdig(dns, 'www.example.test', 'HTTPS')).toBe(`1 . alpn=h2 port=443 ech=${b64}`);
    expect(ok.json!['published'].result).toMatchObject({ publisher: 'rfc2136', names: [{ name: 'www.example.test', action: 'updated' }] });
    expect(ok.out).not.toContain(dns.updateKey.secret);

    await age(state, 86400);
    const bad = await run([...base, '--tsig-secret', Buffer.alloc(32, 9).toString('base64')]);
    expect(bad.code).toBe(1);
    expect(bad.err).toMatch(/ERR_DNS_TSIG.*BADSIG/);
    expect(bad.json).toMatchObject({ error: { code: 'ERR_DNS_TSIG' }, withdrawn: [], deleted: [], published: null });
    // The credentials are checked before the step: not even a key is made.
    expect(bad.json!['keys'].map((k: { phase: string }) => k.phase)).toEqual(['active']);
    expect(kdig(dns, 'www.example.test', 'HTTPS')).toBe(`1 . alpn=h2 port=443 ech=${b64}`);

    // ECH_TSIG_SECRET works too, and the due key is made and goes live.
    process.env['ECH_TSIG_SECRET'] = dns.updateKey.secret;
    try {
      await age(state, 60);
      const fixed = await run(base);
      expect(fixed.code, fixed.err).toBe(0);
      expect(fixed.json).toMatchObject({ created: [expect.any(Number)], withdrawn: [ok.json!['created'][0]] });
      expect(kdig(dns, 'www.example.test', 'HTTPS')).toBe(`1 . alpn=h2 port=443 ech=${fixed.json!['published'].echConfigList}`);
    } finally {
      delete process.env['ECH_TSIG_SECRET'];
    }
  });
});
