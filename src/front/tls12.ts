/**
 * TLS 1.2 clients on the cover name (and on the routes that terminate TLS
 * here). A client that cannot speak TLS 1.3 cannot use ECH, but — as behind
 * nginx or Caddy — it must still reach the public name and the terminating
 * routes. The library's engine speaks only TLS 1.3, so such a connection,
 * its first flight already read, is handed to Node's own `tls` (OpenSSL),
 * restricted to TLS 1.2 with ECDHE AEAD suites, presenting the certificate
 * the TLS 1.3 path would present for the name in the clear. ECH and TLS 1.3
 * stay on the engine.
 *
 * @module
 */
import { X509Certificate, constants as cryptoConstants, type KeyObject } from 'node:crypto';
import type { Socket } from 'node:net';
import tls from 'node:tls';
import { EchError, IllegalParameterError } from '../wire/alert.js';
import { ExtensionType, ProtocolVersion } from '../tls/constants.js';
import { type ClientHello, findExtension } from '../tls/client-hello.js';
import { decodeSupportedVersions } from '../tls/extensions.js';
import { type CertificateKeyPair, ServerCertificate } from '../tls13/certificates.js';

/**
 * Whether a ClientHello cannot negotiate TLS 1.3, i.e. has no
 * `supported_versions` extension listing 0x0304. Throws
 * {@link IllegalParameterError} (`illegal_parameter`) when such a hello
 * carries `encrypted_client_hello`: a client offering ECH "MUST offer to
 * negotiate TLS 1.3 or above" (RFC 9849 §6.1).
 * @group Front end
 * @example
 * ```ts
 * const r = await decryptClientHello(first.message, keys);
 * if (isTls12Only(r.outer)) console.log('TLS 1.2 client');
 * ```
 */
export function isTls12Only(hello: ClientHello): boolean {
  // RFC 9846 §4.2.1: a TLS 1.3 client MUST send supported_versions
  // "containing all versions of TLS which they are prepared to negotiate
  // (for this specification, that means minimally 0x0304 ...)". "If this
  // extension is not present, servers ... which also support TLS 1.2 MUST
  // negotiate TLS 1.2 or prior", and "Servers MUST be prepared to receive
  // ClientHellos that include this extension but do not include 0x0304".
  const sv = findExtension(hello.extensions, ExtensionType.supported_versions);
  if (sv && decodeSupportedVersions(sv.data).includes(ProtocolVersion.TLS13)) return false;
  // RFC 9849 §6.1: when offering ECH, ClientHelloOuter "MUST offer to
  // negotiate TLS 1.3 or above" (and ClientHelloInner "MUST NOT offer to
  // negotiate TLS 1.2 or below"). A hello that breaks this is refused, not
  // downgraded: well-formed but forbidden is illegal_parameter.
  if (findExtension(hello.extensions, ExtensionType.encrypted_client_hello)) {
    throw new IllegalParameterError('encrypted_client_hello in a ClientHello that does not offer TLS 1.3');
  }
  return true;
}

/**
 * ECDHE with AEAD only, forward secret: what TLS 1.2 clients get. OpenSSL
 * names, server order (ECDSA first, AES-GCM before ChaCha20-Poly1305).
 * @group Front end
 */
export const TLS12_CIPHERS = [
  'ECDHE-ECDSA-AES128-GCM-SHA256',
  'ECDHE-RSA-AES128-GCM-SHA256',
  'ECDHE-ECDSA-AES256-GCM-SHA384',
  'ECDHE-RSA-AES256-GCM-SHA384',
  'ECDHE-ECDSA-CHACHA20-POLY1305',
  'ECDHE-RSA-CHACHA20-POLY1305',
].join(':');

/**
 * Options of {@link Tls12Terminator}.
 * @group Front end
 */
export interface Tls12Options {
  /**
   * Certificates in the TLS 1.3 engine's order: the public name's first
   * (the default for unknown names and hellos without SNI), then the
   * terminating routes'. Entries without `key` (keyless: a key server
   * signs) cannot be served over TLS 1.2.
   */
  certificates: readonly CertificateKeyPair[];
  /** ALPN protocols, server preference. */
  ALPNProtocols: readonly string[];
  /** Groups, Node's `ecdhCurve` syntax; default OpenSSL's. */
  ecdhCurve?: string;
  /** Abort a handshake not finished after this many ms. */
  handshakeTimeoutMs: number;
}

interface Entry {
  certificate: ServerCertificate;
  context: tls.SecureContext | undefined;
}

/** PEM of a private key in any form `CertificateKeyPair.key` allows. */
function keyPem(key: NonNullable<CertificateKeyPair['key']>): string | Buffer {
  if (typeof key === 'string' || Buffer.isBuffer(key)) return key;
  if (key instanceof Uint8Array) return Buffer.from(key);
  return (key as KeyObject).export({ type: 'pkcs8', format: 'pem' });
}

/**
 * Terminates TLS 1.2 with node:tls for one set of certificates (one per
 * front-end configuration). The certificate is chosen by the server name in
 * the clear exactly as the TLS 1.3 engine chooses it (`CertificateStore`):
 * an exact name, else a `*.` wildcard, else the first (the public name's).
 * @group Front end
 * @example
 * ```ts
 * const t12 = new Tls12Terminator({ certificates: [{ cert, key }], ALPNProtocols: ['http/1.1'], handshakeTimeoutMs: 30_000 });
 * if (t12.serves(name)) (await t12.accept(socket, first.raw, name)).end('hello');
 * ```
 */
export class Tls12Terminator {
  readonly #entries: Entry[];
  readonly #alpn: string[];
  readonly #timeoutMs: number;

  constructor(options: Tls12Options) {
    this.#alpn = [...options.ALPNProtocols];
    this.#timeoutMs = options.handshakeTimeoutMs;
    this.#entries = options.certificates.map((pair) => {
      const certificate = ServerCertificate.from(pair);
      if (pair.key === undefined) return { certificate, context: undefined };
      const context = tls.createSecureContext({
        cert: certificate.chain.map((der) => new X509Certificate(der).toString()).join(''),
        key: keyPem(pair.key),
        ...(pair.passphrase !== undefined ? { passphrase: pair.passphrase } : {}),
        minVersion: 'TLSv1.2',
        maxVersion: 'TLSv1.2',
        ciphers: TLS12_CIPHERS,
        honorCipherOrder: true,
        ...(tls12Curves(options.ecdhCurve) ? { ecdhCurve: tls12Curves(options.ecdhCurve) } : {}),
        // No renegotiation: a client-initiated one costs the server a full
        // handshake each time.
        secureOptions: cryptoConstants.SSL_OP_NO_RENEGOTIATION,
      });
      return { certificate, context };
    });
  }

  /** The context for a server name (`undefined`: none, or the chosen certificate has no key here). */
  #context(servername: string | undefined): tls.SecureContext | undefined {
    let best: Entry | undefined;
    let quality = -1;
    for (const e of this.#entries) {
      const q = servername ? e.certificate.matchQuality(servername) : 0;
      if (q > quality) {
        best = e;
        quality = q;
      }
    }
    return best?.context;
  }

  /** True when a TLS 1.2 client asking for `servername` can be served (the certificate for it has a key here). */
  serves(servername: string | undefined): boolean {
    return this.#context(servername) !== undefined;
  }

  /**
   * Run OpenSSL's TLS 1.2 handshake on `socket`, whose first bytes were
   * already read into `firstFlight`. Resolves with the plaintext socket
   * once the handshake completes; rejects when it fails or takes longer
   * than the handshake timeout (code `ERR_TIMEOUT`), the socket destroyed
   * either way. The returned socket keeps an `error` listener that
   * destroys it.
   */
  accept(socket: Socket, firstFlight: Uint8Array, servername: string | undefined): Promise<tls.TLSSocket> {
    const context = this.#context(servername);
    if (!context) return Promise.reject(new EchError('ERR_PROTOCOL', 'protocol_version', 'no certificate with a key for a TLS 1.2 client'));
    return new Promise((resolve, reject) => {
      // node:tls picks up bytes already buffered in the socket before it
      // reads from the handle, so the ClientHello is replayed first.
      socket.unshift(Buffer.from(firstFlight));
      const s = new tls.TLSSocket(socket, {
        isServer: true,
        secureContext: context,
        ALPNProtocols: this.#alpn,
        // Same choice as above; it also makes OpenSSL record the name.
        SNICallback: (name, cb) => cb(null, this.#context(name) ?? context),
      });
      let done = false;
      const finish = (err: Error | undefined) => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        s.off('close', onClose);
        if (!err) {
          resolve(s);
          return;
        }
        s.destroy();
        socket.destroy();
        reject(err);
      };
      const timer = setTimeout(() => finish(new EchError('ERR_TIMEOUT', 'handshake_failure', `TLS 1.2 handshake not finished within ${this.#timeoutMs} ms`)), this.#timeoutMs);
      const onClose = () => finish(Object.assign(new Error('client closed during the TLS 1.2 handshake'), { code: 'ERR_PROTOCOL' }));
      // Errors after the handshake end the connection; nothing else to do.
      s.on('error', (e) => (done ? s.destroy() : finish(e)));
      s.once('close', onClose);
      // The front end's sockets are allowHalfOpen (a relay passes a FIN on
      // as a half-close), so a client that half-closes before the handshake
      // is done would hold its handshake slot until the timeout: end it now.
      s.once('end', () => {
        if (!done) onClose();
      });
      // 'secure': node:tls's event for a completed server-side handshake
      // (the one tls.Server itself listens to).
      s.once('secure', () => finish(undefined));
    });
  }
}

/**
 * The groups of an `ecdhCurve` list that TLS 1.2 can use: the hybrid
 * X25519MLKEM768 is a TLS 1.3 group (and unknown to OpenSSL before 3.5), so
 * it is left out; `undefined` when nothing is left (OpenSSL's default).
 */
function tls12Curves(spec: string | undefined): string | undefined {
  if (!spec) return undefined;
  const left = spec.split(':').filter((g) => g.trim() && g.trim().toLowerCase() !== 'x25519mlkem768');
  return left.length ? left.join(':') : undefined;
}
