// Shows a defo.ie-style cover domain: `cover.example` is the only name on
// the wire (ECHConfig public_name), several sites hide behind it, and every
// site — the cover name included — answers with the ech-status page, which
// reports what the server saw: outer SNI, inner SNI, and whether ECH was
// accepted, rejected, GREASE or not offered. One client of each kind visits.
// Keys and certificates are made at run time; everything is on 127.0.0.1.
//
// Run: npx tsx examples/cover-domain.ts   (in this repo after `npm run build`: 'ech-server'
// resolves to the package itself; in an app, after `npm install ech-server`)
import { EchFrontEnd, EchKeySet, encodeEchConfigList, generateEchKey, type EchStatusReport } from 'ech-server';
import { createTestPki, echRequest, type EchRequest } from 'ech-server/testing';

/** One visit: what the client did and the status page it got back. */
export interface CoverVisit {
  client: string;
  echStatus: string;
  retried: boolean;
  page: EchStatusReport & { site: string };
}

export async function main(client: EchRequest = echRequest): Promise<CoverVisit[]> {
  const key = generateEchKey({ publicName: 'cover.example', maximumNameLength: 32 });
  const keys = new EchKeySet([key]);
  const pki = createTestPki();
  const hidden = ['alpha.example', 'beta.example', 'gamma.example'];

  const fe = new EchFrontEnd({
    keys,
    // rejected, GREASE and plain connections for cover.example get its page (with retry_configs)
    publicName: { ...pki.issue(['cover.example']), action: { respond: 'ech-status' } },
    routes: hidden.map((name) => ({ serverName: name, ...pki.issue([name]), action: { respond: 'ech-status' as const } })),
  });
  const { port } = await fe.listen(0);

  const current = encodeEchConfigList([key.config]);
  const stale = encodeEchConfigList([generateEchKey({ publicName: 'cover.example', configId: key.config.configId }).config]);
  const visits: Array<[string, Parameters<EchRequest>[0]['servername'], Partial<Parameters<EchRequest>[0]>]> = [
    ['ECH to alpha.example', 'alpha.example', { echConfigList: current }],
    ['ECH to gamma.example', 'gamma.example', { echConfigList: current }],
    ['stale ECH config, retry', 'beta.example', { echConfigList: stale, retry: true }],
    ['GREASE ECH', 'cover.example', { grease: true }],
    ['no ECH', 'cover.example', {}],
  ];
  const out: CoverVisit[] = [];
  try {
    for (const [label, servername, o] of visits) {
      const r = await client({
        host: '127.0.0.1',
        port,
        servername,
        ca: pki.caCert,
        request: `GET / HTTP/1.1\r\nHost: ${servername}\r\nAccept: application/json\r\nConnection: close\r\n\r\n`,
        ...o,
      });
      out.push({ client: label, echStatus: r.echStatus, retried: r.retried, page: JSON.parse(r.response.slice(r.response.indexOf('\r\n\r\n') + 4)) });
    }
  } finally {
    await fe.close();
  }
  return out;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  main().then((v) => console.table(v.map((x) => ({ client: x.client, ech: x.echStatus, outer: x.page.outerServerName, inner: x.page.innerServerName, site: x.page.site }))));
}
