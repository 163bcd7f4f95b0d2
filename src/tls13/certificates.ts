/**
 * Server certificates, as the TLS 1.3 engine uses them. The code lives in
 * `src/keys/certificates.ts`, below both `tls13/` and `keyless/` (the key
 * server signs CertificateVerify with the same `ServerCertificate`), so every
 * import points down; this module re-exports it under its old path.
 *
 * @module
 */
export * from '../keys/certificates.js';
