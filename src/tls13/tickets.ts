/**
 * Self-encrypted session tickets (RFC 9846 §4.6.1, §2.2): the server keeps
 * no session cache; the ticket carries the resumption PSK and what the
 * server must re-check on resumption, sealed with AES-256-GCM under a key that
 * rotates every `rotationMs` (the previous key is kept one more period so
 * tickets stay valid for their whole lifetime). Rotation is lazy: no timers.
 *
 * Ticket format: `key_id[8] || iv[12] || AES-256-GCM(state, aad = key_id)`.
 *
 * @module
 */
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { hkdfExpand, hkdfExtract } from '../crypto/hkdf.js';
import { randomPublicBytes } from '../crypto/random.js';
import { InvalidArgumentError } from '../wire/alert.js';
import { Reader } from '../wire/reader.js';
import { encodeWith, type Writer } from '../wire/writer.js';
import { equalBytes } from '../wire/bytes.js';

/**
 * What a ticket remembers about the session it resumes.
 * @group Server
 * @example
 * ```ts
 * const state: TicketState | undefined = ticketKeys.open(identity);
 * ```
 */
export interface TicketState {
  /** Cipher suite of the original connection (its hash must match). */
  suite: number;
  /** The resumption PSK. */
  psk: Uint8Array;
  /** Issue time, ms since the epoch. */
  createdAt: number;
  /** ticket_lifetime in seconds. */
  lifetime: number;
  /** ticket_age_add. */
  ageAdd: number;
  /** SNI of the original connection ('' for none). */
  servername: string;
  /** ALPN of the original connection ('' for none). */
  alpn: string;
}

interface TicketKey {
  id: Uint8Array;
  key: Uint8Array;
  createdAt: number;
}

const VERSION = 1;

/**
 * The ticket plaintext (a module function, not a closure per ticket: a
 * closure created per call loses its optimised code at every full GC).
 */
function writeTicketState(w: Writer, state: TicketState): void {
  w.u8(VERSION);
  w.u16(state.suite);
  w.bytes8(state.psk);
  w.u32(Math.floor(state.createdAt / 0x100000000));
  w.u32(state.createdAt % 0x100000000);
  w.u32(state.lifetime);
  w.u32(state.ageAdd);
  w.bytes16(Buffer.from(state.servername, 'latin1'));
  w.bytes8(Buffer.from(state.alpn, 'latin1'));
}

/**
 * Rotating ticket-sealing keys.
 * @group Server
 * @example
 * ```ts
 * const keys = new TicketKeys({ rotationMs: 300_000 });
 * const ticket = keys.seal(state);
 * keys.open(ticket)?.psk;
 * ```
 */
export class TicketKeys {
  private readonly rotationMs: number;
  private readonly now: () => number;
  private current: TicketKey | undefined;
  private previous: TicketKey | undefined;

  private readonly fixed: TicketKey | undefined;
  /** More shared secrets' keys: they open tickets, the first secret's key seals. */
  private readonly fixedOpen: TicketKey[] = [];

  /**
   * @param options.rotationMs how long one key seals new tickets
   * @param options.now clock (ms), for tests
   * @param options.secret Node's `ticketKeys` (48 random bytes, shared by
   *   every server of a cluster): the key is derived from it and does not
   *   rotate; rotate by changing the secret. A list of secrets (a fleet
   *   rotating them): the first seals, every one opens.
   */
  constructor(options: { rotationMs?: number; now?: () => number; secret?: Uint8Array | readonly Uint8Array[] } = {}) {
    this.rotationMs = options.rotationMs ?? 300_000;
    this.now = options.now ?? Date.now;
    const secrets = options.secret === undefined ? [] : options.secret instanceof Uint8Array ? [options.secret] : options.secret;
    const derived = secrets.map((secret): TicketKey => {
      if (secret.length !== 48) throw new InvalidArgumentError('ticketKeys must be 48 bytes');
      const prk = hkdfExtract('sha256', new TextEncoder().encode('ech-server ticket key'), secret);
      const okm = hkdfExpand('sha256', prk, new Uint8Array(0), 40);
      return { id: okm.slice(0, 8), key: okm.slice(8, 40), createdAt: 0 };
    });
    this.fixed = derived[0];
    this.fixedOpen = derived.slice(1);
  }

  private rotate(): TicketKey {
    if (this.fixed) return this.fixed;
    const t = this.now();
    if (!this.current || t - this.current.createdAt >= this.rotationMs) {
      // Keep the outgoing key for one more period only if it is still young
      // enough to have sealed live tickets.
      this.previous = this.current && t - this.current.createdAt < 2 * this.rotationMs ? this.current : undefined;
      this.current = { id: new Uint8Array(randomBytes(8)), key: new Uint8Array(randomBytes(32)), createdAt: t };
    }
    return this.current;
  }

  /** Seal a ticket. */
  seal(state: TicketState): Uint8Array {
    const k = this.rotate();
    const plain = encodeWith(writeTicketState, state);
    const iv = randomPublicBytes(12); // public (it is in the ticket); only unique per key
    const c = createCipheriv('aes-256-gcm', k.key, iv);
    c.setAAD(k.id);
    const body = c.update(plain);
    c.final(); // GCM: no output, computes the tag
    // id || iv || ciphertext || tag, written once into the ticket.
    const out = new Uint8Array(k.id.length + iv.length + body.length + 16);
    out.set(k.id, 0);
    out.set(iv, k.id.length);
    out.set(body, k.id.length + iv.length);
    out.set(c.getAuthTag(), k.id.length + iv.length + body.length);
    return out;
  }

  /** Open a ticket; `undefined` if it is not ours, forged, or malformed. */
  open(ticket: Uint8Array): TicketState | undefined {
    if (ticket.length < 8 + 12 + 16 + 1) return undefined;
    this.rotate();
    const id = ticket.subarray(0, 8);
    const k = [this.fixed, ...this.fixedOpen, this.current, this.previous].find((x) => x && equalBytes(x.id, id));
    if (!k) return undefined;
    try {
      const d = createDecipheriv('aes-256-gcm', k.key, ticket.subarray(8, 20));
      d.setAAD(id);
      d.setAuthTag(ticket.subarray(ticket.length - 16));
      const plain = Buffer.concat([d.update(ticket.subarray(20, ticket.length - 16)), d.final()]);
      // NOTE: a Buffer's slice() is a view; read from a plain Uint8Array copy.
      const r = new Reader(new Uint8Array(plain));
      if (r.u8() !== VERSION) return undefined;
      const suite = r.u16();
      const psk = r.bytes8();
      const createdAt = r.u32() * 0x100000000 + r.u32();
      const lifetime = r.u32();
      const ageAdd = r.u32();
      const servername = Buffer.from(r.bytes16()).toString('latin1');
      const alpn = Buffer.from(r.bytes8()).toString('latin1');
      r.end();
      return { suite, psk, createdAt, lifetime, ageAdd, servername, alpn };
    } catch {
      return undefined;
    }
  }
}
