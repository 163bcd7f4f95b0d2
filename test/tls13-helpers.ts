/**
 * Test helpers for the TLS 1.3 engine: certificates made with the `openssl`
 * CLI at test time (keys written 0600), and a server started on loopback.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync, chmodSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { AddressInfo } from 'node:net';
import { createEchServer, type EchServer } from '../src/tls13/server.js';
import type { EchServerOptions } from '../src/tls13/config.js';
import type { TlsSocket } from '../src/tls13/socket.js';

export type KeyKind = 'ec' | 'rsa' | 'ed25519';

export interface TestPki {
  dir: string;
  caPem: string;
  leaf(kind: KeyKind, names: string[]): { key: string; cert: string; keyPath: string; certPath: string };
  cleanup(): void;
}

function openssl(args: string[], cwd: string): void {
  execFileSync('openssl', args, { cwd, stdio: ['ignore', 'pipe', 'pipe'], timeout: 20_000 });
}

function genKey(kind: KeyKind, path: string, cwd: string): void {
  if (kind === 'ec') openssl(['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', path], cwd);
  else if (kind === 'rsa') openssl(['genpkey', '-algorithm', 'RSA', '-pkeyopt', 'rsa_keygen_bits:2048', '-out', path], cwd);
  else openssl(['genpkey', '-algorithm', 'ED25519', '-out', path], cwd);
  chmodSync(join(cwd, path), 0o600);
}

/** A CA (ECDSA P-256) and leaf certificates signed by it. */
export function makePki(): TestPki {
  const dir = mkdtempSync(join(tmpdir(), 'tls13-pki-'));
  genKey('ec', 'ca.key', dir);
  openssl(['req', '-x509', '-new', '-key', 'ca.key', '-subj', '/CN=Test CA', '-days', '2', '-out', 'ca.pem',
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign'], dir);
  let n = 0;
  return {
    dir,
    caPem: readFileSync(join(dir, 'ca.pem'), 'utf8'),
    leaf(kind, names) {
      const id = `leaf${n++}`;
      genKey(kind, `${id}.key`, dir);
      writeFileSync(join(dir, `${id}.ext`), `subjectAltName=${names.map((x) => `DNS:${x}`).join(',')}\nbasicConstraints=CA:FALSE\n`);
      openssl(['req', '-new', '-key', `${id}.key`, '-subj', `/CN=${names[0]}`, '-out', `${id}.csr`], dir);
      openssl(['x509', '-req', '-in', `${id}.csr`, '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-days', '2',
        '-extfile', `${id}.ext`, '-out', `${id}.pem`], dir);
      const keyPath = join(dir, `${id}.key`);
      const certPath = join(dir, `${id}.pem`);
      return { key: readFileSync(keyPath, 'utf8'), cert: readFileSync(certPath, 'utf8'), keyPath, certPath };
    },
    cleanup() {
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

export interface Running {
  server: EchServer;
  port: number;
  errors: Error[];
  close(): Promise<void>;
}

/** Start a server on 127.0.0.1 with an echo handler unless one is given. */
export async function startServer(options: EchServerOptions, onSecure?: (s: TlsSocket) => void): Promise<Running> {
  const server = createEchServer(options, onSecure ?? ((s) => s.pipe(s)));
  const errors: Error[] = [];
  server.on('tlsClientError', (e: Error) => errors.push(e));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    server,
    port,
    errors,
    close: () =>
      new Promise<void>((resolve, reject) => {
        server.close((e) => (e ? reject(e) : resolve()));
      }),
  };
}
