// Test-only: a loopback TCP listener that reads a client's first flight until
// one whole ClientHello, hands it over, and closes the connection.
import { createServer, type Server } from 'node:net';
import { readFirstHandshakeMessage } from '../../src/tls/record.js';

export interface Capture {
  port: number;
  /** The next ClientHello handshake message and the raw bytes it came in. */
  next(): Promise<{ message: Uint8Array; wire: Uint8Array }>;
  close(): Promise<void>;
}

export async function captureClientHellos(): Promise<Capture> {
  const waiting: Array<(v: { message: Uint8Array; wire: Uint8Array }) => void> = [];
  const ready: Array<{ message: Uint8Array; wire: Uint8Array }> = [];
  const server: Server = createServer((socket) => {
    let buf = Buffer.alloc(0);
    socket.on('error', () => undefined);
    socket.on('data', (d) => {
      buf = Buffer.concat([buf, d]);
      let got;
      try {
        got = readFirstHandshakeMessage(buf);
      } catch {
        socket.destroy();
        return;
      }
      if (!got) return;
      const item = { message: got.message.raw, wire: new Uint8Array(buf.subarray(0, got.consumed)) };
      socket.destroy();
      const w = waiting.shift();
      if (w) w(item);
      else ready.push(item);
    });
  });
  await new Promise<void>((res) => server.listen(0, '127.0.0.1', res));
  return {
    port: (server.address() as { port: number }).port,
    next() {
      const r = ready.shift();
      if (r) return Promise.resolve(r);
      return new Promise((res, rej) => {
        const t = setTimeout(() => rej(new Error('no ClientHello captured within 20 s')), 20_000);
        waiting.push((v) => {
          clearTimeout(t);
          res(v);
        });
      });
    },
    close: () => new Promise<void>((res) => server.close(() => res())),
  };
}
