// @module-tag peer-boringssl
// Split mode (RFC 9849 §7.1, §7.2): BoringSSL client → our client-facing
// front end (decrypt, forward ClientHelloInner, relay) → a backend that holds
// no ECH key: (a) our engine in backend mode, (b) BoringSSL's own server.
// ECH must be accepted end to end, also with a HelloRetryRequest at the
// backend, and the backend must see the inner name.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createServer, type Server } from 'node:net';
import { join } from 'node:path';
import { EchKeySet } from '../src/keys/key-set.js';
import { generateEchKey } from '../src/keys/generate.js';
import { encodeEchConfigList } from '../src/ech/config.js';
import { decryptClientHello } from '../src/ech/decrypt.js';
import { toBase64 } from '../src/wire/bytes.js';
import { createEchHook } from '../src/tls13/ech-hook.js';
import { readFirstFlight } from '../src/front/first-flight.js';
import { type PassthroughResult, type PassthroughTarget, passthrough } from '../src/front/passthrough.js';
import { decodeProxyV2 } from '../src/front/proxy-protocol.js';
import type { TlsSocket } from '../src/tls13/socket.js';
import { buildHarness, runClient, startServer as startBoring } from './peers/boringssl.js';
import { makePki, startServer, type TestPki } from './tls13-helpers.js';

let pki: TestPki;
let caFile: string;
let secret: ReturnType<TestPki['leaf']>;
const key = generateEchKey({ publicName: 'cover.example', configId: 9 });
const keys = new EchKeySet([key]);
const list = toBase64(encodeEchConfigList([key.config]));

beforeAll(async () => {
  await buildHarness();
  pki = makePki();
  caFile = join(pki.dir, 'ca.pem');
  secret = pki.leaf('ec', ['secret.example']);
}, 120_000);
afterAll(() => pki?.cleanup());

/** A minimal client-facing server: decrypt, then pass accepted connections through. */
async function frontEnd(target: PassthroughTarget): Promise<{ port: number; results: PassthroughResult[]; first(): Promise<PassthroughResult>; close(): Promise<void> }> {
  const results: PassthroughResult[] = [];
  let notify: (r: PassthroughResult) => void = () => undefined;
  const firstResult = new Promise<PassthroughResult>((res) => (notify = res));
  const server: Server = createServer(async (socket) => {
    socket.on('error', () => undefined);
    try {
      const first = await readFirstFlight(socket);
      const r = await decryptClientHello(first.message, keys);
      if (r.status !== 'accepted') throw new Error(`expected ECH accepted, got ${r.status}`);
      const done = await passthrough(socket, r, target, first.rest, first.recordVersion);
      results.push(done);
      notify(done);
    } catch {
      socket.destroy();
    }
  });
  await new Promise<void>((res) => server.listen(0, '127.0.0.1', res));
  const first = () =>
    Promise.race([firstResult, new Promise<PassthroughResult>((_, rej) => setTimeout(() => rej(new Error('passthrough did not finish')), 10_000).unref())]);
  return { port: (server.address() as { port: number }).port, results, first, close: () => new Promise<void>((res) => server.close(() => res())) };
}

describe('split mode: passthrough to an ECH-aware backend', () => {
  for (const hrr of [false, true]) {
    it(`(a) our engine in backend mode${hrr ? ', with a HelloRetryRequest at the backend' : ''}`, async () => {
      const seen: TlsSocket[] = [];
      const backend = await startServer(
        { key: secret.key, cert: secret.cert, onClientHello: createEchHook({ role: 'backend' }), ...(hrr ? { ecdhCurve: 'P-256' } : {}) },
        (s) => {
          seen.push(s);
          s.on('error', () => undefined);
          s.once('data', () => s.end(JSON.stringify({ servername: s.servername, ...s.attributes })));
        },
      );
      const fe = await frontEnd({ host: '127.0.0.1', port: backend.port });
      try {
        const r = await runClient({ port: fe.port, sni: 'secret.example', echConfigList: list, ca: caFile, groups: ['X25519', 'P-256'], send: 'hi', read: true });
        expect(r.error).toBeNull();
        expect(r.echAccepted).toBe(true);
        expect(r.verified).toBe(true);
        expect(r.hrr).toBe(hrr);
        expect(JSON.parse(r.response!)).toMatchObject({ servername: 'secret.example', echStatus: 'accepted', echRole: 'backend' });
        const done = await fe.first();
        expect(done.helloRetry).toBe(hrr);
        expect(done.error).toBeUndefined();
        expect(done.bytesFromBackend).toBeGreaterThan(0);
      } finally {
        await fe.close();
        await backend.close();
      }
    });
  }

  for (const hrr of [false, true]) {
    it(`(b) BoringSSL's server as the backend${hrr ? ', with a HelloRetryRequest' : ''}`, async () => {
      const boring = await startBoring({ cert: secret.certPath, key: secret.keyPath, ...(hrr ? { groups: ['P-256'] } : {}) });
      const fe = await frontEnd({ host: '127.0.0.1', port: boring.port });
      try {
        const r = await runClient({ port: fe.port, sni: 'secret.example', echConfigList: list, ca: caFile, groups: ['X25519', 'P-256'], send: 'hi' });
        expect(r.error).toBeNull();
        expect(r.echAccepted).toBe(true);
        expect(r.hrr).toBe(hrr);
        expect(r.response).toBe('hi');
        const s = await boring.result(0);
        // the backend saw the inner name and the inner-type ECH extension
        expect(s.sni).toBe('secret.example');
        expect(s.clientHelloEch).toBe('inner');
        expect((await fe.first()).helloRetry).toBe(hrr);
      } finally {
        await fe.close();
        await boring.close();
      }
    });
  }

  it('sends a PROXY v2 header the backend can parse', async () => {
    let header: ReturnType<typeof decodeProxyV2>;
    const sink = createServer((s) => {
      s.once('data', (d) => {
        header = decodeProxyV2(new Uint8Array(d));
        s.destroy();
      });
    });
    await new Promise<void>((res) => sink.listen(0, '127.0.0.1', res));
    const fe = await frontEnd({ host: '127.0.0.1', port: (sink.address() as { port: number }).port, proxyProtocol: true });
    try {
      await runClient({ port: fe.port, sni: 'secret.example', echConfigList: list, timeoutMs: 10_000 });
      expect(header!.addresses).toMatchObject({ sourceAddress: '127.0.0.1', destinationAddress: '127.0.0.1', destinationPort: fe.port });
    } finally {
      await fe.close();
      await new Promise<void>((res) => sink.close(() => res()));
    }
  });
});
