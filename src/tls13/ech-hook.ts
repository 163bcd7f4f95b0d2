/**
 * ECH inside the TLS 1.3 handshake (RFC 9849 §7): the {@link ClientHelloHook}
 * that decrypts ClientHelloOuter, continues on ClientHelloInner with the
 * accept confirmation, or rejects with `retry_configs`; and the backend role
 * that confirms ECH for an inner ClientHello forwarded by a split-mode front
 * end.
 *
 * @module
 */
import { IllegalParameterError } from '../wire/alert.js';
import { isPromiseLike } from '../wire/thenable.js';
import { ExtensionType } from '../tls/constants.js';
import { findExtension, type Extension, type ParsedClientHello } from '../tls/client-hello.js';
import { decodeEchClientHello, decodeServerName } from '../tls/extensions.js';
import {
  type DecryptResult,
  type EchAccepted,
  type EchKeyLookup,
  decryptClientHelloNow,
  decryptSecondClientHello,
} from '../ech/decrypt.js';
import { acceptConfirmation, hrrAcceptConfirmation, ECH_CONFIRMATION_LENGTH } from '../ech/confirmation.js';
import type { ClientHelloHook, ClientHelloHookResult } from './config.js';

/**
 * What a connection reports about ECH (`socket.echStatus`):
 * - `accepted`: the handshake ran on ClientHelloInner;
 * - `rejected`: ECH was offered with a config_id this server has, but the
 *   payload did not open (stale key, tampering);
 * - `grease`: ECH was offered with a config_id and suite no key of this server
 *   has (GREASE, or a long-retired key);
 * - `not-offered`: no `encrypted_client_hello` extension.
 * @group Server
 */
export type EchStatus = 'accepted' | 'rejected' | 'grease' | 'not-offered';

/**
 * A key set as the hook uses it: the decryption lookup plus the retry list.
 * `EchKeySet` implements it.
 * @group Server
 */
export interface EchServerKeys extends EchKeyLookup {
  /** The ECHConfigList sent as retry_configs, or `undefined` for none. */
  retryConfigList(): Uint8Array | undefined;
}

/**
 * Options of {@link createEchHook}.
 * @group Server
 */
export interface EchHookOptions {
  /**
   * `client-facing` (shared mode: decrypt ClientHelloOuter; default) or
   * `backend` (split mode: confirm ECH for an inner ClientHello forwarded by
   * a client-facing server).
   */
  role?: 'client-facing' | 'backend';
  /** The key set, or a function returning the current one (hot swap). Required for `client-facing`. */
  keys?: EchServerKeys | (() => EchServerKeys);
  /** Try every key whatever the config_id (RFC 9849 §7.1 method 2). */
  trialDecryption?: boolean;
  /**
   * Backend role: treat an outer-type extension as GREASE (continue without
   * ECH) instead of aborting with `illegal_parameter` (RFC 9849 §7). For a
   * backend behind a front end that forwards GREASE hellos
   * (`PassthroughTarget.forwardGrease`); such a front end forwards real ECH
   * only as ClientHelloInner. Default false.
   */
  acceptGrease?: boolean;
  /**
   * The decryption result of this connection's first ClientHello, when a
   * front end already decrypted it (to route before the handshake): the hook
   * then does not decrypt it again. Only for a per-connection hook.
   */
  first?: DecryptResult;
}

interface HookState {
  ech?: EchAccepted;
  status?: EchStatus;
  /** Backend role: the first ClientHello carried the inner extension. */
  backendInner?: boolean;
}

function retryExtension(keys: EchServerKeys): Extension[] {
  const list = keys.retryConfigList();
  // RFC 9849 §7.1: "If the server is configured with any ECHConfigs, it MUST
  // include the "encrypted_client_hello" extension in its
  // EncryptedExtensions with the "retry_configs" field set to one or more
  // ECHConfig structures with up-to-date keys."
  return list ? [{ type: ExtensionType.encrypted_client_hello, data: list }] : [];
}

function confirmations(innerRandom: Uint8Array): Pick<ClientHelloHookResult, 'serverHelloConfirmation' | 'helloRetryRequestExtension'> {
  return {
    // RFC 9849 §7.2: the last 8 bytes of ServerHello.random.
    serverHelloConfirmation: (transcript, hash) => acceptConfirmation(hash, innerRandom, transcript),
    // RFC 9849 §7.2.1: a HelloRetryRequest carries the signal in an ECH
    // extension of 8 bytes.
    helloRetryRequestExtension: {
      type: ExtensionType.encrypted_client_hello,
      length: ECH_CONFIRMATION_LENGTH,
      compute: (transcript, hash) => hrrAcceptConfirmation(hash, innerRandom, transcript),
    },
  };
}

/** ClientHelloInner.random of a ClientHello handshake message (header, legacy_version, then random). */
const innerRandom = (message: Uint8Array): Uint8Array => message.subarray(6, 38);

/**
 * ClientHelloInner as the hook hands it over: its message, and its decoded
 * form read from the decryption result when the engine asks (a getter on
 * the class, not one made per connection).
 */
class DecodedInner {
  readonly message: Uint8Array;
  readonly #r: { readonly inner: ParsedClientHello };
  constructor(r: { innerMessage: Uint8Array; readonly inner: ParsedClientHello }) {
    this.message = r.innerMessage;
    this.#r = r;
  }
  get hello(): ParsedClientHello {
    return this.#r.inner;
  }
}

/**
 * ClientHelloInner as the decryption rebuilt it: its own buffer (nobody else
 * writes it), framed, and decoded lazily in place (no copy) — the handshake
 * takes it as is instead of re-framing and decoding it again.
 */
function decodedInner(r: { innerMessage: Uint8Array; readonly inner: ParsedClientHello }): NonNullable<ClientHelloHookResult['decodedClientHello']> {
  return new DecodedInner(r);
}

/**
 * The hook's answer to a ClientHello whose ECH was accepted (the first, or
 * the second after a HelloRetryRequest): ClientHelloInner, its decoded form
 * and the acceptance signals on its random, in one object.
 */
function acceptedInner(r: { innerMessage: Uint8Array; readonly inner: ParsedClientHello }, attributes: Record<string, unknown> | undefined): ClientHelloHookResult {
  const c = confirmations(innerRandom(r.innerMessage));
  return {
    clientHello: r.innerMessage.subarray(4),
    decodedClientHello: decodedInner(r),
    serverHelloConfirmation: c.serverHelloConfirmation,
    helloRetryRequestExtension: c.helloRetryRequestExtension,
    attributes,
  };
}

/** {@link clientFacingHook}'s answer to the first ClientHello, decrypted (or not) into `r`. */
function onFirst(r: DecryptResult, s: HookState, keys: EchServerKeys): ClientHelloHookResult {
  if (r.status === 'accepted') {
    s.ech = r;
    s.status = 'accepted';
    return acceptedInner(r, {
      echStatus: 'accepted',
      echConfigId: r.configId,
      outerServerName: r.outerServerName,
      innerServerName: r.innerServerName,
    });
  }
  if (r.status === 'rejected') {
    s.status = r.reason === 'no-matching-config' ? 'grease' : 'rejected';
    return {
      encryptedExtensions: retryExtension(keys),
      attributes: { echStatus: s.status, echConfigId: r.configId, outerServerName: r.outerServerName },
    };
  }
  s.status = 'not-offered';
  return { attributes: { echStatus: 'not-offered', outerServerName: r.outerServerName } };
}

function clientFacingHook(opts: EchHookOptions): ClientHelloHook {
  const keysOption = opts.keys;
  if (!keysOption) throw new TypeError('createEchHook: `keys` is required for the client-facing role');
  const first = opts.first;
  // A front end makes a hook per connection (`first`): nothing more is made
  // for it than the hook itself.
  const decryptOptions = first ? undefined : { trialDecryption: opts.trialDecryption ?? false };
  // Synchronous unless a remote key makes the decryption wait: the result
  // itself, not a promise, when the front end already decrypted the first
  // ClientHello (`first`) or the keys are local.
  return ({ message, retry, state }) => {
    const s = state as HookState;
    const keys = typeof keysOption === 'function' ? keysOption() : keysOption;
    if (!retry) {
      const r = first ?? decryptClientHelloNow(message, keys, decryptOptions);
      return isPromiseLike(r) ? r.then((v) => onFirst(v, s, keys)) : onFirst(r, s, keys);
    }
    // The ClientHello after a HelloRetryRequest (RFC 9849 §7.1.1).
    if (s.ech) {
      return decryptSecondClientHello(message, s.ech).then((second) => acceptedInner(second, undefined));
    }
    // "If the client-facing server rejected ECH, or if the first ClientHello
    // did not include an "encrypted_client_hello" extension, the
    // client-facing server proceeds with the connection as usual. The server
    // does not decrypt the second ClientHello's ECHClientHello.payload value"
    // — and still sends retry_configs when it rejected.
    return s.status === 'rejected' || s.status === 'grease' ? { encryptedExtensions: retryExtension(keys) } : undefined;
  };
}

function backendHook(acceptGrease: boolean): ClientHelloHook {
  return ({ clientHello, retry, state }) => {
    const s = state as HookState;
    const ext = findExtension(clientHello.extensions, ExtensionType.encrypted_client_hello);
    const sniExt = findExtension(clientHello.extensions, ExtensionType.server_name);
    const servername = sniExt ? decodeServerName(sniExt.data) : undefined;
    if (!ext) {
      // A second ClientHello must keep the inner extension if the first had it.
      if (retry && s.backendInner) throw new IllegalParameterError('second ClientHello dropped the inner encrypted_client_hello');
      return retry ? undefined : { attributes: { echStatus: 'not-offered' } };
    }
    const ech = decodeEchClientHello(ext.data);
    if (ech.type === 'outer') {
      // NOTE: with acceptGrease the front end vouches that an outer-type
      // extension reaching us is GREASE (it forwards real ECH decrypted).
      if (acceptGrease) return retry ? undefined : { attributes: { echStatus: 'grease', echRole: 'backend' } };
      // RFC 9849 §7: "in split mode, a backend server which receives a
      // ClientHello with ECHClientHello.type of outer MUST abort with an
      // "illegal_parameter" alert."
      throw new IllegalParameterError('outer-type encrypted_client_hello received by a backend server');
    }
    // RFC 9849 §7.2: "Upon receipt of an "encrypted_client_hello" extension
    // of type inner in a ClientHello, if the backend server negotiates TLS
    // 1.3 or higher, then it MUST confirm ECH acceptance".
    s.backendInner = true;
    return {
      ...confirmations(clientHello.random),
      attributes: retry ? undefined : { echStatus: 'accepted', innerServerName: servername, echRole: 'backend' },
    };
  };
}

/**
 * The ECH {@link ClientHelloHook} for `createEchServer({ onClientHello })`.
 *
 * - `client-facing` (default, shared mode): decrypts ClientHelloOuter with the
 *   key set; on success the handshake continues on ClientHelloInner (its SNI
 *   picks the certificate, its ALPN list is negotiated) with the accept
 *   confirmation in ServerHello.random (and in the HelloRetryRequest); on
 *   failure the handshake completes on ClientHelloOuter, for the public name,
 *   with `retry_configs`. A ClientHello carrying an inner-type extension is
 *   `illegal_parameter` (§7).
 * - `backend` (split mode): a ClientHello with an inner-type extension is
 *   answered with the accept confirmation; an outer-type one is
 *   `illegal_parameter`.
 *
 * The connection's attributes get `echStatus` ({@link EchStatus}),
 * `outerServerName` and `innerServerName`.
 * @group Server
 * @example
 * ```ts
 * const keys = await loadEchKeyDirectory('/etc/ech');
 * const server = createEchServer({ key, cert, certificates, onClientHello: createEchHook({ keys }) }, onSocket);
 * ```
 */
export function createEchHook(opts: EchHookOptions = {}): ClientHelloHook {
  return (opts.role ?? 'client-facing') === 'backend' ? backendHook(opts.acceptGrease ?? false) : clientFacingHook(opts);
}
