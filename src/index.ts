/**
 * ech-server: the server side of TLS Encrypted Client Hello (RFC 9849) for
 * Node.js.
 *
 * This root entry is the small public surface: the TLS server with ECH
 * (`createEchServer` + `createEchHook`), the front end (`EchFrontEnd`), ECH
 * keys and their files, the transport-free decryption core, the ECH client,
 * and the errors. Everything else lives under a subpath:
 *
 * | import | what |
 * | --- | --- |
 * | `ech-server/keys` | key sets, generation, RFC 9934 files, PEM, the rotation manager |
 * | `ech-server/ech` | ECHConfig codec, decryption, inner-hello reconstruction, accept confirmation, the ClientHello builder |
 * | `ech-server/tls13` | the TLS 1.3 engine: server, sans-IO connection, client, certificates, tickets |
 * | `ech-server/front` | the front end: first flight, routing, passthrough, PROXY v2, metrics, logs, `serve` |
 * | `ech-server/dns` | HTTPS records, SVCB, RFC 2136 + TSIG, publishers, rotation config |
 * | `ech-server/keyless` | keyless mode: key server, its client and protocol |
 * | `ech-server/wire` | TLS records, ClientHello, constants, byte reader/writer, alert errors |
 * | `ech-server/hpke` | HPKE (RFC 9180) on node:crypto |
 * | `ech-server/testing` | a throwaway test PKI and an ECH HTTP client, for demos and tests |
 *
 * @module ech-server
 */

// errors
export { CodedError, EchError, AlertDescription, type EchErrorCode } from './wire/alert.js';
export { InsecureKeyFileError } from './keys/permissions.js';
export { PeerAlertError } from './tls13/server-handshake.js';
export { EchRejectedError } from './tls13/client.js';

// keys and configs
export { EchKeySet, type EchKey, type EchPrivateKey } from './keys/key-set.js';
export { generateEchKey, type GenerateEchKeyOptions, type GeneratedEchKey, type KemName } from './keys/generate.js';
export { loadEchKeyDirectory, readEchKeyFile, writeEchKeyFile, parseEchKeyFile, formatEchKeyFile, ensureKeyDirectory } from './keys/files.js';
export { EchKeyManager, type EchKeyManagerOptions, type EchKeyManagerEvents, type EchPublisher } from './keys/manager.js';
export { encodeEchConfigList, decodeEchConfigList, type EchConfig, type DecodedEchConfigList } from './ech/config.js';

// the transport-free decryption core
export { readFirstHandshakeMessage, type HandshakeMessage } from './tls/record.js';
export {
  decryptClientHello,
  decryptSecondClientHello,
  type DecryptOptions,
  type DecryptResult,
  type EchAccepted,
  type EchRejected,
  type EchNotOffered,
  type EchSecondAccepted,
} from './ech/decrypt.js';

// the TLS server with ECH
export { createEchServer, EchServer } from './tls13/server.js';
export { TlsSocket } from './tls13/socket.js';
export type { EchServerOptions, ClientHelloHook } from './tls13/config.js';
export type { CertificateKeyPair } from './tls13/certificates.js';
export { createEchHook, type EchHookOptions, type EchServerKeys, type EchStatus } from './tls13/ech-hook.js';

// the ECH client
export { connectEch, type EchConnectOptions, type EchConnectResult } from './tls13/ech-client.js';

// the front end
export { EchFrontEnd, type FrontEndOptions, type FrontEndRoute, type RouteAction, type FrontEndLimits, type ConnectionInfo } from './front/front-end.js';
export { jsonLines, type JsonLinesOptions, type JsonLinesSink, type LogSink } from './front/log.js';
export type { EchStatusReport } from './front/ech-status.js';
