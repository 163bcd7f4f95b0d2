/**
 * DNS for ECH (docs/rotation.md): HTTPS records and their SVCB rdata,
 * RFC 2136 dynamic updates signed with TSIG, zone-file publishing, and the
 * rotation configuration.
 *
 * @module ech-server/dns
 */
export * from './dns/https-record.js';
export * from './dns/svcb.js';
export * from './dns/errors.js';
export * from './dns/tsig.js';
export * from './dns/transport.js';
export * from './dns/publisher.js';
export * from './dns/rfc2136.js';
export * from './dns/file-publisher.js';
export * from './dns/rotation-config.js';
