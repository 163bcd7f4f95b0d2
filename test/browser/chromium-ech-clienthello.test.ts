// @module-tag peer-chromium
// @module-tag peer-netns
// Real peer: Chromium (Debian `chromium`) as ECH client against our
// decryption core. Inside a private network namespace our DNS responder
// publishes HTTPS records whose `ech` SvcParam is an ECHConfigList generated
// now; Chromium is pointed at https://private.test/ and
// https://private.test:8443/ and its first flight is captured on sockets bound
// in the namespace, then decrypted with our key set. A name without an HTTPS
// record gets GREASE ECH, which our core must reject with the real name as
// outer SNI. Chromium then fails to load (we hang up after the ClientHello);
// only its hello matters here.
//
// Needs root, chromium, iproute2, libnss3-tools (see docs/testing-with-chromium.md).
// Missing any of them is a failure, never a skip.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Server } from 'node:net';
import { ExtensionType } from '../../src/tls/constants.js';
import { decodeClientHello, findExtension } from '../../src/tls/client-hello.js';
import { decryptClientHello } from '../../src/ech/decrypt.js';
import { generateEchKey } from '../../src/keys/generate.js';
import { EchKeySet } from '../../src/keys/key-set.js';
import { assertRoot, createNetns, type Netns } from '../peers/netns.js';
import { DnsResponder, buildZone } from '../peers/dns-responder.js';
import { chromiumBinary, launchChromium, type ChromiumResult } from '../peers/chromium.js';
import { HelloCapture, type CapturedHello } from '../peers/chromium-capture-server.js';

const PUBLIC_NAME = 'cover.test';
const PRIVATE_NAME = 'private.test';
const PLAIN_NAME = 'plain.test'; // A record only: no HTTPS record
const DOT_TARGET_NAME = 'dot.test'; // HTTPS record for :8443 with TargetName "."
const ALT_PORT = 8443;

let ns: Netns | undefined;
let dns: DnsResponder;
let capture: HelloCapture;
let keys: EchKeySet;
let configId: number;

beforeAll(async () => {
  assertRoot('the Chromium ECH tests');
  chromiumBinary(); // throws with the apt-get line when missing
  ns = await createNetns();
  const [udp53, tcp53, tls443, tlsAlt] = await ns.bind([
    { proto: 'udp', port: 53 },
    { proto: 'tcp', port: 53 },
    { proto: 'tcp', port: 443 },
    { proto: 'tcp', port: ALT_PORT },
  ] as const);

  const key = generateEchKey({ publicName: PUBLIC_NAME });
  keys = new EchKeySet([key]);
  configId = key.config.configId;
  const echConfigList = keys.retryConfigList()!;
  dns = new DnsResponder(
    buildZone([
      {
        name: PRIVATE_NAME,
        address: ns.address,
        https: [
          { port: 443, alpn: ['http/1.1'], echConfigList },
          { port: ALT_PORT, alpn: ['http/1.1'], echConfigList }, // owner _8443._https.private.test, TargetName private.test.
        ],
      },
      { name: PUBLIC_NAME, address: ns.address },
      { name: PLAIN_NAME, address: ns.address },
      { name: DOT_TARGET_NAME, address: ns.address, https: [{ port: ALT_PORT, target: '.', alpn: ['http/1.1'], echConfigList }] },
    ]),
  )
    .serveUdp(udp53)
    .serveTcp(tcp53);
  capture = new HelloCapture().attach(tls443 as Server).attach(tlsAlt as Server);
}, 60_000);

afterAll(async () => {
  capture?.close();
  dns?.close();
  await ns?.destroy();
}, 30_000);

/** Point Chromium at `url`, wait for its first ClientHello on `port`, stop it. */
async function helloFromChromium(url: string, port: number): Promise<{ hello: CapturedHello; chromium: ChromiumResult }> {
  const waiting = capture.nextOnPort(port, 40_000);
  const run = await launchChromium({ netns: ns!, url, timeoutMs: 45_000, ignoreCertificateErrors: true });
  let hello: CapturedHello;
  try {
    hello = await Promise.race([
      waiting,
      run.done.then((r) => {
        throw new Error(`Chromium exited (${r.code ?? r.signal}) before sending a ClientHello to port ${port}:\n${r.stderr.slice(-2000)}`);
      }),
    ]);
  } finally {
    await run.stop();
  }
  return { hello, chromium: await run.done };
}

function wireHas(hello: CapturedHello, text: string): boolean {
  return Buffer.from(hello.wire).includes(Buffer.from(text, 'ascii'));
}

describe('Chromium offers ECH from our HTTPS record, and our core opens it', { timeout: 60_000 }, () => {
  it(`port 443: HTTPS record at ${PRIVATE_NAME} → ECH accepted, inner ${PRIVATE_NAME}, outer ${PUBLIC_NAME}`, async () => {
    const { hello } = await helloFromChromium(`https://${PRIVATE_NAME}/`, 443);
    // Chromium asked for, and got, our HTTPS record.
    const q = await dns.waitForQuery((e) => e.name === PRIVATE_NAME && e.type === 'HTTPS');
    expect(q.answers).toBe(1);

    const r = await decryptClientHello(hello.message, keys);
    expect(r.status).toBe('accepted');
    if (r.status !== 'accepted') return;
    expect(r.innerServerName).toBe(PRIVATE_NAME);
    expect(r.outerServerName).toBe(PUBLIC_NAME);
    expect(r.configId).toBe(configId);
    expect(r.alpn).toContain('http/1.1');
    // Chromium compresses many outer extensions into the inner hello.
    expect(r.outerReferences.length).toBeGreaterThan(0);
    for (const t of r.outerReferences) {
      expect(findExtension(r.outer.extensions, t), `referenced outer extension ${t}`).toBeDefined();
      expect(findExtension(r.inner.extensions, t), `expanded inner extension ${t}`).toBeDefined();
    }
    expect(r.outerReferences).toContain(ExtensionType.key_share);
    // The private name is nowhere on the wire.
    expect(wireHas(hello, PRIVATE_NAME)).toBe(false);
    expect(wireHas(hello, PUBLIC_NAME)).toBe(true);
    // Control: a different key under the same config_id cannot open it.
    const impostor = new EchKeySet([generateEchKey({ publicName: PUBLIC_NAME, configId })]);
    const wrong = await decryptClientHello(hello.message, impostor);
    expect(wrong.status === 'rejected' && wrong.reason).toBe('decryption-failed');
  });

  it(`port ${ALT_PORT}: HTTPS record at _${ALT_PORT}._https.${PRIVATE_NAME} → ECH accepted`, async () => {
    const { hello } = await helloFromChromium(`https://${PRIVATE_NAME}:${ALT_PORT}/`, ALT_PORT);
    const q = await dns.waitForQuery((e) => e.name === `_${ALT_PORT}._https.${PRIVATE_NAME}` && e.type === 'HTTPS');
    expect(q.answers).toBe(1);

    const r = await decryptClientHello(hello.message, keys);
    expect(r.status).toBe('accepted');
    if (r.status !== 'accepted') return;
    expect(r.innerServerName).toBe(PRIVATE_NAME);
    expect(r.outerServerName).toBe(PUBLIC_NAME);
    expect(r.outerReferences.length).toBeGreaterThan(0);
    expect(wireHas(hello, PRIVATE_NAME)).toBe(false);
  });

  it(`no HTTPS record (${PLAIN_NAME}) → GREASE ECH, which our core rejects with the real name as outer SNI`, async () => {
    const { hello } = await helloFromChromium(`https://${PLAIN_NAME}/`, 443);
    const q = await dns.waitForQuery((e) => e.name === PLAIN_NAME && e.type === 'HTTPS');
    expect(q.rcode).toBe('NOERROR');
    expect(q.answers).toBe(0);

    const outer = decodeClientHello(hello.message.subarray(4));
    expect(findExtension(outer.extensions, ExtensionType.encrypted_client_hello), 'GREASE ECH extension').toBeDefined();
    const r = await decryptClientHello(hello.message, keys);
    expect(r.status).toBe('rejected');
    if (r.status !== 'rejected') return;
    expect(r.outerServerName).toBe(PLAIN_NAME);
    // GREASE uses a random config_id; ours can collide with it (1 in 256),
    // in which case the payload simply fails to open.
    expect(r.reason).toBe(r.configId === configId ? 'decryption-failed' : 'no-matching-config');
  });

  it(`HTTPS record at _${ALT_PORT}._https.${DOT_TARGET_NAME} with TargetName "." is ignored → only GREASE ECH (INTEROP quirk)`, async () => {
    const { hello } = await helloFromChromium(`https://${DOT_TARGET_NAME}:${ALT_PORT}/`, ALT_PORT);
    const q = await dns.waitForQuery((e) => e.name === `_${ALT_PORT}._https.${DOT_TARGET_NAME}` && e.type === 'HTTPS');
    expect(q.answers).toBe(1);
    const r = await decryptClientHello(hello.message, keys);
    expect(r.status).toBe('rejected');
    expect(r.outerServerName).toBe(DOT_TARGET_NAME);
  });
});
