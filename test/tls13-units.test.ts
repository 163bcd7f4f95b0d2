/**
 * Unit tests of the engine's parts: certificate selection by SNI, ticket
 * sealing and key rotation, record protection (nonces, sequence numbers,
 * padding), change_cipher_spec handling, option parsing.
 */
import { afterAll, beforeAll, describe, expect, test, vi } from 'vitest';
import { makePki, type TestPki } from './tls13-helpers.js';
import { CertificateStore, ServerCertificate, certificateVerifyInput, signWithScheme, verifyWithScheme } from '../src/tls13/certificates.js';
import { TicketKeys, type TicketState } from '../src/tls13/tickets.js';
import { RecordLayer, RecordProtection } from '../src/tls13/record-layer.js';
import { parseCipherList, suiteById } from '../src/tls13/suites.js';
import { parseEcdhCurve, generateEphemeralKey } from '../src/tls13/groups.js';
import { resolveServerConfig } from '../src/tls13/config.js';
import { ContentType, NamedGroup, SignatureScheme } from '../src/tls/constants.js';
import { createDecipheriv, generateKeyPairSync } from 'node:crypto';

let pki: TestPki;
let ecA: ReturnType<TestPki['leaf']>;
let rsaB: ReturnType<TestPki['leaf']>;
let wild: ReturnType<TestPki['leaf']>;
beforeAll(() => {
  pki = makePki();
  ecA = pki.leaf('ec', ['a.test']);
  rsaB = pki.leaf('rsa', ['b.test', 'a.test']);
  wild = pki.leaf('ec', ['*.w.test']);
});
afterAll(() => pki.cleanup());

describe('certificate selection', () => {
  const all = [SignatureScheme.ecdsa_secp256r1_sha256, SignatureScheme.rsa_pss_rsae_sha256];

  test('exact before wildcard before default; the client\'s schemes decide between equals', () => {
    const a = ServerCertificate.from({ key: ecA.key, cert: ecA.cert });
    const b = ServerCertificate.from({ key: rsaB.key, cert: rsaB.cert });
    const w = ServerCertificate.from({ key: wild.key, cert: wild.cert });
    const store = new CertificateStore([a, b, w]);
    expect(store.select('b.test', all)?.certificate).toBe(b);
    expect(store.select('x.w.test', all)?.certificate).toBe(w);
    expect(store.select('nobody.test', all)?.certificate).toBe(a);
    expect(store.select(undefined, all)?.certificate).toBe(a);
    // a.test is served by both; an RSA-only client gets the RSA one.
    expect(store.select('a.test', [SignatureScheme.rsa_pss_rsae_sha256])).toEqual({ certificate: b, scheme: SignatureScheme.rsa_pss_rsae_sha256 });
    expect(store.select('a.test', [SignatureScheme.ed25519])).toBeUndefined();
  });

  test('a wildcard covers exactly one label', () => {
    const w = ServerCertificate.from({ key: wild.key, cert: wild.cert });
    expect(w.matchQuality('x.w.test')).toBe(1);
    expect(w.matchQuality('X.W.TEST.')).toBe(1);
    expect(w.matchQuality('w.test')).toBe(0);
    expect(w.matchQuality('y.x.w.test')).toBe(0);
  });

  test('a key that does not match the certificate is refused', () => {
    expect(() => ServerCertificate.from({ key: rsaB.key, cert: ecA.cert })).toThrow(/does not match/);
  });

  test('CertificateVerify signatures verify, and a flipped bit does not (decrypt_error)', () => {
    const input = certificateVerifyInput(true, new Uint8Array(32).fill(1));
    expect(input.subarray(0, 64).every((b) => b === 0x20)).toBe(true);
    for (const [type, scheme] of [
      ['ec', SignatureScheme.ecdsa_secp256r1_sha256],
      ['rsa', SignatureScheme.rsa_pss_rsae_sha384],
      ['ed25519', SignatureScheme.ed25519],
    ] as const) {
      const { privateKey, publicKey } =
        type === 'ec'
          ? generateKeyPairSync('ec', { namedCurve: 'P-256' })
          : type === 'rsa'
            ? generateKeyPairSync('rsa', { modulusLength: 2048 })
            : generateKeyPairSync('ed25519');
      const sig = signWithScheme(scheme, privateKey, input);
      expect(() => verifyWithScheme(scheme, publicKey, input, sig)).not.toThrow();
      sig[sig.length - 1]! ^= 1;
      expect(() => verifyWithScheme(scheme, publicKey, input, sig)).toThrow(expect.objectContaining({ alert: 'decrypt_error' }));
    }
  });
});

describe('session tickets', () => {
  const state: TicketState = {
    suite: 0x1301,
    psk: new Uint8Array(32).fill(3),
    createdAt: 1_700_000_000_123,
    lifetime: 300,
    ageAdd: 0xdeadbeef,
    servername: 'a.test',
    alpn: 'h2',
  };

  test('round trip; tampering or another server\'s keys give undefined', () => {
    const keys = new TicketKeys();
    const t = keys.seal(state);
    expect(keys.open(t)).toEqual(state);
    const bad = t.slice();
    bad[bad.length - 5]! ^= 1;
    expect(keys.open(bad)).toBeUndefined();
    expect(new TicketKeys().open(t)).toBeUndefined();
    expect(keys.open(t.subarray(0, 20))).toBeUndefined();
  });

  test('keys rotate lazily: the previous key opens for one more period, then not', () => {
    let now = 0;
    const keys = new TicketKeys({ rotationMs: 1000, now: () => now });
    const t0 = keys.seal(state);
    now = 1500; // rotated once: t0's key is the previous one
    const t1 = keys.seal(state);
    expect(keys.open(t0)).toEqual(state);
    expect(keys.open(t1)).toEqual(state);
    now = 2600; // rotated again: t0's key is gone, t1's is previous
    expect(keys.open(t0)).toBeUndefined();
    expect(keys.open(t1)).toEqual(state);
  });
});

describe('record protection', () => {
  const suite = suiteById(0x1303)!;
  const keys = { key: new Uint8Array(32).fill(7), iv: new Uint8Array(12).fill(9) };

  test('seal/open round trip with padding; sequence numbers advance in step', () => {
    const w = new RecordProtection(suite, keys);
    const r = new RecordProtection(suite, keys);
    for (let i = 0; i < 3; i++) {
      const rec = w.seal(ContentType.application_data, Uint8Array.of(1, 2, i), i * 10);
      const out = r.open(rec.subarray(0, 5), rec.subarray(5));
      expect(out.type).toBe(ContentType.application_data);
      expect([...out.content]).toEqual([1, 2, i]);
    }
    expect(w.sequenceNumber).toBe(3n);
    expect(r.sequenceNumber).toBe(3n);
  });

  test('the nonce XORs all 64 bits of the sequence number into the IV (RFC 9846 §5.3), past 2^32', () => {
    const aes = suiteById(0x1301)!;
    const k = { key: new Uint8Array(16).fill(3), iv: Uint8Array.from({ length: 12 }, (_, i) => 0xa0 + i) };
    const w = new RecordProtection(aes, k);
    const seq = 2 ** 32 + 0x01020304;
    (w as unknown as { seq: number }).seq = seq;
    const rec = w.seal(ContentType.application_data, Uint8Array.of(42));
    expect(w.sequenceNumber).toBe(BigInt(seq) + 1n);
    // The nonce computed independently, with BigInt.
    const nonce = Buffer.from(k.iv);
    let s = BigInt(seq);
    for (let i = 11; i >= 4; i--, s >>= 8n) nonce[i]! ^= Number(s & 0xffn);
    const d = createDecipheriv('aes-128-gcm', k.key, nonce);
    d.setAAD(rec.subarray(0, 5));
    d.setAuthTag(rec.subarray(rec.length - 16));
    const inner = Buffer.concat([d.update(rec.subarray(5, rec.length - 16)), d.final()]);
    expect([...inner]).toEqual([42, ContentType.application_data]);
  });

  test('seal copies no plaintext and makes no nonce buffer per record; records open, with padding, for every suite', () => {
    for (const id of [0x1301, 0x1302, 0x1303]) {
      const sp = suiteById(id)!;
      const k = { key: new Uint8Array(sp.keyLength).fill(id & 0xff), iv: new Uint8Array(12).fill(5) };
      const w = new RecordProtection(sp, k);
      const r = new RecordProtection(sp, k);
      const content = Uint8Array.from({ length: 3000 }, (_, i) => (i * 7) & 0xff);
      const sizes: number[] = [];
      const allocUnsafe = vi.spyOn(Buffer, 'allocUnsafe').mockImplementation(function (this: unknown, n: number) {
        sizes.push(n);
        return Buffer.allocUnsafeSlow(n);
      });
      let recs: Uint8Array[];
      try {
        recs = [0, 1, 17].map((pad) => w.seal(ContentType.handshake, content, pad));
      } finally {
        allocUnsafe.mockRestore();
      }
      expect(sizes).toEqual([]);
      for (const [i, rec] of recs.entries()) {
        expect(rec.length).toBe(5 + 3000 + 1 + [0, 1, 17][i]! + 16);
        const out = r.open(rec.subarray(0, 5), rec.subarray(5));
        expect(out.type).toBe(ContentType.handshake);
        expect(Buffer.from(out.content).equals(Buffer.from(content))).toBe(true);
      }
    }
  });

  test('a record replayed (wrong sequence number) is bad_record_mac', () => {
    const w = new RecordProtection(suite, keys);
    const r = new RecordProtection(suite, keys);
    const rec = w.seal(ContentType.application_data, Uint8Array.of(1));
    r.open(rec.subarray(0, 5), rec.subarray(5));
    expect(() => r.open(rec.subarray(0, 5), rec.subarray(5))).toThrow(expect.objectContaining({ alert: 'bad_record_mac' }));
  });

  test('all-padding inner plaintext is unexpected_message', () => {
    const w = new RecordProtection(suite, keys);
    const r = new RecordProtection(suite, keys);
    const rec = w.seal(0, new Uint8Array(0), 5); // content type 0 = all zeros
    expect(() => r.open(rec.subarray(0, 5), rec.subarray(5))).toThrow(expect.objectContaining({ alert: 'unexpected_message' }));
  });

  test('one change_cipher_spec is dropped once allowed; a second is unexpected_message', () => {
    const rl = new RecordLayer();
    rl.allowChangeCipherSpec(true);
    rl.push(RecordLayer.changeCipherSpec());
    expect(rl.next()).toBeUndefined();
    rl.allowChangeCipherSpec(true);
    rl.push(RecordLayer.changeCipherSpec());
    expect(() => rl.next()).toThrow(expect.objectContaining({ alert: 'unexpected_message' }));
  });

  test('records split across pushes are reassembled', () => {
    const a = new RecordLayer();
    const bytes = a.encode(ContentType.handshake, new Uint8Array(40000).fill(5));
    const b = new RecordLayer();
    let total = 0;
    for (let i = 0; i < bytes.length; i += 777) {
      b.push(bytes.subarray(i, i + 777));
      for (let r = b.next(); r; r = b.next()) total += r.content.length;
    }
    expect(total).toBe(40000);
  });
});

describe('options', () => {
  test('ciphers: TLS 1.3 names kept in order, TLS 1.2 names ignored, none left is an error', () => {
    expect(parseCipherList('ECDHE-RSA-AES128-GCM-SHA256:TLS_CHACHA20_POLY1305_SHA256:TLS_AES_128_GCM_SHA256').map((s) => s.id)).toEqual([0x1303, 0x1301]);
    expect(parseCipherList(undefined).length).toBe(3);
    expect(() => parseCipherList('ECDHE-RSA-AES128-GCM-SHA256')).toThrow();
  });

  test('ecdhCurve: Node names, order kept, unknown ignored', () => {
    expect(parseEcdhCurve('P-256:X25519')).toEqual([NamedGroup.secp256r1, NamedGroup.x25519]);
    expect(parseEcdhCurve('prime256v1:X448')).toEqual([NamedGroup.secp256r1]);
    expect(parseEcdhCurve('auto')).toEqual([NamedGroup.X25519MLKEM768, NamedGroup.x25519, NamedGroup.secp256r1]);
    expect(() => parseEcdhCurve('X448')).toThrow();
  });

  test('ECDH: both sides agree; malformed points are illegal_parameter', () => {
    for (const g of [NamedGroup.x25519, NamedGroup.secp256r1]) {
      const a = generateEphemeralKey(g);
      const b = generateEphemeralKey(g);
      expect(a.computeSecret(b.publicKey)).toEqual(b.computeSecret(a.publicKey));
    }
    expect(() => generateEphemeralKey(NamedGroup.x25519).computeSecret(new Uint8Array(32))).toThrow(expect.objectContaining({ alert: 'illegal_parameter' }));
    const p = generateEphemeralKey(NamedGroup.secp256r1).publicKey.slice();
    p[64]! ^= 1; // off the curve
    expect(() => generateEphemeralKey(NamedGroup.secp256r1).computeSecret(p)).toThrow(expect.objectContaining({ alert: 'illegal_parameter' }));
  });

  test('ALPNProtocols in Node wire format; sessionTimeout 0 disables tickets', () => {
    const c = resolveServerConfig({ key: ecA.key, cert: ecA.cert, ALPNProtocols: Buffer.from('\x02h2\x08http/1.1', 'latin1'), sessionTimeout: 0 });
    expect(c.alpnProtocols).toEqual(['h2', 'http/1.1']);
    expect(c.tickets).toBeUndefined();
  });
});
