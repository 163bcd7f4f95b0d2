// Test-only: many clients that write one HTTP request and half-close at once
// (`socket.end(request)`, what `printf ... | openssl s_client` and scripts
// do), each counted as answered, lost (a clean close without a whole HTTP
// response), reset, or failed. Bounded in count and in time.
import tls from 'node:tls';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { connectEch } from '../../src/tls13/ech-client.js';

/** How a client sends its request. */
export type HalfCloseMode =
  /** Node's tls.connect; `end(request)` in the `secureConnect` listener. */
  | 'after-secure'
  /** Node's tls.connect; `end(request)` right after `tls.connect`, before the handshake. */
  | 'at-connect'
  /**
   * Node's tls.connect; `write(request)` in the `secureConnect` listener and
   * `end()` 0-5 ms later (a script closing its input after the request).
   */
  | 'write-then-end'
  /** The project's connectEch client (ECH offered); `end(request)` once it resolves. */
  | 'ech'
  /** connectEch; `write(request)` once it resolves and `end()` 0-5 ms later. */
  | 'ech-write-then-end';

export interface HalfCloseLoadOptions {
  port: number;
  host?: string;
  mode: HalfCloseMode;
  /** Inner (ECH) or only server name, and the request's Host. */
  servername: string;
  ca: string;
  echConfigList?: Uint8Array;
  count: number;
  concurrency: number;
  /** Stop starting connections after this long (ms); the result says how many ran. */
  deadlineMs: number;
  /** Give up on one connection after this long (ms): counted as `timedOut`. */
  perConnectionMs?: number;
}

export interface HalfCloseLoadResult {
  started: number;
  answered: number;
  /** Clean close (FIN, no error) without a whole HTTP response. */
  lost: number;
  /** ECONNRESET / EPIPE. */
  reset: number;
  /** Other errors (handshake failures...). */
  errors: number;
  timedOut: number;
  /** A few examples of what went wrong, for the assertion message. */
  samples: string[];
  ms: number;
}

type Outcome = 'answered' | 'lost' | 'reset' | 'errors' | 'timedOut';

/** True when `b` holds a whole HTTP/1.1 response (headers and Content-Length body). */
export function wholeResponse(b: Buffer): boolean {
  const end = b.indexOf('\r\n\r\n');
  if (end < 0) return false;
  const head = b.subarray(0, end).toString('latin1');
  if (!/^HTTP\/1\.[01] \d{3} /.test(head)) return false;
  const m = /\r\ncontent-length:\s*(\d+)/i.exec(head);
  return m ? b.length - (end + 4) >= Number(m[1]) : false;
}

const request = (host: string) => `GET / HTTP/1.1\r\nHost: ${host}\r\nAccept: application/json\r\nConnection: close\r\n\r\n`;

function one(o: HalfCloseLoadOptions): Promise<{ outcome: Outcome; detail: string }> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    const events: string[] = [];
    let settled = false;
    let error: NodeJS.ErrnoException | undefined;
    let sock: { destroy(): void } | undefined;
    let localPort: number | undefined;
    const settle = (outcome: Outcome, detail = '') => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      sock?.destroy();
      resolve({ outcome, detail: `port ${localPort ?? '?'} [${events.join(',')}] ${detail}` });
    };
    const limit = o.perConnectionMs ?? 15_000;
    const timer = setTimeout(() => settle('timedOut', `no close after ${limit} ms`), limit);
    const onClose = () => {
      const b = Buffer.concat(chunks);
      if (wholeResponse(b)) settle('answered');
      else if (error && (error.code === 'ECONNRESET' || error.code === 'EPIPE')) settle('reset', `${error.code} after ${b.length} bytes`);
      else if (error) settle('errors', `${error.code ?? ''} ${error.message}`);
      else settle('lost', `clean close after ${b.length} response bytes`);
    };
    const watch = (s: Duplex) => {
      s.on('data', (d: Buffer) => chunks.push(d));
      s.on('error', (e: NodeJS.ErrnoException) => (error ??= e));
      s.on('end', () => events.push('end'));
      s.on('session', () => events.push('session'));
      s.on('close', onClose);
    };
    const host = o.host ?? '127.0.0.1';
    if (o.mode === 'ech' || o.mode === 'ech-write-then-end') {
      connectEch({ host, port: o.port, servername: o.servername, echConfigList: o.echConfigList, ca: o.ca, ALPNProtocols: ['http/1.1'], timeoutMs: limit }).then(
        (r) => {
          const s = r.socket;
          sock = s;
          localPort = (s.socket as Socket).localPort;
          if (r.echStatus !== 'accepted') {
            settle('errors', `ECH ${r.echStatus}`);
            return;
          }
          events.push('secure');
          watch(s);
          // Transport errors (a reset) are reported on the transport.
          s.socket.on('error', (e: NodeJS.ErrnoException) => (error ??= e));
          if (o.mode === 'ech') s.end(request(o.servername));
          else {
            s.write(request(o.servername));
            setTimeout(() => s.end(), Math.random() * 5);
          }
        },
        (e: NodeJS.ErrnoException) => {
          error = e;
          settle(e.code === 'ECONNRESET' || e.code === 'EPIPE' ? 'reset' : 'errors', `${e.code ?? ''} ${e.message}`);
        },
      );
      return;
    }
    const s = tls.connect({ host, port: o.port, servername: o.servername, ca: o.ca, ALPNProtocols: ['http/1.1'] });
    sock = s;
    s.once('connect', () => (localPort = s.localPort));
    s.once('secureConnect', () => events.push('secure'));
    watch(s);
    if (o.mode === 'at-connect') s.end(request(o.servername));
    else if (o.mode === 'write-then-end') {
      s.once('secureConnect', () => {
        s.write(request(o.servername));
        setTimeout(() => s.end(), Math.random() * 5);
      });
    } else s.once('secureConnect', () => s.end(request(o.servername)));
  });
}

/** Run `count` half-closing clients, `concurrency` at a time, until done or `deadlineMs`. */
export async function halfCloseLoad(o: HalfCloseLoadOptions): Promise<HalfCloseLoadResult> {
  const t0 = Date.now();
  const r: HalfCloseLoadResult = { started: 0, answered: 0, lost: 0, reset: 0, errors: 0, timedOut: 0, samples: [], ms: 0 };
  const worker = async () => {
    while (r.started < o.count && Date.now() - t0 < o.deadlineMs) {
      r.started++;
      const { outcome, detail } = await one(o);
      r[outcome]++;
      if (outcome !== 'answered' && r.samples.length < 8) r.samples.push(`${outcome}: ${detail}`);
    }
  };
  await Promise.all(Array.from({ length: o.concurrency }, worker));
  r.ms = Date.now() - t0;
  return r;
}
