// Test-only: BoringSSL's client (test/peers/boringssl.ts) in the shape of the
// demo's `EchRequest`, so the demo and the examples can be driven by a peer
// nobody here wrote as well as by our own connectEch.
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { EchRequest } from '../../src/testing/request.js';
import { toBase64 } from '../../src/wire/bytes.js';
import { runClient } from '../peers/boringssl.js';

/**
 * `dir()` is where the CA file for each request is written (a test's temp
 * directory, known only once its beforeAll ran). With `requireVerified`, a
 * response whose certificate BoringSSL did not verify is an error.
 */
export function boringsslRequest(dir: () => string, opts: { requireVerified?: boolean } = {}): EchRequest {
  return async (o) => {
    const caFile = join(dir(), `ca-${Date.now()}-${Math.random().toString(36).slice(2)}.pem`);
    await writeFile(caFile, o.ca);
    const r = await runClient({
      host: o.host,
      port: o.port,
      sni: o.servername,
      ...(o.echConfigList ? { echConfigList: toBase64(o.echConfigList) } : {}),
      ...(o.grease ? { grease: true } : {}),
      ...(o.retry ? { retry: true } : {}),
      ca: caFile,
      send: o.request,
      read: true,
    });
    if (r.error) throw new Error(r.error);
    if (opts.requireVerified && r.verified !== true) throw new Error(`certificate not verified: ${r.verifyError}`);
    return { echStatus: r.echAccepted ? 'accepted' : o.grease ? 'grease' : o.echConfigList ? 'rejected' : 'not-offered', retried: r.retried, response: r.response ?? '' };
  };
}
