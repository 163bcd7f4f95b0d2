// Test-only: an ECH key lookup and sealer built entirely on hpke-js, the
// reference implementation, so the decryption core is tested against HPKE
// code nobody here wrote. Keys are generated at test time.
import { AeadId, CipherSuite, KdfId, KemId } from 'hpke-js';
import { randomBytes, type webcrypto } from 'node:crypto';
import { MlKem768 } from '@hpke/ml-kem';
import { XWing } from '@hpke/hybridkem-x-wing';
import { type EchConfig, makeEchConfig } from '../../src/ech/config.js';
import type { EchKeyCandidate, EchKeyLookup, EchOpener } from '../../src/ech/decrypt.js';
import type { EchSealerFactory } from '../../src/ech/builder.js';
import type { HpkeSymmetricCipherSuite } from '../../src/ech/config.js';

export function hpkeJsSuite(kem: number, s: HpkeSymmetricCipherSuite): CipherSuite {
  // The post-quantum KEMs are hpke-js submodules (@hpke/ml-kem, @hpke/hybridkem-x-wing).
  const k = kem === 0x0041 ? new MlKem768() : kem === 0x647a ? new XWing() : (kem as KemId);
  return new CipherSuite({ kem: k as KemId, kdf: s.kdfId as KdfId, aead: s.aeadId as AeadId });
}

export interface ReferenceKey {
  config: EchConfig;
  privateKey: webcrypto.CryptoKey;
}

export async function referenceKey(opts: {
  configId?: number;
  publicName?: string;
  kem?: number;
  suites?: HpkeSymmetricCipherSuite[];
  maximumNameLength?: number;
}): Promise<ReferenceKey> {
  const kem = opts.kem ?? KemId.DhkemX25519HkdfSha256;
  const suites = opts.suites ?? [{ kdfId: KdfId.HkdfSha256, aeadId: AeadId.Aes128Gcm }];
  const s = hpkeJsSuite(kem, suites[0]!);
  const kp = await s.kem.generateKeyPair();
  const publicKey = new Uint8Array(await s.kem.serializePublicKey(kp.publicKey));
  const config = makeEchConfig({
    configId: opts.configId ?? randomBytes(1)[0]!,
    kemId: kem,
    publicKey,
    cipherSuites: suites,
    maximumNameLength: opts.maximumNameLength ?? 0,
    publicName: opts.publicName ?? 'public.example',
    extensions: [],
  });
  return { config, privateKey: kp.privateKey };
}

export function referenceLookup(keys: ReferenceKey[]): EchKeyLookup & { opens: number } {
  const lookup = {
    opens: 0,
    candidates(configId: number, suite: HpkeSymmetricCipherSuite): EchKeyCandidate[] {
      return this.allCandidates(suite).filter((c) => c.config.configId === configId);
    },
    allCandidates(suite: HpkeSymmetricCipherSuite): EchKeyCandidate[] {
      return keys
        .filter((k) => k.config.cipherSuites.some((s) => s.kdfId === suite.kdfId && s.aeadId === suite.aeadId))
        .map((k) => ({
          config: k.config,
          async setupRecipient(enc: Uint8Array, st: HpkeSymmetricCipherSuite): Promise<EchOpener> {
            lookup.opens++;
            const info = new Uint8Array([...Buffer.from('tls ech\0', 'latin1'), ...k.config.raw]);
            const ctx = await hpkeJsSuite(k.config.kemId, st).createRecipientContext({
              recipientKey: k.privateKey,
              enc: enc.slice().buffer,
              info: info.buffer,
            });
            return {
              async open(aad: Uint8Array, ct: Uint8Array) {
                return new Uint8Array(await ctx.open(ct.slice().buffer, aad.slice().buffer));
              },
            };
          },
        }));
    },
  };
  return lookup;
}

export const referenceSealer: EchSealerFactory = async (config, suite, info) => {
  const s = hpkeJsSuite(config.kemId, suite);
  const pk = await s.kem.deserializePublicKey(config.publicKey.slice().buffer);
  const ctx = await s.createSenderContext({ recipientPublicKey: pk, info: info.slice().buffer });
  return {
    enc: new Uint8Array(ctx.enc),
    async seal(aad: Uint8Array, pt: Uint8Array) {
      return new Uint8Array(await ctx.seal(pt.slice().buffer, aad.slice().buffer));
    },
  };
};

export function x25519Share(): { group: number; keyExchange: Uint8Array } {
  return { group: 0x001d, keyExchange: new Uint8Array(randomBytes(32)) };
}
