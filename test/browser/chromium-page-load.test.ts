// @module-tag peer-openssl
// @module-tag peer-chromium
// @module-tag peer-netns
// @module-tag peer-certutil
// Real peer: Chromium loading whole pages inside the test namespace from a
// real TLS server (Node's https, which knows nothing of ECH), trusting a test
// CA through an NSS database. This is the template for loading pages through
// our own server once it does ECH: replace the https.Server below with it.
//
// It also pins down what Chromium does against an ECH-unaware server that
// holds a valid certificate for the public name: the ECH handshake is
// "rejected" without retry_configs (ERR_ECH_NOT_NEGOTIATED), and Chromium
// retries without ECH, sending the private name in clear (RFC 9849 §6.1.6).
//
// Needs root, chromium, iproute2, libnss3-tools, openssl.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createServer as createHttpsServer, type Server as HttpsServer } from 'node:https';
import { createSecureContext, type TLSSocket } from 'node:tls';
import type { Server } from 'node:net';
import { generateEchKey } from '../../src/keys/generate.js';
import { EchKeySet } from '../../src/keys/key-set.js';
import { assertRoot, createNetns, type Netns } from '../peers/netns.js';
import { DnsResponder, buildZone } from '../peers/dns-responder.js';
import { chromiumBinary, parseNetLog, runChromium } from '../peers/chromium.js';
import { makeTestPki, type TestPki } from '../peers/certs.js';

const PUBLIC_NAME = 'cover.test';
const PRIVATE_NAME = 'private.test';
const PLAIN_NAME = 'plain.test';

let ns: Netns | undefined;
let dns: DnsResponder;
let pki: TestPki | undefined;
let https: HttpsServer;
let echConfigList: Uint8Array;
/** SNI of every ClientHello the server saw, in order. */
const snis: string[] = [];
/** server_name of every completed handshake that made a request. */
const requests: string[] = [];

beforeAll(async () => {
  assertRoot('the Chromium page-load tests');
  chromiumBinary();
  ns = await createNetns();
  const [udp53, tcp443] = await ns.bind([
    { proto: 'udp', port: 53 },
    { proto: 'tcp', port: 443 },
  ] as const);
  pki = await makeTestPki([PLAIN_NAME, PRIVATE_NAME, PUBLIC_NAME]);
  echConfigList = new EchKeySet([generateEchKey({ publicName: PUBLIC_NAME })]).retryConfigList()!;
  dns = new DnsResponder(
    buildZone([
      { name: PLAIN_NAME, address: ns.address },
      { name: PUBLIC_NAME, address: ns.address },
      { name: PRIVATE_NAME, address: ns.address, https: [{ port: 443, alpn: ['http/1.1'], echConfigList }] },
    ]),
  ).serveUdp(udp53);

  const context = createSecureContext({ key: pki.keyPem, cert: pki.chainPem });
  https = createHttpsServer(
    {
      key: pki.keyPem,
      cert: pki.chainPem,
      SNICallback: (name, cb) => {
        snis.push(name);
        cb(null, context);
      },
    },
    (req, res) => {
      const servername = (req.socket as TLSSocket).servername || '';
      requests.push(servername);
      res.setHeader('content-type', 'text/html');
      res.end(`<!doctype html><html><body><p id="seen">servername=${servername}</p></body></html>`);
    },
  );
  // The listener lives in the namespace; the TLS server in this process.
  (tcp443 as Server).on('connection', (socket) => https.emit('connection', socket));
}, 60_000);

afterAll(async () => {
  https?.closeAllConnections();
  dns?.close();
  await ns?.destroy();
  await pki?.cleanup();
}, 30_000);

describe('Chromium loads pages in the namespace', { timeout: 60_000 }, () => {
  it('trusts the test CA through the NSS db and loads a page (no HTTPS record)', async () => {
    const r = await runChromium({ netns: ns!, url: `https://${PLAIN_NAME}/`, trustCaPem: pki!.caCertPem, timeoutMs: 30_000 });
    expect(r.timedOut, r.stderr.slice(-2000)).toBe(false);
    expect(r.stdout).toContain(`servername=${PLAIN_NAME}`);
    expect(requests).toContain(PLAIN_NAME);
  });

  it('without the CA the same page does not load (the trust path is real)', async () => {
    const before = requests.length;
    const r = await runChromium({ netns: ns!, url: `https://${PLAIN_NAME}/`, timeoutMs: 30_000 });
    expect(r.stdout).not.toContain('servername=');
    expect(requests.length).toBe(before);
  });

  it('ECH-unaware server, valid cert for the public name: Chromium falls back to no ECH and loads the page', async () => {
    snis.length = 0;
    const r = await runChromium({ netns: ns!, url: `https://${PRIVATE_NAME}/`, trustCaPem: pki!.caCertPem, timeoutMs: 30_000, netLog: true });
    expect(r.stdout).toContain(`servername=${PRIVATE_NAME}`);
    // Chromium's own account: it used our ECHConfigList, the server did not
    // accept ECH, and it called that ERR_ECH_NOT_NEGOTIATED before retrying.
    const log = parseNetLog(r.netLog!);
    const ssl = log.events.find((e) => e.type === 'SSL_CONNECT_JOB_SSL_CONNECT' && e.params['ech_enabled'] === true);
    expect(ssl?.params['ech_config_list']).toBe(Buffer.from(echConfigList).toString('base64'));
    expect(log.netErrors()).toContain('ERR_ECH_NOT_NEGOTIATED');
    // First the ECH attempt (outer SNI = public name), then the retry in clear.
    expect(snis[0]).toBe(PUBLIC_NAME);
    expect(snis).toContain(PRIVATE_NAME);
    expect(snis.indexOf(PRIVATE_NAME)).toBeGreaterThan(0);
    expect(requests.at(-1)).toBe(PRIVATE_NAME);
  });
});
