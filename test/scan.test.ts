// The allocation-free scanner (reject fast path) is a second ClientHello
// parser: it must accept exactly what decodeClientHello accepts, fail with
// the same alert, and point at the same extension data.
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { ExtensionType } from '../src/tls/constants.js';
import { decodeClientHello, encodeClientHello, findExtension } from '../src/tls/client-hello.js';
import { ExtensionList, scanClientHello } from '../src/tls/scan.js';
import { buildClientHello, buildGreaseEchClientHello } from '../src/ech/builder.js';
import { EchError } from '../src/wire/alert.js';
import { x25519Share } from './helpers/reference-keys.js';

function outcome(f: () => unknown): string {
  try {
    f();
    return 'ok';
  } catch (e) {
    if (!(e instanceof EchError)) throw e;
    return e.alert;
  }
}

const valid = encodeClientHello(
  buildGreaseEchClientHello({ serverName: 'x.example', alpn: ['h2'], keyShares: [x25519Share()], extraExtensions: [{ type: 0x1234, data: new Uint8Array([1]) }] }),
);

describe('scanClientHello agrees with decodeClientHello', () => {
  it('on a valid hello: same extensions, same positions', () => {
    const list = new ExtensionList(2); // grows
    const s = scanClientHello(valid, list);
    const d = decodeClientHello(valid);
    expect(list.count).toBe(d.extensions.length);
    d.extensions.forEach((e, i) => {
      expect(list.types[i]).toBe(e.type);
      expect(list.at[i]).toBe(d.extensionOffsets[i]);
      expect(list.len[i]).toBe(e.data.length);
    });
    const at = (t: number) => d.extensionOffsets[d.extensions.findIndex((e) => e.type === t)];
    expect(s.echAt).toBe(at(ExtensionType.encrypted_client_hello));
    expect(s.sniAt).toBe(at(ExtensionType.server_name));
    expect(s.alpnAt).toBe(at(ExtensionType.application_layer_protocol_negotiation));
    expect(s.versionsAt).toBe(at(ExtensionType.supported_versions));
    expect(s.sniLen).toBe(findExtension(d.extensions, ExtensionType.server_name)!.data.length);
  });

  it('on every prefix, on mutations and on random bytes: same verdict and alert', () => {
    for (let i = 0; i <= valid.length; i++) {
      const b = valid.subarray(0, i);
      expect(outcome(() => scanClientHello(b)), `prefix ${i}`).toBe(outcome(() => decodeClientHello(b)));
    }
    fc.assert(
      fc.property(fc.array(fc.tuple(fc.nat(valid.length - 1), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 3 }), (muts) => {
        const b = valid.slice();
        for (const [i, v] of muts) b[i] = v;
        expect(outcome(() => scanClientHello(b))).toBe(outcome(() => decodeClientHello(b)));
      }),
      { numRuns: 2000 },
    );
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), (b) => {
        expect(outcome(() => scanClientHello(b))).toBe(outcome(() => decodeClientHello(b)));
      }),
      { numRuns: 1000 },
    );
  });

  it('finds duplicates beyond its small fixed table', () => {
    const many = buildClientHello({ serverName: 'x.example', extraExtensions: Array.from({ length: 200 }, (_, i) => ({ type: 0x2000 + i, data: new Uint8Array(0) })) });
    expect(outcome(() => scanClientHello(encodeClientHello(many)))).toBe('ok');
    many.extensions.push({ type: 0x2000 + 150, data: new Uint8Array(0) });
    const bytes = encodeClientHello(many);
    expect(outcome(() => scanClientHello(bytes))).toBe('illegal_parameter');
    expect(outcome(() => decodeClientHello(bytes))).toBe('illegal_parameter');
  });
});
