/**
 * ECH keys: key sets, key generation, RFC 9934 key files and their PEM
 * blocks, and the rotation manager (docs/keys-and-configs.md,
 * docs/rotation.md).
 *
 * @module ech-server/keys
 */
export * from './keys/key-set.js';
export * from './keys/generate.js';
export { ensureKeyDirectory, formatEchKeyFile, loadEchKeyDirectory, parseEchKeyFile, readEchKeyFile, writeEchKeyFile } from './keys/files.js';
export { InsecureKeyFileError, insecureMode, readPrivateKeyFile, type KeyFileOptions } from './keys/permissions.js';
export * from './keys/pem.js';
export * from './keys/manager.js';
export { openerFromSharedSecret } from './keys/opener.js';
