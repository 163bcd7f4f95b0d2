// isTls12OnlyMessage (the front end's scan of the raw first ClientHello) must
// agree with decoding the hello and asking isTls12Only: same answer, same
// alert, on valid hellos of every version mix, their prefixes and mutations.
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { decodeClientHello, encodeClientHello } from '../src/tls/client-hello.js';
import { ProtocolVersion } from '../src/tls/constants.js';
import { buildClientHello, buildGreaseEchClientHello } from '../src/ech/builder.js';
import { decryptClientHello } from '../src/ech/decrypt.js';
import { generateEchKey } from '../src/keys/generate.js';
import { EchKeySet } from '../src/keys/key-set.js';
import { isTls12Only } from '../src/front/tls12.js';
import { isTls12OnlyMessage } from '../src/front/tls12-scan.js';
import { EchError } from '../src/wire/alert.js';
import { x25519Share } from './helpers/reference-keys.js';
import { echHelloWithTls12Outer } from './helpers/tls12-outer.js';

function outcome(f: () => boolean): string {
  try {
    return String(f());
  } catch (e) {
    if (!(e instanceof EchError)) throw e;
    return e.alert;
  }
}

const full = (body: Uint8Array) => outcome(() => isTls12Only(decodeClientHello(body)));
const scan = (body: Uint8Array) => outcome(() => isTls12OnlyMessage(body));

const key = generateEchKey({ publicName: 'cover.example', configId: 9, maximumNameLength: 32 });

async function corpus(): Promise<Uint8Array[]> {
  const share = [x25519Share()];
  const specs = [
    { supportedVersions: [ProtocolVersion.TLS13] },
    { supportedVersions: [ProtocolVersion.TLS12] },
    { supportedVersions: [0x7a7a, ProtocolVersion.TLS13, ProtocolVersion.TLS12] },
    { supportedVersions: [ProtocolVersion.TLS12, 0x0302] },
  ];
  const out: Uint8Array[] = [];
  for (const s of specs) {
    out.push(encodeClientHello(buildClientHello({ serverName: 'x.example', keyShares: share, ...s })));
    out.push(encodeClientHello(buildGreaseEchClientHello({ serverName: 'x.example', alpn: ['h2'], keyShares: share, ...s })));
  }
  // No supported_versions at all (a pre-1.3 hello), with and without ECH.
  for (const hello of [buildClientHello({ serverName: 'x.example' }), buildGreaseEchClientHello({ serverName: 'x.example' })]) {
    hello.extensions = hello.extensions.filter((e) => e.type !== 0x002b);
    out.push(encodeClientHello(hello));
  }
  out.push((await echHelloWithTls12Outer(key.config, 'secret.example')).subarray(4));
  return out;
}

describe('isTls12OnlyMessage agrees with isTls12Only(decodeClientHello(...))', () => {
  it('on the corpus: same answer, true / false / illegal_parameter all seen; with or without the handshake header', async () => {
    const seen = new Set<string>();
    for (const body of await corpus()) {
      const want = full(body);
      seen.add(want);
      expect(scan(body)).toBe(want);
      const message = new Uint8Array(body.length + 4);
      message.set([1, body.length >> 16, (body.length >> 8) & 0xff, body.length & 0xff]);
      message.set(body, 4);
      expect(scan(message)).toBe(want);
    }
    expect([...seen].sort()).toEqual(['false', 'illegal_parameter', 'true']);
  });

  it('on prefixes and mutations: same verdict and alert', async () => {
    for (const valid of await corpus()) {
      for (let i = 0; i <= valid.length; i += 3) {
        const b = valid.subarray(0, i);
        expect(scan(b), `prefix ${i}`).toBe(full(b));
      }
      fc.assert(
        fc.property(fc.array(fc.tuple(fc.nat(valid.length - 1), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 3 }), (muts) => {
          const b = valid.slice();
          for (const [i, v] of muts) b[i] = v;
          // A mutated first byte of 0x01 would read as a handshake header.
          if (b[0] === 1) b[0] = 3;
          expect(scan(b)).toBe(full(b));
        }),
        { numRuns: 300 },
      );
    }
  });

  it('the TLS 1.2-outer ECH hello really opens (the front end sees it accepted)', async () => {
    const message = await echHelloWithTls12Outer(key.config, 'secret.example');
    const r = await decryptClientHello(message, new EchKeySet([key]));
    expect(r.status).toBe('accepted');
  });
});
