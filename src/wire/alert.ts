/**
 * TLS alert descriptions (RFC 9846 §6, RFC 9849 §11.2) and the error class
 * family that carries them. Every decode or protocol failure in this library is
 * an {@link EchError}: a `code` for programs and the `alert` the RFC names for
 * the wire. Conversion to an alert record happens in one place, in the TLS
 * engine.
 *
 * @module
 */

/**
 * TLS AlertDescription values used by this library.
 * @group Errors
 */
export const AlertDescription = {
  close_notify: 0,
  unexpected_message: 10,
  bad_record_mac: 20,
  record_overflow: 22,
  handshake_failure: 40,
  bad_certificate: 42,
  unsupported_certificate: 43,
  certificate_revoked: 44,
  certificate_expired: 45,
  certificate_unknown: 46,
  illegal_parameter: 47,
  unknown_ca: 48,
  access_denied: 49,
  decode_error: 50,
  decrypt_error: 51,
  protocol_version: 70,
  insufficient_security: 71,
  internal_error: 80,
  inappropriate_fallback: 86,
  user_canceled: 90,
  missing_extension: 109,
  unsupported_extension: 110,
  unrecognized_name: 112,
  bad_certificate_status_response: 113,
  unknown_psk_identity: 115,
  certificate_required: 116,
  no_application_protocol: 120,
  ech_required: 121,
} as const;

/**
 * Name of a TLS alert description.
 * @group Errors
 */
export type AlertDescription = keyof typeof AlertDescription;

const alertNames = new Map<number, AlertDescription>(
  (Object.entries(AlertDescription) as [AlertDescription, number][]).map(([k, v]) => [v, k]),
);

/**
 * Name of an alert code, or `unknown(N)` for codes this library does not know.
 * @group Errors
 * @example
 * ```ts
 * alertName(50); // 'decode_error'
 * ```
 */
export function alertName(code: number): string {
  return alertNames.get(code) ?? `unknown(${code})`;
}

/**
 * Stable error codes, one per kind of failure.
 * @group Errors
 */
export type EchErrorCode =
  | 'ERR_DECODE'
  | 'ERR_ILLEGAL_PARAMETER'
  | 'ERR_MISSING_EXTENSION'
  | 'ERR_DECRYPT'
  | 'ERR_UNSUPPORTED'
  | 'ERR_INVALID_ARGUMENT'
  | 'ERR_KEY_FILE'
  /** A private key file readable by group or others was refused (src/keys/permissions.ts). */
  | 'ERR_INSECURE_KEY_FILE'
  | 'ERR_PROTOCOL'
  | 'ERR_UNEXPECTED_MESSAGE'
  | 'ERR_HANDSHAKE_FAILURE'
  | 'ERR_INTERNAL'
  | 'ERR_ALERT_RECEIVED'
  | 'ERR_CERTIFICATE'
  | 'ERR_TIMEOUT'
  | 'ERR_ECH_REJECTED'
  | 'ERR_CONFIG'
  /** Keyless mode: no key server answered in time (src/keyless). */
  | 'ERR_KEYLESS_UNAVAILABLE'
  /** Keyless mode: a key server refused or failed the operation (src/keyless). */
  | 'ERR_KEYLESS_REFUSED'
  /** Load balancing: no backend of the route's pool could be reached (src/front/pool.ts). */
  | 'ERR_NO_BACKEND'
  /** Fleet mode: the key-encryption key is unreadable or does not open the fleet's keys (src/fleet). */
  | 'ERR_FLEET_KEK'
  /** Fleet mode: etcd did not answer, or holds no usable keys (src/fleet). */
  | 'ERR_FLEET_UNAVAILABLE';

/**
 * The root of this library's errors: a stable, machine-readable `code`.
 * Every TLS, ECH and key failure is an {@link EchError}, which adds the
 * `alert` the failure maps to on the wire; the DNS publishers' failures
 * (`PublishError`, `ech-server/dns`) never reach a TLS peer, so they carry
 * no alert but the DNS RCODE and TSIG error of the server's answer instead.
 * @group Errors
 * @example
 * ```ts
 * try { await publisher.publish(names, list); }
 * catch (e) { if (e instanceof CodedError) console.error(e.code, e.message); }
 * ```
 */
export class CodedError extends Error {
  /** Stable machine-readable code (`ERR_…`). */
  readonly code: string;

  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'CodedError';
    this.code = code;
  }
}

/**
 * Base error of TLS, ECH and key failures: carries a stable `code` and the
 * TLS `alert` that the failure maps to on the wire.
 * @group Errors
 * @example
 * ```ts
 * try { decodeEchConfigList(bytes); }
 * catch (e) { if (e instanceof EchError) console.log(e.code, e.alert); }
 * ```
 */
export class EchError extends CodedError {
  /** Stable machine-readable code. */
  declare readonly code: EchErrorCode;
  /** The alert the RFC names for this failure. */
  readonly alert: AlertDescription;

  constructor(code: EchErrorCode, alert: AlertDescription, message: string, options?: { cause?: unknown }) {
    super(code, message, options);
    this.name = 'EchError';
    this.alert = alert;
  }
}

/**
 * Malformed input: lengths that do not add up, truncation, trailing bytes.
 * Always `decode_error` (RFC 9846 §6.2).
 * @group Errors
 * @example
 * ```ts
 * throw new DecodeError('truncated u16 vector');
 * ```
 */
export class DecodeError extends EchError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('ERR_DECODE', 'decode_error', message, options);
    this.name = 'DecodeError';
  }
}

/**
 * Well-formed but forbidden input: `illegal_parameter` unless another alert is
 * given.
 * @group Errors
 * @example
 * ```ts
 * throw new IllegalParameterError('duplicate extension 0x0000');
 * ```
 */
export class IllegalParameterError extends EchError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('ERR_ILLEGAL_PARAMETER', 'illegal_parameter', message, options);
    this.name = 'IllegalParameterError';
  }
}

/**
 * A required extension is absent: `missing_extension`.
 * @group Errors
 * @example
 * ```ts
 * throw new MissingExtensionError('no encrypted_client_hello in second ClientHello');
 * ```
 */
export class MissingExtensionError extends EchError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('ERR_MISSING_EXTENSION', 'missing_extension', message, options);
    this.name = 'MissingExtensionError';
  }
}

/**
 * An AEAD open or signature check failed: `decrypt_error`.
 * @group Errors
 * @example
 * ```ts
 * throw new DecryptError('ECH payload did not open with the retained context');
 * ```
 */
export class DecryptError extends EchError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('ERR_DECRYPT', 'decrypt_error', message, options);
    this.name = 'DecryptError';
  }
}

/**
 * A bad argument given to the API (not from the wire): `internal_error` if it
 * ever reaches the wire.
 * @group Errors
 * @example
 * ```ts
 * throw new InvalidArgumentError('publicName must be a DNS name');
 * ```
 */
export class InvalidArgumentError extends EchError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('ERR_INVALID_ARGUMENT', 'internal_error', message, options);
    this.name = 'InvalidArgumentError';
  }
}
