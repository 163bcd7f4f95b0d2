/**
 * Test helpers for the TLS 1.3 engine: certificates made at test time with
 * node:crypto alone (src/testing/pki.ts; no `openssl` binary, so the files
 * using them run on a fresh machine), keys written 0600, and a server started
 * on loopback.
 */
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { afterAll, beforeAll } from 'vitest';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { AddressInfo } from 'node:net';
import { createEchServer, type EchServer } from '../src/tls13/server.js';
import type { EchServerOptions } from '../src/tls13/config.js';
import type { TlsSocket } from '../src/tls13/socket.js';
import { createTestPki } from '../src/testing/pki.js';

export type KeyKind = 'ec' | 'rsa' | 'ed25519';

export interface TestPki {
  dir: string;
  caPem: string;
  leaf(kind: KeyKind, names: string[]): { key: string; cert: string; keyPath: string; certPath: string };
  cleanup(): void;
}

/**
 * A CA (ECDSA P-256) and leaf certificates signed by it (DNS names, `*.`
 * wildcards allowed; ECDSA P-256, RSA 2048 or Ed25519 leaf keys). Files in a
 * fresh temporary directory: `ca.pem`, `ca.key`, and `leafN.pem`/`leafN.key`
 * per leaf; keys mode 0600.
 */
export function makePki(): TestPki {
  const dir = mkdtempSync(join(tmpdir(), 'tls13-pki-'));
  const ca = createTestPki(undefined, 2);
  writeFileSync(join(dir, 'ca.key'), ca.caKey, { mode: 0o600 });
  writeFileSync(join(dir, 'ca.pem'), ca.caCert);
  let n = 0;
  return {
    dir,
    caPem: ca.caCert,
    leaf(kind, names) {
      const id = `leaf${n++}`;
      const { cert, key } = ca.issue(names, { keyType: kind });
      const keyPath = join(dir, `${id}.key`);
      const certPath = join(dir, `${id}.pem`);
      writeFileSync(keyPath, key, { mode: 0o600 });
      writeFileSync(certPath, cert);
      return { key, cert, keyPath, certPath };
    },
    cleanup() {
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/**
 * The usual set-up of an engine test file: a {@link makePki} PKI and an
 * ECDSA leaf for `localhost`, made before the file's tests and removed
 * after them. Read `pki` and `leaf` inside tests (they are set by then).
 */
export function localhostPki(): { readonly pki: TestPki; readonly leaf: { key: string; cert: string } } {
  let pki: TestPki | undefined;
  let leaf: { key: string; cert: string } | undefined;
  beforeAll(() => {
    pki = makePki();
    leaf = pki.leaf('ec', ['localhost']);
  });
  afterAll(() => pki?.cleanup());
  return {
    get pki() {
      return pki!;
    },
    get leaf() {
      return leaf!;
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
