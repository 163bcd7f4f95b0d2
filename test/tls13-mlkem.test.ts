/**
 * X25519MLKEM768 (draft-ietf-tls-ecdhe-mlkem) in the TLS 1.3 engine: our
 * client and server in memory (shares, HelloRetryRequest for the hybrid
 * group, malformed shares → illegal_parameter), and against Node 24's own
 * TLS (OpenSSL 3.5) in both directions.
 */
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { spawn } from 'node:child_process';
import { makePki, memoryPair, startServer, type TestPki } from './tls13-helpers.js';
import { resolveServerConfig, type EchServerOptions } from '../src/tls13/config.js';
import type { ClientOptions } from '../src/tls13/client.js';
import { connectTls13 } from '../src/tls13/client-socket.js';
import { findExtension } from '../src/tls/client-hello.js';
import { decodeKeyShareClient, encodeKeyShareClient } from '../src/tls/extensions.js';
import { ExtensionType, NamedGroup } from '../src/tls/constants.js';
import { decodeServerHello, isHelloRetryRequest } from '../src/tls/messages.js';
import { generateEphemeralKey, groupName, parseEcdhCurve, serverKeyShare } from '../src/tls13/groups.js';
import { HAVE_NODE24, NODE24, requireNode24InCi, runNode24 } from './helpers/node24.js';

let pki: TestPki;
let ec: ReturnType<TestPki['leaf']>;
beforeAll(() => {
  pki = makePki();
  ec = pki.leaf('ec', ['localhost']);
});
afterAll(() => pki.cleanup());

const config = (extra: EchServerOptions = {}) => resolveServerConfig({ key: ec.key, cert: ec.cert, ...extra });
const clientOpts = (extra: ClientOptions = {}): ClientOptions => ({ servername: 'localhost', ca: pki.caPem, ...extra });
const H = NamedGroup.X25519MLKEM768;

/** Replace the client's hybrid share by `f(share)`. */
function mutateHybrid(f: (share: Uint8Array) => Uint8Array): ClientOptions['mutateClientHello'] {
  return (ch) => {
    const ks = findExtension(ch.extensions, ExtensionType.key_share)!;
    ks.data = encodeKeyShareClient(decodeKeyShareClient(ks.data).map((s) => (s.group === H ? { group: H, keyExchange: f(s.keyExchange) } : s)));
  };
}

describe('X25519MLKEM768 group', () => {
  test('shares and secrets: client share 1216 bytes, server share 1120, both sides derive the same 64-byte secret', () => {
    const c = generateEphemeralKey(H);
    expect(c.publicKey.length).toBe(1216);
    const s = serverKeyShare(H, c.publicKey);
    expect(s.keyExchange.length).toBe(1120);
    expect(s.sharedSecret.length).toBe(64);
    expect(Buffer.from(c.computeSecret(s.keyExchange)).equals(s.sharedSecret)).toBe(true);
    expect(groupName(H)).toBe('X25519MLKEM768');
    expect(parseEcdhCurve('X25519MLKEM768:X25519')).toEqual([H, NamedGroup.x25519]);
    expect(parseEcdhCurve('auto')).toEqual([H, NamedGroup.x25519, NamedGroup.secp256r1]);
  });

  test('the client refuses a server share of the wrong length (illegal_parameter)', () => {
    const c = generateEphemeralKey(H);
    const s = serverKeyShare(H, c.publicKey);
    for (const bad of [s.keyExchange.subarray(1), new Uint8Array(1121), new Uint8Array(32)]) {
      expect(() => c.computeSecret(bad)).toThrow(expect.objectContaining({ alert: 'illegal_parameter' }));
    }
  });

  test('our client and server negotiate it by default on the server side', async () => {
    const p = memoryPair(config(), clientOpts({ ecdhCurve: 'X25519MLKEM768:X25519' }));
    await p.settle();
    expect(p.serverErrors).toEqual([]);
    expect(p.clientErrors).toEqual([]);
    expect(p.serverInfo?.group).toBe(H);
    expect(p.clientInfo?.group).toBe(H);
    expect(p.serverInfo?.helloRetry).toBe(false);
  });

  test('server preference: X25519MLKEM768 over X25519 when both shares are sent; ecdhCurve can put X25519 first', async () => {
    const both = clientOpts({ ecdhCurve: 'X25519MLKEM768:X25519', keyShareGroups: [NamedGroup.x25519, H] });
    const a = memoryPair(config(), both);
    await a.settle();
    expect(a.serverInfo?.group).toBe(H);
    const b = memoryPair(config({ ecdhCurve: 'X25519:X25519MLKEM768' }), both);
    await b.settle();
    expect(b.serverInfo?.group).toBe(NamedGroup.x25519);
  });

  test('HelloRetryRequest asks for it when the client lists it without a share', async () => {
    const p = memoryPair(config(), clientOpts({ ecdhCurve: 'X25519:X25519MLKEM768' }));
    await p.settle();
    expect(p.serverErrors).toEqual([]);
    expect(p.serverInfo?.helloRetry).toBe(true);
    expect(p.serverInfo?.group).toBe(H);
    // The first record of the server's first write (its CCS follows in the same write).
    const first = p.wire.server[0]!;
    const hrr = decodeServerHello(first.subarray(9, 5 + ((first[3]! << 8) | first[4]!)));
    expect(isHelloRetryRequest(hrr)).toBe(true);
    expect(findExtension(hrr.extensions, ExtensionType.key_share)!.data).toEqual(Uint8Array.of(0x11, 0xec));
    // a server that ranks X25519 first takes the X25519 share without a round trip
    const q = memoryPair(config({ ecdhCurve: 'X25519:X25519MLKEM768' }), clientOpts({ ecdhCurve: 'X25519:X25519MLKEM768' }));
    await q.settle();
    expect(q.serverInfo).toMatchObject({ group: NamedGroup.x25519, helloRetry: false });
  });

  const malformed: [string, (s: Uint8Array) => Uint8Array][] = [
    ['one byte short', (s) => s.subarray(1)],
    ['one byte long', (s) => Uint8Array.from([...s, 0])],
    ['X25519 share only', (s) => s.subarray(1184)],
    [
      'an ML-KEM coefficient equal to q (FIPS 203 §7.2 modulus check)',
      (s) => {
        const t = Uint8Array.from(s);
        t[0] = 0x01;
        t[1] = (t[1]! & 0xf0) | 0x0d;
        return t;
      },
    ],
    [
      'an all-zero (low-order) X25519 part',
      (s) => {
        const t = Uint8Array.from(s);
        t.fill(0, 1184);
        return t;
      },
    ],
  ];
  for (const [name, f] of malformed) {
    test(`a client share with ${name} is illegal_parameter`, async () => {
      const p = memoryPair(config(), clientOpts({ ecdhCurve: 'X25519MLKEM768', mutateClientHello: mutateHybrid(f) }));
      await p.settle();
      expect(p.serverErrors.map((e) => (e as { alert?: string }).alert)).toEqual(['illegal_parameter']);
      expect(p.serverInfo).toBeUndefined();
    });
  }
});

describe('against Node 24 tls (OpenSSL 3.5)', () => {
  test('Node 24 is present under CI', () => requireNode24InCi());

  test.runIf(HAVE_NODE24)('Node 24 clients negotiate X25519MLKEM768 with our server (ecdhCurve X25519MLKEM768, and its default)', async () => {
    const groups: (string | undefined)[] = [];
    const srv = await startServer({ key: ec.key, cert: ec.cert }, (s) => {
      groups.push(s.group);
      s.pipe(s);
    });
    try {
      const out = await runNode24(
        `
        import tls from 'node:tls';
        const one = (opts) => new Promise((resolve, reject) => {
          const c = tls.connect({ host: '127.0.0.1', port: ${srv.port}, servername: 'localhost', ca: process.env.CA, ...opts }, () => c.write('ping'));
          let got = '';
          c.on('data', (d) => { got += d; if (got === 'ping') { resolve({ group: c.getEphemeralKeyInfo().name, echoed: got }); c.end(); } });
          c.on('error', reject);
        });
        const r = [await one({ ecdhCurve: 'X25519MLKEM768' }), await one({})];
        console.log(JSON.stringify(r));
      `,
        30_000,
        { CA: pki.caPem },
      );
      expect(JSON.parse(out)).toEqual([
        { group: 'X25519MLKEM768', echoed: 'ping' },
        { group: 'X25519MLKEM768', echoed: 'ping' },
      ]);
      expect(groups).toEqual(['X25519MLKEM768', 'X25519MLKEM768']);
      expect(srv.errors).toEqual([]);
    } finally {
      await srv.close();
    }
  }, 60_000);

  test.runIf(HAVE_NODE24)('our client negotiates X25519MLKEM768 with a Node 24 tls server', async () => {
    const child = spawn(
      NODE24,
      [
        '--input-type=module',
        '-e',
        `
        import tls from 'node:tls';
        const srv = tls.createServer({ key: process.env.KEY, cert: process.env.CERT, ecdhCurve: 'X25519MLKEM768', minVersion: 'TLSv1.3' }, (s) => s.pipe(s));
        srv.listen(0, '127.0.0.1', () => console.log(srv.address().port));
        setTimeout(() => process.exit(3), 30000).unref();
        process.stdin.on('end', () => process.exit(0)).resume();
      `,
      ],
      { env: { ...process.env, KEY: ec.key, CERT: ec.cert }, stdio: ['pipe', 'pipe', 'inherit'] },
    );
    try {
      const port = await new Promise<number>((resolve, reject) => {
        child.stdout.once('data', (d: Buffer) => resolve(Number(d.toString().trim())));
        child.once('exit', (code) => reject(new Error(`Node 24 server exited ${code}`)));
      });
      const r = await new Promise<{ group?: number; echoed: string; helloRetry?: boolean }>((resolve, reject) => {
        const s = connectTls13({ host: '127.0.0.1', port, servername: 'localhost', ca: pki.caPem, ecdhCurve: 'X25519MLKEM768' });
        let echoed = '';
        s.on('secureConnect', () => s.write('ping'));
        s.on('data', (d: Buffer) => {
          echoed += d.toString();
          if (echoed === 'ping') {
            resolve({ group: s.handshake?.group, echoed, helloRetry: s.handshake?.helloRetry });
            s.end();
          }
        });
        s.on('error', reject);
      });
      expect(r).toEqual({ group: H, echoed: 'ping', helloRetry: false });
    } finally {
      child.stdin.end();
      child.kill();
    }
  }, 60_000);
});
