/**
 * The library's own TLS 1.3 engine (RFC 9846): the Node-facing server
 * (`createEchServer`, `TlsSocket`), the sans-IO `ServerConnection` for other
 * transports, the ECH ClientHello hook, the client (`connectTls13`,
 * `connectEch`), certificates and tickets (docs/shared-mode.md,
 * docs/ech-client.md). The record layer and key schedule stay internal.
 *
 * @module ech-server/tls13
 */
export { createEchServer, EchServer } from './tls13/server.js';
export { TlsSocket, readClientHelloFrom, type TlsSocketStart, type CipherInfo } from './tls13/socket.js';
export { ServerConnection, PeerAlertError, MAX_PSK_IDENTITIES, type ConnectionSink, type HandshakeInfo, type ServerState } from './tls13/server-handshake.js';
export {
  resolveServerConfig,
  MAX_SESSION_TICKETS,
  type EchServerOptions,
  type ServerConfig,
  type ClientHelloHook,
  type ClientHelloHookInfo,
  type ClientHelloHookResult,
  type AcceptConfirmation,
  type SniCallback,
} from './tls13/config.js';
export { createEchHook, type EchHookOptions, type EchServerKeys, type EchStatus } from './tls13/ech-hook.js';
export {
  ClientConnection,
  type ClientOptions,
  type ClientSink,
  type ClientSession,
  type ClientHandshakeInfo,
  type ClientEchOffer,
} from './tls13/client.js';
export { verifyServerChain, CertificateError, type CertificateFailure } from './tls13/path-validation.js';
export { MAX_EMPTY_RECORDS } from './tls13/record-layer.js';
export { connectEch, chooseEchConfig, EchRejectedError, type EchConnectOptions, type EchConnectResult, type EchChoice } from './tls13/ech-client.js';
export { connectTls13, TlsClientSocket, type ConnectOptions } from './tls13/client-socket.js';
export {
  ServerCertificate,
  CertificateStore,
  certificateNames,
  certificateVerifyInput,
  signWithScheme,
  verifyWithScheme,
  type CertificateKeyPair,
  type CertificateKeyType,
  type PrivateKeyInput,
} from './tls13/certificates.js';
export { SUITES, suiteById, parseCipherList, type CipherSuiteParams } from './tls13/suites.js';
export { SUPPORTED_GROUPS, parseEcdhCurve, groupName } from './tls13/groups.js';
export { TicketKeys, type TicketState } from './tls13/tickets.js';
