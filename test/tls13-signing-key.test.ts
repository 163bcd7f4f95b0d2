/**
 * The CertificateVerify signing key is parsed once per certificate, never per
 * handshake (a PEM/PKCS#8 parse costs far more than the ECDSA signature): a
 * regression guard on ServerCertificate and the resolved server config, by
 * counting node:crypto createPrivateKey calls while signing.
 */
import * as nodeCrypto from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';

vi.mock('node:crypto', async (importOriginal) => {
  const orig = await importOriginal<typeof import('node:crypto')>();
  const native = orig as unknown as Record<string, unknown>;
  return { ...orig, encapsulate: native.encapsulate, decapsulate: native.decapsulate, createPrivateKey: vi.fn(orig.createPrivateKey) };
});

const { createPrivateKey } = nodeCrypto;
const { makePki } = await import('./tls13-helpers.js');
const { ServerCertificate, certificateVerifyInput, verifyWithScheme } = await import('../src/tls13/certificates.js');
const { resolveServerConfig } = await import('../src/tls13/config.js');
const { SignatureScheme } = await import('../src/tls/constants.js');

let pki: ReturnType<typeof makePki>;
beforeAll(() => {
  pki = makePki();
});
afterAll(() => pki.cleanup());

describe('signing key parsed once', () => {
  for (const kind of ['ec', 'rsa', 'ed25519'] as const) {
    it(`${kind}: one createPrivateKey per certificate, none per signature`, async () => {
      const leaf = pki.leaf(kind, ['a.test']);
      vi.mocked(createPrivateKey).mockClear();
      const cert = ServerCertificate.from({ key: leaf.key, cert: leaf.cert });
      expect(vi.mocked(createPrivateKey)).toHaveBeenCalledTimes(1);
      const scheme = cert.schemes[0]!;
      for (let i = 0; i < 20; i++) {
        const data = certificateVerifyInput(true, new Uint8Array(32).fill(i));
        const sig = await cert.sign(scheme, data);
        verifyWithScheme(scheme, cert.leaf.publicKey, data, sig);
      }
      expect(vi.mocked(createPrivateKey)).toHaveBeenCalledTimes(1);
    });
  }

  it('a resolved server config signs without parsing the key again', async () => {
    const leaf = pki.leaf('ec', ['b.test']);
    const config = resolveServerConfig({ key: leaf.key, cert: leaf.cert });
    vi.mocked(createPrivateKey).mockClear();
    const pick = config.certificates.select('b.test', [SignatureScheme.ecdsa_secp256r1_sha256]);
    expect(pick).toBeDefined();
    for (let i = 0; i < 20; i++) await pick!.certificate.sign(SignatureScheme.ecdsa_secp256r1_sha256, new Uint8Array(100));
    expect(vi.mocked(createPrivateKey)).not.toHaveBeenCalled();
  });
});
