/**
 * Keyless mode (docs/keyless.md): the key server, its client for front
 * ends, the wire protocol, ECHCONFIG-only key directories and the
 * configuration files.
 *
 * @module ech-server/keyless
 */
export * from './keyless/index.js';
