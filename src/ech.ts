/**
 * The ECH protocol pieces, transport-free (RFC 9849): the ECHConfig codec,
 * decryption of ClientHelloOuter, ClientHelloInner reconstruction, the accept
 * confirmation, and the client side's ClientHello builder and HPKE sealer.
 *
 * @module ech-server/ech
 */
export * from './ech/config.js';
export * from './ech/decrypt.js';
export * from './ech/inner.js';
export * from './ech/builder.js';
export * from './ech/sealer.js';
export * from './ech/confirmation.js';
