// @module-tag peer-boringssl
// Examples are runnable programs: each one runs here and must do what its
// opening comment says. They import the package by name (`ech-server`,
// `ech-server/testing`), which vitest.config.ts maps to src/; test/package.test.ts
// runs them against the packed tarball too.
import { describe, expect, it } from 'vitest';

describe('examples', () => {
  it('decrypt-first-flight: the server sees the hidden name through the cover name', async () => {
    const { main } = await import('../examples/decrypt-first-flight.js');
    expect(await main()).toBe('accepted, inner SNI hidden.example');
  });
});

// The front-end examples, driven by BoringSSL as the ECH client (a peer
// nobody here wrote), and by the library's own ECH client (connectEch).
import { beforeAll, afterAll } from 'vitest';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { EchRequest } from '../src/testing/request.js';
import { buildHarness } from './peers/boringssl.js';
import { boringsslRequest } from './helpers/boringssl-request.js';
import { greaseOutcome } from './helpers/grease.js';

let exampleDir: string;
const boringssl = boringsslRequest(() => exampleDir, { requireVerified: true });
const clients: Array<[string, EchRequest | undefined]> = [
  ['BoringSSL', boringssl],
  ['connectEch', undefined], // the examples' default client
];

describe('front-end examples', () => {
  beforeAll(async () => {
    await buildHarness();
    exampleDir = await mkdtemp(join(tmpdir(), 'ech-examples-'));
  }, 120_000);
  afterAll(async () => {
    await rm(exampleDir, { recursive: true, force: true });
  });

  for (const [who, client] of clients) {
    it(`node-tls-front-end (${who}): each hidden site's own http.Server answers, chosen by the inner name`, async () => {
      const { main } = await import('../examples/node-tls-front-end.js');
      expect(await main(client)).toEqual([
        { asked: 'alpha.example', echStatus: 'accepted', answer: 'alpha.example app: servername alpha.example, ECH accepted, outer cover.example' },
        { asked: 'beta.example', echStatus: 'accepted', answer: 'beta.example app: servername beta.example, ECH accepted, outer cover.example' },
        { asked: 'cover.example', echStatus: 'not-offered', answer: 'cover.example app: servername cover.example, ECH not-offered, outer cover.example' },
      ]);
    });

    it(`load-balancer (${who}): split mode to two backend-mode engines, terminate-and-forward to a Node https backend`, async () => {
      const { main } = await import('../examples/load-balancer.js');
      expect(await main(client)).toEqual([
        { asked: 'alpha.example', echStatus: 'accepted', backend: 'backend-1', servername: 'alpha.example', backendEch: 'accepted' },
        { asked: 'beta.example', echStatus: 'accepted', backend: 'backend-2', servername: 'beta.example', backendEch: 'accepted' },
        { asked: 'legacy.example', echStatus: 'accepted', backend: 'legacy-https', servername: 'legacy.internal', backendEch: 'n/a (Node https)' },
      ]);
    });

    it(`cover-domain (${who}): only cover.example on the wire, the ech-status page tells each client what the server saw`, async () => {
      const { main } = await import('../examples/cover-domain.js');
      const visits = await main(client);
      // the server's own config_id, from an accepted visit; GREASE may hit it by chance (helpers/grease.ts)
      const greaseStatus = greaseOutcome(visits.find((v) => v.client === 'GREASE ECH')!.page, [visits[0]!.page.configId!]);
      expect(visits.map((v) => [v.client, v.echStatus, v.retried, v.page.site, v.page.echStatus, v.page.outerServerName, v.page.innerServerName])).toEqual([
        ['ECH to alpha.example', 'accepted', false, 'alpha.example', 'accepted', 'cover.example', 'alpha.example'],
        ['ECH to gamma.example', 'accepted', false, 'gamma.example', 'accepted', 'cover.example', 'gamma.example'],
        ['stale ECH config, retry', 'accepted', true, 'beta.example', 'accepted', 'cover.example', 'beta.example'],
        ['GREASE ECH', 'grease', false, 'cover.example', greaseStatus, 'cover.example', null],
        ['no ECH', 'not-offered', false, 'cover.example', 'not-offered', 'cover.example', null],
      ]);
    });
  }
});
