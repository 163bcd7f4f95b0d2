// Shows a Node TLS front end in one process: `createEchServer` (shaped like
// `https.createServer`) holds one ECH key, the cover name's certificate and a
// certificate per hidden site. Each connection is handed to that site's own
// `http.Server`, chosen by `socket.servername` — the inner name when ECH was
// accepted — so the sites are ordinary Node HTTP apps that never see ECH.
// Keys and certificates are made at run time; everything is on 127.0.0.1.
//
// Run: npx tsx examples/node-tls-front-end.ts   (in this repo after `npm run build`: 'ech-server'
// resolves to the package itself; in an app, after `npm install ech-server`)
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { EchKeySet, createEchHook, createEchServer, encodeEchConfigList, generateEchKey, type TlsSocket } from 'ech-server';
import { createTestPki, echRequest, type EchRequest } from 'ech-server/testing';

/** What one client asked for and what answered it. */
export interface Visit {
  asked: string;
  echStatus: string;
  /** The body the site's own http.Server sent. */
  answer: string;
}

export async function main(client: EchRequest = echRequest): Promise<Visit[]> {
  const key = generateEchKey({ publicName: 'cover.example', maximumNameLength: 32 });
  const keys = new EchKeySet([key]);
  const pki = createTestPki();
  const cover = pki.issue(['cover.example']);

  // The hidden sites: plain http.Servers, never listening themselves.
  const sites = new Map<string, http.Server>();
  for (const name of ['alpha.example', 'beta.example', 'cover.example']) {
    sites.set(
      name,
      http.createServer((req, res) => {
        const s = req.socket as unknown as TlsSocket;
        res.setHeader('connection', 'close');
        res.end(`${name} app: servername ${s.servername || '-'}, ECH ${String(s.attributes['echStatus'])}, outer ${String(s.attributes['outerServerName'] ?? '-')}`);
      }),
    );
  }

  const server = createEchServer(
    {
      ...cover, // the public name's certificate: rejected, GREASE and plain connections to it
      certificates: ['alpha.example', 'beta.example'].map((n) => pki.issue([n])),
      ALPNProtocols: ['http/1.1'],
      onClientHello: createEchHook({ keys: () => keys }),
    },
    (socket) => {
      // The inner name when ECH was accepted, else the name sent in clear.
      const app = sites.get(socket.servername || '') ?? sites.get('cover.example')!;
      app.emit('connection', socket);
    },
  );
  server.on('tlsClientError', () => undefined);
  await new Promise<void>((res) => server.listen(0, '127.0.0.1', res));
  const port = (server.address() as AddressInfo).port;

  const echConfigList = encodeEchConfigList([key.config]);
  const GET = (host: string) => `GET / HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n\r\n`;
  const visits: Visit[] = [];
  try {
    for (const [asked, ech] of [
      ['alpha.example', true],
      ['beta.example', true],
      ['cover.example', false],
    ] as const) {
      const r = await client({ host: '127.0.0.1', port, servername: asked, ca: pki.caCert, request: GET(asked), ...(ech ? { echConfigList } : {}) });
      visits.push({ asked, echStatus: r.echStatus, answer: r.response.slice(r.response.indexOf('\r\n\r\n') + 4) });
    }
  } finally {
    for (const app of sites.values()) app.closeAllConnections();
    await new Promise<void>((res) => server.close(() => res()));
  }
  return visits;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  main().then((v) => console.table(v));
}
