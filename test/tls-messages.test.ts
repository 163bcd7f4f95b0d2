/**
 * Codecs of src/tls/messages.ts: property tests (fast-check) — every value
 * round-trips, and every strict prefix of an encoding fails with
 * decode_error — plus named malformed cases.
 */
import { describe, expect, test } from 'vitest';
import fc from 'fast-check';
import {
  decodeAlpnSelected,
  decodeCertificate,
  decodeCertificateVerify,
  decodeEncryptedExtensions,
  decodeFinished,
  decodeKeyShareHelloRetry,
  decodeKeyShareServer,
  decodeKeyUpdate,
  decodeNewSessionTicket,
  decodePreSharedKeySelected,
  decodeServerHello,
  decodeSupportedVersionSelected,
  encodeAlpnSelected,
  encodeCertificate,
  encodeCertificateVerify,
  encodeEncryptedExtensions,
  encodeFinished,
  encodeKeyShareHelloRetry,
  encodeKeyShareServer,
  encodeKeyUpdate,
  encodeNewSessionTicket,
  encodePreSharedKeySelected,
  encodeServerHello,
  encodeSupportedVersionSelected,
  isHelloRetryRequest,
} from '../src/tls/messages.js';
import { DecodeError, EchError } from '../src/wire/alert.js';
import { HELLO_RETRY_REQUEST_RANDOM } from '../src/tls/constants.js';
import { encode } from '../src/wire/writer.js';

const RUNS = { numRuns: 60 };
const bytes = (min: number, max: number) => fc.uint8Array({ minLength: min, maxLength: max });
const u16 = fc.integer({ min: 0, max: 0xffff });
const u32 = fc.integer({ min: 0, max: 0xffffffff });
const extensions = fc
  .uniqueArray(fc.record({ type: u16, data: bytes(0, 40) }), { selector: (e) => e.type, maxLength: 6 })
  .map((a) => a.map((e) => ({ type: e.type, data: e.data })));

/** Every strict prefix of `encoded` must throw DecodeError. */
function everyPrefixFails(encoded: Uint8Array, decode: (b: Uint8Array) => unknown): void {
  for (let n = 0; n < encoded.length; n++) {
    let threw: unknown;
    try {
      decode(encoded.subarray(0, n));
    } catch (e) {
      threw = e;
    }
    expect(threw, `prefix of ${n}/${encoded.length} bytes`).toBeInstanceOf(DecodeError);
    expect((threw as EchError).alert).toBe('decode_error');
  }
}

interface Codec<T> {
  name: string;
  arb: fc.Arbitrary<T>;
  enc: (v: T) => Uint8Array;
  dec: (b: Uint8Array) => T;
}

const codecs: Codec<any>[] = [
  {
    name: 'ServerHello',
    arb: fc.record({
      legacyVersion: u16,
      random: bytes(32, 32),
      legacySessionIdEcho: bytes(0, 32),
      cipherSuite: u16,
      legacyCompressionMethod: fc.integer({ min: 0, max: 255 }),
      extensions,
    }),
    enc: encodeServerHello,
    dec: decodeServerHello,
  },
  { name: 'EncryptedExtensions', arb: extensions, enc: encodeEncryptedExtensions, dec: decodeEncryptedExtensions },
  {
    name: 'Certificate',
    arb: fc.record({
      certificateRequestContext: bytes(0, 8),
      entries: fc.array(fc.record({ data: bytes(1, 60), extensions }), { maxLength: 3 }),
    }),
    enc: encodeCertificate,
    dec: decodeCertificate,
  },
  {
    name: 'CertificateVerify',
    arb: fc.record({ algorithm: u16, signature: bytes(0, 80) }),
    enc: encodeCertificateVerify,
    dec: decodeCertificateVerify,
  },
  { name: 'Finished (SHA-256)', arb: bytes(32, 32), enc: encodeFinished, dec: (b) => decodeFinished(b, 32) },
  { name: 'Finished (SHA-384)', arb: bytes(48, 48), enc: encodeFinished, dec: (b) => decodeFinished(b, 48) },
  {
    name: 'NewSessionTicket',
    arb: fc.record({
      lifetime: fc.integer({ min: 0, max: 604800 }),
      ageAdd: u32,
      nonce: bytes(0, 8),
      ticket: bytes(1, 100),
      extensions,
    }),
    enc: encodeNewSessionTicket,
    dec: decodeNewSessionTicket,
  },
  { name: 'KeyUpdate', arb: fc.constantFrom(0 as const, 1 as const), enc: encodeKeyUpdate, dec: decodeKeyUpdate },
  {
    name: 'key_share (ServerHello)',
    arb: fc.record({ group: u16, keyExchange: bytes(1, 97) }),
    enc: encodeKeyShareServer,
    dec: decodeKeyShareServer,
  },
  { name: 'key_share (HelloRetryRequest)', arb: u16, enc: encodeKeyShareHelloRetry, dec: decodeKeyShareHelloRetry },
  { name: 'supported_versions (selected)', arb: u16, enc: encodeSupportedVersionSelected, dec: decodeSupportedVersionSelected },
  { name: 'pre_shared_key (selected_identity)', arb: u16, enc: encodePreSharedKeySelected, dec: decodePreSharedKeySelected },
  {
    name: 'ALPN (selected)',
    arb: fc.string({ unit: fc.integer({ min: 0x21, max: 0x7e }).map((c) => String.fromCharCode(c)), minLength: 1, maxLength: 20 }),
    enc: encodeAlpnSelected,
    dec: decodeAlpnSelected,
  },
];

describe('message codecs: round trip and truncation', () => {
  for (const c of codecs) {
    test(`${c.name} round-trips`, () => {
      fc.assert(
        fc.property(c.arb, (v) => {
          const e = c.enc(v);
          expect(c.dec(e)).toEqual(v);
          // Re-encoding the decoded value is byte-identical.
          expect(c.enc(c.dec(e))).toEqual(e);
        }),
        RUNS,
      );
    });
    test(`${c.name}: every strict prefix fails with decode_error`, () => {
      fc.assert(fc.property(c.arb, (v) => everyPrefixFails(c.enc(v), c.dec)), { numRuns: 20 });
    });
    test(`${c.name}: a trailing byte fails with decode_error`, () => {
      fc.assert(
        fc.property(c.arb, (v) => {
          const e = c.enc(v);
          expect(() => c.dec(Uint8Array.from([...e, 0]))).toThrow(DecodeError);
        }),
        { numRuns: 20 },
      );
    });
  }
});

describe('message codecs: named malformed cases', () => {
  const alertOf = (f: () => unknown): string | undefined => {
    try {
      f();
    } catch (e) {
      return (e as EchError).alert;
    }
    return undefined;
  };

  test('duplicateExtensionInEncryptedExtensions → illegal_parameter', () => {
    const twice = encode((w) =>
      w.vector16((v) => {
        v.u16(16).bytes16(new Uint8Array(0));
        v.u16(16).bytes16(new Uint8Array(0));
      }),
    );
    expect(alertOf(() => decodeEncryptedExtensions(twice))).toBe('illegal_parameter');
  });

  test('keyUpdateRequestTwo → illegal_parameter', () => {
    expect(alertOf(() => decodeKeyUpdate(Uint8Array.of(2)))).toBe('illegal_parameter');
  });

  test('alpnSelectedWithTwoNames → illegal_parameter', () => {
    const two = encode((w) => w.vector16((l) => l.bytes8(Uint8Array.of(0x68, 0x32)).bytes8(Uint8Array.of(0x68))));
    expect(alertOf(() => decodeAlpnSelected(two))).toBe('illegal_parameter');
  });

  test('ticketLifetimeAboveSevenDays → illegal_parameter', () => {
    const t = encodeNewSessionTicket({ lifetime: 604801, ageAdd: 0, nonce: new Uint8Array(0), ticket: Uint8Array.of(1), extensions: [] });
    expect(alertOf(() => decodeNewSessionTicket(t))).toBe('illegal_parameter');
  });

  test('emptyCertData → decode_error', () => {
    const bad = encode((w) => {
      w.bytes8(new Uint8Array(0));
      w.vector24((l) => {
        l.bytes24(new Uint8Array(0));
        l.vector16(() => undefined);
      });
    });
    expect(alertOf(() => decodeCertificate(bad))).toBe('decode_error');
  });

  test('sessionIdEchoLongerThan32 → decode_error', () => {
    const sh = encodeServerHello({
      legacyVersion: 0x0303,
      random: new Uint8Array(32),
      legacySessionIdEcho: new Uint8Array(32),
      cipherSuite: 0x1301,
      legacyCompressionMethod: 0,
      extensions: [],
    });
    sh[34] = 33;
    expect(alertOf(() => decodeServerHello(sh))).toBe('decode_error');
  });

  test('isHelloRetryRequest looks at the special random only', () => {
    const base = { legacyVersion: 0x0303, legacySessionIdEcho: new Uint8Array(0), cipherSuite: 0x1301, legacyCompressionMethod: 0, extensions: [] };
    expect(isHelloRetryRequest({ ...base, random: HELLO_RETRY_REQUEST_RANDOM })).toBe(true);
    expect(isHelloRetryRequest({ ...base, random: new Uint8Array(32) })).toBe(false);
  });
});
