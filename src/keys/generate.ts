/**
 * ECH key generation: a fresh HPKE key pair and its ECHConfig (RFC 9849 §4).
 *
 * @module
 */
import { AeadId, KdfId, KemId } from 'hpke-js';
import { InvalidArgumentError } from '../wire/alert.js';
import { type EchConfig, type HpkeSymmetricCipherSuite, makeEchConfig, publicNameProblem } from '../ech/config.js';
import type { Extension } from '../tls/client-hello.js';
import { generateKemKeyPair, loadKemPrivateKey, PqKemId } from '../crypto/kem.js';
import type { EchKey } from './key-set.js';

/**
 * KEM names accepted by the CLI and options: the DHKEMs and the
 * post-quantum KEMs of draft-ietf-hpke-pq (`ml-kem-768` 0x0041, `x-wing`
 * 0x647a). No browser accepts a post-quantum ECHConfig yet: publish one
 * next to a classical config (clients skip KEMs they do not support).
 * @group Keys
 */
export const KemName = {
  x25519: KemId.DhkemX25519HkdfSha256,
  p256: KemId.DhkemP256HkdfSha256,
  p384: KemId.DhkemP384HkdfSha384,
  'ml-kem-768': PqKemId.MlKem768,
  'x-wing': PqKemId.XWing,
} as const;
/** @group Keys */
export type KemName = keyof typeof KemName;

/**
 * Default HPKE cipher suites offered in a new ECHConfig for each KEM: the
 * KEM's own hash for the KDF, and every AEAD this library opens natively.
 * @group Keys
 */
export function defaultCipherSuites(kem: number): HpkeSymmetricCipherSuite[] {
  const kdfId = kem === KemId.DhkemP384HkdfSha384 ? KdfId.HkdfSha384 : KdfId.HkdfSha256;
  return [
    { kdfId, aeadId: AeadId.Aes128Gcm },
    { kdfId, aeadId: AeadId.Aes256Gcm },
    { kdfId, aeadId: AeadId.Chacha20Poly1305 },
  ];
}

/**
 * Options of {@link generateEchKey}.
 * @group Keys
 */
export interface GenerateEchKeyOptions {
  /** The client-facing server's DNS name (ECHConfig public_name). */
  publicName: string;
  /** KEM; default `x25519`. */
  kem?: KemName | number;
  /** HPKE suites; default {@link defaultCipherSuites}. */
  cipherSuites?: HpkeSymmetricCipherSuite[];
  /** maximum_name_length (0-255); default 0 ("not known"). */
  maximumNameLength?: number;
  /** config_id; default random. Use {@link EchKeySet.unusedConfigId} to avoid collisions. */
  configId?: number;
  /** ECHConfig extensions. */
  extensions?: Extension[];
  /** Whether the key goes in retry_configs; default true. */
  retry?: boolean;
}

/**
 * A generated key: the {@link EchKey} plus the raw private key, for writing
 * to a key file.
 * @group Keys
 */
export interface GeneratedEchKey extends EchKey {
  /** Raw private key bytes (secret; write with {@link writeEchKeyFile}). */
  privateKeyRaw: Uint8Array;
}

/**
 * Generate an ECH key pair and its ECHConfig.
 * @group Keys
 * @example
 * ```ts
 * const key = generateEchKey({ publicName: 'cover.example', kem: 'x25519' });
 * console.log(key.config.configId);
 * ```
 */
export function generateEchKey(opts: GenerateEchKeyOptions): GeneratedEchKey {
  const kem = typeof opts.kem === 'number' ? opts.kem : KemName[opts.kem ?? 'x25519'];
  if (kem === undefined) throw new InvalidArgumentError(`unknown KEM '${String(opts.kem)}' (use ${Object.keys(KemName).join(', ')})`);
  const problem = publicNameProblem(opts.publicName);
  if (problem) throw new InvalidArgumentError(`invalid public name '${opts.publicName}': ${problem}`);
  const mnl = opts.maximumNameLength ?? 0;
  if (!Number.isInteger(mnl) || mnl < 0 || mnl > 255) throw new InvalidArgumentError('maximumNameLength must be 0 to 255');
  const configId = opts.configId ?? Math.floor(Math.random() * 256);
  if (!Number.isInteger(configId) || configId < 0 || configId > 255) throw new InvalidArgumentError('configId must be 0 to 255');
  const pair = generateKemKeyPair(kem);
  const config: EchConfig = makeEchConfig({
    configId,
    kemId: kem,
    publicKey: pair.publicKey,
    cipherSuites: opts.cipherSuites ?? defaultCipherSuites(kem),
    maximumNameLength: mnl,
    publicName: opts.publicName,
    extensions: opts.extensions ?? [],
  });
  return { config, privateKey: loadKemPrivateKey(kem, pair.privateKey), privateKeyRaw: pair.privateKey, retry: opts.retry ?? true };
}
