// @module-tag peer-boringssl
/**
 * ClientHelloInner is decoded once and never copied on its way from the ECH
 * hook into the handshake: the hook hands over the message the decryption
 * rebuilt (header included) and its decoded form, and the engine uses them
 * as they are. A regression guard by counting, with BoringSSL as the ECH
 * client (so every ClientHello call in this process is the server's):
 * no ClientHello is re-framed with encodeHandshake, decodeClientHello (which
 * copies) never sees the inner body, and the inner body is parsed once.
 */
import * as clientHello from '../src/tls/client-hello.js';
import * as record from '../src/tls/record.js';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';

vi.mock('../src/tls/client-hello.js', async (importOriginal) => {
  const orig = await importOriginal<typeof import('../src/tls/client-hello.js')>();
  return { ...orig, decodeClientHello: vi.fn(orig.decodeClientHello), parseClientHelloOwned: vi.fn(orig.parseClientHelloOwned) };
});
vi.mock('../src/tls/record.js', async (importOriginal) => {
  const orig = await importOriginal<typeof import('../src/tls/record.js')>();
  return { ...orig, encodeHandshake: vi.fn(orig.encodeHandshake) };
});

const { join } = await import('node:path');
const { EchKeySet } = await import('../src/keys/key-set.js');
const { generateEchKey } = await import('../src/keys/generate.js');
const { encodeEchConfigList } = await import('../src/ech/config.js');
const { toBase64, equalBytes } = await import('../src/wire/bytes.js');
const { createEchHook } = await import('../src/tls13/ech-hook.js');
const { HandshakeType } = await import('../src/tls/constants.js');
const { buildHarness, runClient } = await import('./peers/boringssl.js');
const { makePki, startServer } = await import('./tls13-helpers.js');
type ClientHelloHook = import('../src/tls13/config.js').ClientHelloHook;

let pki: ReturnType<typeof makePki>;
const key = generateEchKey({ publicName: 'cover.example', configId: 0x44, maximumNameLength: 32 });
const keys = new EchKeySet([key]);
const listB64 = toBase64(encodeEchConfigList([key.config]));

beforeAll(async () => {
  await buildHarness();
  pki = makePki();
}, 120_000);
afterAll(() => pki?.cleanup());

describe('ClientHelloInner from the ECH hook', () => {
  for (const groups of [undefined, ['X25519', 'P-256']] as const) {
    it(`is decoded once, without a copy${groups ? ' (after a HelloRetryRequest)' : ''}`, async () => {
      const cover = pki.leaf('ec', ['cover.example']);
      const secret = pki.leaf('ec', ['secret.example']);
      const hook = createEchHook({ keys });
      const inners: Uint8Array[] = [];
      const recording: ClientHelloHook = async (info) => {
        const r = await hook(info);
        if (r?.clientHello) inners.push(r.clientHello);
        return r;
      };
      const srv = await startServer(
        {
          key: cover.key,
          cert: cover.cert,
          certificates: [{ key: secret.key, cert: secret.cert }],
          onClientHello: recording,
          ...(groups ? { ecdhCurve: 'P-256' } : {}),
        },
        (s) => s.once('data', () => s.end('ok')),
      );
      try {
        vi.mocked(clientHello.decodeClientHello).mockClear();
        vi.mocked(clientHello.parseClientHelloOwned).mockClear();
        vi.mocked(record.encodeHandshake).mockClear();
        const r = await runClient({ port: srv.port, sni: 'secret.example', echConfigList: listB64, ca: join(pki.dir, 'ca.pem'), send: 'hi\n', read: true, ...(groups ? { groups: [...groups] } : {}) });
        expect(r.error).toBeNull();
        expect(r.echAccepted).toBe(true);
        expect(srv.errors).toEqual([]);
      } finally {
        await srv.close();
      }
      expect(inners.length).toBe(groups ? 2 : 1);
      const reframed = vi.mocked(record.encodeHandshake).mock.calls.filter(([type]) => type === HandshakeType.client_hello);
      expect(reframed).toEqual([]);
      for (const inner of inners) {
        const copied = vi.mocked(clientHello.decodeClientHello).mock.calls.filter(([body]) => equalBytes(body, inner));
        expect(copied).toEqual([]);
        const parsed = vi.mocked(clientHello.parseClientHelloOwned).mock.calls.filter(([body]) => equalBytes(body, inner));
        expect(parsed.length).toBe(1);
      }
    });
  }
});
