// Shared ticket secrets as a list (fleet mode rotates them across servers):
// the first secret seals, every secret opens; one secret alone behaves as
// Node's `ticketKeys` always did.
import { describe, expect, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import { TicketKeys, type TicketState } from '../src/tls13/tickets.js';

const state: TicketState = { suite: 0x1301, psk: new Uint8Array(32).fill(7), createdAt: 1_800_000_000_000, lifetime: 300, ageAdd: 12345, servername: 'a.example', alpn: 'h2' };
const secret = () => new Uint8Array(randomBytes(48));

describe('TicketKeys with a list of secrets', () => {
  it('seals with the first, opens with any; a server without the secret cannot open', () => {
    const [s0, s1, s2] = [secret(), secret(), secret()];
    const issuer = new TicketKeys({ secret: [s1, s0] });
    const t = issuer.seal(state);
    expect(issuer.open(t)).toEqual(state);
    // After the next rotation on another server: s2 seals, s1 still opens.
    expect(new TicketKeys({ secret: [s2, s1] }).open(t)).toEqual(state);
    // The single-secret form derives the same key.
    expect(new TicketKeys({ secret: s1 }).open(t)).toEqual(state);
    // Only the old secret, or an unrelated one: not ours.
    expect(new TicketKeys({ secret: [s0] }).open(t)).toBeUndefined();
    expect(new TicketKeys({ secret: [s2] }).open(t)).toBeUndefined();
    // The second secret never seals.
    const t2 = new TicketKeys({ secret: [s2, s1] }).seal(state);
    expect(new TicketKeys({ secret: [s1] }).open(t2)).toBeUndefined();
    expect(() => new TicketKeys({ secret: [s0, new Uint8Array(47)] })).toThrow(/48 bytes/);
  });
});
