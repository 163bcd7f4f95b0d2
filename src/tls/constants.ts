/**
 * TLS 1.3 and ECH code points (RFC 9846 §4, §B.3; RFC 9849 §11), as
 * `as const` objects with a type of the same name.
 *
 * @module
 */

/**
 * TLS record content types (RFC 9846 §5.1).
 * @group TLS
 */
export const ContentType = {
  change_cipher_spec: 20,
  alert: 21,
  handshake: 22,
  application_data: 23,
} as const;
/** @group TLS */
export type ContentType = (typeof ContentType)[keyof typeof ContentType];

/**
 * Handshake message types (RFC 9846 §4).
 * @group TLS
 */
export const HandshakeType = {
  client_hello: 1,
  server_hello: 2,
  new_session_ticket: 4,
  end_of_early_data: 5,
  encrypted_extensions: 8,
  certificate: 11,
  certificate_request: 13,
  certificate_verify: 15,
  finished: 20,
  key_update: 24,
  message_hash: 254,
} as const;
/** @group TLS */
export type HandshakeType = (typeof HandshakeType)[keyof typeof HandshakeType];

/**
 * Extension types (RFC 9846 §4.2, RFC 7301, RFC 9849 §11.1).
 * @group TLS
 */
export const ExtensionType = {
  server_name: 0,
  max_fragment_length: 1,
  status_request: 5,
  supported_groups: 10,
  ec_point_formats: 11,
  signature_algorithms: 13,
  use_srtp: 14,
  heartbeat: 15,
  application_layer_protocol_negotiation: 16,
  signed_certificate_timestamp: 18,
  client_certificate_type: 19,
  server_certificate_type: 20,
  padding: 21,
  extended_master_secret: 23,
  compress_certificate: 27,
  record_size_limit: 28,
  session_ticket: 35,
  pre_shared_key: 41,
  early_data: 42,
  supported_versions: 43,
  cookie: 44,
  psk_key_exchange_modes: 45,
  certificate_authorities: 47,
  oid_filters: 48,
  post_handshake_auth: 49,
  signature_algorithms_cert: 50,
  key_share: 51,
  renegotiation_info: 0xff01,
  ech_outer_extensions: 0xfd00,
  encrypted_client_hello: 0xfe0d,
} as const;
/** @group TLS */
export type ExtensionType = (typeof ExtensionType)[keyof typeof ExtensionType];

/**
 * Protocol versions.
 * @group TLS
 */
export const ProtocolVersion = {
  TLS10: 0x0301,
  TLS11: 0x0302,
  TLS12: 0x0303,
  TLS13: 0x0304,
} as const;
/** @group TLS */
export type ProtocolVersion = (typeof ProtocolVersion)[keyof typeof ProtocolVersion];

/**
 * TLS 1.3 cipher suites (RFC 9846 §B.4).
 * @group TLS
 */
export const CipherSuite = {
  TLS_AES_128_GCM_SHA256: 0x1301,
  TLS_AES_256_GCM_SHA384: 0x1302,
  TLS_CHACHA20_POLY1305_SHA256: 0x1303,
} as const;
/** @group TLS */
export type CipherSuite = (typeof CipherSuite)[keyof typeof CipherSuite];

/**
 * Named groups (RFC 9846 §4.2.7, draft-ietf-tls-ecdhe-mlkem).
 * @group TLS
 */
export const NamedGroup = {
  secp256r1: 0x0017,
  secp384r1: 0x0018,
  secp521r1: 0x0019,
  x25519: 0x001d,
  x448: 0x001e,
  X25519MLKEM768: 0x11ec,
} as const;
/** @group TLS */
export type NamedGroup = (typeof NamedGroup)[keyof typeof NamedGroup];

/**
 * Signature schemes (RFC 9846 §4.2.3).
 * @group TLS
 */
export const SignatureScheme = {
  rsa_pkcs1_sha256: 0x0401,
  rsa_pkcs1_sha384: 0x0501,
  rsa_pkcs1_sha512: 0x0601,
  ecdsa_secp256r1_sha256: 0x0403,
  ecdsa_secp384r1_sha384: 0x0503,
  ecdsa_secp521r1_sha512: 0x0603,
  rsa_pss_rsae_sha256: 0x0804,
  rsa_pss_rsae_sha384: 0x0805,
  rsa_pss_rsae_sha512: 0x0806,
  ed25519: 0x0807,
  ed448: 0x0808,
  rsa_pss_pss_sha256: 0x0809,
  rsa_pss_pss_sha384: 0x080a,
  rsa_pss_pss_sha512: 0x080b,
} as const;
/** @group TLS */
export type SignatureScheme = (typeof SignatureScheme)[keyof typeof SignatureScheme];

/**
 * PSK key exchange modes (RFC 9846 §4.2.9).
 * @group TLS
 */
export const PskKeyExchangeMode = {
  psk_ke: 0,
  psk_dhe_ke: 1,
} as const;
/** @group TLS */
export type PskKeyExchangeMode = (typeof PskKeyExchangeMode)[keyof typeof PskKeyExchangeMode];

/**
 * ECHClientHello.type (RFC 9849 §5).
 * @group ECH
 */
export const EchClientHelloType = {
  outer: 0,
  inner: 1,
} as const;
/** @group ECH */
export type EchClientHelloType = (typeof EchClientHelloType)[keyof typeof EchClientHelloType];

/**
 * Maximum TLSPlaintext fragment length, 2^14 (RFC 9846 §5.1).
 * @group TLS
 */
export const MAX_PLAINTEXT = 16384;

/**
 * The fixed ServerHello.random of a HelloRetryRequest (RFC 9846 §4.1.3):
 * SHA-256("HelloRetryRequest").
 * @group TLS
 */
export const HELLO_RETRY_REQUEST_RANDOM: Uint8Array = new Uint8Array(
  Buffer.from('cf21ad74e59a6111be1d8c021e65b891c2a211167abb8c5e079e09e2c8a8339c', 'hex'),
);

/**
 * True for the reserved GREASE code points 0x?A?A (RFC 8701).
 * @group TLS
 * @example
 * ```ts
 * isGrease(0x0a0a); // true
 * ```
 */
export function isGrease(v: number): boolean {
  return (v & 0x0f0f) === 0x0a0a && v >> 8 === (v & 0xff);
}
