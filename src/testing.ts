/**
 * For demos, examples and tests, never production: a throwaway certificate
 * authority ({@link createTestPki}) and a one-request HTTP client over the
 * library's ECH client ({@link echRequest}).
 *
 * @example
 * ```ts
 * import { createTestPki, echRequest } from 'ech-server/testing';
 * const pki = createTestPki();
 * const { cert, key } = pki.issue(['cover.example']);
 * ```
 *
 * @module ech-server/testing
 */
export * from './testing/pki.js';
export * from './testing/request.js';
