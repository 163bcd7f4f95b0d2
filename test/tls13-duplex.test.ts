// The Duplex glue shared by TlsSocket and TlsClientSocket (src/tls13/duplex.ts):
// its two options are the deliberate differences between the sides.
import { Duplex } from 'node:stream';
import { createHook } from 'node:async_hooks';
import { describe, expect, test } from 'vitest';
import { TlsDuplex, type TlsDuplexOptions, type TlsEngine } from '../src/tls13/duplex.js';

/** A transport whose writes complete only when `release()` is called. */
function slowTransport() {
  const callbacks: Array<() => void> = [];
  const raw = new Duplex({
    writableHighWaterMark: 1,
    write(_chunk, _enc, cb) {
      callbacks.push(() => cb());
    },
    final(cb) {
      cb();
    },
    read() {},
  });
  return { raw, release: () => callbacks.splice(0).forEach((f) => f()) };
}

/** The glue over an engine that passes plaintext through unchanged, already secure. */
class Plain extends TlsDuplex {
  readonly connection: TlsEngine;
  constructor(raw: Duplex, options: TlsDuplexOptions) {
    super(raw, options);
    this.connection = { receive: async () => undefined, write: (b) => this.toTransport(b), close: () => undefined };
    this.markSecure();
  }
  protected receiveFailed(e: Error): void {
    this.destroy(e);
  }
}

const server: TlsDuplexOptions = { allowHalfOpen: false, writeBackpressure: true, gracefulClose: true };
const client: TlsDuplexOptions = { allowHalfOpen: false, writeBackpressure: false, gracefulClose: false };

describe('TlsDuplex options', () => {
  test('writeBackpressure: a write completes once the transport drained (server), at once without (client)', async () => {
    for (const options of [server, client]) {
      const t = slowTransport();
      const s = new Plain(t.raw, options);
      let done = false;
      s.write('hello', () => (done = true));
      await new Promise((r) => setTimeout(r, 20));
      expect(done, JSON.stringify(options)).toBe(!options.writeBackpressure);
      t.release();
      await new Promise((r) => setTimeout(r, 20));
      expect(done).toBe(true);
      s.destroy();
    }
  });

  test('gracefulClose: after end() the transport lingers for the peer\'s FIN (server); without it it is destroyed at once (client)', async () => {
    for (const options of [server, client]) {
      const t = slowTransport();
      const s = new Plain(t.raw, options);
      s.end();
      await new Promise((r) => s.once('finish', r));
      s.destroy();
      await new Promise((r) => setTimeout(r, 20));
      expect(t.raw.destroyed, JSON.stringify(options)).toBe(!options.gracefulClose);
      if (options.gracefulClose) {
        expect(t.raw.writableEnded).toBe(true);
        // The peer's FIN arrives: the transport may go.
        t.raw.push(null);
        t.raw.destroy();
      }
    }
  });

  test('lingering server sockets share one Node timer for their linger deadline, not one each', async () => {
    let timeouts = 0;
    const hook = createHook({
      init(_id, type) {
        if (type === 'Timeout' && /src\/tls13\//.test(new Error().stack ?? '')) timeouts++;
      },
    });
    const raws: Duplex[] = [];
    hook.enable();
    try {
      for (let i = 0; i < 5; i++) {
        const t = slowTransport();
        raws.push(t.raw);
        const s = new Plain(t.raw, server);
        s.end();
        await new Promise((r) => s.once('finish', r));
        s.destroy();
        t.release();
      }
    } finally {
      hook.disable();
    }
    expect(timeouts).toBeLessThanOrEqual(1);
    for (const r of raws) r.destroy();
  });
});
