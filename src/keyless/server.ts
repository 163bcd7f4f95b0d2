/**
 * The key server: holds ECH keys and TLS certificate keys, and answers
 * `decap` and `sign` requests from front ends over mutually authenticated
 * TLS. Only clients whose certificate chains to the configured CA connect;
 * each may use only the keys its policy allows, within its rate limit; every
 * operation goes to the audit log (JSON lines, no secrets).
 *
 * @module
 */
import tls from 'node:tls';
import type { AddressInfo, Socket } from 'node:net';
import { performance } from 'node:perf_hooks';
import { EchError } from '../wire/alert.js';
import { toHex } from '../wire/bytes.js';
import type { EchKeySet, EchPrivateKey } from '../keys/key-set.js';
import type { ServerCertificate } from '../keys/certificates.js';
import { type LogSink, silent } from '../log/log.js';
import {
  FrameDecoder,
  KeylessOp,
  KeylessStatus,
  decodeRequest,
  echKeyId,
  encodeResponse,
  isCertificateVerifyInput,
  keylessStatusName,
  tlsKeyId,
  type KeylessRequest,
} from './protocol.js';

/**
 * What one client (identified by a name in its certificate) may do.
 * @group Keyless
 * @example
 * ```ts
 * const p: KeylessClientPolicy = { name: 'edge-1', ech: ['cover.example'], tls: ['alpha.example'], ratePerSecond: 500 };
 * ```
 */
export interface KeylessClientPolicy {
  /** A DNS subjectAltName or the subject CN of the client certificate. */
  name: string;
  /** ECH keys allowed: config_id numbers, public_name strings, or `'*'`. */
  ech?: ReadonlyArray<number | string>;
  /** TLS keys allowed: names of their certificates (exact, or `'*'`). */
  tls?: readonly string[];
  /** Keys allowed by key id (hex, see `echKeyId`/`tlsKeyId`). */
  keyIds?: readonly string[];
  /** Sustained operations per second (default 1000). */
  ratePerSecond?: number;
  /** Bucket size (default 2 × ratePerSecond). */
  burst?: number;
}

/**
 * Options of {@link KeyServer}.
 * @group Keyless
 * @example
 * ```ts
 * const ks = new KeyServer({ cert, key, ca, echKeys, tlsKeys: [ServerCertificate.from({ cert, key })], clients, audit: jsonLines(stream) });
 * ```
 */
export interface KeyServerOptions {
  /** The key server's own certificate chain and key (PEM), shown to front ends. */
  cert: string;
  key: string;
  /** CA certificate(s) (PEM) that client certificates must chain to. */
  ca: string | string[];
  /** ECH keys with their private halves. */
  echKeys?: EchKeySet;
  /** Certificates with their private keys. */
  tlsKeys?: readonly ServerCertificate[];
  clients: readonly KeylessClientPolicy[];
  /** Audit log: one event per operation. Default: none. */
  audit?: LogSink;
  /** Operational log (connections, errors). Default: none. */
  log?: LogSink;
  /** Close connections idle this long, ms (default 300000). */
  idleTimeoutMs?: number;
}

interface HeldKey {
  kind: 'ech' | 'tls';
  /** Short label for logs: `ech:183 cover.example`, `tls:alpha.example`. */
  label: string;
  hexId: string;
  ech?: { configId: number; publicName: string; key: EchPrivateKey };
  tls?: ServerCertificate;
}

class TokenBucket {
  #tokens: number;
  #last = performance.now();
  constructor(
    readonly rate: number,
    readonly burst: number,
  ) {
    this.#tokens = burst;
  }
  take(): boolean {
    const now = performance.now();
    this.#tokens = Math.min(this.burst, this.#tokens + ((now - this.#last) / 1000) * this.rate);
    this.#last = now;
    if (this.#tokens < 1) return false;
    this.#tokens -= 1;
    return true;
  }
}

function peerNames(socket: tls.TLSSocket): string[] {
  const c = socket.getPeerCertificate();
  if (!c || Object.keys(c).length === 0) return [];
  const names: string[] = [];
  for (const s of (c.subjectaltname ?? '').split(/,\s*/)) if (s.startsWith('DNS:')) names.push(s.slice(4).toLowerCase());
  const cn = c.subject?.CN as string | string[] | undefined;
  for (const n of Array.isArray(cn) ? cn : cn ? [cn] : []) names.push(n.toLowerCase());
  return names;
}

/**
 * Why the key server refused a client before any request:
 * - `certificate_rejected`: the client's certificate did not verify against
 *   `ca` (wrong CA, expired, …; the OpenSSL verify code is in the log);
 * - `no_certificate`: the client sent no certificate;
 * - `dropped`: the connection closed before the TLS handshake finished (a
 *   bare TCP connect, a port scan, a client that gave up);
 * - `tls_error`: any other TLS failure (protocol version, bad record, …).
 * @group Keyless
 * @example
 * ```ts
 * const reasons: KeyServerRefusal[] = ['certificate_rejected', 'no_certificate', 'dropped', 'tls_error'];
 * ```
 */
export type KeyServerRefusal = 'certificate_rejected' | 'no_certificate' | 'dropped' | 'tls_error';

/** Sort a `tlsClientError` into a {@link KeyServerRefusal} and its detail code. */
function classifyRefusal(e: Error, socket: tls.TLSSocket): { reason: KeyServerRefusal; error: string } {
  const code = (e as NodeJS.ErrnoException).code ?? e.message;
  // Node verifies the client chain itself once OpenSSL's handshake is done
  // and destroys the socket (no error of its own): the verify result is in
  // authorizationError, and the error is the resulting ECONNRESET.
  const verify = (socket as tls.TLSSocket & { authorizationError?: Error | string | null }).authorizationError;
  if (verify) return { reason: 'certificate_rejected', error: typeof verify === 'string' ? verify : ((verify as NodeJS.ErrnoException).code ?? verify.message) };
  if (code === 'ERR_SSL_PEER_DID_NOT_RETURN_A_CERTIFICATE') return { reason: 'no_certificate', error: code };
  if (code === 'ECONNRESET' || code === 'EPIPE') return { reason: 'dropped', error: code };
  return { reason: 'tls_error', error: code };
}

class Refusal extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

/**
 * A key server. Start it with {@link KeyServer.listen}; stop it with
 * {@link KeyServer.close}.
 * @group Keyless
 * @example
 * ```ts
 * const ks = new KeyServer({ cert, key, ca, echKeys: await loadEchKeyDirectory('/etc/ech'), clients: [{ name: 'edge-1', ech: ['*'] }] });
 * const { port } = await ks.listen(7443, '127.0.0.1');
 * ```
 */
export class KeyServer {
  /** The TLS listener. */
  readonly server: tls.Server;
  #keys = new Map<string, HeldKey>();
  #policies: readonly KeylessClientPolicy[] = [];
  readonly #buckets = new Map<string, TokenBucket>();
  readonly #audit: LogSink;
  readonly #log: LogSink;
  readonly #live = new Set<{ destroy(): void }>();
  readonly #refusals = new Map<KeyServerRefusal, number>();
  readonly #requests = new Map<string, number>();
  #connections = 0;

  constructor(options: KeyServerOptions) {
    this.#audit = options.audit ?? silent;
    this.#log = options.log ?? silent;
    this.update(options);
    const idle = options.idleTimeoutMs ?? 300_000;
    this.server = tls.createServer(
      {
        cert: options.cert,
        key: options.key,
        ca: options.ca,
        requestCert: true,
        rejectUnauthorized: true,
        minVersion: 'TLSv1.3',
      },
      (socket) => this.#connection(socket, idle),
    );
    // Track raw connections too, so close() also ends those mid-handshake.
    // Read the peer address now (it is cached on the socket): once a refused
    // connection is destroyed, its address can no longer be asked for.
    this.server.prependListener('connection', (raw: Socket) => {
      void raw.remoteAddress;
      this.#live.add(raw);
      raw.once('close', () => this.#live.delete(raw));
    });
    this.server.on('tlsClientError', (e, socket) => {
      // A client certificate from another CA, none, or no TLS at all: refused
      // by the TLS layer. Say which, and who.
      const { reason, error } = classifyRefusal(e, socket);
      const raw = (socket as tls.TLSSocket & { _parent?: Socket })._parent ?? socket;
      this.#refusals.set(reason, (this.#refusals.get(reason) ?? 0) + 1);
      this.#log({ event: 'keyserver_client_refused', remote: raw.remoteAddress ?? null, remotePort: raw.remotePort ?? null, reason, error });
      socket.destroy();
    });
  }

  /**
   * Replace the keys and the client policies (e.g. on SIGHUP). Takes effect
   * for the next request on every connection, so removing a client's policy
   * revokes it at once. Rate-limit buckets of clients still listed are kept.
   */
  update(options: Pick<KeyServerOptions, 'echKeys' | 'tlsKeys' | 'clients'>): void {
    const keys = new Map<string, HeldKey>();
    for (const k of options.echKeys?.keys() ?? []) {
      const hexId = toHex(echKeyId(k.config.kemId, k.config.publicKey));
      keys.set(hexId, {
        kind: 'ech',
        label: `ech:${k.config.configId} ${k.config.publicName}`,
        hexId,
        ech: { configId: k.config.configId, publicName: k.config.publicName.toLowerCase(), key: k.privateKey },
      });
    }
    for (const c of options.tlsKeys ?? []) {
      const hexId = toHex(tlsKeyId(c.leaf.publicKey));
      keys.set(hexId, { kind: 'tls', label: `tls:${c.names[0] ?? '?'}`, hexId, tls: c });
    }
    const policies = options.clients.map((p) => ({ ...p, name: p.name.toLowerCase() }));
    for (const name of [...this.#buckets.keys()]) {
      const p = policies.find((x) => x.name === name);
      const old = this.#policies.find((x) => x.name === name);
      if (!p || p.ratePerSecond !== old?.ratePerSecond || p.burst !== old?.burst) this.#buckets.delete(name);
    }
    this.#keys = keys;
    this.#policies = policies;
  }

  /** Clients refused before any request, by reason (see {@link KeyServerRefusal}). */
  refusals(): Record<KeyServerRefusal, number> {
    return {
      certificate_rejected: this.#refusals.get('certificate_rejected') ?? 0,
      no_certificate: this.#refusals.get('no_certificate') ?? 0,
      dropped: this.#refusals.get('dropped') ?? 0,
      tls_error: this.#refusals.get('tls_error') ?? 0,
    };
  }

  /**
   * Prometheus text: connections accepted, clients refused by reason, and
   * operations by op and result (the audit log's `result`).
   */
  renderMetrics(): string {
    const lines = [
      '# HELP ech_keyserver_connections_total Front-end connections that completed the mutually authenticated TLS handshake.',
      '# TYPE ech_keyserver_connections_total counter',
      `ech_keyserver_connections_total ${this.#connections}`,
      '# HELP ech_keyserver_clients_refused_total Connections refused before any request, by reason.',
      '# TYPE ech_keyserver_clients_refused_total counter',
    ];
    for (const [reason, n] of Object.entries(this.refusals())) lines.push(`ech_keyserver_clients_refused_total{reason="${reason}"} ${n}`);
    lines.push('# HELP ech_keyserver_requests_total Key operations by op and result.', '# TYPE ech_keyserver_requests_total counter');
    for (const [k, n] of this.#requests) {
      const [op, result] = k.split('|');
      lines.push(`ech_keyserver_requests_total{op="${op}",result="${result}"} ${n}`);
    }
    return `${lines.join('\n')}\n`;
  }

  /** Key ids (hex) and labels of the keys held; public information. */
  keys(): Array<{ keyId: string; label: string }> {
    return [...this.#keys.values()].map((k) => ({ keyId: k.hexId, label: k.label }));
  }

  /** Listen; resolves with the bound address. */
  listen(port: number, host = '127.0.0.1'): Promise<{ host: string; port: number }> {
    return new Promise((res, rej) => {
      this.server.once('error', rej);
      this.server.listen(port, host, () => {
        this.server.off('error', rej);
        const a = this.server.address() as AddressInfo;
        this.#log({ event: 'keyserver_listening', host: a.address, port: a.port, keys: this.#keys.size });
        res({ host: a.address, port: a.port });
      });
    });
  }

  /** Stop listening and close every connection. */
  async close(): Promise<void> {
    const closed = new Promise<void>((res) => this.server.close(() => res()));
    for (const s of this.#live) s.destroy();
    await closed;
  }

  #policyFor(names: readonly string[]): KeylessClientPolicy | undefined {
    return this.#policies.find((p) => names.includes(p.name));
  }

  #bucket(p: KeylessClientPolicy): TokenBucket {
    let b = this.#buckets.get(p.name);
    if (!b) {
      const rate = p.ratePerSecond ?? 1000;
      b = new TokenBucket(rate, p.burst ?? rate * 2);
      this.#buckets.set(p.name, b);
    }
    return b;
  }

  #allowed(p: KeylessClientPolicy, k: HeldKey): boolean {
    if (p.keyIds?.some((h) => h.toLowerCase() === k.hexId)) return true;
    if (k.ech) {
      const e = k.ech;
      return (p.ech ?? []).some((r) => r === '*' || r === e.configId || (typeof r === 'string' && r.toLowerCase() === e.publicName));
    }
    const names = k.tls!.names;
    return (p.tls ?? []).some((r) => r === '*' || names.includes(r.toLowerCase()));
  }

  #connection(socket: tls.TLSSocket, idleMs: number): void {
    this.#live.add(socket);
    this.#connections++;
    const names = peerNames(socket);
    const policy = this.#policyFor(names);
    const client = policy?.name ?? names[0] ?? '(unnamed)';
    // The policy is looked up again for every request (see update()).
    const remote = socket.remoteAddress;
    this.#log({ event: 'keyserver_connection', client, remote, known: policy !== undefined });
    socket.setNoDelay(true);
    socket.setTimeout(idleMs, () => socket.destroy());
    socket.on('error', () => undefined);
    socket.once('close', () => this.#live.delete(socket));
    const decoder = new FrameDecoder();
    socket.on('data', (chunk: Buffer) => {
      let bodies: Uint8Array[];
      try {
        bodies = decoder.push(chunk);
      } catch (e) {
        this.#log({ event: 'keyserver_protocol_error', client, remote, error: (e as Error).message });
        socket.destroy();
        return;
      }
      for (const body of bodies) {
        let req: KeylessRequest;
        try {
          req = decodeRequest(body);
        } catch (e) {
          this.#log({ event: 'keyserver_protocol_error', client, remote, error: (e as Error).message });
          socket.destroy();
          return;
        }
        void this.#handle(req, this.#policyFor(names), client, remote).then((frame) => {
          if (!socket.destroyed) socket.write(frame);
        });
      }
    });
  }

  async #handle(req: KeylessRequest, policy: KeylessClientPolicy | undefined, client: string, remote: string | undefined): Promise<Uint8Array> {
    const t0 = performance.now();
    const op = req.op === KeylessOp.decap ? 'decap' : req.op === KeylessOp.sign ? 'sign' : req.op === KeylessOp.ping ? 'ping' : `op-${req.op}`;
    const hexId = toHex(req.keyId);
    const held = this.#keys.get(hexId);
    let status: number = KeylessStatus.ok;
    let payload: Uint8Array = new Uint8Array(0);
    try {
      if (!policy) throw new Refusal(KeylessStatus.forbidden, `client ${client} has no policy on this key server`);
      // The rate limit counts key operations; a ping does no cryptography.
      if (req.op !== KeylessOp.ping && !this.#bucket(policy).take()) throw new Refusal(KeylessStatus.rateLimited, `client ${client} is over its rate limit`);
      if (req.op === KeylessOp.ping) {
        // Nothing to do: the answer proves the key server is up.
      } else if (req.op === KeylessOp.decap || req.op === KeylessOp.sign) {
        if (!held) throw new Refusal(KeylessStatus.unknownKey, `no key ${hexId.slice(0, 16)}…`);
        if (!this.#allowed(policy, held)) throw new Refusal(KeylessStatus.forbidden, `client ${client} may not use ${held.label}`);
        payload = req.op === KeylessOp.decap ? await this.#decap(held, req) : await this.#sign(held, req);
      } else {
        throw new Refusal(KeylessStatus.badRequest, `unknown op ${req.op}`);
      }
    } catch (e) {
      if (e instanceof Refusal) status = e.status;
      else if (e instanceof EchError && e.code === 'ERR_DECRYPT') status = KeylessStatus.cryptoFailed;
      else status = KeylessStatus.internal;
      payload = new Uint8Array(Buffer.from(e instanceof Refusal || e instanceof EchError ? e.message : 'internal error', 'utf8').subarray(0, 512));
    }
    const result = keylessStatusName(status);
    const counter = `${op}|${result}`;
    this.#requests.set(counter, (this.#requests.get(counter) ?? 0) + 1);
    if (req.op !== KeylessOp.ping || status !== KeylessStatus.ok) {
      this.#audit({
        event: 'keyless_op',
        op,
        key: held?.label ?? null,
        keyId: hexId || null,
        ...(req.op === KeylessOp.sign ? { scheme: `0x${req.param.toString(16).padStart(4, '0')}` } : {}),
        client,
        remote,
        result,
        durationMs: Math.round((performance.now() - t0) * 1000) / 1000,
      });
    }
    return encodeResponse({ status, id: req.id, payload });
  }

  async #decap(k: HeldKey, req: KeylessRequest): Promise<Uint8Array> {
    if (!k.ech) throw new Refusal(KeylessStatus.badRequest, `${k.label} is not an ECH key`);
    if (req.param !== k.ech.key.kem) throw new Refusal(KeylessStatus.badRequest, `${k.label} has KEM 0x${k.ech.key.kem.toString(16)}, not 0x${req.param.toString(16)}`);
    return await k.ech.key.decap(req.payload);
  }

  async #sign(k: HeldKey, req: KeylessRequest): Promise<Uint8Array> {
    if (!k.tls) throw new Refusal(KeylessStatus.badRequest, `${k.label} is not a TLS key`);
    if (!k.tls.schemes.includes(req.param)) throw new Refusal(KeylessStatus.badRequest, `${k.label} does not sign with scheme 0x${req.param.toString(16)}`);
    if (!isCertificateVerifyInput(req.payload)) throw new Refusal(KeylessStatus.badRequest, 'data is not a TLS 1.3 server CertificateVerify input');
    return await k.tls.sign(req.param, req.payload);
  }
}
