// @module-tag peer-knot
// Rotation against a real Knot, the two things an operator ran into:
// 1. Old keys must not be retired by a TTL DNS does not serve: records are
//    published with the configured TTL, and a key withdrawn by a publish that
//    replaced a record served with a longer TTL keeps decrypting for that
//    TTL plus the margin.
// 2. Wrong TSIG credentials are found at start (a TSIG-signed SOA query whose
//    signed answer is verified), by `rotate` even with nothing due, by
//    `rotate --check`, and by `serve` with a `rotation` section.
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { execFile } from 'node:child_process';
import { createSocket } from 'node:dgram';
import { mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { EchKeyManager } from '../src/keys/manager.js';
import type { EchKeySet } from '../src/keys/key-set.js';
import { generateEchKey } from '../src/keys/generate.js';
import { writeEchKeyFile } from '../src/keys/files.js';
import { type EchConfig } from '../src/ech/config.js';
import { buildEchClientHello } from '../src/ech/builder.js';
import { createEchSealer } from '../src/ech/sealer.js';
import { decryptClientHello } from '../src/ech/decrypt.js';
import { Rfc2136Publisher } from '../src/dns/rfc2136.js';
import { PublishError } from '../src/dns/errors.js';
import { tsigKey } from '../src/dns/tsig.js';
import { runRotate } from '../src/cli/rotate.js';
import { type TestDnsServer, kdig, startKnot } from './peers/dns-server.js';
import { x25519Share } from './helpers/reference-keys.js';
import { FakeClock } from './helpers/fake-clock.js';
import { makePki, type TestPki } from './tls13-helpers.js';

const S = 1000;
const BIN = fileURLToPath(new URL('../dist/cli/main.js', import.meta.url));
const WRONG_SECRET = Buffer.alloc(32, 7).toString('base64');

let dns: TestDnsServer;
let dir: string;

beforeAll(async () => {
  dns = await startKnot({
    zone: 'example.test',
    records: [
      // Made by hand before rotation started, with a long TTL.
      'www 600 HTTPS 1 . alpn=h2 ech=AAA=',
      'cli 600 HTTPS 1 . alpn=h2',
    ],
  });
  dir = await mkdtemp(join(tmpdir(), 'ech-rotation-ttl-'));
}, 30_000);

afterAll(async () => {
  await dns?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

function publisher(over: { secret?: string; keyName?: string; server?: string; zone?: string; ttl?: number; timeoutMs?: number } = {}): Rfc2136Publisher {
  return new Rfc2136Publisher({
    server: over.server ?? dns.address,
    zone: over.zone ?? dns.zone,
    tsig: tsigKey(over.keyName ?? dns.updateKey.name, over.secret ?? dns.updateKey.secret),
    timeoutMs: over.timeoutMs ?? 1000,
    attempts: 1,
    ...(over.ttl !== undefined ? { ttl: over.ttl } : {}),
  });
}

async function status(keys: EchKeySet, config: EchConfig): Promise<string> {
  const hello = (await buildEchClientHello({ serverName: 'www.example.test', keyShares: [x25519Share()] }, { config, sealer: createEchSealer })).outerMessage;
  const r = await decryptClientHello(hello, keys);
  return r.status === 'accepted' ? 'accepted' : `${r.status}:${'reason' in r ? r.reason : ''}`;
}

/** TTLs of the answer section (`owner TTL IN HTTPS ...`). */
const ttls = (name: string) => kdig(dns, name, 'HTTPS', false).split('\n').map((l) => Number(l.split(/\s+/)[1]));

describe('retiring keys by the TTL DNS serves', () => {
  it('publishes with the configured TTL and keeps the key withdrawn from a 600 s record for 600 s + margin', async () => {
    const keyDir = join(dir, 'keys');
    // A key made by hand (`ech-server keygen`) and served from the 600 s record.
    const k0 = generateEchKey({ publicName: 'cover.example.test', configId: 7 });
    await mkdir(keyDir, { mode: 0o700 });
    await writeEchKeyFile(join(keyDir, 'k0.pem'), k0.config, k0.privateKeyRaw);
    // The manager adopts it as serving since its file time.
    const clock = new FakeClock(Date.now() + S);
    const m = await EchKeyManager.open({
      keyDirectory: keyDir,
      stateFile: join(dir, 'state.json'),
      publicName: 'cover.example.test',
      names: ['www.example.test'],
      period: 3600,
      ttl: 3,
      margin: 5,
      publisher: publisher({ ttl: 3 }),
      clock,
    });
    // k0 is adopted as serving; a period later the manager rotates.
    clock.t += 3600 * S;
    const r = await m.step();
    expect(r.error).toBeNull();
    expect(r.withdrawn).toEqual([7]);
    expect((r.published!.result as { maxTtl: number }).maxTtl).toBe(600);
    // DNS now serves the configured TTL...
    expect(ttls('www.example.test')).toEqual([3]);
    // ...but a resolver may hold the old record for 600 s.
    const k0Status = m.status().find((k) => k.configId === 7)!;
    expect(Date.parse(k0Status.deleteAfter!) - Date.parse(k0Status.withdrawn!)).toBe((600 + 5) * S);

    // ttl + margin (8 s) later k0 still decrypts: the old code deleted it here.
    clock.t += 9 * S;
    expect((await m.step()).deleted).toEqual([]);
    expect(await status(m.keySet, k0.config)).toBe('accepted');
    expect(m.nextDue()).toBe(Date.parse(k0Status.deleteAfter!));

    // Past 600 s + margin it goes.
    clock.t += 600 * S;
    expect((await m.step()).deleted).toEqual([7]);
    expect(await status(m.keySet, k0.config)).toBe('rejected:no-matching-config');
    expect((await readdir(keyDir)).filter((n) => n.endsWith('.pem'))).toHaveLength(1);

    // The next rotation replaces a record served at 3 s: ttl + margin again.
    clock.t += 3600 * S;
    const r2 = await m.step();
    expect(r2.withdrawn).toHaveLength(1);
    const w = m.status().find((k) => k.phase === 'withdrawn')!;
    expect(Date.parse(w.deleteAfter!) - Date.parse(w.withdrawn!)).toBe((3 + 5) * S);
  });
});

describe('checking the DNS credentials at start', () => {
  const sinks: ReturnType<typeof createSocket>[] = [];
  afterAll(() => sinks.forEach((s) => s.close()));

  it('check() passes with the right key and changes nothing', async () => {
    const before = kdig(dns, 'cli.example.test', 'HTTPS', false);
    await expect(publisher().check()).resolves.toBeUndefined();
    expect(kdig(dns, 'cli.example.test', 'HTTPS', false)).toBe(before);
  });

  const failures: [string, () => Promise<Rfc2136Publisher>, string, RegExp][] = [
    ['a wrong TSIG secret', async () => publisher({ secret: WRONG_SECRET }), 'ERR_DNS_TSIG', /BADSIG/],
    ['a key name the server does not know', async () => publisher({ keyName: 'nobody.' }), 'ERR_DNS_TSIG', /BADKEY/],
    ['a zone the server is not authoritative for', async () => publisher({ zone: 'other.test' }), 'ERR_DNS_REFUSED', /other\.test/],
    [
      'a server that never answers',
      async () => {
        const sink = createSocket('udp4');
        await new Promise<void>((r) => sink.bind(0, '127.0.0.1', () => r()));
        sinks.push(sink);
        return publisher({ server: `127.0.0.1:${sink.address().port}`, timeoutMs: 200 });
      },
      'ERR_DNS_UNREACHABLE',
      /timed out/,
    ],
  ];
  for (const [what, make, code, message] of failures) {
    it(`check() rejects ${what} with ${code}`, async () => {
      const err = await (await make()).check().then(() => undefined, (e: unknown) => e);
      expect(err).toBeInstanceOf(PublishError);
      expect(err).toMatchObject({ code, message: expect.stringMatching(message) });
    });
  }
});

describe('ech-server rotate and serve check the credentials', () => {
  async function run(args: string[]): Promise<{ code: number; out: string; err: string }> {
    let out = '';
    let err = '';
    const o = vi.spyOn(process.stdout, 'write').mockImplementation((s) => ((out += String(s)), true));
    const e = vi.spyOn(process.stderr, 'write').mockImplementation((s) => ((err += String(s)), true));
    try {
      return { code: await runRotate(args), out, err };
    } finally {
      o.mockRestore();
      e.mockRestore();
    }
  }
  const dnsArgs = (secret: string) => ['--dns-server', dns.address, '--zone', dns.zone, '--tsig-name', dns.updateKey.name, '--tsig-secret', secret, '--timeout', '1000'];
  const base = () => ['--keys', join(dir, 'cli-keys'), '--state', join(dir, 'cli-state.json'), '--public-name', 'cover.example.test', '--names', 'cli.example.test'];

  it('rotate with nothing due still fails on a wrong secret, and changes nothing', async () => {
    const first = await run([...base(), ...dnsArgs(dns.updateKey.secret)]);
    expect(first.code).toBe(0);
    const served = kdig(dns, 'cli.example.test', 'HTTPS');
    const keys = await readdir(join(dir, 'cli-keys'));
    // Nothing is due now: the old code exited 0 without talking to DNS.
    const r = await run([...base(), ...dnsArgs(WRONG_SECRET)]);
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/publisher check failed, nothing changed: ERR_DNS_TSIG: .*BADSIG/);
    expect(r.err.split('\n').filter(Boolean)).toHaveLength(1);
    expect(kdig(dns, 'cli.example.test', 'HTTPS')).toBe(served);
    expect(await readdir(join(dir, 'cli-keys'))).toEqual(keys);
  });

  it('rotate --check: exit 0 and ok with the right secret, exit 1 with the reason with a wrong one', async () => {
    const good = await run(['--check', ...dnsArgs(dns.updateKey.secret)]);
    expect(good.code).toBe(0);
    expect(JSON.parse(good.out)).toMatchObject({ ok: true, publisher: expect.stringMatching(/^rfc2136 /) });
    const bad = await run(['--check', ...dnsArgs(WRONG_SECRET)]);
    expect(bad.code).toBe(1);
    expect(JSON.parse(bad.out)).toMatchObject({ ok: false, error: { code: 'ERR_DNS_TSIG' } });
    const none = await run(['--check']);
    expect(none.code).toBe(2);
    expect(none.err).toMatch(/--check needs a publisher/);
  });

  describe('serve', () => {
    let pki: TestPki;
    beforeAll(() => {
      pki = makePki();
    });
    afterAll(() => pki?.cleanup());

    it('a rotation section with a wrong TSIG secret stops serve before it listens', async () => {
      const cover = pki.leaf('ec', ['cover.example.test']);
      const file = join(dir, 'serve.json');
      await writeFile(
        file,
        JSON.stringify({
          listen: '127.0.0.1:0',
          keys: join(dir, 'serve-keys'),
          publicName: { cert: cover.certPath, key: cover.keyPath },
          routes: [],
          rotation: {
            publicName: 'cover.example.test',
            names: ['cli.example.test'],
            stateFile: join(dir, 'serve-state.json'),
            publisher: { type: 'rfc2136', server: dns.address, zone: dns.zone, tsig: { name: dns.updateKey.name, secret: WRONG_SECRET }, timeoutMs: 1000, attempts: 1 },
          },
        }),
      );
      const r = await promisify(execFile)(process.execPath, [BIN, 'serve', '--config', file], { timeout: 20_000 }).then(
        (x) => ({ code: 0, stdout: x.stdout, stderr: x.stderr }),
        (e: { code: number; stdout: string; stderr: string }) => e,
      );
      expect(r.code).toBe(1);
      expect(r.stdout).not.toMatch(/listening/);
      expect(r.stderr).toMatch(/rotation\.publisher: the publisher check failed: ERR_DNS_TSIG/);
      expect(r.stderr).not.toMatch(/\n\s+at /);
    });
  });
});
