// Examples are runnable programs: each one runs here and must do what its
// opening comment says.
import { describe, expect, it } from 'vitest';

describe('examples', () => {
  it('decrypt-first-flight: the server sees the hidden name through the cover name', async () => {
    const { main } = await import('../examples/decrypt-first-flight.js');
    expect(await main()).toBe('accepted, inner SNI hidden.example');
  });
});
