/**
 * Keyless mode (docs/keyless.md): the key server, its client for front ends,
 * the wire protocol, ECHCONFIG-only key directories and the configuration
 * files. One line in `src/index.ts` (`export * from './keyless/index.js'`)
 * makes it public.
 *
 * @module
 */
export { KeylessClient, KeylessError, type KeylessClientOptions, type KeyServerAddress } from './client.js';
export { KeyServer, type KeyServerOptions, type KeylessClientPolicy, type KeyServerRefusal } from './server.js';
export {
  KEYLESS_VERSION,
  MAX_FRAME as KEYLESS_MAX_FRAME,
  KeylessOp,
  KeylessStatus,
  keylessStatusName,
  encodeRequest as encodeKeylessRequest,
  decodeRequest as decodeKeylessRequest,
  encodeResponse as encodeKeylessResponse,
  decodeResponse as decodeKeylessResponse,
  FrameDecoder as KeylessFrameDecoder,
  echKeyId,
  tlsKeyId,
  isCertificateVerifyInput,
  type KeylessRequest,
  type KeylessResponse,
} from './protocol.js';
export { parseKeylessEchKeyFile, loadKeylessEchKeyDirectory, formatPublicEchFile } from './files.js';
export { validateKeylessSection, keylessClientFromConfig, type KeylessServeConfig } from './serve-config.js';
export {
  KeyServerConfigError,
  validateKeyServerConfig,
  loadKeyServerConfig,
  keyServerOptionsFromConfig,
  auditSink,
  type KeyServerConfig,
} from './keyserver-config.js';
