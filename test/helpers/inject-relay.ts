// Test-only: a loopback TCP relay that forwards whole TLS records and injects
// extra bytes at a record boundary once the client's Finished went through
// (the client's first record of outer type application_data, as TLS 1.3
// clients send it: ClientHello, [change_cipher_spec], protected Finished).
import { createServer, connect, type Server, type Socket } from 'node:net';

/** Where the injected bytes go. */
export type InjectDirection = 'to-server' | 'to-client';

export interface InjectRelay {
  port: number;
  /** Connections on which the bytes were injected. */
  injected(): number;
  close(): Promise<void>;
}

const HEADER = 5;

/** Splits a byte stream into whole records; keeps the incomplete tail. */
class RecordSplitter {
  private buf = Buffer.alloc(0);

  push(d: Buffer): Buffer[] {
    this.buf = Buffer.concat([this.buf, d]);
    const out: Buffer[] = [];
    while (this.buf.length >= HEADER) {
      const len = HEADER + this.buf.readUInt16BE(3);
      if (this.buf.length < len) break;
      out.push(this.buf.subarray(0, len));
      this.buf = this.buf.subarray(len);
    }
    return out;
  }

  /** True when no partial record is held. */
  get idle(): boolean {
    return this.buf.length === 0;
  }
}

/**
 * Relay to `targetPort`; on each connection, once the client's Finished
 * record was forwarded, write `inject` to the server (`to-server`: right
 * after that record, before anything the client sends next) or to the client
 * (`to-client`: at the next record boundary of the server's stream).
 */
export async function injectRelay(targetPort: number, direction: InjectDirection, inject: Uint8Array): Promise<InjectRelay> {
  const open = new Set<Socket>();
  let injected = 0;
  const server: Server = createServer((c) => {
    const up = connect(targetPort, '127.0.0.1');
    open.add(c).add(up);
    c.on('close', () => open.delete(c));
    up.on('close', () => open.delete(up));
    const fromClient = new RecordSplitter();
    const fromServer = new RecordSplitter();
    let finishedSeen = false;
    let pendingToClient = false;
    let done = false;
    const injectToClient = (): void => {
      if (!pendingToClient || done || !fromServer.idle) return;
      done = true;
      injected++;
      c.write(inject);
    };
    c.on('data', (d: Buffer) => {
      for (const r of fromClient.push(d)) {
        up.write(r);
        if (!finishedSeen && r[0] === 23) {
          finishedSeen = true;
          if (direction === 'to-server') {
            done = true;
            injected++;
            up.write(inject);
          } else {
            pendingToClient = true;
            injectToClient();
          }
        }
      }
    });
    up.on('data', (d: Buffer) => {
      for (const r of fromServer.push(d)) c.write(r);
      injectToClient();
    });
    c.on('end', () => up.end());
    up.on('end', () => c.end());
    c.on('error', () => up.destroy());
    up.on('error', () => c.destroy());
  });
  await new Promise<void>((res) => server.listen(0, '127.0.0.1', res));
  return {
    port: (server.address() as { port: number }).port,
    injected: () => injected,
    close: () =>
      new Promise<void>((res) => {
        server.close(() => res());
        for (const s of open) s.destroy();
      }),
  };
}
