/**
 * The default HPKE sender for the ECH ClientHello builder, on node:crypto.
 *
 * @module
 */
import { setupBaseSender } from '../crypto/hpke.js';
import type { EchSealerFactory } from './builder.js';

/**
 * `SetupBaseS(pkR, "tls ech" || 0x00 || ECHConfig)` with the library's HPKE
 * (RFC 9849 §6.1).
 * @group ECH client
 * @example
 * ```ts
 * const hello = await buildEchClientHello(spec, { config, sealer: createEchSealer });
 * ```
 */
export const createEchSealer: EchSealerFactory = (config, suite, info) =>
  setupBaseSender({ kem: config.kemId, kdf: suite.kdfId, aead: suite.aeadId }, config.publicKey, info);
