/**
 * The ClientHello extension decoders read well-formed input by offsets and
 * hand anything else to their Reader-based code (src/tls/extensions.ts).
 * Cross-check: on valid encodings and on random and mutated bytes, each
 * decoder returns what the Reader-based reference below (the decoders as
 * they were before the fast path) returns, or throws the same error (class,
 * alert, message).
 */
import { describe, expect, test } from 'vitest';
import { DecodeError, EchError, IllegalParameterError } from '../src/wire/alert.js';
import { Reader } from '../src/wire/reader.js';
import {
  decodeAlpn,
  decodeKeyShareClient,
  decodePskKeyExchangeModes,
  decodeServerName,
  decodeSignatureAlgorithms,
  decodeSupportedGroups,
  decodeSupportedVersions,
  decodeEchOuterExtensions,
  decodeAlpnIn,
  decodeServerNameIn,
  decodeSupportedVersionsIn,
  encodeAlpn,
  encodeKeyShareClient,
  encodePskKeyExchangeModes,
  encodeServerName,
  encodeSignatureAlgorithms,
  encodeSupportedGroups,
  encodeSupportedVersions,
  encodeEchOuterExtensions,
} from '../src/tls/extensions.js';

const latin1 = new TextDecoder('latin1');

function refU16List(data: Uint8Array, what: string, min: number, max: number, prefix: 1 | 2): number[] {
  const r = new Reader(data);
  const v = prefix === 1 ? r.vector8(what) : r.vector16(what);
  r.end(what);
  if (v.remaining < min || v.remaining > max || v.remaining % 2 !== 0) {
    throw new DecodeError(`${what}: bad length ${v.remaining}`);
  }
  const out: number[] = [];
  while (!v.empty) out.push(v.u16());
  return out;
}

function refServerName(data: Uint8Array): string | undefined {
  const r = new Reader(data);
  const list = r.vector16('server_name_list');
  r.end('server_name');
  if (list.empty) throw new DecodeError('empty server_name_list');
  let host: string | undefined;
  while (!list.empty) {
    const type = list.u8('name_type');
    const name = list.vector16('HostName');
    if (type !== 0) continue;
    if (host !== undefined) throw new IllegalParameterError('two host_name entries in server_name');
    if (name.empty) throw new DecodeError('empty HostName');
    const bytes = name.rest();
    for (const b of bytes) {
      if (b <= 0x20 || b >= 0x7f) throw new DecodeError('HostName is not a printable ASCII string');
    }
    host = latin1.decode(bytes);
  }
  return host;
}

function refAlpn(data: Uint8Array): string[] {
  const r = new Reader(data);
  const list = r.vector16('protocol_name_list');
  r.end('application_layer_protocol_negotiation');
  if (list.empty) throw new DecodeError('empty protocol_name_list');
  const out: string[] = [];
  while (!list.empty) {
    const n = list.bytes8('ProtocolName');
    if (n.length === 0) throw new DecodeError('empty ProtocolName');
    out.push(latin1.decode(n));
  }
  return out;
}

function refPskModes(data: Uint8Array): number[] {
  const r = new Reader(data);
  const v = r.vector8('ke_modes');
  r.end('psk_key_exchange_modes');
  if (v.empty) throw new DecodeError('empty ke_modes');
  const out: number[] = [];
  while (!v.empty) out.push(v.u8());
  return out;
}

function refKeyShare(data: Uint8Array): { group: number; keyExchange: Uint8Array }[] {
  const r = new Reader(data);
  const v = r.vector16('client_shares');
  r.end('key_share');
  const out: { group: number; keyExchange: Uint8Array }[] = [];
  while (!v.empty) {
    const group = v.u16('NamedGroup');
    const keyExchange = v.bytes16('key_exchange');
    if (keyExchange.length === 0) throw new DecodeError('empty key_exchange');
    if (out.some((e) => e.group === group)) throw new IllegalParameterError(`key_share offers group 0x${group.toString(16)} twice`);
    out.push({ group, keyExchange });
  }
  return out;
}

type Outcome = { ok: unknown } | { error: string; alert: string | undefined; message: string };

function outcome(f: () => unknown): Outcome {
  try {
    return { ok: f() };
  } catch (e) {
    expect(e).toBeInstanceOf(EchError);
    const err = e as EchError;
    return { error: err.constructor.name, alert: err.alert, message: err.message };
  }
}

/** A deterministic PRNG (xorshift32), so a failure can be replayed. */
function prng(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x;
  };
}

/** Mutations of `valid`: truncations, extensions, flipped and set bytes, length fields nudged. */
function mutations(valid: Uint8Array, next: () => number, count: number): Uint8Array[] {
  const out: Uint8Array[] = [valid, new Uint8Array(0)];
  for (let i = 0; i <= valid.length; i++) out.push(valid.subarray(0, i));
  for (let k = 0; k < count; k++) {
    const m = new Uint8Array(valid.length + (next() % 3 === 0 ? next() % 4 : 0));
    m.set(valid);
    const edits = 1 + (next() % 3);
    for (let e = 0; e < edits && m.length > 0; e++) {
      const at = next() % m.length;
      const kind = next() % 4;
      if (kind === 0) m[at] = next() & 0xff;
      else if (kind === 1) m[at] = (m[at]! + 1) & 0xff;
      else if (kind === 2) m[at] = (m[at]! - 1) & 0xff;
      else m[at] = [0, 0x20, 0x7f, 0x80, 0x9f, 0xff][next() % 6]!;
    }
    out.push(m);
  }
  for (let k = 0; k < count / 4; k++) {
    const r = new Uint8Array(next() % 12);
    for (let i = 0; i < r.length; i++) r[i] = next() % 5 === 0 ? next() & 0xff : next() % 8;
    out.push(r);
  }
  return out;
}

/**
 * `decode` applied to `d` as a range of a larger buffer (junk bytes before
 * and after it), as the ECH decryption core calls the `...In` decoders.
 */
function inRange(decode: (b: Uint8Array, start: number, end: number) => unknown): (d: Uint8Array) => unknown {
  return (d) => {
    const before = 1 + (d.length % 3);
    const b = new Uint8Array(before + d.length + 2).fill(0x41);
    b.set(d, before);
    return decode(b, before, before + d.length);
  };
}

const cases: { name: string; fast: (d: Uint8Array) => unknown; ref: (d: Uint8Array) => unknown; valid: Uint8Array[] }[] = [
  {
    name: 'supported_versions',
    fast: decodeSupportedVersions,
    ref: (d) => refU16List(d, 'supported_versions', 2, 254, 1),
    valid: [encodeSupportedVersions([0x0304]), encodeSupportedVersions([0x7a7a, 0x0304, 0x0303])],
  },
  {
    name: 'supported_versions in a range',
    fast: inRange(decodeSupportedVersionsIn),
    ref: (d) => refU16List(d, 'supported_versions', 2, 254, 1),
    valid: [encodeSupportedVersions([0x0304]), encodeSupportedVersions([0x7a7a, 0x0304, 0x0303])],
  },
  {
    name: 'supported_groups',
    fast: decodeSupportedGroups,
    ref: (d) => refU16List(d, 'supported_groups', 2, 0xfffe, 2),
    valid: [encodeSupportedGroups([0x001d]), encodeSupportedGroups([0x11ec, 0x001d, 0x0017, 0x0018])],
  },
  {
    name: 'signature_algorithms',
    fast: decodeSignatureAlgorithms,
    ref: (d) => refU16List(d, 'signature_algorithms', 2, 0xfffe, 2),
    valid: [encodeSignatureAlgorithms([0x0403, 0x0804, 0x0401])],
  },
  {
    name: 'ech_outer_extensions',
    fast: decodeEchOuterExtensions,
    ref: (d) => refU16List(d, 'OuterExtensions', 2, 254, 1),
    valid: [encodeEchOuterExtensions([0x000a, 0x0033])],
  },
  {
    name: 'psk_key_exchange_modes',
    fast: decodePskKeyExchangeModes,
    ref: refPskModes,
    valid: [encodePskKeyExchangeModes([1]), encodePskKeyExchangeModes([0, 1])],
  },
  {
    name: 'application_layer_protocol_negotiation',
    fast: decodeAlpn,
    ref: refAlpn,
    valid: [encodeAlpn(['h2', 'http/1.1']), encodeAlpn(['x']), Uint8Array.of(0, 4, 3, 0x80, 0x9f, 0xe9)],
  },
  {
    name: 'application_layer_protocol_negotiation in a range',
    fast: inRange(decodeAlpnIn),
    ref: refAlpn,
    valid: [encodeAlpn(['h2', 'http/1.1']), encodeAlpn(['x']), Uint8Array.of(0, 4, 3, 0x80, 0x9f, 0xe9)],
  },
  {
    name: 'server_name',
    fast: decodeServerName,
    ref: refServerName,
    valid: [
      encodeServerName('secret.example'),
      // A name of another type before and after the host name.
      Uint8Array.of(0, 15, 1, 0, 2, 0x61, 0x62, 0, 0, 2, 0x61, 0x2e, 7, 0, 1, 0x41, 0),
      Uint8Array.of(0, 5, 9, 0, 2, 0x80, 0x81),
    ],
  },
  {
    name: 'server_name in a range',
    fast: inRange(decodeServerNameIn),
    ref: refServerName,
    valid: [encodeServerName('secret.example'), Uint8Array.of(0, 15, 1, 0, 2, 0x61, 0x62, 0, 0, 2, 0x61, 0x2e, 7, 0, 1, 0x41, 0)],
  },
  {
    name: 'key_share',
    fast: decodeKeyShareClient,
    ref: refKeyShare,
    valid: [
      encodeKeyShareClient([]),
      encodeKeyShareClient([{ group: 0x001d, keyExchange: new Uint8Array(32).fill(5) }]),
      encodeKeyShareClient([
        { group: 0x11ec, keyExchange: new Uint8Array(40).fill(1) },
        { group: 0x001d, keyExchange: new Uint8Array(32).fill(2) },
      ]),
      Uint8Array.of(0, 5, 0, 0x1d, 0, 1, 7),
      Uint8Array.of(0, 4, 0, 0x1d, 0, 0),
      Uint8Array.of(0, 10, 0, 0x1d, 0, 1, 7, 0, 0x1d, 0, 1, 8),
      Uint8Array.of(0, 10, 0, 0x1d, 0, 1, 7, 0, 0x17, 0, 1, 8),
    ],
  },
];

describe('extension decoders: fast path and Reader-based reference agree', () => {
  for (const c of cases) {
    test(c.name, () => {
      const next = prng(0x5eed + c.name.length);
      let valid = 0;
      let errors = 0;
      for (const v of c.valid) {
        for (const m of mutations(v, next, 400)) {
          const fast = outcome(() => c.fast(m));
          const ref = outcome(() => c.ref(m));
          expect(fast, `${c.name} on ${Buffer.from(m).toString('hex')}`).toEqual(ref);
          if ('ok' in fast) valid++;
          else errors++;
        }
      }
      // Both kinds of input were exercised.
      expect(valid).toBeGreaterThan(c.valid.length - 1);
      expect(errors).toBeGreaterThan(10);
    });
  }

  test('every short input over a small alphabet (lengths, types and bytes at their edges)', () => {
    // All strings of up to 5 bytes over {0, 1, 2, 3, 4, 'A', 0x80}: empty
    // vectors, entries cut short, a last entry exactly at the end or one
    // byte past it, non-ASCII names.
    const alphabet = [0, 1, 2, 3, 4, 0x41, 0x80];
    const inputs: Uint8Array[] = [];
    const build = (prefix: number[]): void => {
      inputs.push(Uint8Array.from(prefix));
      if (prefix.length === 5) return;
      for (const b of alphabet) build([...prefix, b]);
    };
    build([]);
    expect(inputs.length).toBe(19608);
    for (const c of cases) {
      for (const m of inputs) {
        const fast = outcome(() => c.fast(m));
        const ref = outcome(() => c.ref(m));
        if (JSON.stringify(fast) !== JSON.stringify(ref)) expect(fast, `${c.name} on ${Buffer.from(m).toString('hex')}`).toEqual(ref);
      }
    }
  });

  test('key_share entries are copies, not views of the input', () => {
    const data = encodeKeyShareClient([{ group: 0x001d, keyExchange: new Uint8Array(32).fill(9) }]);
    const [entry] = decodeKeyShareClient(data);
    data.fill(0);
    expect(entry!.keyExchange.every((b) => b === 9)).toBe(true);
  });
});
