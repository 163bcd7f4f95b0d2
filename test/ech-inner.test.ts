/**
 * EncodedClientHelloInner expansion (RFC 9849 §5.1) at the limits of the
 * wire format: whatever the input, a malformed EncodedClientHelloInner is a
 * typed decode or parameter error, never the writer's internal_error.
 */
import { describe, expect, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import { buildClientHello } from '../src/ech/builder.js';
import { decodeEncodedClientHelloInner, encodeClientHelloInner, rebuildClientHelloInner } from '../src/ech/inner.js';
import { encodeClientHello, type ClientHello } from '../src/tls/client-hello.js';
import { ExtensionList, scanClientHello } from '../src/tls/scan.js';
import { EchError } from '../src/wire/alert.js';

const BIG_OUTER = 0xff77;
const BIG_INNER = 0xff78;

/** An outer hello carrying a 40,000-byte extension, and an inner one with a 30,000-byte private extension that references it. */
function oversized(): { outer: ClientHello; encoded: Uint8Array } {
  const outer = buildClientHello({ serverName: 'cover.example', keyShares: [{ group: 0x001d, keyExchange: new Uint8Array(randomBytes(32)) }] });
  outer.extensions.push({ type: BIG_OUTER, data: new Uint8Array(40_000) });
  const inner = buildClientHello({ serverName: 'secret.example', keyShares: [{ group: 0x001d, keyExchange: new Uint8Array(randomBytes(32)) }] });
  inner.extensions.push({ type: BIG_INNER, data: new Uint8Array(30_000) });
  // Compressed: replaced by an ech_outer_extensions reference to the outer one.
  inner.extensions.push({ type: BIG_OUTER, data: new Uint8Array(0) });
  // Each part fits its own 16-bit extension block; the expansion does not.
  const encoded = encodeClientHelloInner(inner, [BIG_OUTER], 0);
  return { outer, encoded };
}

function errorOf(f: () => unknown): EchError {
  let err: unknown;
  try {
    f();
  } catch (e) {
    err = e;
  }
  expect(err).toBeInstanceOf(EchError);
  return err as EchError;
}

describe('rebuildClientHelloInner: an expansion past 65,535 bytes of extensions', () => {
  it('is decode_error (ERR_DECODE), not internal_error, from decodeEncodedClientHelloInner', () => {
    const { outer, encoded } = oversized();
    const err = errorOf(() => decodeEncodedClientHelloInner(encoded, outer));
    expect(err.alert).toBe('decode_error');
    expect(err.code).toBe('ERR_DECODE');
    expect(err.message).toMatch(/65535/);
  });

  it('is decode_error from rebuildClientHelloInner on the raw outer body', () => {
    const { outer, encoded } = oversized();
    const body = encodeClientHello(outer);
    const list = new ExtensionList();
    scanClientHello(body, list);
    const err = errorOf(() => rebuildClientHelloInner(encoded, body, list));
    expect(err.alert).toBe('decode_error');
  });

  it('an expansion that just fits is accepted', () => {
    const { outer, encoded } = oversized();
    outer.extensions[outer.extensions.length - 1] = { type: BIG_OUTER, data: new Uint8Array(20_000) };
    const { inner } = decodeEncodedClientHelloInner(encoded, outer);
    expect(inner.extensions.find((e) => e.type === BIG_OUTER)?.data.length).toBe(20_000);
    expect(inner.extensions.find((e) => e.type === BIG_INNER)?.data.length).toBe(30_000);
  });
});
