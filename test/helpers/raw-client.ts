// Test-only: a raw TCP peer that writes hand-made TLS records and collects
// what comes back (plaintext records only: enough for ServerHello,
// HelloRetryRequest and alerts before handshake keys).
import { connect, type Socket } from 'node:net';
import { readRecord } from '../../src/tls/record.js';

export interface RawPeer {
  socket: Socket;
  send(bytes: Uint8Array): void;
  /** Next record (type, fragment); rejects on close or after `ms`. */
  nextRecord(ms?: number): Promise<{ type: number; fragment: Uint8Array }>;
  /** Resolves when the server closes the connection. */
  closed: Promise<void>;
  close(): void;
}

export function rawPeer(port: number): Promise<RawPeer> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1');
    let buf = new Uint8Array(0);
    const waiters: Array<() => void> = [];
    let ended = false;
    const wake = () => waiters.splice(0).forEach((w) => w());
    socket.on('data', (d) => {
      const n = new Uint8Array(buf.length + d.length);
      n.set(buf);
      n.set(d, buf.length);
      buf = n;
      wake();
    });
    const closed = new Promise<void>((res) => socket.on('close', () => res()));
    socket.on('close', () => {
      ended = true;
      wake();
    });
    socket.on('error', () => undefined);
    socket.on('connect', () =>
      resolve({
        socket,
        send: (b) => socket.write(b),
        closed,
        close: () => socket.destroy(),
        async nextRecord(ms = 5000) {
          const deadline = Date.now() + ms;
          for (;;) {
            const r = readRecord(buf, 0);
            if (r) {
              buf = buf.slice(r.next);
              return { type: r.record.type, fragment: r.record.fragment.slice() };
            }
            if (ended) throw new Error('connection closed');
            if (Date.now() > deadline) throw new Error('timed out waiting for a record');
            await new Promise<void>((res) => {
              const t = setTimeout(res, Math.max(1, deadline - Date.now()));
              waiters.push(() => {
                clearTimeout(t);
                res();
              });
            });
          }
        },
      }),
    );
    socket.once('error', reject);
  });
}

/** Read records until an alert; returns its description code. */
export async function expectAlertRecord(peer: RawPeer): Promise<number> {
  for (;;) {
    const r = await peer.nextRecord();
    if (r.type === 21) return r.fragment[1]!;
  }
}
