/**
 * The built-in `ech-status` responder: answers any HTTP/1.x request with a
 * page (or JSON for `Accept: application/json`) that reports what the server
 * saw, like defo.ie's ech-check.
 *
 * @module
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import tls from 'node:tls';
import type { TlsSocket } from '../tls13/socket.js';

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
export function echStatusReport(socket: TlsSocket | tls.TLSSocket): EchStatusReport {
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

const esc = (s: string) => s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

function html(r: EchStatusReport, site: string): string {
  const verdict =
    r.echStatus === 'accepted'
      ? `ECH accepted: you reached <b>${esc(r.innerServerName ?? '')}</b> while the wire only showed <b>${esc(r.outerServerName ?? '')}</b>.`
      : r.echStatus === 'not-offered'
        ? r.protocol === 'TLSv1.2'
          ? 'Your client speaks TLS 1.2 only: ECH needs TLS 1.3.'
          : 'Your client did not offer ECH.'
        : `ECH ${esc(r.echStatus)}: the handshake ran for the public name; retry_configs were sent.`;
  const rows = Object.entries(r)
    .map(([k, v]) => `<tr><th>${esc(k)}</th><td>${esc(v === null ? '-' : String(v))}</td></tr>`)
    .join('\n');
  return `<!doctype html>
<html><head><meta charset="utf-8"><title>ECH status — ${esc(site)}</title></head>
<body><h1>${esc(site)}</h1><p id="verdict">${verdict}</p>
<table id="report">
${rows}
</table></body></html>
`;
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
    const report = echStatusReport(req.socket as unknown as TlsSocket | tls.TLSSocket);
    const wantsJson = /application\/json/.test(req.headers.accept ?? '');
    const body = wantsJson ? `${JSON.stringify({ site, ...report })}\n` : html(report, site);
    res.writeHead(200, {
      'content-type': wantsJson ? 'application/json' : 'text/html; charset=utf-8',
      'content-length': Buffer.byteLength(body),
      'cache-control': 'no-store',
    });
    res.end(req.method === 'HEAD' ? undefined : body);
  };
}
