/**
 * ech-server: the server side of TLS Encrypted Client Hello (RFC 9849) for
 * Node.js.
 *
 * @module
 */
export * from './wire/alert.js';
export { Reader } from './wire/reader.js';
export { Writer, encode } from './wire/writer.js';
export { toBase64, fromBase64, toHex, fromHex, equalBytes, concatBytes } from './wire/bytes.js';

export * from './tls/constants.js';
export * from './tls/client-hello.js';
export * from './tls/extensions.js';
export * from './tls/record.js';

export * from './ech/config.js';
export * from './ech/decrypt.js';
export * from './ech/inner.js';
export * from './ech/builder.js';
export * from './ech/sealer.js';

export * from './keys/key-set.js';
export * from './keys/generate.js';
export * from './keys/files.js';
export * from './keys/permissions.js';
export * from './keys/pem.js';
export { openerFromSharedSecret } from './keys/opener.js';

export * from './dns/https-record.js';
export * from './keys/manager.js';
export * from './dns/errors.js';
export * from './dns/tsig.js';
export * from './dns/svcb.js';
export * from './dns/transport.js';
export * from './dns/publisher.js';
export * from './dns/rfc2136.js';
export * from './dns/file-publisher.js';
export * from './dns/rotation-config.js';

export * from './tls13/index.js';
export { createEchHook, type EchHookOptions, type EchServerKeys, type EchStatus } from './tls13/ech-hook.js';
export * from './ech/confirmation.js';

export * from './front/front-end.js';
export * from './front/config.js';
export * from './front/serve.js';
export * from './front/routes.js';
export * from './front/passthrough.js';
export * from './front/first-flight.js';
export * from './front/proxy-protocol.js';
export * from './front/metrics.js';
export * from './front/log.js';
export * from './front/ech-status.js';
export * from './front/alerts.js';
export * from './keyless/index.js';
export * from './crypto/hpke.js';
export { hkdfExtract, hkdfExpand, hkdfExpandLabel, deriveSecret, Transcript, type HashName } from './crypto/hkdf.js';
