/**
 * HPKE (RFC 9180) base mode on node:crypto, cross-checked against hpke-js:
 * KEM keys, sender and recipient contexts, and the identifiers.
 *
 * @module ech-server/hpke
 */
export * from './crypto/hpke.js';
