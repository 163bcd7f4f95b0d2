// Hostile ECH ClientHellos over the wire (RFC 9849 §7, §7.1.1): each gets the
// alert the RFC names and a clean close, and the server keeps serving.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { randomBytes, generateKeyPairSync } from 'node:crypto';
import { AlertDescription } from '../src/wire/alert.js';
import { ContentType, ExtensionType, HandshakeType } from '../src/tls/constants.js';
import { type ClientHello, encodeClientHelloMessage } from '../src/tls/client-hello.js';
import { decodeEchClientHello, encodeEchClientHello } from '../src/tls/extensions.js';
import { writeRecords } from '../src/tls/record.js';
import { type ClientHelloSpec, type EchClientHello, buildClientHello, buildEchClientHello, buildSecondEchClientHello } from '../src/ech/builder.js';
import { createEchSealer } from '../src/ech/sealer.js';
import { EchKeySet } from '../src/keys/key-set.js';
import { generateEchKey } from '../src/keys/generate.js';
import { createEchHook } from '../src/tls13/ech-hook.js';
import { makePki, startServer, type Running, type TestPki } from './tls13-helpers.js';
import { expectAlertRecord, rawPeer } from './helpers/raw-client.js';

let pki: TestPki;
let srv: Running;
const key = generateEchKey({ publicName: 'cover.example', configId: 5 });

function x25519(): { group: number; keyExchange: Uint8Array } {
  const x = generateKeyPairSync('x25519').publicKey.export({ format: 'jwk' }).x!;
  return { group: 0x001d, keyExchange: new Uint8Array(Buffer.from(x, 'base64url')) };
}
function p256(): { group: number; keyExchange: Uint8Array } {
  const pub = generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey.export({ format: 'der', type: 'spki' });
  return { group: 0x0017, keyExchange: new Uint8Array(pub.subarray(pub.length - 65)) };
}

beforeAll(async () => {
  pki = makePki();
  const cover = pki.leaf('ec', ['cover.example', 'secret.example']);
  srv = await startServer({ key: cover.key, cert: cover.cert, ecdhCurve: 'P-256', onClientHello: createEchHook({ keys: new EchKeySet([key]) }) });
});
afterAll(async () => {
  await srv?.close();
  pki?.cleanup();
});

const spec: ClientHelloSpec = { serverName: 'secret.example', supportedGroups: [0x1d, 0x17] };
const opts = { config: key.config, sealer: createEchSealer };
const send = (peer: { send(b: Uint8Array): void }, msg: Uint8Array) => peer.send(writeRecords(ContentType.handshake, msg, 0x0301));

/** First flight with an X25519 share to a P-256-only server: a HelloRetryRequest follows. */
async function throughHrr(): Promise<{ peer: Awaited<ReturnType<typeof rawPeer>>; first: EchClientHello }> {
  const peer = await rawPeer(srv.port);
  const first = await buildEchClientHello({ ...spec, keyShares: [x25519()] }, opts);
  send(peer, first.outerMessage);
  const hrr = await peer.nextRecord();
  expect(hrr.type).toBe(ContentType.handshake);
  expect(hrr.fragment[0]).toBe(HandshakeType.server_hello);
  return { peer, first };
}

function replaceEch(ch: ClientHello, f: (d: ReturnType<typeof decodeEchClientHello>) => Uint8Array | undefined): Uint8Array {
  const exts = ch.extensions.flatMap((e) => {
    if (e.type !== ExtensionType.encrypted_client_hello) return [e];
    const d = f(decodeEchClientHello(e.data));
    return d ? [{ type: e.type, data: d }] : [];
  });
  return encodeClientHelloMessage({ ...ch, extensions: exts });
}
const outer = (d: ReturnType<typeof decodeEchClientHello>) => {
  if (d.type !== 'outer') throw new Error('not outer');
  return d;
};

describe('hostile ECH ClientHellos get their alert and a clean close', () => {
  it('an inner-type ECH extension sent to a shared-mode server → illegal_parameter', async () => {
    const peer = await rawPeer(srv.port);
    const ch = buildClientHello({ ...spec, keyShares: [p256()], extraExtensions: [{ type: ExtensionType.encrypted_client_hello, data: encodeEchClientHello({ type: 'inner' }) }] });
    send(peer, encodeClientHelloMessage(ch));
    expect(await expectAlertRecord(peer)).toBe(AlertDescription.illegal_parameter);
    await peer.closed;
  });

  const second: Array<{ name: string; alert: number; mutate: (s: EchClientHello) => Uint8Array }> = [
    { name: 'second ClientHelloOuter without ECH', alert: AlertDescription.missing_extension, mutate: (s) => replaceEch(s.outer, () => undefined) },
    { name: 'changed config_id', alert: AlertDescription.illegal_parameter, mutate: (s) => replaceEch(s.outer, (d) => encodeEchClientHello({ ...outer(d), configId: 6 })) },
    { name: 'non-empty enc', alert: AlertDescription.illegal_parameter, mutate: (s) => replaceEch(s.outer, (d) => encodeEchClientHello({ ...outer(d), enc: new Uint8Array(randomBytes(32)) })) },
    {
      name: 'tampered payload',
      alert: AlertDescription.decrypt_error,
      mutate: (s) =>
        replaceEch(s.outer, (d) => {
          const o = outer(d);
          const p = o.payload.slice();
          p[5]! ^= 0x40;
          return encodeEchClientHello({ ...o, payload: p });
        }),
    },
  ];
  for (const c of second) {
    it(`after HelloRetryRequest: ${c.name} → ${c.alert}`, async () => {
      const { peer, first } = await throughHrr();
      const s2 = await buildSecondEchClientHello({ ...spec, keyShares: [p256()] }, first, opts);
      send(peer, c.mutate(s2));
      expect(await expectAlertRecord(peer)).toBe(c.alert);
      await peer.closed;
    });
  }

  it('the untampered second ClientHello gets a ServerHello (the mutations above were the only fault)', async () => {
    const { peer, first } = await throughHrr();
    const s2 = await buildSecondEchClientHello({ ...spec, keyShares: [p256()] }, first, opts);
    try {
      send(peer, s2.outerMessage);
      let sh = await peer.nextRecord();
      // a change_cipher_spec for middlebox compatibility may come first (RFC 9846 §D.4)
      while (sh.type === ContentType.change_cipher_spec) sh = await peer.nextRecord();
      expect(sh.type).toBe(ContentType.handshake);
      expect(sh.fragment[0]).toBe(HandshakeType.server_hello);
    } finally {
      peer.close();
    }
  });

  it('the server recorded each failure and is still serving', () => {
    expect(srv.errors.length).toBeGreaterThanOrEqual(5);
    for (const e of srv.errors) expect((e as { alert?: string }).alert).toMatch(/illegal_parameter|missing_extension|decrypt_error/);
  });
});
