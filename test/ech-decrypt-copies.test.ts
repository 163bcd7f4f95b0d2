// ClientHelloOuter is copied once by the decryption core: the copy serves
// as ClientHelloOuterAAD (payload zeroed in place, RFC 9849 §5.2) while the
// payload opens, and gets its payload back before the result is returned,
// so result.outer is the ClientHelloOuter received. Counted by spying on
// copyBytes; checked on the accepted, the decryption-failed and the
// remote-key (asynchronous) paths.
import { describe, expect, it, vi } from 'vitest';

vi.mock('../src/wire/bytes.js', async (importOriginal) => {
  const orig = await importOriginal<typeof import('../src/wire/bytes.js')>();
  return { ...orig, copyBytes: vi.fn(orig.copyBytes) };
});

const bytes = await import('../src/wire/bytes.js');
const { EchKeySet } = await import('../src/keys/key-set.js');
const { generateEchKey } = await import('../src/keys/generate.js');
const { buildEchClientHello } = await import('../src/ech/builder.js');
const { createEchSealer } = await import('../src/ech/sealer.js');
const { decryptClientHello, decryptClientHelloNow } = await import('../src/ech/decrypt.js');
const { decodeClientHello, findExtension } = await import('../src/tls/client-hello.js');
const { ExtensionType } = await import('../src/tls/constants.js');
const { referenceKey, referenceLookup, referenceSealer, x25519Share } = await import('./helpers/reference-keys.js');

const copyBytes = vi.mocked(bytes.copyBytes);
const spec = () => ({ serverName: 'secret.example', alpn: ['h2'], keyShares: [x25519Share()] });

/** copyBytes calls on a whole ClientHelloOuter body (of the message `m`) since the last mockClear. */
const bodyCopies = (m: Uint8Array) => copyBytes.mock.calls.filter(([b, start, end]) => (end ?? b.length) - (start ?? 0) === m.length - 4).length;

/** The ECH extension of the ClientHelloOuter message `m`, as received. */
const echOf = (m: Uint8Array) => findExtension(decodeClientHello(m.subarray(4)).extensions, ExtensionType.encrypted_client_hello)!.data;

describe('ClientHelloOuter copies in the decryption core', () => {
  const key = generateEchKey({ publicName: 'cover.example', configId: 0x32, maximumNameLength: 32 });

  it('accepted: one copy, and result.outer keeps the payload', async () => {
    const message = (await buildEchClientHello(spec(), { config: key.config, sealer: createEchSealer })).outerMessage;
    const before = message.slice();
    const keys = new EchKeySet([key]);
    copyBytes.mockClear();
    const r = decryptClientHelloNow(message, keys);
    expect(bodyCopies(message)).toBe(1);
    if (r instanceof Promise || r.status !== 'accepted') throw new Error('expected accepted synchronously');
    expect(r.innerServerName).toBe('secret.example');
    expect(findExtension(r.outer.extensions, ExtensionType.encrypted_client_hello)!.data).toEqual(echOf(before));
    expect(message).toEqual(before); // the caller's bytes are untouched
  });

  it('decryption failed: one copy, and result.outer keeps the payload', async () => {
    const message = (await buildEchClientHello(spec(), { config: key.config, sealer: createEchSealer })).outerMessage;
    // Same config_id and suite, another key: the candidate does not open it.
    const keys = new EchKeySet([generateEchKey({ publicName: 'cover.example', configId: 0x32 })]);
    copyBytes.mockClear();
    const r = decryptClientHelloNow(message, keys);
    expect(bodyCopies(message)).toBe(1);
    if (r instanceof Promise || r.status !== 'rejected') throw new Error('expected rejected synchronously');
    expect(r.reason).toBe('decryption-failed');
    expect(findExtension(r.outer.extensions, ExtensionType.encrypted_client_hello)!.data).toEqual(echOf(message));
  });

  it('a remote key: the AAD is right and result.outer gets its payload back when the promise settles', async () => {
    const ref = await referenceKey({ configId: 9, publicName: 'cover.example', maximumNameLength: 32 });
    const message = (await buildEchClientHello(spec(), { config: ref.config, sealer: referenceSealer })).outerMessage;
    const r = await decryptClientHello(message, referenceLookup([ref]));
    if (r.status !== 'accepted') throw new Error(`expected accepted, got ${r.status}`);
    expect(r.innerServerName).toBe('secret.example');
    expect(findExtension(r.outer.extensions, ExtensionType.encrypted_client_hello)!.data).toEqual(echOf(message));
  });
});
