/**
 * ClientHello capture for browser tests: attach to TCP listeners (typically
 * bound inside the test namespace with netns.ts, served in this process),
 * read each connection's first flight until one whole ClientHello (Chromium's
 * is large and spans several TCP reads), record it with the listener's port,
 * and close the connection. The browser fails to load the page; only its
 * first flight matters.
 */
import type { Server, Socket } from 'node:net';
import { readFirstHandshakeMessage } from '../../src/tls/record.js';

export interface CapturedHello {
  /** Local port the browser connected to. */
  port: number;
  /** The ClientHello handshake message (4-byte header included). */
  message: Uint8Array;
  /** The TLS records it came in, as received. */
  wire: Uint8Array;
  /** How many 'data' events it took. */
  reads: number;
}

export class HelloCapture {
  readonly hellos: CapturedHello[] = [];
  /** Connections that closed or broke before a whole ClientHello arrived. */
  readonly incomplete: Array<{ port: number; bytes: number; error?: string }> = [];
  private readonly waiters: Array<{ pred: (h: CapturedHello) => boolean; resolve: (h: CapturedHello) => void }> = [];
  private readonly sockets = new Set<Socket>();

  attach(server: Server): this {
    server.on('connection', (socket) => this.onConnection(socket));
    return this;
  }

  private onConnection(socket: Socket): void {
    this.sockets.add(socket);
    const port = socket.localPort ?? 0;
    let buf = Buffer.alloc(0);
    let reads = 0;
    let done = false;
    socket.setTimeout(15_000, () => socket.destroy());
    socket.on('error', () => undefined);
    socket.on('close', () => {
      this.sockets.delete(socket);
      if (!done) this.incomplete.push({ port, bytes: buf.length });
    });
    socket.on('data', (d: Buffer) => {
      if (done) return;
      buf = Buffer.concat([buf, d]);
      reads++;
      let got;
      try {
        got = readFirstHandshakeMessage(buf);
      } catch (e) {
        done = true;
        this.incomplete.push({ port, bytes: buf.length, error: e instanceof Error ? e.message : String(e) });
        socket.destroy();
        return;
      }
      if (!got) return;
      done = true;
      socket.destroy();
      const hello: CapturedHello = { port, message: got.message.raw, wire: new Uint8Array(buf.subarray(0, got.consumed)), reads };
      this.hellos.push(hello);
      for (const w of [...this.waiters]) {
        if (w.pred(hello)) {
          this.waiters.splice(this.waiters.indexOf(w), 1);
          w.resolve(hello);
        }
      }
    });
  }

  /** The first ClientHello (past or future) matching `pred`. */
  next(pred: (h: CapturedHello) => boolean = () => true, timeoutMs = 20_000): Promise<CapturedHello> {
    const seen = this.hellos.find(pred);
    if (seen) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      const w = {
        pred,
        resolve: (h: CapturedHello) => {
          clearTimeout(t);
          resolve(h);
        },
      };
      const t = setTimeout(() => {
        this.waiters.splice(this.waiters.indexOf(w), 1);
        reject(new Error(`no ClientHello within ${timeoutMs} ms (captured: ${this.hellos.map((h) => h.port).join(',') || 'none'}; incomplete: ${JSON.stringify(this.incomplete)})`));
      }, timeoutMs);
      this.waiters.push(w);
    });
  }

  /** A ClientHello on `port` that arrives from now on. */
  nextOnPort(port: number, timeoutMs?: number): Promise<CapturedHello> {
    const already = this.hellos.length;
    return this.next((h) => h.port === port && this.hellos.indexOf(h) >= already, timeoutMs);
  }

  close(): void {
    for (const s of this.sockets) s.destroy();
  }
}
