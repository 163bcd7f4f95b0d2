/**
 * The client-facing server's decryption core (RFC 9849 §7.1, §7.1.1): from the
 * bytes of a ClientHelloOuter to accepted / rejected / not-offered, or a typed
 * error with the alert the RFC names. Transport-free: no sockets, and no
 * knowledge of how keys are stored — keys come through {@link EchKeyLookup}.
 *
 * @module
 */
import { DecodeError, EchError, IllegalParameterError, MissingExtensionError, DecryptError } from '../wire/alert.js';
import { EchClientHelloType, HandshakeType, ProtocolVersion, isGrease } from '../tls/constants.js';
import { type ClientHelloScan, ExtensionList, scanClientHello } from '../tls/scan.js';
import { type ParsedClientHello, decodeClientHello, parseClientHelloOwned } from '../tls/client-hello.js';
import { decodeAlpnIn, decodeServerNameIn, decodeSupportedVersionsIn } from '../tls/extensions.js';
import type { EchConfig, HpkeSymmetricCipherSuite } from './config.js';
import { type RebuiltClientHelloInner, rebuildClientHelloInner } from './inner.js';
import { copyBytes } from '../wire/bytes.js';
import { isPromiseLike } from '../wire/thenable.js';

/**
 * An HPKE recipient context set up for one ClientHelloOuter: opens the first
 * payload and, after a HelloRetryRequest, the second (sequence number 1).
 * @group ECH
 */
export interface EchOpener {
  /** Open `ciphertext` with `aad`; throws (any error) if it does not open. */
  open(aad: Uint8Array, ciphertext: Uint8Array): Uint8Array | Promise<Uint8Array>;
}

/**
 * One ECH key the server holds, as the decryption core sees it.
 * @group ECH
 */
export interface EchKeyCandidate {
  /** The ECHConfig this key belongs to. */
  readonly config: EchConfig;
  /**
   * HPKE `SetupBaseR(enc, skR, "tls ech" || 0x00 || ECHConfig)` for the given
   * suite (RFC 9849 §7.1). Throws if `enc` is invalid.
   */
  setupRecipient(enc: Uint8Array, suite: HpkeSymmetricCipherSuite): EchOpener | Promise<EchOpener>;
}

/**
 * What the decryption core needs from a key set: candidates by config_id and
 * cipher suite (RFC 9849 §7.1, method 1), and optionally every key for trial
 * decryption (method 2).
 * @group ECH
 */
export interface EchKeyLookup {
  /** Keys whose config has this config_id and lists this cipher suite. */
  candidates(configId: number, suite: HpkeSymmetricCipherSuite): readonly EchKeyCandidate[];
  /** Every key whose config lists this cipher suite (trial decryption). */
  allCandidates?(suite: HpkeSymmetricCipherSuite): readonly EchKeyCandidate[];
}

/**
 * Options of {@link decryptClientHello}.
 * @group ECH
 */
export interface DecryptOptions {
  /**
   * Try every key whatever the config_id (RFC 9849 §7.1 method 2). Off by
   * default: "Unless specified by the application profile or otherwise
   * externally configured, implementations MUST use the first method."
   */
  trialDecryption?: boolean;
}

/**
 * ECH was accepted: the server continues with ClientHelloInner.
 * @group ECH
 */
export interface EchAccepted {
  status: 'accepted';
  /** The reconstructed ClientHelloInner (its fields are views into `innerMessage`). */
  inner: ParsedClientHello;
  /** Outer extension types the client compressed with ech_outer_extensions. */
  outerReferences: number[];
  /** ClientHelloInner as a handshake message (4-byte header included). */
  innerMessage: Uint8Array;
  /** ClientHelloOuter as parsed. */
  outer: ParsedClientHello;
  outerServerName: string | undefined;
  innerServerName: string | undefined;
  /** The inner ALPN list (empty when the extension is absent). */
  alpn: string[];
  /** The ECHConfig whose key opened the payload. */
  config: EchConfig;
  configId: number;
  suite: HpkeSymmetricCipherSuite;
  /** The HPKE context, kept for the ClientHello after a HelloRetryRequest. */
  context: EchOpener;
}

/**
 * ECH was offered but no key opened it (GREASE, a stale key, or a config_id
 * this server never had): the server continues with ClientHelloOuter and
 * sends retry_configs.
 * @group ECH
 */
export interface EchRejected {
  status: 'rejected';
  /**
   * `no-matching-config`: no key has this config_id and suite (GREASE or a
   * long-retired key); `decryption-failed`: a key matched but did not open it.
   */
  reason: 'no-matching-config' | 'decryption-failed';
  /**
   * ClientHelloOuter. On the `no-matching-config` fast path it is decoded
   * on first access from the bytes given to {@link decryptClientHello}
   * (already validated), which must not be modified before.
   */
  readonly outer: ParsedClientHello;
  outerServerName: string | undefined;
  configId: number;
  suite: HpkeSymmetricCipherSuite;
}

/**
 * No `encrypted_client_hello` extension: an ordinary handshake.
 * @group ECH
 */
export interface EchNotOffered {
  status: 'not-offered';
  outer: ParsedClientHello;
  outerServerName: string | undefined;
}

/**
 * Result of {@link decryptClientHello}.
 * @group ECH
 */
export type DecryptResult = EchAccepted | EchRejected | EchNotOffered;

/** The HPKE info string: "tls ech" || 0x00 || ECHConfig (RFC 9849 §6.1). */
const INFO_PREFIX = new Uint8Array([0x74, 0x6c, 0x73, 0x20, 0x65, 0x63, 0x68, 0x00]);
const infoCache = new WeakMap<EchConfig, Uint8Array>();

/**
 * HPKE `info` for an ECHConfig: "tls ech" || 0x00 || ECHConfig (RFC 9849 §6.1).
 * @group ECH
 * @example
 * ```ts
 * const info = echHpkeInfo(config);
 * ```
 */
export function echHpkeInfo(config: EchConfig): Uint8Array {
  let info = infoCache.get(config);
  if (!info) {
    info = new Uint8Array(INFO_PREFIX.length + config.raw.length);
    info.set(INFO_PREFIX);
    info.set(config.raw, INFO_PREFIX.length);
    infoCache.set(config, info);
  }
  return info;
}

/** Accept a whole handshake message or a bare ClientHello body. */
function clientHelloBody(bytes: Uint8Array): Uint8Array {
  if (bytes.length >= 4 && bytes[0] === HandshakeType.client_hello) {
    const len = (bytes[1]! << 16) | (bytes[2]! << 8) | bytes[3]!;
    if (len !== bytes.length - 4) throw new DecodeError('ClientHello handshake length does not match its body');
    return bytes.subarray(4);
  }
  if (bytes.length >= 1 && bytes[0] !== 0x03) {
    throw new EchError('ERR_UNEXPECTED_MESSAGE', 'unexpected_message', `expected a ClientHello, got handshake type ${bytes[0]}`);
  }
  return bytes;
}

/** Rebuild ClientHelloInner and run the checks of RFC 9849 §5.1 and §7.1. */
function finishInner(encoded: Uint8Array, outerBody: Uint8Array, outerList: ExtensionList): RebuiltClientHelloInner {
  const r = rebuildClientHelloInner(encoded, outerBody, outerList);
  // Read in place: the scan's offsets are into the body, 4 bytes into the message.
  const m = r.message;
  const { scan } = r;
  // RFC 9849 §7.1: "the client-facing server checks that the message includes
  // a well-formed "encrypted_client_hello" extension of type inner and that it
  // does not offer TLS 1.2 or below. If either of these checks fails, the
  // client-facing server MUST abort with an "illegal_parameter" alert."
  if (scan.echAt < 0) throw new IllegalParameterError('ClientHelloInner lacks the inner-type encrypted_client_hello extension');
  if (scan.echLen !== 1 || m[4 + scan.echAt] !== EchClientHelloType.inner) {
    throw new IllegalParameterError('ClientHelloInner lacks a well-formed inner-type encrypted_client_hello');
  }
  if (scan.versionsAt < 0) throw new IllegalParameterError('ClientHelloInner offers TLS 1.2 or below (no supported_versions)');
  let versions: number[];
  try {
    versions = decodeSupportedVersionsIn(m, 4 + scan.versionsAt, 4 + scan.versionsAt + scan.versionsLen);
  } catch (err) {
    throw new IllegalParameterError('ClientHelloInner has a malformed supported_versions', { cause: err });
  }
  // GREASE values (RFC 8701) are tolerated; any real version below 1.3 is not.
  if (versions.some((v) => !isGrease(v) && v < ProtocolVersion.TLS13)) {
    throw new IllegalParameterError('ClientHelloInner offers TLS 1.2 or below');
  }
  if (!versions.includes(ProtocolVersion.TLS13)) {
    throw new IllegalParameterError('ClientHelloInner does not offer TLS 1.3');
  }
  return r;
}

/** Inner server name and ALPN list of a rebuilt ClientHelloInner `message` (4-byte header included), read in place. */
function namesOf(message: Uint8Array, scan: ClientHelloScan): { serverName: string | undefined; alpn: string[] } {
  return {
    serverName: scan.sniAt >= 0 ? decodeServerNameIn(message, 4 + scan.sniAt, 4 + scan.sniAt + scan.sniLen) : undefined,
    alpn: scan.alpnAt >= 0 ? decodeAlpnIn(message, 4 + scan.alpnAt, 4 + scan.alpnAt + scan.alpnLen) : [],
  };
}

/**
 * A rejection found on the fast path: nothing but the ECH extension's header
 * and the server name was decoded. ClientHelloOuter (already validated by
 * the scan) is decoded when `outer` is first read, from the caller's bytes.
 */
class LazyRejected implements EchRejected {
  readonly status = 'rejected' as const;
  #outer: ParsedClientHello | undefined;
  readonly #body: Uint8Array;
  constructor(
    body: Uint8Array,
    readonly reason: EchRejected['reason'],
    readonly outerServerName: string | undefined,
    readonly configId: number,
    readonly suite: HpkeSymmetricCipherSuite,
  ) {
    this.#body = body;
  }
  get outer(): ParsedClientHello {
    return (this.#outer ??= decodeClientHello(this.#body));
  }
}

/** An accepted result; both hellos are decoded on first access. */
class AcceptedResult implements EchAccepted {
  readonly status = 'accepted' as const;
  #inner: ParsedClientHello | undefined;
  #outer: ParsedClientHello | undefined;
  readonly #outerBody: Uint8Array;
  constructor(
    outerBody: Uint8Array,
    readonly innerMessage: Uint8Array,
    readonly outerReferences: number[],
    readonly outerServerName: string | undefined,
    readonly innerServerName: string | undefined,
    readonly alpn: string[],
    readonly config: EchConfig,
    readonly configId: number,
    readonly suite: HpkeSymmetricCipherSuite,
    readonly context: EchOpener,
  ) {
    this.#outerBody = outerBody;
  }
  get inner(): ParsedClientHello {
    return (this.#inner ??= parseClientHelloOwned(this.innerMessage.subarray(4)));
  }
  get outer(): ParsedClientHello {
    return (this.#outer ??= parseClientHelloOwned(this.#outerBody));
  }
}

/** The ECH payload of an outer extension, as a view, and the offset of the payload in the body. */
function payloadOf(body: Uint8Array, echAt: number): { enc: Uint8Array; payload: Uint8Array; payloadAt: number } {
  // peekEch has checked the lengths: type (1), cipher_suite (4) and
  // config_id (1), then enc<0..2^16-1> and payload<1..2^16-1>.
  const encAt = echAt + 8;
  const encLen = (body[echAt + 6]! << 8) | body[echAt + 7]!;
  const payloadAt = encAt + encLen + 2;
  const payloadLen = (body[payloadAt - 2]! << 8) | body[payloadAt - 1]!;
  return { enc: body.subarray(encAt, encAt + encLen), payload: body.subarray(payloadAt, payloadAt + payloadLen), payloadAt };
}

/** Reused by every call: filled and consumed synchronously (see openWith). */
const scratchList = new ExtensionList();

type Opened = { rebuilt: RebuiltClientHelloInner; candidate: EchKeyCandidate; context: EchOpener };

/** A failure that ends the search: anything but "this key does not open it". */
function fatal(err: unknown): boolean {
  // RFC 9849 §7.1: "If decryption fails, the server continues to the next
  // candidate ECHConfig." A key server that cannot be reached is not a
  // decryption failure: let it surface.
  return err instanceof EchError && err.code !== 'ERR_DECRYPT';
}

/**
 * Open the ECH payload of a (validated, copied) outer body with one of the
 * candidates; returns the rebuilt inner hello and the context, or
 * `undefined` when no candidate opens it. Synchronous while the keys are
 * (local keys); a remote key (keyless) makes it a promise, and `list` is
 * then copied first, since callers pass a reused scratch list.
 *
 * `owned` is the copy and `original` the bytes it was copied from. The copy
 * serves as ClientHelloOuterAAD while the payload is opened: its payload is
 * zeroed in place (RFC 9849 §5.2) and restored from `original` before this
 * returns (or its promise settles), so ClientHelloOuter is copied once, not
 * twice. Nothing reads the zeroed bytes meanwhile: ech_outer_extensions may
 * not reference encrypted_client_hello (§5.1).
 */
function openWith(
  owned: Uint8Array,
  original: Uint8Array,
  echAt: number,
  candidates: readonly EchKeyCandidate[],
  suite: HpkeSymmetricCipherSuite,
  list: ExtensionList,
): Opened | undefined | Promise<Opened | undefined> {
  const { enc, payload, payloadAt } = payloadOf(original, echAt);
  // ClientHelloOuterAAD: the outer body with the payload zeroed (RFC 9849 §5.2).
  const aad = owned;
  aad.fill(0, payloadAt, payloadAt + payload.length);
  let waiting = false;
  try {
    for (let i = 0; i < candidates.length; i++) {
      const candidate = candidates[i]!;
      let context: EchOpener | Promise<EchOpener>;
      let encoded: Uint8Array | Promise<Uint8Array>;
      try {
        context = candidate.setupRecipient(enc, suite);
        if (isPromiseLike(context)) {
          waiting = true;
          return openLater({ aad, enc, payload, payloadAt, candidates, suite, list: list.clone() }, i, context);
        }
        encoded = context.open(aad, payload);
        if (isPromiseLike(encoded)) {
          waiting = true;
          return openLater({ aad, enc, payload, payloadAt, candidates, suite, list: list.clone() }, i, encoded, context);
        }
      } catch (err) {
        if (fatal(err)) throw err;
        continue;
      }
      return { rebuilt: finishInner(encoded, aad, list), candidate, context };
    }
    return undefined;
  } finally {
    // The asynchronous path restores when it settles.
    if (!waiting) owned.set(payload, payloadAt);
  }
}

/** What {@link openLater} carries on with: openWith's state when a remote key made it wait. */
interface PendingOpen {
  /** The outer body copy with its payload zeroed; the payload is restored from `payload` when done. */
  aad: Uint8Array;
  enc: Uint8Array;
  payload: Uint8Array;
  payloadAt: number;
  candidates: readonly EchKeyCandidate[];
  suite: HpkeSymmetricCipherSuite;
  /** Its own copy of the outer extension list (the scratch list is reused meanwhile). */
  list: ExtensionList;
}

/**
 * The asynchronous rest of {@link openWith}, from candidate `from`, whose
 * setup (or, with `ctx`, whose open) is `pending`. A module function, not a
 * closure made by every openWith call: the synchronous path (local keys, the
 * usual case) never needs it.
 */
async function openLater(
  s: PendingOpen,
  from: number,
  pending: EchOpener | Promise<EchOpener> | Promise<Uint8Array>,
  ctx?: EchOpener,
): Promise<Opened | undefined> {
  try {
    for (let i = from; i < s.candidates.length; i++) {
      try {
        let context: EchOpener;
        let encoded: Uint8Array;
        if (i === from && ctx) {
          context = ctx;
          encoded = await (pending as Promise<Uint8Array>);
        } else {
          context = i === from ? await (pending as EchOpener | Promise<EchOpener>) : await s.candidates[i]!.setupRecipient(s.enc, s.suite);
          encoded = await context.open(s.aad, s.payload);
        }
        return { rebuilt: finishInner(encoded, s.aad, s.list), candidate: s.candidates[i]!, context };
      } catch (err) {
        if (fatal(err)) throw err;
      }
    }
    return undefined;
  } finally {
    s.aad.set(s.payload, s.payloadAt);
  }
}

/**
 * The outer ECH extension's cipher suite and config_id, read in place after
 * checking the whole extension's syntax (RFC 9849 §5).
 *
 * Offsets by hand, not the wire Reader, on purpose: this runs on every
 * ClientHello that offers ECH, including the no-key reject path (GREASE,
 * junk) that `npm run bench` holds to reject_over_x25519 <= 0.05. A Reader
 * here (one object per call) measured 3-12% slower on that path (interleaved
 * A/B, 0.62 -> 0.64-0.67 us); every length is checked before it is used.
 */
function peekEch(b: Uint8Array, at: number, len: number): { kdfId: number; aeadId: number; configId: number } {
  if (len < 1) throw new DecodeError('empty encrypted_client_hello');
  const type = b[at]!;
  if (type === EchClientHelloType.inner) {
    if (len !== 1) throw new DecodeError(`${len - 1} trailing bytes after inner ECHClientHello`);
    // RFC 9849 §7: "A shared mode server which receives a ClientHello with
    // ECHClientHello.type of inner MUST abort with an "illegal_parameter"
    // alert" (likewise a split-mode client-facing server).
    throw new IllegalParameterError('inner-type encrypted_client_hello received by a client-facing server');
  }
  if (type !== EchClientHelloType.outer) {
    // RFC 9849 §7: "If ECHClientHello.type is not a valid ECHClientHelloType,
    // then the server MUST abort with an "illegal_parameter" alert."
    throw new IllegalParameterError(`unknown ECHClientHelloType ${type}`);
  }
  const end = at + len;
  let p = at + 1;
  if (end - p < 7) throw new DecodeError('truncated outer ECHClientHello');
  const kdfId = (b[p]! << 8) | b[p + 1]!;
  const aeadId = (b[p + 2]! << 8) | b[p + 3]!;
  const configId = b[p + 4]!;
  const encLen = (b[p + 5]! << 8) | b[p + 6]!;
  p += 7 + encLen;
  if (end - p < 2) throw new DecodeError('truncated ECH enc or payload');
  const payloadLen = (b[p]! << 8) | b[p + 1]!;
  p += 2;
  if (payloadLen === 0) throw new DecodeError('empty ECH payload');
  if (end - p < payloadLen) throw new DecodeError('truncated ECH payload');
  if (end - p > payloadLen) throw new DecodeError(`${end - p - payloadLen} trailing bytes after outer ECHClientHello`);
  return { kdfId, aeadId, configId };
}

/**
 * Decrypt a ClientHelloOuter (RFC 9849 §7.1).
 *
 * `clientHello` is the ClientHello handshake message (with or without its
 * 4-byte header). Returns `accepted` with the reconstructed ClientHelloInner,
 * `rejected` when no key opens the payload (the caller must then handshake on
 * ClientHelloOuter and send retry_configs), or `not-offered`. Throws
 * {@link EchError} carrying the alert the RFC names for malformed or forbidden
 * input.
 * @group ECH
 * @example
 * ```ts
 * const r = await decryptClientHello(firstFlight.message.raw, keySet);
 * if (r.status === 'accepted') route(r.innerServerName);
 * ```
 */
export function decryptClientHello(clientHello: Uint8Array, keys: EchKeyLookup, options: DecryptOptions = {}): Promise<DecryptResult> {
  try {
    const r = decryptClientHelloNow(clientHello, keys, options);
    return isPromiseLike(r) ? r : Promise.resolve(r);
  } catch (err) {
    return Promise.reject(err);
  }
}

/**
 * {@link decryptClientHello} without a promise when nothing waits: the
 * result itself when every key it tries is local (the usual case), a
 * promise only when a remote key (keyless) made it wait. Errors are thrown
 * (synchronously, or as the promise's rejection). `clientHello` must not be
 * modified until the result is returned or the promise settles (the
 * payload is read from it in place), nor, on the `no-matching-config`
 * path, until the result's `outer` is first read.
 * @group ECH
 * @example
 * ```ts
 * const r = decryptClientHelloNow(message, keySet);
 * const result = isPromiseLike(r) ? await r : r;
 * ```
 */
export function decryptClientHelloNow(
  clientHello: Uint8Array,
  keys: EchKeyLookup,
  options: DecryptOptions = {},
): DecryptResult | Promise<DecryptResult> {
  const body = clientHelloBody(clientHello);
  // One validating pass without allocations: enough to answer GREASE and
  // unknown config_ids, which cost no HPKE work and no parsing. It also
  // lists every extension's offsets (into the reused scratch list), which
  // hold for the copy made below: the accepted path does not scan twice.
  const scan = scanClientHello(body, scratchList);
  // RFC 9849 §5.1: ""ech_outer_extensions" extension can only be included in
  // EncodedClientHelloInner, and MUST NOT appear in either ClientHelloOuter
  // or ClientHelloInner."
  if (scan.outerExtensionsAt >= 0) throw new IllegalParameterError('ech_outer_extensions in ClientHelloOuter');
  const outerServerName = scan.sniAt >= 0 ? decodeServerNameIn(body, scan.sniAt, scan.sniAt + scan.sniLen) : undefined;
  if (scan.echAt < 0) return { status: 'not-offered', outer: decodeClientHello(body), outerServerName };
  const head = peekEch(body, scan.echAt, scan.echLen);
  const suite = { kdfId: head.kdfId, aeadId: head.aeadId };
  const candidates =
    options.trialDecryption && keys.allCandidates ? keys.allCandidates(suite) : keys.candidates(head.configId, suite);
  if (candidates.length === 0) return new LazyRejected(body, 'no-matching-config', outerServerName, head.configId, suite);

  // The body is copied once; the result's views point into the copy.
  const owned = copyBytes(body);
  const o = openWith(owned, body, scan.echAt, candidates, suite, scratchList);
  return isPromiseLike(o) ? o.then((opened) => openedResult(opened, owned, outerServerName, head.configId, suite)) : openedResult(o, owned, outerServerName, head.configId, suite);
}

/** The result of {@link openWith}: accepted with the rebuilt inner hello, or rejected. */
function openedResult(
  opened: Opened | undefined,
  owned: Uint8Array,
  outerServerName: string | undefined,
  configId: number,
  suite: HpkeSymmetricCipherSuite,
): DecryptResult {
  if (!opened) {
    return { status: 'rejected', reason: 'decryption-failed', outer: parseClientHelloOwned(owned), outerServerName, configId, suite };
  }
  const { rebuilt, candidate, context } = opened;
  const names = namesOf(rebuilt.message, rebuilt.scan);
  return new AcceptedResult(
    owned,
    rebuilt.message,
    rebuilt.outerReferences,
    outerServerName,
    names.serverName,
    names.alpn,
    candidate.config,
    configId,
    suite,
    context,
  );
}

/**
 * The second ClientHelloInner after a HelloRetryRequest.
 * @group ECH
 */
export interface EchSecondAccepted {
  inner: ParsedClientHello;
  outerReferences: number[];
  innerMessage: Uint8Array;
  outer: ParsedClientHello;
  innerServerName: string | undefined;
  alpn: string[];
}

/**
 * Decrypt the second ClientHelloOuter after a HelloRetryRequest, with the HPKE
 * context kept from the first (RFC 9849 §7.1.1). Only for connections whose
 * first ClientHello was accepted.
 * @group ECH
 * @example
 * ```ts
 * const second = await decryptSecondClientHello(message.raw, firstResult);
 * ```
 */
export async function decryptSecondClientHello(clientHello: Uint8Array, first: EchAccepted): Promise<EchSecondAccepted> {
  const owned = copyBytes(clientHelloBody(clientHello));
  const list = new ExtensionList();
  const scan = scanClientHello(owned, list);
  if (scan.outerExtensionsAt >= 0) throw new IllegalParameterError('ech_outer_extensions in ClientHelloOuter');
  // RFC 9849 §7.1.1: "it checks the second ClientHelloOuter also contains the
  // "encrypted_client_hello" extension. If not, it MUST abort the handshake
  // with a "missing_extension" alert."
  if (scan.echAt < 0) throw new MissingExtensionError('second ClientHelloOuter has no encrypted_client_hello');
  const head = peekEch(owned, scan.echAt, scan.echLen);
  // "Otherwise, it checks that ECHClientHello.cipher_suite and
  // ECHClientHello.config_id are unchanged, and that ECHClientHello.enc is
  // empty. If not, it MUST abort the handshake with an "illegal_parameter"
  // alert."
  if (head.configId !== first.configId) throw new IllegalParameterError('config_id changed in the second ClientHelloOuter');
  if (head.kdfId !== first.suite.kdfId || head.aeadId !== first.suite.aeadId) {
    throw new IllegalParameterError('cipher_suite changed in the second ClientHelloOuter');
  }
  const { enc, payload, payloadAt } = payloadOf(owned, scan.echAt);
  if (enc.length !== 0) throw new IllegalParameterError('enc is not empty in the second ClientHelloOuter');
  const aad = copyBytes(owned);
  aad.fill(0, payloadAt, payloadAt + payload.length);
  let encoded: Uint8Array;
  try {
    encoded = await first.context.open(aad, payload);
  } catch (err) {
    if (err instanceof EchError && err.code !== 'ERR_DECRYPT') throw err;
    // "If decryption fails, the client-facing server MUST abort the handshake
    // with a "decrypt_error" alert."
    throw new DecryptError('second ClientHelloOuter payload does not open with the retained HPKE context', { cause: err });
  }
  const rebuilt = finishInner(encoded, owned, list);
  const names = namesOf(rebuilt.message, rebuilt.scan);
  let inner: ParsedClientHello | undefined;
  let outer: ParsedClientHello | undefined;
  return {
    get inner() {
      return (inner ??= parseClientHelloOwned(rebuilt.message.subarray(4)));
    },
    get outer() {
      return (outer ??= parseClientHelloOwned(owned));
    },
    outerReferences: rebuilt.outerReferences,
    innerMessage: rebuilt.message,
    innerServerName: names.serverName,
    alpn: names.alpn,
  };
}
