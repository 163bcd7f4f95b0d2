/**
 * Plaintext alert records for the front end's own errors (before any keys
 * exist), the one place where an error becomes bytes on the wire outside the
 * TLS engine.
 *
 * @module
 */
import { AlertDescription } from '../wire/alert.js';
import { ContentType } from '../tls/constants.js';
import { writeRecords } from '../tls/record.js';

/**
 * A fatal alert as a plaintext record (RFC 9846 §6).
 * @group Front end
 * @example
 * ```ts
 * socket.end(alertRecord('illegal_parameter'));
 * ```
 */
export function alertRecord(alert: AlertDescription): Uint8Array {
  return writeRecords(ContentType.alert, new Uint8Array([2, AlertDescription[alert]]), 0x0303);
}
