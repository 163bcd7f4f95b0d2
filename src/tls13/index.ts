/**
 * The library's own TLS 1.3 engine (RFC 9846): server (and client)
 * handshake, key schedule, record layer, tickets, and the Node-facing
 * `createEchServer` / `TlsSocket`. See `server-handshake.ts` for the ECH
 * seams (ClientHello hook, accept confirmations, starting from a pre-read
 * ClientHello).
 *
 * @module
 */
export { createEchServer, EchServer } from './server.js';
export { TlsSocket, readClientHelloFrom, type TlsSocketStart, type CipherInfo } from './socket.js';
export {
  ServerConnection,
  PeerAlertError,
  MAX_PSK_IDENTITIES,
  type ConnectionSink,
  type HandshakeInfo,
  type ServerState,
} from './server-handshake.js';
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
} from './config.js';
export { verifyServerChain, CertificateError, type CertificateFailure } from './path-validation.js';
export {
  ClientConnection,
  type ClientOptions,
  type ClientSink,
  type ClientSession,
  type ClientHandshakeInfo,
  type ClientEchOffer,
} from './client.js';
export { connectEch, chooseEchConfig, EchRejectedError, type EchConnectOptions, type EchConnectResult, type EchChoice } from './ech-client.js';
export { connectTls13, TlsClientSocket, type ConnectOptions } from './client-socket.js';
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
} from './certificates.js';
export { KeySchedule, trafficKeys, nextTrafficSecret, finishedVerifyData, resumptionPsk, exportKeyingMaterial, type TrafficKeys } from './key-schedule.js';
export { RecordLayer, RecordProtection, MAX_EMPTY_RECORDS, type PlainRecord } from './record-layer.js';
export { SUITES, suiteById, parseCipherList, type CipherSuiteParams } from './suites.js';
export {
  SUPPORTED_GROUPS,
  DEFAULT_CLIENT_GROUPS,
  generateEphemeralKey,
  isPostQuantumGroup,
  parseEcdhCurve,
  groupName,
  serverKeyShare,
  type EphemeralKey,
} from './groups.js';
export { TicketKeys, type TicketState } from './tickets.js';
