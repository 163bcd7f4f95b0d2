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

// ------------------------------------------------------------ in-memory pair

import { ServerConnection, type HandshakeInfo } from '../src/tls13/server-handshake.js';
import { ClientConnection, type ClientOptions, type ClientSession, type ClientHandshakeInfo, type ClientSink } from '../src/tls13/client.js';
import type { ServerConfig } from '../src/tls13/config.js';

export interface MemoryPair {
  client: ClientConnection;
  server: ServerConnection;
  serverErrors: Error[];
  clientErrors: Error[];
  /** Application data each side received, concatenated as text. */
  received: { client: string; server: string };
  sessions: ClientSession[];
  /** Every chunk each side sent (after tampering). */
  wire: { client: Uint8Array[]; server: Uint8Array[] };
  serverInfo?: HandshakeInfo;
  clientInfo?: ClientHandshakeInfo;
  /** Wait until no delivery is in flight. */
  settle(): Promise<void>;
}

export interface PairOptions {
  /** Rewrite (or drop with an empty array) a client→server chunk; `i` counts chunks. */
  clientToServer?: (bytes: Uint8Array, i: number) => Uint8Array;
  serverToClient?: (bytes: Uint8Array, i: number) => Uint8Array;
  makeClient?: (options: ClientOptions, sink: ClientSink) => ClientConnection;
}

/** A client and a server wired back to back in memory; starts the handshake. */
export function memoryPair(config: ServerConfig, clientOptions: ClientOptions, po: PairOptions = {}): MemoryPair {
  const pending = new Set<Promise<unknown>>();
  const track = (p: Promise<unknown>, errors: Error[]): void => {
    const q = p.catch((e: Error) => errors.push(e)).finally(() => pending.delete(q));
    pending.add(q);
  };
  const decoder = new TextDecoder('latin1');
  let ci = 0;
  let si = 0;
  const pair = {
    serverErrors: [] as Error[],
    clientErrors: [] as Error[],
    received: { client: '', server: '' },
    sessions: [] as ClientSession[],
    wire: { client: [] as Uint8Array[], server: [] as Uint8Array[] },
    async settle() {
      while (pending.size) await Promise.allSettled([...pending]);
    },
  } as MemoryPair;
  const server = new ServerConnection(config, {
    send: (b) => {
      const out = po.serverToClient ? po.serverToClient(b, si++) : b;
      pair.wire.server.push(out);
      if (out.length) track(pair.client.receive(out), pair.clientErrors);
    },
    data: (b) => (pair.received.server += decoder.decode(b)),
    handshakeComplete: (info) => (pair.serverInfo = info),
  });
  const sink: ClientSink = {
    send: (b) => {
      const out = po.clientToServer ? po.clientToServer(b, ci++) : b;
      pair.wire.client.push(out);
      if (out.length) track(server.receive(out), pair.serverErrors);
    },
    data: (b) => (pair.received.client += decoder.decode(b)),
    handshakeComplete: (info) => (pair.clientInfo = info),
    session: (s) => pair.sessions.push(s),
  };
  const client = po.makeClient ? po.makeClient(clientOptions, sink) : new ClientConnection(clientOptions, sink);
  pair.client = client;
  pair.server = server;
  client.start();
  return pair;
}
