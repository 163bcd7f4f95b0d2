// Shows a load balancer built on EchFrontEnd. It holds the ECH key but no
// certificate for the hidden sites it passes through: alpha.example and
// beta.example go, as ClientHelloInner (split mode, RFC 9849 §3.1), to two
// backends running this library's engine in backend mode
// (`createEchHook({ role: 'backend' })`), which hold the certificates, write
// the accept confirmation and terminate TLS. legacy.example is terminated at
// the front end and forwarded over TLS to a plain Node `https` backend that
// knows nothing of ECH, verified with that backend's own CA. Each backend
// reports what it saw. Keys and certificates are made at run time;
// everything is on 127.0.0.1.
//
// Run: npx tsx examples/load-balancer.ts   (in this repo after `npm run build`: 'ech-server'
// resolves to the package itself; in an app, after `npm install ech-server`)
import https from 'node:https';
import type { AddressInfo, Server } from 'node:net';
import { EchFrontEnd, EchKeySet, createEchHook, createEchServer, encodeEchConfigList, generateEchKey, type TlsSocket } from 'ech-server';
import { createTestPki, echRequest, type EchRequest } from 'ech-server/testing';

/** What a backend reported for one client. */
export interface BackendView {
  asked: string;
  /** ECH status the client ended with. */
  echStatus: string;
  backend: string;
  /** The server name the backend's TLS handshake ran for. */
  servername: string;
  /** Whether the backend's own handshake confirmed ECH (split mode). */
  backendEch: string;
}

function listen(server: Server): Promise<number> {
  return new Promise((res) => server.listen(0, '127.0.0.1', () => res((server.address() as AddressInfo).port)));
}

export async function main(client: EchRequest = echRequest): Promise<BackendView[]> {
  const key = generateEchKey({ publicName: 'lb.example', maximumNameLength: 32 });
  const pki = createTestPki();
  const legacyPki = createTestPki(); // the legacy backend's own, internal CA

  // Two ECH-aware backends: our engine in backend mode, no ECH key.
  const backends = await Promise.all(
    ['alpha.example', 'beta.example'].map(async (name, i) => {
      const server = createEchServer({ ...pki.issue(['alpha.example', 'beta.example']), ALPNProtocols: ['http/1.1'], onClientHello: createEchHook({ role: 'backend' }) }, (s: TlsSocket) => {
        s.on('error', () => undefined);
        s.once('data', () =>
          s.end(`HTTP/1.1 200 OK\r\nconnection: close\r\n\r\n${JSON.stringify({ backend: `backend-${i + 1}`, servername: s.servername, backendEch: String(s.attributes['echStatus']) })}`),
        );
      });
      server.on('tlsClientError', () => undefined);
      return { name, server, port: await listen(server) };
    }),
  );
  // A legacy HTTPS backend (node:https), certificate for an internal name.
  const legacy = https.createServer({ ...legacyPki.issue(['legacy.internal']) }, (req, res) => {
    res.setHeader('connection', 'close');
    res.end(JSON.stringify({ backend: 'legacy-https', servername: (req.socket as import('node:tls').TLSSocket).servername, backendEch: 'n/a (Node https)' }));
  });
  const legacyPort = await listen(legacy);

  const fe = new EchFrontEnd({
    keys: new EchKeySet([key]),
    publicName: pki.issue(['lb.example']),
    routes: [
      // split mode: no cert, no key here; a pool of both backends behind
      // each name (round-robin, failing over when one is down), its own first
      ...backends.map((b, i) => ({
        serverName: b.name,
        action: { passthrough: { host: '127.0.0.1', port: b.port } },
        backends: [b, backends[1 - i]!].map((x) => ({ host: '127.0.0.1', port: x.port })),
        healthCheck: { intervalMs: 2000, timeoutMs: 1000, fall: 3, rise: 2 },
      })),
      // terminate here, re-encrypt to the legacy backend
      {
        serverName: 'legacy.example',
        ...pki.issue(['legacy.example']),
        action: { forwardTls: { host: '127.0.0.1', port: legacyPort, ca: legacyPki.caCert, servername: 'legacy.internal' } },
      },
    ],
  });
  const { port } = await fe.listen(0);

  const echConfigList = encodeEchConfigList([key.config]);
  const views: BackendView[] = [];
  try {
    for (const asked of ['alpha.example', 'beta.example', 'legacy.example']) {
      const r = await client({ host: '127.0.0.1', port, servername: asked, echConfigList, ca: pki.caCert, request: `GET / HTTP/1.1\r\nHost: ${asked}\r\nConnection: close\r\n\r\n` });
      const seen = JSON.parse(r.response.slice(r.response.indexOf('\r\n\r\n') + 4)) as Omit<BackendView, 'asked' | 'echStatus'>;
      views.push({ asked, echStatus: r.echStatus, ...seen });
    }
  } finally {
    await fe.close();
    for (const b of backends) await new Promise<void>((res) => b.server.close(() => res()));
    legacy.closeAllConnections();
    await new Promise<void>((res) => legacy.close(() => res()));
  }
  return views;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  main().then((v) => console.table(v));
}
