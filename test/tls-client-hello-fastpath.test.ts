/**
 * ClientHello decoding reads a well-formed hello by offsets and hands
 * anything else (and hellos of more than 32 extensions) to its Reader-based
 * walk (src/tls/client-hello.ts). Cross-check: on valid hellos, every
 * prefix, mutations and random bytes, decodeClientHello and
 * checkClientHello return what the Reader-based walk below (the decoder as
 * it was before the fast path) returns, or throw the same error.
 */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { DecodeError, EchError, IllegalParameterError } from '../src/wire/alert.js';
import { Reader } from '../src/wire/reader.js';
import { checkClientHello, decodeClientHello, encodeClientHello, type Extension, type ParsedClientHello } from '../src/tls/client-hello.js';
import { buildClientHello, buildGreaseEchClientHello } from '../src/ech/builder.js';
import { x25519Share } from './helpers/reference-keys.js';

function hasExtensionBetween(raw: Uint8Array, start: number, end: number, type: number): boolean {
  for (let o = start; o < end; o += 4 + ((raw[o + 2]! << 8) | raw[o + 3]!)) {
    if (((raw[o]! << 8) | raw[o + 1]!) === type) return true;
  }
  return false;
}

function referenceWalk(raw: Uint8Array, build: boolean): ParsedClientHello | undefined {
  const r = new Reader(raw);
  const legacyVersion = r.u16('legacy_version');
  const randomAt = r.offset;
  r.skip(32, 'random');
  const sid = r.u8('legacy_session_id');
  if (sid > 32) throw new DecodeError(`legacy_session_id of ${sid} bytes exceeds 32`);
  const sidAt = r.offset;
  r.skip(sid, 'legacy_session_id');
  const cs = r.vector16('cipher_suites');
  if (cs.remaining < 2 || cs.remaining % 2 !== 0) throw new DecodeError('cipher_suites length must be even and non-zero');
  const cipherSuites: number[] = [];
  if (build) while (!cs.empty) cipherSuites.push(cs.u16());
  const cm = r.u8('legacy_compression_methods');
  if (cm < 1) throw new DecodeError('empty legacy_compression_methods');
  const cmAt = r.offset;
  r.skip(cm, 'legacy_compression_methods');
  const extensions: Extension[] = [];
  const extensionOffsets: number[] = [];
  // RFC 9846 §4.1.2: `Extension extensions<8..2^16-1>` — a TLS 1.3
  // ClientHello always has the block (a hello without it is pre-TLS 1.2 and
  // of no use to this library), so its absence is a decode error.
  const ex = r.vector16('extensions');
  const first = ex.offset;
  // Duplicates: a linear look back over the extensions so far (no
  // allocation; a hello has ~10-20), a Set past 32 so a
  // hostile hello of thousands of empty extensions stays linear.
  let seen: Set<number> | undefined;
  let count = 0;
  while (!ex.empty) {
    const entry = ex.offset;
    const type = ex.u16('extension type');
    const len = ex.u16('extension length');
    const at = ex.offset;
    ex.skip(len, 'extension_data');
    let duplicate: boolean;
    if (count < 32) {
      duplicate = hasExtensionBetween(raw, first, entry, type);
    } else {
      if (!seen) {
        seen = new Set<number>();
        for (let o = first; o < entry; o += 4 + ((raw[o + 2]! << 8) | raw[o + 3]!)) seen.add((raw[o]! << 8) | raw[o + 1]!);
      }
      duplicate = seen.has(type);
      seen.add(type);
    }
    if (duplicate) throw new IllegalParameterError(`duplicate extension 0x${type.toString(16).padStart(4, '0')}`);
    count++;
    if (build) {
      extensions.push({ type, data: raw.subarray(at, at + len) });
      extensionOffsets.push(at);
    }
  }
  r.end('ClientHello');
  if (!build) return undefined;
  return {
    legacyVersion,
    random: raw.subarray(randomAt, randomAt + 32),
    legacySessionId: raw.subarray(sidAt, sidAt + sid),
    cipherSuites,
    legacyCompressionMethods: raw.subarray(cmAt, cmAt + cm),
    extensions,
    raw,
    extensionOffsets,
  };
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

/** Both decoders agree on `b` (decode and check). */
function agree(b: Uint8Array, what: string): void {
  expect(outcome(() => decodeClientHello(b)), what).toEqual(outcome(() => referenceWalk(b.slice(), true)));
  expect(outcome(() => checkClientHello(b)), what).toEqual(outcome(() => referenceWalk(b, false)));
}

const valid = encodeClientHello(
  buildGreaseEchClientHello({ serverName: 'x.example', alpn: ['h2'], keyShares: [x25519Share()], extraExtensions: [{ type: 0x1234, data: new Uint8Array([1]) }] }),
);

describe('ClientHello decoding: fast path and Reader-based walk agree', () => {
  it('on a valid hello, with a session id and several compression methods', () => {
    agree(valid, 'valid');
    const ch = buildClientHello({ serverName: 'x.example', keyShares: [x25519Share()] });
    agree(encodeClientHello({ ...ch, legacySessionId: new Uint8Array(32).fill(3), legacyCompressionMethods: Uint8Array.of(0, 1) }), 'sid');
    const d = decodeClientHello(valid);
    expect(d.extensions.length).toBeGreaterThan(5);
  });

  it('on every prefix, on mutations and on random bytes', () => {
    for (let i = 0; i <= valid.length; i++) agree(valid.subarray(0, i), `prefix ${i}`);
    fc.assert(
      fc.property(fc.array(fc.tuple(fc.nat(valid.length - 1), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 3 }), (muts) => {
        const b = valid.slice();
        for (const [i, v] of muts) b[i] = v;
        agree(b, 'mutation');
      }),
      { numRuns: 3000 },
    );
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 120 }), (b) => agree(b, 'random')),
      { numRuns: 1000 },
    );
  });

  it('on duplicates, and past 32 extensions (the Reader walk decides)', () => {
    for (const count of [2, 31, 32, 33, 40]) {
      const ch = buildClientHello({ serverName: 'x.example', extraExtensions: Array.from({ length: count }, (_, i) => ({ type: 0x2000 + i, data: new Uint8Array(i % 3) })) });
      agree(encodeClientHello(ch), `${count} extensions`);
      ch.extensions.push({ type: 0x2000 + count - 1, data: new Uint8Array(0) });
      agree(encodeClientHello(ch), `${count} extensions and a duplicate`);
      ch.extensions.splice(1, 0, { type: 0x2000, data: new Uint8Array(0) });
      agree(encodeClientHello(ch), `${count} extensions, an early duplicate`);
    }
  });
});
