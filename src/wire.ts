/**
 * The TLS wire format, for code that reads or writes TLS bytes itself:
 * records and handshake reassembly, the ClientHello codec, protocol
 * constants, the bounds-checked byte reader and writer, and the errors
 * that carry their TLS alert. Extension codecs stay internal.
 *
 * @module ech-server/wire
 */
export * from './wire/alert.js';
export { Reader } from './wire/reader.js';
export { Writer, encode } from './wire/writer.js';
export { toBase64, fromBase64, toHex, fromHex, equalBytes, concatBytes } from './wire/bytes.js';
export * from './tls/constants.js';
export * from './tls/record.js';
export * from './tls/client-hello.js';
