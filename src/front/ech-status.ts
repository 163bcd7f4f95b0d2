/**
 * The built-in `ech-status` responder: answers any HTTP/1.x request with a
 * page (or JSON for `Accept: application/json`) that reports what the server
 * saw, like defo.ie's ech-check.
 *
 * @module
 */
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import tls from 'node:tls';
import type { Duplex } from 'node:stream';
import type { TlsSocket } from '../tls13/socket.js';
import { ServerSession } from '../tls13/session.js';

/** What the page can report on: our engine's socket or session, or node:tls's socket (TLS 1.2 clients). */
type Reported = TlsSocket | ServerSession | tls.TLSSocket;

/**
 * What the server saw on one connection.
 * @group Front end
 */
export interface EchStatusReport {
  echStatus: string;
  /** `TLSv1.3`, or `TLSv1.2` for a client that offered nothing newer (no ECH then). */
  protocol: string | null;
  outerServerName: string | null;
  innerServerName: string | null;
  servername: string | null;
  cipher: string | null;
  group: string | null;
  alpn: string | null;
  helloRetryRequest: boolean;
  resumed: boolean;
  configId: number | null;
}

/**
 * The report for a connection of our engine, or of node:tls for a TLS 1.2
 * client (the front end's `tls12`: ECH not offered, nothing hidden).
 * @group Front end
 * @example
 * ```ts
 * const report = echStatusReport(tlsSocket);
 * ```
 */
export function echStatusReport(socket: Reported): EchStatusReport {
  if (socket instanceof tls.TLSSocket) {
    const name = socket.servername || null;
    return {
      echStatus: 'not-offered',
      protocol: socket.getProtocol(),
      outerServerName: name,
      innerServerName: null,
      servername: name,
      cipher: socket.getCipher()?.standardName ?? null,
      // node:tls does not report the group on the server side.
      group: null,
      alpn: socket.alpnProtocol || null,
      helloRetryRequest: false,
      resumed: socket.isSessionReused(),
      configId: null,
    };
  }
  const a = socket.attributes;
  const h = socket.handshake;
  const str = (v: unknown) => (typeof v === 'string' ? v : null);
  return {
    echStatus: str(a['echStatus']) ?? 'not-offered',
    protocol: socket.getProtocol(),
    outerServerName: str(a['outerServerName']),
    innerServerName: a['echStatus'] === 'accepted' ? str(a['innerServerName']) : null,
    servername: socket.servername || null,
    cipher: socket.getCipher()?.name ?? null,
    group: socket.group ?? null,
    alpn: socket.alpnProtocol || null,
    helloRetryRequest: h?.helloRetry ?? false,
    resumed: h?.resumed ?? false,
    configId: typeof a['echConfigId'] === 'number' ? a['echConfigId'] : null,
  };
}

const ESCAPED = /[&<>"']/g;
/** HTML-escape `s` (`&<>"'` as numeric references); one pass over the characters when there is nothing to escape. */
function esc(s: string): string {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c === 38 || c === 60 || c === 62 || c === 34 || c === 39) return s.replace(ESCAPED, (m) => `&#${m.charCodeAt(0)};`);
  }
  return s;
}

/** The report's fields in page order (the order of {@link EchStatusReport}), with their rows' opening markup. */
const ROWS: ReadonlyArray<readonly [keyof EchStatusReport, string]> = (
  ['echStatus', 'protocol', 'outerServerName', 'innerServerName', 'servername', 'cipher', 'group', 'alpn', 'helloRetryRequest', 'resumed', 'configId'] as const
).map((k, i) => [k, `${i === 0 ? '' : '\n'}<tr><th>${k}</th><td>`] as const);

/** The page's head for each site (sites are configuration: a handful). */
const heads = new Map<string, string>();

function html(r: EchStatusReport, site: string): string {
  const verdict =
    r.echStatus === 'accepted'
      ? `ECH accepted: you reached <b>${esc(r.innerServerName ?? '')}</b> while the wire only showed <b>${esc(r.outerServerName ?? '')}</b>.`
      : r.echStatus === 'not-offered'
        ? r.protocol === 'TLSv1.2'
          ? 'Your client speaks TLS 1.2 only: ECH needs TLS 1.3.'
          : 'Your client did not offer ECH.'
        : `ECH ${esc(r.echStatus)}: the handshake ran for the public name; retry_configs were sent.`;
  let rows = '';
  for (const [k, open] of ROWS) {
    const v = r[k];
    rows += `${open}${v === null ? '-' : typeof v === 'string' ? esc(v) : String(v)}</td></tr>`;
  }
  let head = heads.get(site);
  if (head === undefined) {
    head = `<!doctype html>
<html><head><meta charset="utf-8"><title>ECH status — ${esc(site)}</title></head>
<body><h1>${esc(site)}</h1><p id="verdict">`;
    if (heads.size < 256) heads.set(site, head);
  }
  return `${head}${verdict}</p>
<table id="report">
${rows}
</table></body></html>
`;
}

/** The page for one request: JSON when `accept` asks for it, else HTML. */
function page(socket: Reported, site: string, accept: string | undefined): { json: boolean; body: string } {
  const report = echStatusReport(socket);
  const json = accept !== undefined && accept.includes('application/json');
  return { json, body: json ? `${JSON.stringify({ site, ...report })}\n` : html(report, site) };
}

function destroyOnError(this: Duplex): void {
  this.destroy();
}

/**
 * An `http.Server` request listener for the ech-status page of `site`. The
 * request's socket must be one of our {@link TlsSocket}s or a `tls.TLSSocket`.
 * @group Front end
 * @example
 * ```ts
 * const app = http.createServer(echStatusHandler('alpha.example'));
 * server.on('secureConnection', (s) => app.emit('connection', s));
 * ```
 */
export function echStatusHandler(site: string): (req: IncomingMessage, res: ServerResponse) => void {
  return (req, res) => {
    const { json, body } = page(req.socket as unknown as TlsSocket | tls.TLSSocket, site, req.headers.accept);
    res.writeHead(200, {
      'content-type': json ? 'application/json' : 'text/html; charset=utf-8',
      'content-length': Buffer.byteLength(body),
      'cache-control': 'no-store',
    });
    res.end(req.method === 'HEAD' ? undefined : body);
  };
}

/** What {@link simpleRequest} found in a one-shot request. */
interface SimpleRequest {
  head: boolean;
  /** The `Accept` values joined with `, ` as `http` joins them, or undefined. */
  accept: string | undefined;
}

/** Largest request the fast path reads; anything longer goes to `http.Server` (its own limit is 16 KiB). */
const SIMPLE_MAX = 8192;
/** GET or HEAD, an RFC 3986 target, HTTP/1.0 or 1.1. */
const REQUEST_LINE = /^(GET|HEAD) [A-Za-z0-9\-._~:/?#[\]@!$&'()*+,;=%]+ HTTP\/1\.([01])$/;
/** A token, a colon, a value of visible ASCII, spaces and tabs (no obs-text, no obs-fold). */
const HEADER_LINE = /^([!#$%&'*+\-.^_`|~0-9A-Za-z]+):[ \t]*((?:[\x21-\x7e](?:[\t\x20-\x7e]*[\x21-\x7e])?)?)[ \t]*$/;

/**
 * The request in `chunk` when it is one whole, plain, one-shot request:
 * GET or HEAD, no body, nothing after it, and a connection that closes
 * after the answer (HTTP/1.1 with `Connection: close`, HTTP/1.0 without
 * keep-alive). Undefined for anything else — a keep-alive request, a
 * partial or pipelined one, a body, `Expect`, `Upgrade`, any byte the
 * strict grammar here does not take — which `http.Server` then handles.
 * Every request taken here is one `http.Server` (Node's llhttp) parses the
 * same way; the answer is then byte for byte the one it would send.
 */
function simpleRequest(chunk: Buffer): SimpleRequest | undefined {
  const n = chunk.length;
  if (n > SIMPLE_MAX || n < 4 || chunk[n - 4] !== 13 || chunk[n - 3] !== 10 || chunk[n - 2] !== 13 || chunk[n - 1] !== 10) return undefined;
  const lines = chunk.toString('latin1', 0, n - 4).split('\r\n');
  const rl = REQUEST_LINE.exec(lines[0]!);
  if (!rl) return undefined;
  const http11 = rl[2] === '1';
  let hosts = 0;
  let close = false;
  let accept: string | undefined;
  for (let i = 1; i < lines.length; i++) {
    const h = HEADER_LINE.exec(lines[i]!);
    if (!h) return undefined;
    const name = h[1]!.toLowerCase();
    const value = h[2]!;
    switch (name) {
      case 'host':
        hosts++;
        break;
      case 'accept':
        accept = accept === undefined ? value : `${accept}, ${value}`;
        break;
      case 'connection':
        // Only `close` tokens: keep-alive, upgrade and the rest go to http.Server.
        for (const t of value.split(',')) {
          if (t.trim().toLowerCase() !== 'close') return undefined;
        }
        close = true;
        break;
      case 'content-length':
      case 'transfer-encoding':
      case 'expect':
      case 'upgrade':
      case 'keep-alive':
        return undefined;
    }
  }
  // http.Server answers an HTTP/1.1 request without Host with 400.
  if (hosts > 1 || (http11 && hosts !== 1)) return undefined;
  // HTTP/1.1 keeps the connection alive unless told to close.
  if (http11 && !close) return undefined;
  return { head: rl[1] === 'HEAD', accept };
}

let dateSecond = -1;
let dateText = '';
/** The `Date` header's value, made once a second as `http` does. */
function httpDate(): string {
  const now = Date.now();
  const second = Math.floor(now / 1000);
  if (second !== dateSecond) {
    dateSecond = second;
    dateText = new Date(now).toUTCString();
  }
  return dateText;
}

/**
 * Serve the ech-status page of `site` on a terminated connection. A
 * one-shot request (GET or HEAD with `Connection: close`, or HTTP/1.0;
 * see `simpleRequest`) that arrives whole in the first read is answered
 * here, with the bytes `http.Server` and {@link echStatusHandler} would
 * write (same status line, headers in the same order, `Date`, `Connection:
 * close`, same body), and the socket is then closed as `http.Server` closes
 * it (`destroySoon`). Everything else — keep-alive, pipelining, bodies, a
 * request split over reads, anything unusual — is handed, bytes unread, to
 * the `http.Server` that `app(site)` returns (one per site), as before. The
 * fast path spares a one-shot request the server's per-connection set-up
 * (parser, listeners, IncomingMessage, ServerResponse).
 * @group Front end
 * @example
 * ```ts
 * const app = http.createServer(echStatusHandler('alpha.example'));
 * tlsSocket.once('secure', () => serveEchStatus(tlsSocket, 'alpha.example', () => app));
 * ```
 */
export function serveEchStatus(socket: Reported, site: string, app: (site: string) => Server): void {
  if (socket instanceof ServerSession) return serveSession(socket, site, app);
  // As http.Server does for its connections: a socket error (the engine
  // closed the connection on a bad record, a reset) ends this socket, never
  // the process. The front end has logged and counted it already.
  socket.on('error', destroyOnError);
  const onData = (chunk: Buffer) => {
    socket.off('data', onData);
    const req = simpleRequest(chunk);
    if (!req) {
      // Back to the stream, then to http.Server as a new connection: it
      // reads this chunk first.
      socket.pause();
      socket.unshift(chunk);
      app(site).emit('connection', socket);
      socket.resume();
      return;
    }
    // The same read may also have carried a record that ended the
    // connection (e.g. an unprotected record after Finished): nothing to answer.
    if (!socket.writable) {
      socket.destroy();
      return;
    }
    socket.write(answer(socket, site, req));
    socket.destroySoon();
  };
  socket.on('data', onData);
}

/**
 * The fast path's whole answer: what `http.Server` with {@link echStatusHandler}
 * writes, as bytes. The body is encoded once (its length for the header
 * and its bytes from the same encoding: a page built by concatenation is
 * flattened once, not once for `Buffer.byteLength` and again for the write).
 */
function answer(socket: Reported, site: string, req: SimpleRequest): Buffer {
  const { json, body } = page(socket, site, req.accept);
  const bytes = Buffer.from(body);
  // ASCII only: latin1 is its UTF-8.
  const head = `HTTP/1.1 200 OK\r\ncontent-type: ${json ? 'application/json' : 'text/html; charset=utf-8'}\r\ncontent-length: ${bytes.length}\r\ncache-control: no-store\r\nDate: ${httpDate()}\r\nConnection: close\r\n\r\n`;
  if (req.head) return Buffer.from(head, 'latin1');
  const out = Buffer.allocUnsafe(head.length + bytes.length);
  out.write(head, 0, 'latin1');
  out.set(bytes, head.length);
  return out;
}

/**
 * {@link serveEchStatus} on a stream-less {@link ServerSession}: the same
 * answer from the first plaintext record, and the same close (close_notify,
 * FIN, read until the peer's FIN); anything else gets the session as a
 * `TlsSocket` (`session.stream()`), handed to `http.Server` with this
 * record put back in front.
 */
function serveSession(session: ServerSession, site: string, app: (site: string) => Server): void {
  session.read(
    (b) => {
      session.read();
      const chunk = Buffer.from(b.buffer, b.byteOffset, b.byteLength);
      const req = simpleRequest(chunk);
      if (!req) {
        const socket = session.stream();
        socket.on('error', destroyOnError);
        socket.unshift(chunk);
        app(site).emit('connection', socket);
        return;
      }
      if (!session.writable) {
        session.destroy();
        return;
      }
      session.write(answer(session, site, req));
      session.end();
    },
    // The peer's end of data without a request: close as a TlsSocket without allowHalfOpen does.
    () => session.end(),
  );
}
