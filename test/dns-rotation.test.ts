// @module-tag peer-knot
// @module-tag peer-bind
// Key rotation against real authoritative DNS servers (Knot and BIND, started
// by the test): the manager (on a fake clock: no sleeping) publishes each new key by
// RFC 2136 UPDATE with TSIG; kdig shows the HTTPS record with the new
// ECHConfigList and its other params intact; a key past its grace period no
// longer decrypts while the new one does; and a wrong TSIG secret, a refused
// update or an unreachable server leave the serving keys and DNS untouched.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createSocket } from 'node:dgram';
import { EchKeyManager, type EchPublisher } from '../src/keys/manager.js';
import type { EchKeySet } from '../src/keys/key-set.js';
import { type EchConfig, encodeEchConfigList } from '../src/ech/config.js';
import { buildEchClientHello } from '../src/ech/builder.js';
import { createEchSealer } from '../src/ech/sealer.js';
import { decryptClientHello } from '../src/ech/decrypt.js';
import { toBase64 } from '../src/wire/bytes.js';
import { Rfc2136Publisher } from '../src/dns/rfc2136.js';
import { tsigKey } from '../src/dns/tsig.js';
import { type DnsServerKind, type TestDnsServer, kdig, startDnsServer } from './peers/dns-server.js';
import { x25519Share } from './helpers/reference-keys.js';
import { FakeClock } from './helpers/fake-clock.js';

const S = 1000;

async function hello(config: EchConfig): Promise<Uint8Array> {
  return (await buildEchClientHello({ serverName: 'www.example.test', keyShares: [x25519Share()] }, { config, sealer: createEchSealer })).outerMessage;
}

async function status(keys: EchKeySet, h: Uint8Array): Promise<string> {
  const r = await decryptClientHello(h, keys);
  return r.status === 'accepted' ? `accepted:${r.innerServerName}` : r.status === 'rejected' ? `rejected:${r.reason}` : r.status;
}

const list = (c: EchConfig) => toBase64(encodeEchConfigList([c]));

describe.each(['knot', 'bind'] as DnsServerKind[])('%s', (kind) => {
  let dns: TestDnsServer;
  let dir: string;
  const clock = new FakeClock();

  beforeAll(async () => {
    dns = await startDnsServer(kind, {
      zone: 'example.test',
      records: [
        'www 300 HTTPS 1 . alpn=h2,http/1.1 ipv4hint=192.0.2.1 ech=AAA=',
        '_8443._https.api 300 HTTPS 1 api.example.test. alpn=h2 port=8443',
      ],
    });
    dir = await mkdtemp(join(tmpdir(), 'ech-rotation-'));
  }, 30_000);

  afterAll(async () => {
    await dns?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  function rfc2136(over: { secret?: string; keyName?: string; server?: string; timeoutMs?: number } = {}): Rfc2136Publisher {
    return new Rfc2136Publisher({
      server: over.server ?? dns.address,
      zone: dns.zone,
      tsig: tsigKey(over.keyName ?? dns.updateKey.name, over.secret ?? dns.updateKey.secret),
      timeoutMs: over.timeoutMs ?? 1000,
      attempts: 2,
      backoffMs: 5,
    });
  }

  function manager(publisher: EchPublisher): Promise<EchKeyManager> {
    return EchKeyManager.open({
      keyDirectory: join(dir, 'keys'),
      stateFile: join(dir, 'state.json'),
      publicName: 'cover.example.test',
      names: ['www.example.test', 'api.example.test:8443'],
      period: 3600,
      ttl: 300,
      margin: 600,
      publishDelay: 0,
      retryInterval: 60,
      publisher,
      clock,
    });
  }

  describe(`rotation published to ${kind} by RFC 2136 + TSIG`, () => {
    let m: EchKeyManager;
    let k1: EchConfig;
    let k2: EchConfig;
    let h1: Uint8Array;
    let h2: Uint8Array;

    it('first step: the new key is in DNS with every other param intact', async () => {
      m = await manager(rfc2136());
      const r = await m.start();
      expect(r.error).toBeNull();
      expect(r.created).toHaveLength(1);
      k1 = m.keySet.get(r.created[0]!)!.config;
      expect(kdig(dns, 'www.example.test', 'HTTPS')).toBe(`1 . alpn=h2,http/1.1 ipv4hint=192.0.2.1 ech=${list(k1)}`);
      expect(kdig(dns, '_8443._https.api.example.test', 'HTTPS')).toBe(`1 api.example.test. alpn=h2 port=8443 ech=${list(k1)}`);
      h1 = await hello(k1);
      expect(await status(m.keySet, h1)).toBe('accepted:www.example.test');
    });

    it('after a period: DNS carries the new key; old and new both decrypt', async () => {
      await clock.advance(3600 * S, m);
      const active = m.status().find((k) => k.phase === 'active')!;
      k2 = m.keySet.get(active.configId)!.config;
      expect(k2.configId).not.toBe(k1.configId);
      expect(kdig(dns, 'www.example.test', 'HTTPS')).toBe(`1 . alpn=h2,http/1.1 ipv4hint=192.0.2.1 ech=${list(k2)}`);
      expect(kdig(dns, '_8443._https.api.example.test', 'HTTPS')).toBe(`1 api.example.test. alpn=h2 port=8443 ech=${list(k2)}`);
      h2 = await hello(k2);
      expect(await status(m.keySet, h2)).toBe('accepted:www.example.test');
      expect(await status(m.keySet, h1)).toBe('accepted:www.example.test');
      expect(m.keySet.retryConfigs().map((c) => c.configId)).toEqual([k2.configId]);
    });

    it('past ttl + margin: the old key no longer decrypts (deleted from set and disk), the new one does', async () => {
      await clock.advance(900 * S, m);
      expect(await status(m.keySet, h1)).toBe('rejected:no-matching-config');
      expect(await status(m.keySet, h2)).toBe('accepted:www.example.test');
      expect((await readdir(join(dir, 'keys'))).filter((n) => n.endsWith('.pem'))).toHaveLength(1);
      await m.stop();
    });

    const failures: [string, () => Promise<EchPublisher>, string, RegExp][] = [
      ['a wrong TSIG secret', async () => rfc2136({ secret: Buffer.alloc(32, 1).toString('base64') }), 'ERR_DNS_TSIG', /BADSIG/],
      ['a key the server does not allow to update', async () => rfc2136({ keyName: dns.readOnlyKey.name, secret: dns.readOnlyKey.secret }), 'ERR_DNS_REFUSED', /policy does not allow/],
      [
        'an unreachable server',
        async () => {
          // A bound socket that never answers: the publisher times out.
          const sink = createSocket('udp4');
          await new Promise<void>((r) => sink.bind(0, '127.0.0.1', () => r()));
          sinks.push(sink);
          return rfc2136({ server: `127.0.0.1:${sink.address().port}`, timeoutMs: 100 });
        },
        'ERR_DNS_UNREACHABLE',
        /timed out/,
      ],
    ];
    const sinks: ReturnType<typeof createSocket>[] = [];
    afterAll(() => sinks.forEach((s) => s.close()));

    for (const [what, make, code, message] of failures) {
      it(`${what}: clear error, DNS and the serving keys unchanged, nothing promoted or deleted`, async () => {
        const before = m.status();
        const serving = before.find((k) => k.phase === 'active')!;
        const dnsBefore = kdig(dns, 'www.example.test', 'HTTPS');
        const bad = await manager(await make());
        // Past the next creation time and past any deletion time.
        clock.t += 3600 * S;
        const r = await bad.step();
        expect(r.error).toMatchObject({ code, message: expect.stringMatching(message) });
        expect(r.withdrawn).toEqual([]);
        expect(r.deleted).toEqual([]);
        expect(kdig(dns, 'www.example.test', 'HTTPS')).toBe(dnsBefore);
        const active = bad.status().filter((k) => k.phase === 'active');
        expect(active.map((k) => k.configId)).toEqual([serving.configId]);
        const servingHello = await hello(bad.keySet.get(serving.configId)!.config);
        expect(await status(bad.keySet, servingHello)).toBe('accepted:www.example.test');
        expect(bad.keySet.retryConfigs().map((c) => c.configId)).toEqual([serving.configId]);
        // Every key that existed before is still there.
        for (const k of before) expect(bad.keySet.get(k.configId)).toBeDefined();
      });
    }

    it('with the right publisher again, the pending key goes live and DNS follows', async () => {
      const good = await manager(rfc2136());
      clock.t += 60 * S;
      const pending = good.status().find((k) => k.phase === 'pending')!;
      const r = await good.step();
      expect(r.error).toBeNull();
      expect(r.published?.configIds).toEqual([pending.configId]);
      const cfg = good.keySet.get(pending.configId)!.config;
      expect(kdig(dns, 'www.example.test', 'HTTPS')).toBe(`1 . alpn=h2,http/1.1 ipv4hint=192.0.2.1 ech=${list(cfg)}`);
      expect(await status(good.keySet, await hello(cfg))).toBe('accepted:www.example.test');
    });
  });
});
