// @module-tag peer-knot
// @module-tag peer-bind
// RFC 2136 dynamic UPDATE with TSIG (RFC 8945) against real authoritative
// servers (Knot DNS and BIND, started by test/peers/dns-server.ts): only the ech
// SvcParam changes, names without a record are left alone unless
// createIfMissing, and every failure (wrong secret, unknown key, key without
// permission, name outside the zone, unreachable server) is a clear,
// typed error.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createSocket, type Socket } from 'node:dgram';
import { generateEchKey } from '../src/keys/generate.js';
import { encodeEchConfigList, decodeEchConfigList } from '../src/ech/config.js';
import { toBase64 } from '../src/wire/bytes.js';
import { Rfc2136Publisher } from '../src/dns/rfc2136.js';
import { PublishError } from '../src/dns/errors.js';
import { tsigKey } from '../src/dns/tsig.js';
import { decodeSvcbRdata, echParamOf } from '../src/dns/svcb.js';
import { type DnsServerKind, type TestDnsServer, kdig, startDnsServer } from './peers/dns-server.js';

const listFor = (publicName = 'cover.example.test') => encodeEchConfigList([generateEchKey({ publicName }).config]);

describe.each(['knot', 'bind'] as DnsServerKind[])('%s', (kind) => {
  let dns: TestDnsServer;

  beforeAll(async () => {
    dns = await startDnsServer(kind, {
      zone: 'example.test',
      records: [
        'www 300 HTTPS 1 . alpn=h2,http/1.1 ipv4hint=192.0.2.1 ech=AAA=',
        'multi 600 HTTPS 1 . alpn=h3 ech=AAA=',
        'multi 600 HTTPS 2 pool.example.test. alpn=h2 port=8443',
        'alias 300 HTTPS 0 www.example.test.',
        '_8443._https.api 300 HTTPS 1 api.example.test. port=8443 mandatory=port',
        'plain 300 A 192.0.2.9',
      ],
    });
  }, 30_000);

  afterAll(async () => {
    await dns?.stop();
  });

  function publisher(extra: Partial<ConstructorParameters<typeof Rfc2136Publisher>[0]> = {}) {
    return new Rfc2136Publisher({
      server: dns.address,
      zone: dns.zone,
      tsig: tsigKey(dns.updateKey.name, dns.updateKey.secret),
      timeoutMs: 1000,
      backoffMs: 10,
      ...extra,
    });
  }

  describe(`RFC 2136 publisher against ${kind}`, () => {
    it('replaces only the ech SvcParam and keeps priority, target, alpn and hints', async () => {
      const list = listFor();
      const report = await publisher().publish(['www.example.test'], list);
      expect(report.names).toEqual([{ name: 'www.example.test', owner: 'www.example.test.', action: 'updated', records: 1, ttl: 300, previousTtl: 300 }]);
      const line = kdig(dns, 'www.example.test', 'HTTPS');
      expect(line).toBe(`1 . alpn=h2,http/1.1 ipv4hint=192.0.2.1 ech=${toBase64(list)}`);
      // The configured TTL (default 300), seen through a full kdig answer.
      expect(kdig(dns, 'www.example.test', 'HTTPS', false)).toMatch(/^www\.example\.test\.\s+300\s+IN\s+HTTPS\s+1 \. /);
      const rr = await publisher().readHttpsRecords('www.example.test');
      expect(rr).toHaveLength(1);
      expect(echParamOf(decodeSvcbRdata(rr[0]!))).toEqual(list);
    });

    it('publishing the same list again changes nothing', async () => {
      const list = listFor();
      await publisher().publish(['www.example.test'], list);
      const again = await publisher().publish(['www.example.test'], list);
      expect(again.names[0]!.action).toBe('unchanged');
    });

    it('updates every record of a multi-record RRset, adding ech where it was absent, with the configured TTL', async () => {
      const list = listFor();
      const r = await publisher({ ttl: 120 }).publish(['multi.example.test'], list);
      // Served at 600 s before: a resolver may hold the old list that long.
      expect(r.names[0]).toMatchObject({ action: 'updated', records: 2, ttl: 120, previousTtl: 600 });
      expect(r.maxTtl).toBe(600);
      expect(kdig(dns, 'multi.example.test', 'HTTPS', false).split('\n').every((l) => /\s120\s+IN\s+HTTPS\s/.test(l))).toBe(true);
      const lines = kdig(dns, 'multi.example.test', 'HTTPS').split('\n').sort();
      expect(lines).toEqual([
        `1 . alpn=h3 ech=${toBase64(list)}`,
        `2 pool.example.test. alpn=h2 port=8443 ech=${toBase64(list)}`,
      ]);
    });

    it('a HOST:PORT name updates _PORT._https.HOST and keeps mandatory=port', async () => {
      const list = listFor();
      const r = await publisher().publish(['api.example.test:8443'], list);
      expect(r.names[0]).toMatchObject({ owner: '_8443._https.api.example.test.', action: 'updated' });
      expect(kdig(dns, '_8443._https.api.example.test', 'HTTPS')).toBe(`1 api.example.test. mandatory=port port=8443 ech=${toBase64(list)}`);
    });

    it('leaves AliasMode records alone', async () => {
      const r = await publisher().publish(['alias.example.test'], listFor());
      expect(r.names[0]!.action).toBe('unchanged');
      expect(kdig(dns, 'alias.example.test', 'HTTPS')).toBe('0 www.example.test.');
    });

    it('gives a name without an HTTPS record none, unless createIfMissing', async () => {
      const list = listFor();
      const skipped = await publisher().publish(['plain.example.test', 'new.example.test'], list);
      expect(skipped.names.map((n) => n.action)).toEqual(['skipped', 'skipped']);
      expect(kdig(dns, 'plain.example.test', 'HTTPS')).toBe('');
      expect(kdig(dns, 'plain.example.test', 'A')).toBe('192.0.2.9');

      const created = await publisher({ createIfMissing: { alpn: ['h2'] }, ttl: 120 }).publish(['plain.example.test'], list);
      expect(created.names[0]!.action).toBe('created');
      expect(kdig(dns, 'plain.example.test', 'HTTPS')).toBe(`1 . alpn=h2 ech=${toBase64(list)}`);
      expect(kdig(dns, 'plain.example.test', 'A')).toBe('192.0.2.9');
    });

    it('a list of several configs is published whole', async () => {
      const list = encodeEchConfigList([generateEchKey({ publicName: 'a.example.test' }).config, generateEchKey({ publicName: 'b.example.test' }).config]);
      await publisher().publish(['www.example.test'], list);
      const rr = await publisher().readHttpsRecords('www.example.test');
      expect(decodeEchConfigList(echParamOf(decodeSvcbRdata(rr[0]!))!).configs.map((c) => c.publicName)).toEqual(['a.example.test', 'b.example.test']);
    });

    it('works over TCP too', async () => {
      const list = listFor();
      await publisher({ transport: 'tcp' }).publish(['www.example.test'], list);
      expect(kdig(dns, 'www.example.test', 'HTTPS')).toContain(`ech=${toBase64(list)}`);
    });
  });

  describe(`RFC 2136 publisher failures against ${kind} are typed and change nothing`, () => {
    async function expectFailure(p: Rfc2136Publisher, names: string[], code: string, message: RegExp, extra: Record<string, unknown> = {}) {
      const before = kdig(dns, 'www.example.test', 'HTTPS');
      const err = await p.publish(names, listFor()).then(() => undefined, (e: unknown) => e);
      expect(err).toBeInstanceOf(PublishError);
      expect(err, String((err as Error)?.message)).toMatchObject({ code, ...extra });
      expect((err as Error).message).toMatch(message);
      expect(kdig(dns, 'www.example.test', 'HTTPS')).toBe(before);
    }

    it('wrong TSIG secret: ERR_DNS_TSIG, BADSIG', async () => {
      const p = publisher({ tsig: tsigKey(dns.updateKey.name, Buffer.alloc(32, 7).toString('base64')) });
      await expectFailure(p, ['www.example.test'], 'ERR_DNS_TSIG', /BADSIG/, { tsigError: 'BADSIG' });
    });

    it('key unknown to the server: ERR_DNS_TSIG, BADKEY', async () => {
      const p = publisher({ tsig: tsigKey('nobody.', dns.updateKey.secret) });
      await expectFailure(p, ['www.example.test'], 'ERR_DNS_TSIG', /BADKEY/, { tsigError: 'BADKEY' });
    });

    it('a valid key the ACL does not allow to update: ERR_DNS_REFUSED', async () => {
      const p = publisher({ tsig: tsigKey(dns.readOnlyKey.name, dns.readOnlyKey.secret) });
      await expectFailure(p, ['www.example.test'], 'ERR_DNS_REFUSED', kind === 'knot' ? /NOTAUTH\/BADKEY.*policy does not allow/ : /REFUSED.*policy does not allow/);
    });

    it('a name outside the zone: ERR_DNS_REFUSED', async () => {
      const p = publisher({ createIfMissing: true });
      await expectFailure(p, ['www.elsewhere.test'], 'ERR_DNS_REFUSED', /NOTZONE|NOTAUTH|REFUSED/);
    });

    it('a zone the server does not serve: ERR_DNS_REFUSED', async () => {
      const p = publisher({ zone: 'elsewhere.test' });
      await expectFailure(p, ['www.elsewhere.test'], 'ERR_DNS_REFUSED', /NOTAUTH|REFUSED/);
    });

    it('a server that never answers: ERR_DNS_UNREACHABLE after the retries', async () => {
      const sink: Socket = createSocket('udp4');
      await new Promise<void>((r) => sink.bind(0, '127.0.0.1', () => r()));
      let received = 0;
      sink.on('message', () => received++);
      try {
        const p = publisher({ server: `127.0.0.1:${sink.address().port}`, timeoutMs: 150, attempts: 3, backoffMs: 5 });
        await expectFailure(p, ['www.example.test'], 'ERR_DNS_UNREACHABLE', /timed out.*gave up after 3 tries/);
        expect(received).toBe(3);
      } finally {
        sink.close();
      }
    });

    it('a closed port: ERR_DNS_UNREACHABLE', async () => {
      const sink: Socket = createSocket('udp4');
      await new Promise<void>((r) => sink.bind(0, '127.0.0.1', () => r()));
      const port = sink.address().port;
      await new Promise<void>((r) => sink.close(() => r()));
      const p = publisher({ server: `127.0.0.1:${port}`, timeoutMs: 300, attempts: 2, backoffMs: 5 });
      await expectFailure(p, ['www.example.test'], 'ERR_DNS_UNREACHABLE', /ECONNREFUSED|timed out/);
    });
  });

});
