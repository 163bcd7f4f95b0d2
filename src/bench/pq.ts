/**
 * Bench cases for the post-quantum paths: the server's CPU for a full
 * TLS 1.3 handshake with X25519MLKEM768 against one with X25519, and an ECH
 * open with an ML-KEM-768 or an X-Wing key against an X25519 one.
 *
 * The handshake case times what the server does for one connection: parse
 * the ClientHello, the key share (X25519, or ML-KEM-768 encapsulation plus
 * X25519), the key schedule, an ECDSA P-256 CertificateVerify and the
 * encrypted flight up to its Finished. Only the check of the client's
 * Finished (one HMAC and one AEAD open, the same for both groups) is left
 * out. The ClientHellos are made once by this library's client, so no client
 * work is timed.
 *
 * @module
 */
import { execFileSync } from 'node:child_process';
import { chmodSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ClientConnection } from '../tls13/client.js';
import { ServerConnection } from '../tls13/server-handshake.js';
import { resolveServerConfig } from '../tls13/config.js';
import { groupName } from '../tls13/groups.js';
import { NamedGroup } from '../tls/constants.js';
import { generateKemKeyPair, loadKemPrivateKey, PqKemId, setupBaseRecipient, setupBaseSender, type HpkeSuite } from '../crypto/hpke.js';
import { mlkem768 } from '../crypto/mlkem.js';
import type { BenchCase } from './harness.js';

/** A self-signed ECDSA P-256 certificate for `localhost`, made with the openssl command (key file 0600, removed at once). */
function selfSigned(): { key: string; cert: string } {
  const dir = mkdtempSync(join(tmpdir(), 'ech-bench-pq-'));
  try {
    const run = (args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'], timeout: 20_000 });
    run(['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', 'k.pem']);
    chmodSync(join(dir, 'k.pem'), 0o600);
    run(['req', '-x509', '-new', '-key', 'k.pem', '-subj', '/CN=localhost', '-days', '1', '-addext', 'subjectAltName=DNS:localhost', '-out', 'c.pem']);
    return { key: readFileSync(join(dir, 'k.pem'), 'utf8'), cert: readFileSync(join(dir, 'c.pem'), 'utf8') };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** The first flight (ClientHello records) of this library's client offering `ecdhCurve`. */
function clientHello(ecdhCurve: string): Uint8Array {
  const out: Uint8Array[] = [];
  new ClientConnection({ servername: 'localhost', ecdhCurve, rejectUnauthorized: false }, { send: (b) => out.push(b), data: () => undefined }).start();
  return Uint8Array.from(Buffer.concat(out));
}

function cycle<T>(items: readonly T[]): () => T {
  let i = 0;
  return () => items[i++ % items.length] as T;
}

/**
 * The post-quantum bench cases and the ratios that compare them.
 * @group Bench
 * @example
 * ```ts
 * const { cases } = pqBench();
 * const results = await runCases(cases, 25);
 * ```
 */
export function pqBench(): { cases: BenchCase[]; implementation: string } {
  const { key, cert } = selfSigned();
  const config = resolveServerConfig({ key, cert });
  const handshake = (field: string, label: string, ecdhCurve: string, group: number): BenchCase => ({
    field,
    label,
    options: { maxIterations: 1000, maxTimeMs: 4000, warmup: 50 },
    setup: async () => {
      const hellos = Array.from({ length: 8 }, () => clientHello(ecdhCurve));
      // Check once that the server picks the intended group and answers.
      let sent = 0;
      const probe = new ServerConnection(config, { send: (b) => (sent += b.length) });
      await probe.receive(hellos[0]!);
      if (sent === 0 || probe.groupName !== groupName(group)) throw new Error(`bench: the server did not answer ${ecdhCurve} with ${groupName(group)}`);
      const next = cycle(hellos);
      const sink = { send: () => undefined };
      return () => new ServerConnection(config, sink).receive(next());
    },
  });
  const info = Buffer.concat([Buffer.from('tls ech\0', 'latin1'), randomBytes(70)]);
  const open = (field: string, label: string, kem: number): BenchCase => ({
    field,
    label,
    options: { maxIterations: 2000, maxTimeMs: 4000 },
    setup: () => {
      const suite: HpkeSuite = { kem, kdf: 1, aead: 1 };
      const kp = generateKemKeyPair(kem);
      const k = loadKemPrivateKey(kem, kp.privateKey);
      const pool = Array.from({ length: 16 }, () => {
        const aad = randomBytes(420);
        const sender = setupBaseSender(suite, kp.publicKey, info);
        return { enc: sender.enc, aad, ct: sender.seal(aad, randomBytes(320)) };
      });
      for (const p of pool) setupBaseRecipient(suite, k, p.enc, info).open(p.aad, p.ct);
      const next = cycle(pool);
      return () => {
        const p = next();
        return setupBaseRecipient(suite, k, p.enc, info).open(p.aad, p.ct);
      };
    },
  });
  return {
    implementation: mlkem768().name,
    cases: [
      handshake('server_hs_x25519_us', 'server CPU of a full handshake (ClientHello → server Finished), X25519, ECDSA P-256', 'X25519', NamedGroup.x25519),
      handshake('server_hs_mlkem_us', `the same with X25519MLKEM768 (ML-KEM-768 on ${mlkem768().name})`, 'X25519MLKEM768', NamedGroup.X25519MLKEM768),
      open('open_x25519_pq_us', 'setupBaseRecipient + open, DHKEM(X25519) (baseline of the PQ opens)', 0x0020),
      open('open_mlkem768_us', `setupBaseRecipient + open, ML-KEM-768 key (${mlkem768().name})`, PqKemId.MlKem768),
      open('open_xwing_us', `setupBaseRecipient + open, X-Wing key (${mlkem768().name} + X25519 + SHA3-256)`, PqKemId.XWing),
    ],
  };
}

/**
 * Ratios of the post-quantum cases (medians), for the bench's ratio list.
 * @group Bench
 * @example
 * ```ts
 * ratios.push(...PQ_RATIOS);
 * ```
 */
export const PQ_RATIOS: { field: string; num: string; den: string; meaning: string; target?: string }[] = [
  {
    field: 'hs_mlkem_over_x25519',
    num: 'server_hs_mlkem_us',
    den: 'server_hs_x25519_us',
    meaning: 'server CPU per full handshake, X25519MLKEM768 over X25519',
    target: '<= 1.3',
  },
  { field: 'open_mlkem768_over_x25519', num: 'open_mlkem768_us', den: 'open_x25519_pq_us', meaning: 'ECH open with an ML-KEM-768 key over an X25519 key' },
  { field: 'open_xwing_over_x25519', num: 'open_xwing_us', den: 'open_x25519_pq_us', meaning: 'ECH open with an X-Wing key over an X25519 key' },
];
