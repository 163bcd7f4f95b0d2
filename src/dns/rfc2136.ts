/**
 * Publishing an ECHConfigList by DNS dynamic UPDATE (RFC 2136) signed with
 * TSIG (RFC 8945) to the zone's primary server.
 *
 * For each name: read the HTTPS RRset at its owner (a TSIG-signed query),
 * replace only the `ech` SvcParam of each record (priority, TargetName, alpn,
 * port, hints and unknown keys are kept), and send an UPDATE whose
 * prerequisite is the RRset exactly as read (RFC 2136 §2.4.2), so a
 * concurrent edit makes the update fail with NXRRSET instead of being
 * overwritten; the publisher then reads again and retries. After the update
 * it reads the RRset once more to confirm the server serves the new list.
 *
 * Queries and answers are encoded and decoded with dns-packet. The UPDATE
 * message is written here because it needs class NONE (254), which
 * dns-packet cannot encode; TSIG is computed on the encoded bytes
 * (`tsig.ts`).
 *
 * @module
 */
import dnsPacket from 'dns-packet';
import { equalBytes } from '../wire/bytes.js';
import { Writer } from '../wire/writer.js';
import type { EchPublisher } from '../keys/manager.js';
import { httpsRecordRdata } from './https-record.js';
import { PublishError } from './errors.js';
import { type HttpsName, type PublishOutcome, type PublishReport, parseHttpsName } from './publisher.js';
import { type SvcbRdata, decodeSvcbRdata, encodeSvcbRdata, withEchParam } from './svcb.js';
import { type DnsServerAddress, dnsExchange, parseDnsServer } from './transport.js';
import { type TsigKey, findTsig, randomMessageId, tsigSign, tsigVerifyResponse } from './tsig.js';

const TYPE_HTTPS = 65;
const TYPE_SOA = 6;
const CLASS_IN = 1;
const CLASS_NONE = 254;
const CLASS_ANY = 255;
const OPCODE_UPDATE = 5;

/** RCODEs (RFC 1035, RFC 2136 §2.2). */
const Rcode = { NOERROR: 0, FORMERR: 1, SERVFAIL: 2, NXDOMAIN: 3, NOTIMP: 4, REFUSED: 5, YXDOMAIN: 6, YXRRSET: 7, NXRRSET: 8, NOTAUTH: 9, NOTZONE: 10 } as const;
const rcodeName = (n: number) => Object.entries(Rcode).find(([, v]) => v === n)?.[0] ?? `RCODE_${n}`;

/**
 * Settings of a record created for a name that has no HTTPS record
 * (`createIfMissing`).
 * @group DNS
 * @example
 * ```ts
 * const create: CreateRecordOptions = { alpn: ['h2', 'http/1.1'] };
 * ```
 */
export interface CreateRecordOptions {
  /** SvcPriority; default 1. */
  priority?: number;
  /** TargetName; default `.` on port 443, the host itself on other ports. */
  target?: string;
  /** ALPN ids; default none. */
  alpn?: string[];
}

/**
 * Options of {@link Rfc2136Publisher}.
 * @group DNS
 * @example
 * ```ts
 * const opts: Rfc2136PublisherOptions = {
 *   server: '192.0.2.53:53', zone: 'example.com',
 *   tsig: tsigKey('ech-update.', secretBase64),
 * };
 * ```
 */
export interface Rfc2136PublisherOptions {
  /** The zone's primary server, `HOST:PORT` or an address object. */
  server: string | DnsServerAddress;
  /** The zone to update (the UPDATE's zone section). */
  zone: string;
  /** TSIG key; strongly recommended (without one, updates are unsigned). */
  tsig?: TsigKey;
  /**
   * Give a name with no HTTPS record a new ServiceMode record (default
   * false: such names are reported as `skipped`).
   */
  createIfMissing?: boolean | CreateRecordOptions;
  /**
   * TTL, in seconds, of the records this publisher writes; default 300.
   * Records that already exist are rewritten with this TTL too, so what DNS
   * serves matches the schedule that retires old keys (`rotation.ttl`).
   */
  ttl?: number;
  /** `udp` (default, TCP on truncation) or `tcp`. */
  transport?: 'udp' | 'tcp';
  /** Wait for each answer this long, in ms; default 3000. */
  timeoutMs?: number;
  /** Tries per name for transient failures (timeouts, SERVFAIL, a concurrent edit); default 4. */
  attempts?: number;
  /** Delay before the first retry, in ms, doubled each retry; default 500. */
  backoffMs?: number;
  /** Clock for TSIG time (ms since the epoch); default `Date.now`. */
  now?: () => number;
  /** How to wait between retries; default a real timer. */
  sleep?: (ms: number) => Promise<void>;
}

interface Answer {
  rcode: number;
  raw: Uint8Array;
  decoded: dnsPacket.Packet;
}

/** A record of the RRset as read: TTL and RDATA. */
interface RrsetRecord {
  ttl: number;
  rdata: Uint8Array;
}

function wireName(w: Writer, name: string): void {
  const n = name.replace(/\.$/, '');
  if (n) for (const label of n.split('.')) w.bytes8(Buffer.from(label, 'ascii'));
  w.u8(0);
}

function fqdn(name: string): string {
  return `${name.replace(/\.$/, '').toLowerCase()}.`;
}

/**
 * Publishes by RFC 2136 dynamic UPDATE with TSIG.
 * @group DNS
 * @example
 * ```ts
 * const publisher = new Rfc2136Publisher({
 *   server: '127.0.0.1:5353', zone: 'example.com',
 *   tsig: tsigKey('ech-update.', secretBase64),
 * });
 * const report = await publisher.publish(['www.example.com'], keys.retryConfigList()!);
 * ```
 */
export class Rfc2136Publisher implements EchPublisher {
  readonly #server: DnsServerAddress;
  readonly #zone: string;
  readonly #opts: Rfc2136PublisherOptions;

  constructor(opts: Rfc2136PublisherOptions) {
    this.#server = typeof opts.server === 'string' ? parseDnsServer(opts.server) : opts.server;
    this.#zone = fqdn(opts.zone);
    this.#opts = opts;
    const ttl = opts.ttl ?? 300;
    if (!Number.isInteger(ttl) || ttl < 0 || ttl > 2 ** 31 - 1) throw new PublishError('ERR_PUBLISH_CONFIG', 'ttl must be a whole number of seconds');
  }

  /** A short description for logs (no secrets). */
  get description(): string {
    return `rfc2136 ${this.#server.host}:${this.#server.port} zone ${this.#zone}${this.#opts.tsig ? ` key ${this.#opts.tsig.name}` : ' (unsigned)'}`;
  }

  /**
   * Set the `ech` SvcParam of every name's HTTPS records to `echConfigList`.
   * Throws a {@link PublishError} on the first name that fails; names
   * before it stay updated (publishing the same list again is idempotent).
   */
  async publish(names: readonly string[], echConfigList: Uint8Array): Promise<PublishReport> {
    const out: PublishOutcome[] = [];
    for (const n of names) out.push(await this.#publishOne(parseHttpsName(n), echConfigList));
    const maxTtl = Math.max(0, ...out.map((o) => Math.max(o.ttl ?? 0, o.previousTtl ?? 0)));
    return { publisher: 'rfc2136', names: out, maxTtl };
  }

  /**
   * Read the HTTPS RRset at `owner` from the server (TSIG-signed when a key
   * is configured): the records' RDATA, empty when there are none.
   */
  async readHttpsRecords(owner: string): Promise<Uint8Array[]> {
    return (await this.#read(fqdn(owner))).map((r) => r.rdata);
  }

  /**
   * Check the server and the credentials without changing anything: a
   * TSIG-signed query for the zone's SOA, whose answer must be
   * authoritative, carry the SOA, and (with a TSIG key) be signed with the
   * same key — the signature is verified. A wrong secret, an unknown key
   * name, a server that is not authoritative for the zone or is unreachable
   * each reject with a {@link PublishError} naming the server.
   */
  async check(): Promise<void> {
    const zone = this.#zone.replace(/\.$/, '');
    const query = dnsPacket.encode({
      type: 'query',
      id: randomMessageId(),
      flags: 0,
      questions: [{ type: 'SOA', class: 'IN', name: zone }],
    });
    const what = `SOA query for zone ${this.#zone}`;
    const a = await this.#send(query, what);
    if (isRefusal(a.rcode)) throw this.#refused(a.rcode, what);
    if (a.rcode !== Rcode.NOERROR) throw new PublishError('ERR_DNS_CHECK', `${what} to ${this.#server.host}:${this.#server.port}: ${rcodeName(a.rcode)}`, { rcode: rcodeName(a.rcode) });
    if (!(a.raw[2]! & 0x04)) throw this.#refused(Rcode.NOTAUTH, what, ' (the answer is not authoritative)');
    const soa = (a.decoded.answers ?? []).some((rr) => rr.type === 'SOA' && fqdn(rr.name) === this.#zone);
    if (!soa) throw new PublishError('ERR_DNS_CHECK', `${what} to ${this.#server.host}:${this.#server.port}: the answer carries no SOA for the zone`);
  }

  async #publishOne(n: HttpsName, list: Uint8Array): Promise<PublishOutcome> {
    const attempts = Math.max(1, this.#opts.attempts ?? 4);
    let delay = this.#opts.backoffMs ?? 500;
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.#tryOne(n, list);
      } catch (e) {
        const transient = e instanceof PublishError && (e.code === 'ERR_DNS_UNREACHABLE' || e.rcode === 'SERVFAIL' || e.rcode === 'NXRRSET' || e.rcode === 'YXRRSET');
        if (!transient || attempt >= attempts) {
          if (e instanceof PublishError && transient && attempts > 1) {
            throw new PublishError(e.code, `${e.message} (gave up after ${attempts} tries)`, { cause: e, ...(e.rcode ? { rcode: e.rcode } : {}) });
          }
          throw e;
        }
        await (this.#opts.sleep ?? ((ms) => new Promise<void>((r) => setTimeout(r, ms))))(delay);
        delay *= 2;
      }
    }
  }

  async #tryOne(n: HttpsName, list: Uint8Array): Promise<PublishOutcome> {
    const before = await this.#read(n.owner);
    const ttl = this.#opts.ttl ?? 300;
    const previousTtl = Math.max(0, ...before.map((r) => r.ttl));
    let after: RrsetRecord[];
    let action: PublishOutcome['action'];
    if (before.length === 0) {
      const create = this.#opts.createIfMissing;
      if (!create) return { name: n.name, owner: n.owner, action: 'skipped', records: 0 };
      const c = typeof create === 'object' ? create : {};
      const rdata = httpsRecordRdata({
        name: n.name,
        port: n.port,
        echConfigList: list,
        ...(c.alpn ? { alpn: c.alpn } : {}),
        ...(c.priority !== undefined ? { priority: c.priority } : {}),
        ...(c.target !== undefined ? { target: c.target } : {}),
      });
      after = [{ ttl, rdata }];
      action = 'created';
    } else {
      after = before.map((r) => {
        let rr: SvcbRdata;
        try {
          rr = decodeSvcbRdata(r.rdata);
        } catch (e) {
          throw new PublishError('ERR_DNS_RESPONSE', `the HTTPS record at ${n.owner} does not decode: ${(e as Error).message}`, { cause: e });
        }
        return { ttl, rdata: encodeSvcbRdata(withEchParam(rr, list)) };
      });
      if (after.every((r, i) => equalBytes(r.rdata, before[i]!.rdata) && r.ttl === before[i]!.ttl)) {
        return { name: n.name, owner: n.owner, action: 'unchanged', records: before.length, ttl, previousTtl };
      }
      action = 'updated';
    }
    await this.#update(n.owner, before, after);
    // Confirm: the server now serves exactly the records we wrote.
    const now = await this.#read(n.owner);
    const served = (x: RrsetRecord[]) => x.map((r) => Buffer.from(r.rdata).toString('hex')).sort().join();
    if (served(now) !== served(after)) {
      throw new PublishError('ERR_DNS_UPDATE', `the server accepted the update of ${n.owner} but serves other HTTPS records afterwards`);
    }
    // The TTL the server serves now may differ from the one we wrote (a
    // server may clamp it); the manager must wait for the larger one.
    const servedTtl = Math.max(ttl, ...now.map((r) => r.ttl));
    return { name: n.name, owner: n.owner, action, records: after.length, ttl: servedTtl, previousTtl };
  }

  async #send(message: Uint8Array, what: string): Promise<Answer> {
    const key = this.#opts.tsig;
    const now = this.#opts.now ?? Date.now;
    const signed = key ? tsigSign(message, key, now()) : undefined;
    const raw = await dnsExchange(this.#server, signed?.message ?? message, {
      ...(this.#opts.transport ? { transport: this.#opts.transport } : {}),
      ...(this.#opts.timeoutMs !== undefined ? { timeoutMs: this.#opts.timeoutMs } : {}),
    });
    const rcode = raw[3]! & 0x0f;
    if (!(raw[2]! & 0x80)) throw new PublishError('ERR_DNS_RESPONSE', `${what}: the server sent a query, not a response`);
    if (key && signed) {
      let tsig;
      try {
        tsig = findTsig(raw);
      } catch (e) {
        throw new PublishError('ERR_DNS_RESPONSE', `${what}: malformed answer: ${(e as Error).message}`, { cause: e });
      }
      // A refusal that is not about TSIG may come back unsigned from some
      // servers; report it as the refusal it is.
      if (!tsig && isRefusal(rcode)) throw this.#refused(rcode, what, ' (unsigned answer)');
      try {
        tsigVerifyResponse(raw, key, signed.mac, now());
      } catch (e) {
        if (e instanceof PublishError && e.code === 'ERR_DNS_TSIG') {
          throw new PublishError('ERR_DNS_TSIG', `${what} to ${this.#server.host}:${this.#server.port}: ${e.message}`, { cause: e, rcode: rcodeName(rcode), ...(e.tsigError ? { tsigError: e.tsigError } : {}) });
        }
        throw e;
      }
    }
    let decoded: dnsPacket.Packet;
    try {
      decoded = dnsPacket.decode(Buffer.from(raw));
    } catch (e) {
      throw new PublishError('ERR_DNS_RESPONSE', `${what}: malformed answer: ${(e as Error).message}`, { cause: e });
    }
    return { rcode, raw, decoded };
  }

  #refused(rcode: number, what: string, extra = ''): PublishError {
    const name = rcodeName(rcode);
    const why =
      name === 'NOTZONE' ? `a name is outside zone ${this.#zone}` :
      name === 'NOTAUTH' ? `the server is not authoritative for ${this.#zone}, or the key is not allowed to update it` :
      `the server's policy does not allow this${this.#opts.tsig ? ` for key ${this.#opts.tsig.name}` : ' (no TSIG key configured)'}`;
    return new PublishError('ERR_DNS_REFUSED', `${what}: ${name} from ${this.#server.host}:${this.#server.port}: ${why}${extra}`, { rcode: name });
  }

  async #read(owner: string): Promise<RrsetRecord[]> {
    const query = dnsPacket.encode({
      type: 'query',
      id: randomMessageId(),
      flags: 0, // no recursion: we ask the authority
      questions: [{ type: `UNKNOWN_${TYPE_HTTPS}` as never, class: 'IN', name: owner.replace(/\.$/, '') }],
    });
    const what = `HTTPS query for ${owner}`;
    const a = await this.#send(query, what);
    if (a.rcode === Rcode.NXDOMAIN) return [];
    if (isRefusal(a.rcode)) throw this.#refused(a.rcode, what);
    if (a.rcode !== Rcode.NOERROR) throw new PublishError('ERR_DNS_UPDATE', `${what}: ${rcodeName(a.rcode)}`, { rcode: rcodeName(a.rcode) });
    const q = a.decoded.questions?.[0];
    if (!q || fqdn(q.name) !== fqdn(owner)) throw new PublishError('ERR_DNS_RESPONSE', `${what}: the answer is for another question (${q?.name ?? 'none'})`);
    if (!(a.raw[2]! & 0x04)) throw this.#refused(Rcode.NOTAUTH, what, ' (the answer is not authoritative)');
    const out: RrsetRecord[] = [];
    for (const rr of a.decoded.answers ?? []) {
      const r = rr as { type: string; name: string; ttl?: number; data?: unknown };
      if (r.type !== `UNKNOWN_${TYPE_HTTPS}` || fqdn(r.name) !== fqdn(owner) || !Buffer.isBuffer(r.data)) continue;
      out.push({ ttl: r.ttl ?? 0, rdata: new Uint8Array(r.data) });
    }
    return out;
  }

  async #update(owner: string, before: RrsetRecord[], after: RrsetRecord[]): Promise<void> {
    const w = new Writer();
    // Header: ID, QR=0 opcode=UPDATE, ZOCOUNT=1, PRCOUNT, UPCOUNT, ADCOUNT=0.
    const prereqs = before.length || 1;
    w.u16(randomMessageId()).u16(OPCODE_UPDATE << 11).u16(1).u16(prereqs).u16(1 + after.length).u16(0);
    // Zone section (RFC 2136 §2.3).
    wireName(w, this.#zone);
    w.u16(TYPE_SOA).u16(CLASS_IN);
    // Prerequisites (§2.4): the RRset exactly as read (value-dependent), or
    // "RRset does not exist" (class NONE) when there was none.
    if (before.length) {
      for (const r of before) {
        wireName(w, owner);
        w.u16(TYPE_HTTPS).u16(CLASS_IN).u32(0).bytes16(r.rdata);
      }
    } else {
      wireName(w, owner);
      w.u16(TYPE_HTTPS).u16(CLASS_NONE).u32(0).u16(0);
    }
    // Update (§2.5): delete the RRset (class ANY, RDLENGTH 0), add the new records.
    wireName(w, owner);
    w.u16(TYPE_HTTPS).u16(CLASS_ANY).u32(0).u16(0);
    for (const r of after) {
      wireName(w, owner);
      w.u16(TYPE_HTTPS).u16(CLASS_IN).u32(r.ttl).bytes16(r.rdata);
    }
    const what = `UPDATE of ${owner} in zone ${this.#zone}`;
    let a: Answer;
    try {
      a = await this.#send(w.finish(), what);
    } catch (e) {
      // The key is known: the server just signed its answer to our query
      // with it. Knot reports an ACL denial as NOTAUTH + BADKEY, so here
      // BADKEY means "this key may not make this update".
      if (e instanceof PublishError && e.tsigError === 'BADKEY') {
        throw new PublishError('ERR_DNS_REFUSED', `${what}: NOTAUTH/BADKEY from ${this.#server.host}:${this.#server.port}: the server knows key ${this.#opts.tsig?.name ?? ''} (it signed the answer to our query) but its policy does not allow this key to make this update`, { cause: e, rcode: 'NOTAUTH', tsigError: 'BADKEY' });
      }
      throw e;
    }
    if (a.rcode === Rcode.NOERROR) return;
    if (isRefusal(a.rcode)) throw this.#refused(a.rcode, what);
    const name = rcodeName(a.rcode);
    const why = name === 'NXRRSET' || name === 'YXRRSET' ? 'the RRset changed since it was read' : 'the server did not apply it';
    throw new PublishError('ERR_DNS_UPDATE', `${what}: ${name}: ${why}`, { rcode: name });
  }
}

function isRefusal(rcode: number): boolean {
  return rcode === Rcode.REFUSED || rcode === Rcode.NOTAUTH || rcode === Rcode.NOTZONE;
}

