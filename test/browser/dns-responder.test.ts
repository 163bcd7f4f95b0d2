// The test DNS responder (test/peers/dns-responder.ts) on its own: what it
// answers for each query type, byte-exact HTTPS RDATA from our
// httpsRecordRdata, and the TCP framing. Loopback only; no root needed.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createSocket } from 'node:dgram';
import { connect, createServer, type Server } from 'node:net';
import * as dnsPacket from 'dns-packet';
import { generateEchKey } from '../../src/keys/generate.js';
import { httpsRecordRdata } from '../../src/dns/https-record.js';
import { DnsResponder, answerQuery, buildZone } from '../peers/dns-responder.js';

const echConfigList = generateEchKey({ publicName: 'cover.test' }).config.raw;
const zone = buildZone([
  {
    name: 'private.test',
    address: '10.213.81.1',
    https: [
      { port: 443, alpn: ['h2', 'http/1.1'], echConfigList },
      { port: 8443, alpn: ['http/1.1'], echConfigList: Buffer.from(echConfigList).toString('base64') },
    ],
  },
  { name: 'plain.test', address: '10.213.81.1' },
]);

/** dns-packet decodes rcode, but its typings do not declare it. */
function rcode(p: dnsPacket.Packet): string | undefined {
  return (p as { rcode?: string }).rcode;
}

function ask(name: string, type: string, id = 4242) {
  const query = dnsPacket.encode({
    id,
    type: 'query',
    flags: dnsPacket.RECURSION_DESIRED,
    questions: [{ name, type: type as 'A' }],
  });
  const { response, log } = answerQuery(query, zone);
  return { packet: dnsPacket.decode(response), log };
}

describe('DNS responder answers', () => {
  it('A for a test name, authoritative, id echoed', () => {
    const { packet, log } = ask('private.test', 'A');
    expect(packet.id).toBe(4242);
    expect(rcode(packet)).toBe('NOERROR');
    expect(packet.flag_aa).toBe(true);
    expect(packet.answers).toEqual([expect.objectContaining({ type: 'A', name: 'private.test', data: '10.213.81.1' })]);
    expect(log).toMatchObject({ name: 'private.test', type: 'A', rcode: 'NOERROR', answers: 1 });
  });

  it('NODATA for AAAA (and for HTTPS at a name without one), with an SOA for negative caching', () => {
    for (const [name, type] of [['private.test', 'AAAA'], ['plain.test', 'UNKNOWN_65']] as const) {
      const { packet } = ask(name, type);
      expect(rcode(packet)).toBe('NOERROR');
      expect(packet.answers).toEqual([]);
      expect(packet.authorities?.[0]?.type).toBe('SOA');
    }
  });

  it('HTTPS (type 65) at NAME for port 443 and at _8443._https.NAME, RDATA byte-exact from httpsRecordRdata', () => {
    const at443 = ask('private.test', 'UNKNOWN_65');
    expect(at443.log.type).toBe('HTTPS');
    expect(at443.packet.answers).toHaveLength(1);
    const rdata443 = (at443.packet.answers![0] as unknown as { data: Buffer }).data;
    expect(new Uint8Array(rdata443)).toEqual(httpsRecordRdata({ name: 'private.test', alpn: ['h2', 'http/1.1'], echConfigList }));

    const at8443 = ask('_8443._https.private.test', 'UNKNOWN_65');
    const rdata8443 = (at8443.packet.answers![0] as unknown as { data: Buffer }).data;
    const expected = httpsRecordRdata({ name: 'private.test', port: 8443, alpn: ['http/1.1'], echConfigList });
    expect(new Uint8Array(rdata8443)).toEqual(expected);
    // TargetName is explicit (private.test.), not "." (Chromium ignores "." there).
    expect(Buffer.from(rdata8443).includes(Buffer.from('\x07private\x04test\x00', 'latin1'))).toBe(true);
  });

  it('NXDOMAIN for names outside the zone (Chromium asks for Google names), NODATA for empty non-terminals', () => {
    expect(rcode(ask('www.google.com', 'A').packet)).toBe('NXDOMAIN');
    expect(rcode(ask('private.test.example', 'A').packet)).toBe('NXDOMAIN');
    expect(rcode(ask('_8443._https.plain.test', 'UNKNOWN_65').packet)).toBe('NXDOMAIN');
    const ent = ask('_https.private.test', 'UNKNOWN_65');
    expect(rcode(ent.packet)).toBe('NOERROR');
    expect(ent.packet.answers).toEqual([]);
  });

  it('names are case-insensitive', () => {
    expect(ask('PRIVATE.Test', 'A').packet.answers).toHaveLength(1);
  });
});

describe('DNS responder on sockets (loopback)', () => {
  let responder: DnsResponder;
  let tcp: Server;
  let port: number;
  beforeAll(async () => {
    const udp = createSocket('udp4');
    await new Promise<void>((res) => udp.bind(0, '127.0.0.1', res));
    port = udp.address().port;
    tcp = createServer();
    await new Promise<void>((res) => tcp.listen(port, '127.0.0.1', res));
    responder = new DnsResponder(zone).serveUdp(udp).serveTcp(tcp);
  });
  afterAll(() => responder.close());

  it('UDP query and the query log', async () => {
    const client = createSocket('udp4');
    const reply = new Promise<Buffer>((res) => client.once('message', res));
    client.send(dnsPacket.encode({ id: 7, type: 'query', questions: [{ name: 'private.test', type: 'A' }] }), port, '127.0.0.1');
    const packet = dnsPacket.decode(await reply);
    client.close();
    expect(packet.answers?.[0]).toMatchObject({ type: 'A', data: '10.213.81.1' });
    await expect(responder.waitForQuery((q) => q.transport === 'udp' && q.name === 'private.test', 5000)).resolves.toBeTruthy();
  });

  it('TCP: two length-prefixed queries in one write, two framed answers', async () => {
    const sock = connect(port, '127.0.0.1');
    const q1 = dnsPacket.streamEncode({ id: 1, type: 'query', questions: [{ name: 'private.test', type: 'A' }] });
    const q2 = dnsPacket.streamEncode({ id: 2, type: 'query', questions: [{ name: 'nope.test', type: 'A' }] });
    sock.write(Buffer.concat([q1, q2]));
    let buf = Buffer.alloc(0);
    const answers: dnsPacket.Packet[] = [];
    await new Promise<void>((res, rej) => {
      sock.on('error', rej);
      sock.on('data', (d: Buffer) => {
        buf = Buffer.concat([buf, d]);
        while (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) {
          answers.push(dnsPacket.decode(buf.subarray(2, 2 + buf.readUInt16BE(0))));
          buf = buf.subarray(2 + buf.readUInt16BE(0));
        }
        if (answers.length === 2) res();
      });
    });
    sock.destroy();
    expect(answers.map((a) => [a.id, rcode(a)])).toEqual([
      [1, 'NOERROR'],
      [2, 'NXDOMAIN'],
    ]);
  });

  it('garbage gets FORMERR, not a crash', () => {
    const { response, log } = answerQuery(new Uint8Array([0x12, 0x34, 0xff]), zone);
    expect(log.rcode).toBe('FORMERR');
    expect(dnsPacket.decode(response).id).toBe(0x1234);
  });
});
