import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { ExtensionType } from '../src/tls/constants.js';
import {
  type ClientHello,
  decodeClientHello,
  encodeClientHello,
  encodeClientHelloMessage,
  findExtension,
} from '../src/tls/client-hello.js';
import * as x from '../src/tls/extensions.js';
import { HandshakeReassembler, readFirstHandshakeMessage, readRecord, writeRecords } from '../src/tls/record.js';
import { buildClientHello } from '../src/ech/builder.js';
import { EchError } from '../src/wire/alert.js';
import { expectEveryPrefixFails, expectFuzzSafe } from './helpers/properties.js';
import { x25519Share } from './helpers/reference-keys.js';

function sample(): ClientHello {
  return buildClientHello({
    serverName: 'secret.example',
    alpn: ['h2', 'http/1.1'],
    keyShares: [x25519Share()],
    psk: { identities: [{ identity: new Uint8Array([1, 2, 3]), obfuscatedTicketAge: 77 }], binders: [new Uint8Array(32)] },
    extraExtensions: [{ type: 0x0a0a, data: new Uint8Array(0) }, { type: 0x1234, data: new Uint8Array([9, 9]) }],
  });
}

describe('ClientHello codec', () => {
  it('round-trips and keeps unknown extensions byte-exact and in order', () => {
    const ch = sample();
    const body = encodeClientHello(ch);
    const back = decodeClientHello(body);
    expect(encodeClientHello(back)).toEqual(body);
    expect(back.extensions.map((e) => e.type)).toEqual(ch.extensions.map((e) => e.type));
    expect(findExtension(back.extensions, 0x1234)!.data).toEqual(new Uint8Array([9, 9]));
    // offsets point at each extension's data in the raw body
    back.extensions.forEach((e, i) => {
      const at = back.extensionOffsets[i]!;
      expect(back.raw.subarray(at, at + e.data.length)).toEqual(e.data);
    });
  });

  it('every strict prefix fails with decode_error', () => {
    expectEveryPrefixFails(decodeClientHello, encodeClientHello(sample()));
  });

  it('random and mutated input throws only typed errors', () => {
    expectFuzzSafe(decodeClientHello, encodeClientHello(sample()));
  });

  it('property: random ClientHellos round-trip', () => {
    fc.assert(
      fc.property(
        fc.uint8Array({ minLength: 32, maxLength: 32 }),
        fc.uint8Array({ maxLength: 32 }),
        fc.uniqueArray(fc.integer({ min: 0, max: 0xffff }), { minLength: 1, maxLength: 20 }),
        fc.uniqueArray(fc.integer({ min: 0, max: 0xffff }), { maxLength: 15 }),
        (random, sid, suites, extTypes) => {
          const ch: ClientHello = {
            legacyVersion: 0x0303,
            random,
            legacySessionId: sid,
            cipherSuites: suites,
            legacyCompressionMethods: new Uint8Array([0]),
            extensions: extTypes.map((t) => ({ type: t, data: new Uint8Array([t & 0xff]) })),
          };
          const body = encodeClientHello(ch);
          expect(encodeClientHello(decodeClientHello(body))).toEqual(body);
        },
      ),
      { numRuns: 200 },
    );
  });

  it('rejects duplicate extensions with illegal_parameter', () => {
    const ch = sample();
    ch.extensions.push({ type: ExtensionType.server_name, data: x.encodeServerName('again.example') });
    expect(() => decodeClientHello(encodeClientHello(ch))).toThrow(expect.objectContaining({ alert: 'illegal_parameter' }));
  });

  it('rejects a session id longer than 32 bytes and empty compression methods', () => {
    const body = encodeClientHello(sample());
    const long = body.slice();
    long[34] = 33;
    expect(() => decodeClientHello(long)).toThrow(expect.objectContaining({ alert: 'decode_error' }));
  });
});

describe('extension codecs', () => {
  const cases: Array<{ name: string; valid: Uint8Array; decode: (d: Uint8Array) => unknown; expected: unknown }> = [
    { name: 'server_name', valid: x.encodeServerName('a.example'), decode: x.decodeServerName, expected: 'a.example' },
    { name: 'alpn', valid: x.encodeAlpn(['h2', 'http/1.1']), decode: x.decodeAlpn, expected: ['h2', 'http/1.1'] },
    { name: 'supported_versions', valid: x.encodeSupportedVersions([0x0304, 0x0a0a]), decode: x.decodeSupportedVersions, expected: [0x0304, 0x0a0a] },
    { name: 'supported_groups', valid: x.encodeSupportedGroups([29, 23]), decode: x.decodeSupportedGroups, expected: [29, 23] },
    { name: 'signature_algorithms', valid: x.encodeSignatureAlgorithms([0x0403, 0x0804]), decode: x.decodeSignatureAlgorithms, expected: [0x0403, 0x0804] },
    { name: 'psk_key_exchange_modes', valid: x.encodePskKeyExchangeModes([1]), decode: x.decodePskKeyExchangeModes, expected: [1] },
    {
      name: 'key_share',
      valid: x.encodeKeyShareClient([{ group: 29, keyExchange: new Uint8Array([1, 2, 3]) }]),
      decode: x.decodeKeyShareClient,
      expected: [{ group: 29, keyExchange: new Uint8Array([1, 2, 3]) }],
    },
    {
      name: 'pre_shared_key',
      valid: x.encodeOfferedPsks({ identities: [{ identity: new Uint8Array([5]), obfuscatedTicketAge: 1 }], binders: [new Uint8Array(32).fill(7)] }),
      decode: x.decodeOfferedPsks,
      expected: { identities: [{ identity: new Uint8Array([5]), obfuscatedTicketAge: 1 }], binders: [new Uint8Array(32).fill(7)] },
    },
    { name: 'cookie', valid: x.encodeCookie(new Uint8Array([4, 5])), decode: x.decodeCookie, expected: new Uint8Array([4, 5]) },
    {
      name: 'encrypted_client_hello (outer)',
      valid: x.encodeEchClientHello({ type: 'outer', kdfId: 1, aeadId: 1, configId: 9, enc: new Uint8Array(32).fill(1), payload: new Uint8Array(40).fill(2) }),
      decode: x.decodeEchClientHello,
      expected: { type: 'outer', kdfId: 1, aeadId: 1, configId: 9, enc: new Uint8Array(32).fill(1), payload: new Uint8Array(40).fill(2), payloadOffset: 42 },
    },
    { name: 'encrypted_client_hello (inner)', valid: x.encodeEchClientHello({ type: 'inner' }), decode: x.decodeEchClientHello, expected: { type: 'inner' } },
    { name: 'ech_outer_extensions', valid: x.encodeEchOuterExtensions([10, 13, 51]), decode: x.decodeEchOuterExtensions, expected: [10, 13, 51] },
  ];
  for (const c of cases) {
    it(`${c.name}: round trip, prefixes, fuzz`, () => {
      expect(c.decode(c.valid)).toEqual(c.expected);
      expectEveryPrefixFails(c.decode, c.valid);
      expectFuzzSafe(c.decode, c.valid, 100);
    });
  }

  it('refuses forbidden but well-formed values', () => {
    expect(() => x.decodeKeyShareClient(x.encodeKeyShareClient([
      { group: 29, keyExchange: new Uint8Array([1]) },
      { group: 29, keyExchange: new Uint8Array([2]) },
    ]))).toThrow(expect.objectContaining({ alert: 'illegal_parameter' }));
    expect(() => x.decodeEchClientHello(new Uint8Array([2]))).toThrow(expect.objectContaining({ alert: 'illegal_parameter' }));
    expect(() => x.decodeServerName(x.encodeServerName('bad name'))).toThrow(expect.objectContaining({ alert: 'decode_error' }));
    expect(() => x.decodeAlpn(new Uint8Array([0, 1, 0]))).toThrow(expect.objectContaining({ alert: 'decode_error' }));
    const psk = x.encodeOfferedPsks({ identities: [{ identity: new Uint8Array([5]), obfuscatedTicketAge: 1 }], binders: [new Uint8Array(32), new Uint8Array(32)] });
    expect(() => x.decodeOfferedPsks(psk)).toThrow(expect.objectContaining({ alert: 'illegal_parameter' }));
  });

  it('pskBindersLength measures the binders vector', () => {
    const data = x.encodeOfferedPsks({ identities: [{ identity: new Uint8Array([5]), obfuscatedTicketAge: 1 }], binders: [new Uint8Array(32)] });
    expect(x.pskBindersLength(data)).toBe(2 + 1 + 32);
  });
});

describe('records and handshake reassembly', () => {
  const msg = encodeClientHelloMessage(sample());

  it('reads a ClientHello split across records and arbitrary TCP reads', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 200 }), fc.integer({ min: 1, max: 50 }), (fragment, chunk) => {
        const wire = writeRecords(22, msg, 0x0301, fragment);
        let got: ReturnType<typeof readFirstHandshakeMessage>;
        for (let n = chunk; ; n = Math.min(wire.length, n + chunk)) {
          got = readFirstHandshakeMessage(wire.subarray(0, n));
          if (got || n === wire.length) break;
        }
        expect(got!.message.raw).toEqual(msg);
        expect(got!.consumed).toBe(wire.length);
      }),
      { numRuns: 60 },
    );
  });

  it('says what is wrong with non-TLS bytes, alerts and oversize records', () => {
    expect(() => readFirstHandshakeMessage(new TextEncoder().encode('GET / HTTP/1.1\r\n\r\n'))).toThrow(
      expect.objectContaining({ alert: 'decode_error' }),
    );
    expect(() => readFirstHandshakeMessage(writeRecords(21, new Uint8Array([2, 40])))).toThrow(
      expect.objectContaining({ alert: 'unexpected_message' }),
    );
    const big = new Uint8Array([22, 3, 1, 0x48, 0x01]);
    expect(() => readRecord(big, 0, 16384)).toThrow(expect.objectContaining({ alert: 'record_overflow' }));
    expect(() => new HandshakeReassembler(100).push(new Uint8Array([1, 0, 1, 0]))).toThrow(EchError);
  });
});

describe('duplicate extensions (RFC 9846 §4.2)', () => {
  const hello = (n: number, dup?: number) => {
    const ch = buildClientHello({ serverName: 'x.example', keyShares: [x25519Share()], extraExtensions: Array.from({ length: n }, (_, i) => ({ type: 0x2000 + i, data: new Uint8Array(0) })) });
    if (dup !== undefined) ch.extensions.push({ type: 0x2000 + dup, data: new Uint8Array(0) });
    return encodeClientHello(ch);
  };

  it('an ordinary hello is checked without building a Set', () => {
    const bytes = hello(5);
    const RealSet = globalThis.Set;
    let built = 0;
    globalThis.Set = class extends RealSet<unknown> {
      constructor(it?: Iterable<unknown> | null) {
        super(it);
        built++;
      }
    } as SetConstructor;
    try {
      decodeClientHello(bytes);
    } finally {
      globalThis.Set = RealSet;
    }
    expect(built).toBe(0);
  });

  it('found among few and among many extensions (either side of the linear check)', () => {
    for (const n of [3, 20, 31, 32, 33, 200]) {
      expect(decodeClientHello(hello(n)).extensions.length).toBeGreaterThan(n);
      for (const dup of [0, n - 1]) {
        expect(() => decodeClientHello(hello(n, dup)), `${n}/${dup}`).toThrow(expect.objectContaining({ alert: 'illegal_parameter' }));
      }
    }
  });
});
