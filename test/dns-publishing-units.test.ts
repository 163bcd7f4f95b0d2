// Unit tests of the publishing pieces that need no server: TSIG signing and
// response verification (RFC 8945), SVCB RDATA editing (RFC 9460), name and
// server parsing, the file publisher, and the rotation config validator.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createHmac } from 'node:crypto';
import { mkdtemp, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import dnsPacket from 'dns-packet';
import { findTsig, tsigKey, tsigSign, tsigVerifyResponse, type TsigKey } from '../src/dns/tsig.js';
import { decodeSvcbRdata, echParamOf, encodeSvcbRdata, withEchParam } from '../src/dns/svcb.js';
import { httpsRecordRdata } from '../src/dns/https-record.js';
import { parseHttpsName } from '../src/dns/publisher.js';
import { parseDnsServer } from '../src/dns/transport.js';
import { FilePublisher } from '../src/dns/file-publisher.js';
import { RotationConfigError, createPublisher, keyManagerOptions, validateRotationConfig } from '../src/dns/rotation-config.js';
import { Rfc2136Publisher } from '../src/dns/rfc2136.js';
import { PublishError } from '../src/dns/errors.js';
import { generateEchKey } from '../src/keys/generate.js';
import { encodeEchConfigList } from '../src/ech/config.js';
import { toBase64 } from '../src/wire/bytes.js';
import { CodedError, EchError } from '../src/wire/alert.js';

const KEY: TsigKey = tsigKey('ech-update.', Buffer.alloc(32, 0x42).toString('base64'));
const NOW = Date.UTC(2026, 0, 1);

function nameWire(n: string): Buffer {
  return Buffer.concat([...n.replace(/\.$/, '').split('.').map((l) => Buffer.concat([Buffer.of(l.length), Buffer.from(l)])), Buffer.of(0)]);
}

/** An independent TSIG signer for the server side of a response (RFC 8945 §5.3). */
function serverSign(response: Buffer, requestMac: Uint8Array, key: TsigKey, timeSigned: number, error = 0, secret = key.secret): Buffer {
  const vars = Buffer.concat([nameWire(key.name), Buffer.from([0, 255, 0, 0, 0, 0]), nameWire('hmac-sha256'), Buffer.from([0, 0]), u32(timeSigned), Buffer.from([1, 44]), u16(error), Buffer.from([0, 0])]);
  const mac = error === 16 || error === 17 ? Buffer.alloc(0) : createHmac('sha256', secret).update(Buffer.concat([u16(requestMac.length), requestMac, response, vars])).digest();
  const rdata = Buffer.concat([nameWire('hmac-sha256'), Buffer.from([0, 0]), u32(timeSigned), Buffer.from([1, 44]), u16(mac.length), mac, response.subarray(0, 2), u16(error), Buffer.from([0, 0])]);
  const rr = Buffer.concat([nameWire(key.name), Buffer.from([0, 250, 0, 255, 0, 0, 0, 0]), u16(rdata.length), rdata]);
  const out = Buffer.concat([response, rr]);
  out.writeUInt16BE(out.readUInt16BE(10) + 1, 10);
  return out;
}
const u16 = (n: number) => Buffer.from([n >> 8, n & 255]);
const u32 = (n: number) => { const b = Buffer.alloc(4); b.writeUInt32BE(n); return b; };

describe('TSIG', () => {
  const query = dnsPacket.encode({ type: 'query', id: 0x1234, questions: [{ type: 'SOA', name: 'example.test' }] });

  it('signs: the appended TSIG RR carries an HMAC over the message and the TSIG variables', () => {
    const s = tsigSign(query, KEY, NOW);
    expect(s.message.subarray(0, 10)).toEqual(new Uint8Array(query.subarray(0, 10)));
    expect((s.message[10]! << 8) | s.message[11]!).toBe(1);
    const t = findTsig(s.message)!;
    expect(t).toMatchObject({ keyName: 'ech-update.', algorithm: 'hmac-sha256.', timeSigned: NOW / 1000, fudge: 300, originalId: 0x1234, error: 0, offset: query.length });
    const vars = Buffer.concat([nameWire('ech-update.'), Buffer.from([0, 255, 0, 0, 0, 0]), nameWire('hmac-sha256'), Buffer.from([0, 0]), u32(NOW / 1000), Buffer.from([1, 44, 0, 0, 0, 0])]);
    const expected = createHmac('sha256', KEY.secret).update(Buffer.concat([query, vars])).digest();
    expect(Buffer.from(t.mac)).toEqual(expected);
    expect(Buffer.from(s.mac)).toEqual(expected);
    // dns-packet still decodes the signed message.
    expect(dnsPacket.decode(Buffer.from(s.message)).additionals?.[0]?.type).toBe('TSIG');
  });

  function response(): Buffer {
    return dnsPacket.encode({ type: 'response', id: 0x1234, flags: dnsPacket.AUTHORITATIVE_ANSWER, questions: [{ type: 'SOA', name: 'example.test' }] });
  }

  it('verifies a correctly signed response', () => {
    const s = tsigSign(query, KEY, NOW);
    expect(() => tsigVerifyResponse(serverSign(response(), s.mac, KEY, NOW / 1000), KEY, s.mac, NOW)).not.toThrow();
  });

  it('rejects a tampered response, a wrong secret, another request MAC, a stale time, and no TSIG', () => {
    const s = tsigSign(query, KEY, NOW);
    const good = serverSign(response(), s.mac, KEY, NOW / 1000);
    const tampered = Buffer.from(good);
    tampered[3]! ^= 0x01;
    const cases: [string, Buffer, RegExp, string?][] = [
      ['tampered', tampered, /does not verify/, 'BADSIG'],
      ['other secret', serverSign(response(), s.mac, KEY, NOW / 1000, 0, Buffer.alloc(32, 1)), /does not verify/, 'BADSIG'],
      ['other request', serverSign(response(), Buffer.alloc(32), KEY, NOW / 1000), /does not verify/, 'BADSIG'],
      ['stale', serverSign(response(), s.mac, KEY, NOW / 1000 - 301), /outside the fudge/, 'BADTIME'],
      ['unsigned', response(), /not TSIG-signed/],
    ];
    for (const [what, bytes, msg, tsigError] of cases) {
      let err: unknown;
      try {
        tsigVerifyResponse(bytes, KEY, s.mac, NOW);
      } catch (e) {
        err = e;
      }
      expect(err, what).toBeInstanceOf(PublishError);
      expect(err, what).toMatchObject({ code: 'ERR_DNS_TSIG', ...(tsigError ? { tsigError } : {}) });
      expect((err as Error).message, what).toMatch(msg);
    }
  });

  it('reports the server\'s TSIG errors by name', () => {
    const s = tsigSign(query, KEY, NOW);
    for (const [code, name] of [[16, 'BADSIG'], [17, 'BADKEY'], [18, 'BADTIME']] as const) {
      const r = response();
      r.writeUInt16BE((r.readUInt16BE(2) & 0xfff0) | 9, 2); // NOTAUTH
      expect(() => tsigVerifyResponse(serverSign(r, s.mac, KEY, NOW / 1000, code), KEY, s.mac, NOW)).toThrow(expect.objectContaining({ code: 'ERR_DNS_TSIG', tsigError: name }));
    }
  });

  it('refuses unusable keys', () => {
    expect(() => tsigKey('k.', 'not base64!')).toThrow(expect.objectContaining({ code: 'ERR_PUBLISH_CONFIG' }));
    expect(() => tsigKey('k.', Buffer.alloc(8).toString('base64'))).toThrow(/shorter than 16/);
    expect(() => tsigKey('k.', Buffer.alloc(32).toString('base64'), 'hmac-md5' as never)).toThrow(/unknown TSIG algorithm/);
    expect(() => tsigKey(`${'a'.repeat(64)}.`, Buffer.alloc(32).toString('base64'))).toThrow(
      expect.objectContaining({ code: 'ERR_PUBLISH_CONFIG', message: expect.stringMatching(/^TSIG key name '.*': bad label/) }),
    );
  });

  it('a key whose name is no DNS name fails signing with ERR_PUBLISH_CONFIG, a typed error', () => {
    const bad: TsigKey = { ...KEY, name: `${'a'.repeat(64)}.example.` };
    const long: TsigKey = { ...KEY, name: `${Array.from({ length: 5 }, () => 'b'.repeat(60)).join('.')}.` };
    for (const [key, msg] of [[bad, /^bad label 'a{64}'$/], [long, /^name longer than 255 bytes$/]] as const) {
      let err: unknown;
      try {
        tsigSign(query, key, NOW);
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(PublishError);
      expect(err).toMatchObject({ code: 'ERR_PUBLISH_CONFIG', message: expect.stringMatching(msg) });
    }
  });

  it('a malformed message is an ERR_DNS_RESPONSE PublishError naming what is wrong (findTsig, tsigVerifyResponse)', () => {
    const signed = Buffer.from(tsigSign(query, KEY, NOW).message);
    const withU16 = (at: number, v: number) => {
      const b = Buffer.from(signed);
      b.writeUInt16BE(v, at);
      return b;
    };
    const macLenAt = signed.length - 6 - 32 - 2; // … MAC size, MAC (32), Original ID, Error, Other Len
    const rdLengthAt = signed.length - 61 - 2; // RDLENGTH of the TSIG RR: hmac-sha256. (13) + 6 + 2 + 2 + 32 + 6 = 61
    expect(signed.readUInt16BE(rdLengthAt)).toBe(61);
    const badLabel = Buffer.from(signed);
    badLabel[12] = 0x40; // first label of the question name: type 01, reserved
    const cases: [string, Buffer, string][] = [
      ['short header', signed.subarray(0, 11), 'message shorter than its header'],
      ['truncated name', signed.subarray(0, 14), 'truncated name'],
      ['bad label type', badLabel, 'bad label type'],
      ['truncated record', signed.subarray(0, signed.length - 62), 'truncated record'],
      ['truncated record data', signed.subarray(0, signed.length - 1), 'truncated record data'],
      ['trailing bytes', Buffer.concat([signed, Buffer.of(0)]), 'trailing bytes after the last record'],
      ['MAC size past the RDATA', withU16(macLenAt, 31), 'TSIG RDATA length does not add up'],
      ['MAC size short of the RDATA', withU16(macLenAt, 33), 'TSIG RDATA length does not add up'],
      ['RDATA longer than its fields', Buffer.concat([withU16(rdLengthAt, 62), Buffer.of(0)]), 'TSIG RDATA length does not add up'],
    ];
    for (const [what, bytes, detail] of cases) {
      let err: unknown;
      try {
        findTsig(bytes);
      } catch (e) {
        err = e;
      }
      expect(err, what).toBeInstanceOf(PublishError);
      expect(err, what).toMatchObject({ code: 'ERR_DNS_RESPONSE', message: detail });
      let wrapped: unknown;
      try {
        tsigVerifyResponse(bytes, KEY, Buffer.alloc(32), NOW);
      } catch (e) {
        wrapped = e;
      }
      expect(wrapped, what).toMatchObject({ code: 'ERR_DNS_RESPONSE', message: `malformed DNS answer: ${detail}`, cause: err && expect.objectContaining({ message: detail }) });
    }
  });

  it('PublishError belongs to the library\'s error family: a CodedError (code), not an EchError (no TLS alert)', () => {
    const e = new PublishError('ERR_DNS_REFUSED', 'refused', { rcode: 'REFUSED' });
    expect(e).toBeInstanceOf(CodedError);
    expect(e).not.toBeInstanceOf(EchError);
    expect(e).toMatchObject({ name: 'PublishError', code: 'ERR_DNS_REFUSED', rcode: 'REFUSED', tsigError: undefined });
    expect('alert' in e).toBe(false);
    const t = new EchError('ERR_DECODE', 'decode_error', 'x');
    expect(t).toBeInstanceOf(CodedError);
    expect(t).toMatchObject({ name: 'EchError', code: 'ERR_DECODE', alert: 'decode_error' });
  });
});

describe('SVCB RDATA', () => {
  const list = encodeEchConfigList([generateEchKey({ publicName: 'cover.example' }).config]);

  it('replaces only ech, keeps priority, target and the other params in key order', () => {
    const rdata = httpsRecordRdata({ name: 'a.example', port: 8443, alpn: ['h2'], echConfigList: Uint8Array.of(0, 0), priority: 3 });
    const rr = decodeSvcbRdata(rdata);
    expect(rr).toMatchObject({ priority: 3, target: 'a.example.' });
    const updated = decodeSvcbRdata(encodeSvcbRdata(withEchParam(rr, list)));
    expect(updated.params.map((p) => p.key)).toEqual([1, 3, 5]);
    expect(updated.params.filter((p) => p.key !== 5)).toEqual(rr.params.filter((p) => p.key !== 5));
    expect(echParamOf(updated)).toEqual(list);
  });

  it('adds ech in key order when absent, keeping unknown keys', () => {
    const rr = { priority: 1, target: '.', params: [{ key: 1, value: Uint8Array.of(2, 0x68, 0x32) }, { key: 6, value: new Uint8Array(16) }, { key: 65000, value: Uint8Array.of(9) }] };
    expect(decodeSvcbRdata(encodeSvcbRdata(withEchParam(rr, list))).params.map((p) => p.key)).toEqual([1, 5, 6, 65000]);
  });

  it('leaves AliasMode alone; rejects unsorted keys and truncation', () => {
    const alias = { priority: 0, target: 'x.example.', params: [] };
    expect(withEchParam(alias, list)).toBe(alias);
    expect(() => decodeSvcbRdata(Uint8Array.of(0, 1, 0, 0, 5, 0, 0, 0, 1, 0, 0))).toThrow(/increasing/);
    const good = encodeSvcbRdata({ priority: 1, target: '.', params: [{ key: 5, value: list }] });
    // Every prefix fails except the one that ends right after TargetName (a record with no params).
    for (let i = 1; i < good.length; i++) {
      if (i === 3) expect(decodeSvcbRdata(good.subarray(0, i)).params).toEqual([]);
      else expect(() => decodeSvcbRdata(good.subarray(0, i)), `prefix ${i}`).toThrow();
    }
  });
});

describe('names and servers', () => {
  it('parses HOST[:PORT] into the record owner', () => {
    expect(parseHttpsName('secret.example')).toEqual({ name: 'secret.example', port: 443, owner: 'secret.example.' });
    expect(parseHttpsName('api.example:8443')).toEqual({ name: 'api.example', port: 8443, owner: '_8443._https.api.example.' });
    expect(() => parseHttpsName('bad name')).toThrow(expect.objectContaining({ code: 'ERR_PUBLISH_CONFIG' }));
    expect(() => parseHttpsName('a.example:70000')).toThrow(/out of range/);
  });

  it('parses DNS server addresses', () => {
    expect(parseDnsServer('192.0.2.1')).toEqual({ host: '192.0.2.1', port: 53 });
    expect(parseDnsServer('127.0.0.1:5353')).toEqual({ host: '127.0.0.1', port: 5353 });
    expect(parseDnsServer('[::1]:53')).toEqual({ host: '::1', port: 53 });
    expect(parseDnsServer('::1')).toEqual({ host: '::1', port: 53 });
    expect(() => parseDnsServer('a:b:c:zz:1')).toThrow(expect.objectContaining({ code: 'ERR_PUBLISH_CONFIG' }));
  });
});

describe('file publisher', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'ech-filepub-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('writes PREFIX.zone and PREFIX.json atomically (no temporary files left), replacing earlier ones', async () => {
    const p = new FilePublisher({ prefix: join(dir, 'sub', 'https'), ttl: 120, alpn: ['h2'], now: () => NOW });
    for (let i = 0; i < 2; i++) {
      const key = generateEchKey({ publicName: 'cover.example' });
      const list = encodeEchConfigList([key.config]);
      const r = await p.publish(['secret.example'], list);
      expect(r).toMatchObject({ publisher: 'file', names: [{ name: 'secret.example', action: 'written' }] });
      expect(await readFile(join(dir, 'sub', 'https.zone'), 'utf8')).toContain(`secret.example. 120 IN HTTPS 1 . alpn="h2" ech=${toBase64(list)}\n`);
      expect(JSON.parse(await readFile(join(dir, 'sub', 'https.json'), 'utf8'))).toMatchObject({ updated: new Date(NOW).toISOString(), ttl: 120, echConfigList: toBase64(list), configIds: [key.config.configId] });
    }
    expect((await readdir(join(dir, 'sub'))).sort()).toEqual(['https.json', 'https.zone']);
    expect((await stat(join(dir, 'sub', 'https.zone'))).mode & 0o777).toBe(0o644);
  });

  it('fails with ERR_PUBLISH_FILE when it cannot write', async () => {
    await writeFile(join(dir, 'a-file'), 'x');
    const p = new FilePublisher({ prefix: join(dir, 'a-file', 'https') });
    const list = encodeEchConfigList([generateEchKey({ publicName: 'cover.example' }).config]);
    await expect(p.publish(['secret.example'], list)).rejects.toMatchObject({ code: 'ERR_PUBLISH_FILE', message: expect.stringMatching(/ENOTDIR|EEXIST/) });
  });
});

describe('rotation config', () => {
  const good = {
    publicName: 'cover.example',
    period: 3600,
    ttl: 300,
    names: ['secret.example', 'api.example:8443'],
    stateFile: '/var/lib/ech/rotation.json',
    publisher: { type: 'rfc2136', server: '127.0.0.1:53', zone: 'example', tsig: { name: 'ech-update.', secret: Buffer.alloc(32, 3).toString('base64') } },
  };

  it('accepts a good section, fills defaults, and makes its publisher', () => {
    expect(validateRotationConfig(good)).toEqual(good);
    expect(validateRotationConfig({ publicName: 'c.example', stateFile: 's' })).toEqual({ publicName: 'c.example', period: 86400, ttl: 300, names: [], stateFile: 's' });
    expect(createPublisher(validateRotationConfig(good))).toBeInstanceOf(Rfc2136Publisher);
    expect(createPublisher(validateRotationConfig({ ...good, publisher: { type: 'file', prefix: '/tmp/x' } }))).toBeInstanceOf(FilePublisher);
    const opts = keyManagerOptions(validateRotationConfig({ ...good, margin: 60, maximumNameLength: 32 }), '/etc/ech');
    expect(opts).toMatchObject({ keyDirectory: '/etc/ech', stateFile: good.stateFile, publicName: 'cover.example', names: good.names, period: 3600, ttl: 300, margin: 60, maximumNameLength: 32 });
    expect(opts.publisher).toBeInstanceOf(Rfc2136Publisher);
  });

  const bad: [string, unknown, string][] = [
    ['not an object', 'x', 'rotation'],
    ['unknown field', { ...good, perod: 1 }, 'rotation.perod'],
    ['missing public name', { ...good, publicName: undefined }, 'rotation.publicName'],
    ['IP public name', { ...good, publicName: '192.0.2.1' }, 'rotation.publicName'],
    ['period 0', { ...good, period: 0 }, 'rotation.period'],
    ['ttl text', { ...good, ttl: '300' }, 'rotation.ttl'],
    ['bad kem', { ...good, kem: 'x448' }, 'rotation.kem'],
    ['max name length', { ...good, maximumNameLength: 256 }, 'rotation.maximumNameLength'],
    ['bad name', { ...good, names: ['ok.example', 'not ok'] }, 'rotation.names[1]'],
    ['publisher without names', { ...good, names: [] }, 'rotation.names'],
    ['publisher type', { ...good, publisher: { type: 'ftp' } }, 'rotation.publisher.type'],
    ['server', { ...good, publisher: { ...good.publisher, server: 'a:b:c' } }, 'rotation.publisher.server'],
    ['no zone', { ...good, publisher: { ...good.publisher, zone: undefined } }, 'rotation.publisher.zone'],
    ['tsig secret', { ...good, publisher: { ...good.publisher, tsig: { name: 'k.', secret: 'short' } } }, 'rotation.publisher.tsig.secret'],
    ['tsig algorithm', { ...good, publisher: { ...good.publisher, tsig: { ...good.publisher.tsig, algorithm: 'hmac-md5' } } }, 'rotation.publisher.tsig.algorithm'],
    ['transport', { ...good, publisher: { ...good.publisher, transport: 'quic' } }, 'rotation.publisher.transport'],
    ['file prefix', { ...good, publisher: { type: 'file' } }, 'rotation.publisher.prefix'],
  ];
  for (const [what, value, field] of bad) {
    it(`names the field: ${what}`, () => {
      let err: unknown;
      try {
        validateRotationConfig(value);
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(RotationConfigError);
      expect(err).toMatchObject({ field, code: 'ERR_INVALID_ARGUMENT' });
      expect((err as Error).message.startsWith(`${field}: `)).toBe(true);
    });
  }
});

describe('RFC 2136 publisher retries (scripted in-process server)', () => {
  /**
   * A minimal authoritative server for one HTTPS RRset: answers queries with
   * the current records and applies UPDATEs, failing the first few with the
   * given RCODEs. Unsigned: TSIG is tested against Knot and BIND.
   */
  async function scripted(failures: number[]) {
    const { createSocket } = await import('node:dgram');
    const sock = createSocket('udp4');
    let records: Buffer[] = [Buffer.from(encodeSvcbRdata({ priority: 1, target: '.', params: [{ key: 1, value: Uint8Array.of(2, 0x68, 0x32) }] }))];
    const seen: string[] = [];
    sock.on('message', (msg, rinfo) => {
      const opcode = (msg[2]! >> 3) & 0x0f;
      const id = msg.readUInt16BE(0);
      let reply: Buffer;
      if (opcode === 5) {
        const fail = failures.shift();
        seen.push(`update:${fail ?? 0}`);
        if (!fail) {
          const p = dnsPacket.decode(msg);
          records = (p.authorities ?? []).filter((a) => (a as { class?: string }).class === 'IN').map((a) => (a as { data: Buffer }).data);
        }
        reply = Buffer.from(msg);
        reply.writeUInt16BE(0x8000 | (5 << 11) | (fail ?? 0), 2);
        reply.writeUInt16BE(0, 6);
        reply.writeUInt16BE(0, 8);
        reply.writeUInt16BE(0, 10);
        // Keep only the zone section.
        let zoneEnd = 12;
        while (msg[zoneEnd]! !== 0) zoneEnd += 1 + msg[zoneEnd]!;
        zoneEnd += 1 + 4;
        reply = reply.subarray(0, zoneEnd);
      } else {
        seen.push('query');
        const q = dnsPacket.decode(msg).questions![0]!;
        reply = dnsPacket.encode({
          type: 'response', id, flags: dnsPacket.AUTHORITATIVE_ANSWER, questions: [q],
          answers: records.map((data) => ({ type: 'UNKNOWN_65' as never, name: q.name, ttl: 300, class: 'IN', data } as never)),
        });
      }
      sock.send(reply, rinfo.port, rinfo.address);
    });
    await new Promise<void>((r) => sock.bind(0, '127.0.0.1', () => r()));
    return { address: `127.0.0.1:${sock.address().port}`, seen, records: () => records, close: () => sock.close() };
  }

  const list = encodeEchConfigList([generateEchKey({ publicName: 'cover.example' }).config]);

  it('retries SERVFAIL with exponential backoff, then succeeds', async () => {
    const srv = await scripted([2, 2]);
    const delays: number[] = [];
    try {
      const p = new Rfc2136Publisher({ server: srv.address, zone: 'example.test', attempts: 4, backoffMs: 10, timeoutMs: 1000, sleep: async (ms) => { delays.push(ms); } });
      const r = await p.publish(['www.example.test'], list);
      expect(r.names[0]!.action).toBe('updated');
      expect(delays).toEqual([10, 20]);
      expect(srv.seen).toEqual(['query', 'update:2', 'query', 'update:2', 'query', 'update:0', 'query']);
      expect(echParamOf(decodeSvcbRdata(new Uint8Array(srv.records()[0]!)))).toEqual(list);
    } finally {
      srv.close();
    }
  });

  it('a concurrent edit (NXRRSET) makes it read again and retry', async () => {
    const srv = await scripted([8]);
    try {
      const p = new Rfc2136Publisher({ server: srv.address, zone: 'example.test', backoffMs: 1, timeoutMs: 1000 });
      await p.publish(['www.example.test'], list);
      expect(srv.seen).toEqual(['query', 'update:8', 'query', 'update:0', 'query']);
    } finally {
      srv.close();
    }
  });

  it('gives up after `attempts` with the last RCODE, and does not retry REFUSED', async () => {
    const srv = await scripted([2, 2, 2, 5]);
    try {
      const p = new Rfc2136Publisher({ server: srv.address, zone: 'example.test', attempts: 3, backoffMs: 1, timeoutMs: 1000 });
      await expect(p.publish(['www.example.test'], list)).rejects.toMatchObject({ code: 'ERR_DNS_UPDATE', rcode: 'SERVFAIL', message: expect.stringMatching(/gave up after 3 tries/) });
      await expect(p.publish(['www.example.test'], list)).rejects.toMatchObject({ code: 'ERR_DNS_REFUSED', rcode: 'REFUSED' });
      expect(srv.seen.filter((x) => x.startsWith('update'))).toEqual(['update:2', 'update:2', 'update:2', 'update:5']);
    } finally {
      srv.close();
    }
  });
});
