/**
 * `npm run demo` (`ech-server demo`): a defo.ie-style cover domain on
 * 127.0.0.1. `cover.example` is the only name on the wire; `alpha.example`
 * and `beta.example` hide behind it. The demo generates ECH keys and a test
 * CA in a directory it names (and reuses them later), starts the front end,
 * drives it with the ECH client (accepted; stale key → retry_configs →
 * accepted; GREASE; no ECH), and prints what the wire showed next to what
 * the server saw. Then it stays up with instructions, or exits (`--once`).
 *
 * @module
 */
import { createPrivateKey, generateKeyPairSync, randomBytes, sign, X509Certificate, type KeyObject } from 'node:crypto';
import { fstatSync } from 'node:fs';
import { chmod, mkdir, readFile, writeFile } from 'node:fs/promises';
import net, { type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { ExtensionType } from '../tls/constants.js';
import { decodeClientHello, findExtension } from '../tls/client-hello.js';
import { decodeEchClientHello, decodeServerName } from '../tls/extensions.js';
import { readFirstHandshakeMessage } from '../tls/record.js';
import { encodeEchConfigList } from '../ech/config.js';
import { EchError } from '../wire/alert.js';
import { toBase64 } from '../wire/bytes.js';
import { generateEchKey } from '../keys/generate.js';
import { ensureKeyDirectory, loadEchKeyDirectory, writeEchKeyFile } from '../keys/files.js';
import { EchFrontEnd } from '../front/front-end.js';
import { connectEch } from '../tls13/ech-client.js';
import { describeCliError } from './errors.js';

const PUBLIC_NAME = 'cover.example';
const SITES = ['alpha.example', 'beta.example'];

// ------------------------------------------------------------ test PKI

/** DER: tag, definite length, body. */
function der(tag: number, ...parts: Uint8Array[]): Uint8Array {
  const len = parts.reduce((n, p) => n + p.length, 0);
  const head = len < 0x80 ? [tag, len] : len < 0x100 ? [tag, 0x81, len] : [tag, 0x82, len >> 8, len & 0xff];
  const out = new Uint8Array(head.length + len);
  out.set(head);
  let o = head.length;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}
const seq = (...p: Uint8Array[]) => der(0x30, ...p);
const oid = (...bytes: number[]) => der(0x06, new Uint8Array(bytes));
const utf8 = (s: string) => der(0x0c, new TextEncoder().encode(s));
const TRUE = der(0x01, new Uint8Array([0xff]));
const OID_ECDSA_SHA256 = oid(0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02);
const OID_CN = oid(0x55, 0x04, 0x03);

function utcTime(d: Date): Uint8Array {
  const p = (n: number) => String(n).padStart(2, '0');
  const s = `${p(d.getUTCFullYear() % 100)}${p(d.getUTCMonth() + 1)}${p(d.getUTCDate())}${p(d.getUTCHours())}${p(d.getUTCMinutes())}${p(d.getUTCSeconds())}Z`;
  return der(0x17, new TextEncoder().encode(s));
}

const x509Name = (cn: string) => seq(der(0x31, seq(OID_CN, utf8(cn))));

function extension(id: Uint8Array, critical: boolean, value: Uint8Array): Uint8Array {
  return critical ? seq(id, TRUE, der(0x04, value)) : seq(id, der(0x04, value));
}

/** One X.509 v3 certificate (ECDSA P-256 with SHA-256, RFC 5280), as PEM. */
function certificate(o: { subject: string; issuer: string; publicKey: KeyObject; signer: KeyObject; ca: boolean; dnsNames: string[]; days: number }): string {
  const serial = randomBytes(16);
  // A positive DER INTEGER in minimal form: high bit clear, and never a
  // leading zero byte (OpenSSL refuses one as "illegal padding", which a
  // plain `& 0x7f` produced once in 256 certificates).
  serial[0] = (serial[0]! & 0x7f) | 0x01;
  const now = Date.now();
  const exts = [
    // basicConstraints; keyUsage: keyCertSign|cRLSign for the CA, digitalSignature for a leaf
    extension(oid(0x55, 0x1d, 0x13), true, o.ca ? seq(TRUE) : seq()),
    extension(oid(0x55, 0x1d, 0x0f), true, der(0x03, new Uint8Array(o.ca ? [0x01, 0x06] : [0x07, 0x80]))),
  ];
  if (o.dnsNames.length) exts.push(extension(oid(0x55, 0x1d, 0x11), false, seq(...o.dnsNames.map((n) => der(0x82, new TextEncoder().encode(n))))));
  const tbs = seq(
    der(0xa0, der(0x02, new Uint8Array([2]))),
    der(0x02, new Uint8Array(serial)),
    seq(OID_ECDSA_SHA256),
    x509Name(o.issuer),
    seq(utcTime(new Date(now - 3600_000)), utcTime(new Date(now + o.days * 86400_000))),
    x509Name(o.subject),
    new Uint8Array(o.publicKey.export({ type: 'spki', format: 'der' })),
    der(0xa3, seq(...exts)),
  );
  const signature = sign('sha256', tbs, o.signer);
  const cert = seq(tbs, seq(OID_ECDSA_SHA256), der(0x03, new Uint8Array([0]), new Uint8Array(signature)));
  const b64 = Buffer.from(cert).toString('base64').replace(/.{64}/g, '$&\n');
  return `-----BEGIN CERTIFICATE-----\n${b64}${b64.endsWith('\n') ? '' : '\n'}-----END CERTIFICATE-----\n`;
}

/**
 * A throwaway certificate authority (ECDSA P-256) issuing leaf certificates
 * for DNS names, made with node:crypto alone (no `openssl` binary). For the
 * demo, examples and tests; never for production.
 * @group CLI
 * @example
 * ```ts
 * const pki = createTestPki();
 * const { cert, key } = pki.issue(['cover.example']);
 * ```
 */
export interface TestPki {
  /** The CA certificate (PEM): what clients trust. */
  caCert: string;
  /** The CA's private key (PKCS#8 PEM). */
  caKey: string;
  /** Issue a certificate (and a new P-256 key) for `dnsNames`; the first is the subject CN. */
  issue(dnsNames: string[], days?: number): { cert: string; key: string };
}

/**
 * Create a {@link TestPki}, or reopen one from its CA certificate and key.
 * @group CLI
 * @example
 * ```ts
 * const pki = createTestPki();
 * const site = pki.issue(['alpha.example']);
 * tls.connect({ port, servername: 'alpha.example', ca: pki.caCert });
 * ```
 */
export function createTestPki(existing?: { caCert: string; caKey: string }, days = 30): TestPki {
  let caKey: KeyObject;
  let caCert: string;
  if (existing) {
    caKey = createPrivateKey(existing.caKey);
    caCert = existing.caCert;
  } else {
    const pair = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    caKey = pair.privateKey;
    caCert = certificate({ subject: 'ech-server demo CA', issuer: 'ech-server demo CA', publicKey: pair.publicKey, signer: caKey, ca: true, dnsNames: [], days });
  }
  const issuer = new X509Certificate(caCert).subject.replace(/^CN=/, '');
  return {
    caCert,
    caKey: caKey.export({ type: 'pkcs8', format: 'pem' }) as string,
    issue(dnsNames, leafDays = days) {
      const pair = generateKeyPairSync('ec', { namedCurve: 'P-256' });
      const cert = certificate({ subject: dnsNames[0]!, issuer, publicKey: pair.publicKey, signer: caKey, ca: false, dnsNames, days: leafDays });
      return { cert, key: pair.privateKey.export({ type: 'pkcs8', format: 'pem' }) as string };
    },
  };
}

// ------------------------------------------------------------ the client side

/**
 * One HTTP request over a TLS connection that may offer ECH, as the demo
 * and the examples make it. The default, {@link echRequest}, uses the
 * library's ECH client (`connectEch`); tests pass another peer.
 * @group CLI
 * @example
 * ```ts
 * const r = await echRequest({ host: '127.0.0.1', port, servername: 'alpha.example', echConfigList, ca, request: 'GET / HTTP/1.1\r\n...' });
 * console.log(r.echStatus, r.retried, r.response);
 * ```
 */
export type EchRequest = (options: EchRequestOptions) => Promise<EchRequestResult>;

/**
 * Options of an {@link EchRequest}.
 * @group CLI
 */
export interface EchRequestOptions {
  host: string;
  port: number;
  /** The server name (the inner one when ECH is offered). */
  servername: string;
  /** ECHConfigList to offer ECH with; without it, GREASE or no ECH. */
  echConfigList?: Uint8Array;
  /** Send a GREASE ECH extension (no echConfigList). */
  grease?: boolean;
  /** On rejection, reconnect once with the server's retry_configs. */
  retry?: boolean;
  /** CA certificates (PEM) to verify the server with. */
  ca: string;
  /** Bytes to send once connected; the answer is read until the server closes. */
  request: string;
}

/**
 * What an {@link EchRequest} got.
 * @group CLI
 */
export interface EchRequestResult {
  echStatus: 'accepted' | 'rejected' | 'grease' | 'not-offered';
  /** A second connection was made with the server's retry_configs. */
  retried: boolean;
  /** Everything the server sent back. */
  response: string;
}

/**
 * The default {@link EchRequest}: the library's ECH client (`connectEch`).
 * @group CLI
 * @example
 * ```ts
 * const r = await echRequest({ host: '127.0.0.1', port, servername: 'alpha.example', echConfigList, ca, request });
 * ```
 */
export const echRequest: EchRequest = async (o) => {
  const c = await connectEch({
    host: o.host,
    port: o.port,
    servername: o.servername,
    ...(o.echConfigList ? { echConfigList: o.echConfigList } : {}),
    ...(o.grease ? { grease: true } : {}),
    ...(o.retry ? { retry: true } : {}),
    ca: o.ca,
    ALPNProtocols: ['http/1.1'],
    timeoutMs: 10_000,
  });
  const response = await new Promise<string>((res, rej) => {
    let text = '';
    const t = setTimeout(() => {
      c.socket.destroy();
      rej(new Error('no answer within 10 s'));
    }, 10_000);
    c.socket.on('data', (d: Buffer) => (text += d.toString('utf8')));
    c.socket.once('end', () => {
      clearTimeout(t);
      res(text);
    });
    c.socket.once('close', () => {
      clearTimeout(t);
      res(text);
    });
    c.socket.once('error', (e) => {
      clearTimeout(t);
      rej(e);
    });
    c.socket.write(o.request);
  });
  c.socket.destroy();
  return { echStatus: c.echStatus, retried: c.retried, response };
};

// ------------------------------------------------------------ the wire tap

/** What an observer of one connection's first flight learns. */
interface WireHello {
  sni: string;
  ech: string;
}

/** A loopback relay in front of the server that reads each connection's ClientHello, as an on-path observer would. */
async function wireTap(target: number): Promise<{ port: number; take(): WireHello[]; close(): Promise<void> }> {
  let seen: WireHello[] = [];
  const open = new Set<net.Socket>();
  const server = net.createServer((c) => {
    const up = net.connect(target, '127.0.0.1');
    open.add(c).add(up);
    c.on('close', () => open.delete(c));
    up.on('close', () => open.delete(up));
    let buf = Buffer.alloc(0);
    let done = false;
    c.on('data', (d: Buffer) => {
      if (done) return;
      buf = Buffer.concat([buf, d]);
      try {
        const first = readFirstHandshakeMessage(new Uint8Array(buf));
        if (!first) return;
        done = true;
        const ch = decodeClientHello(first.message.body);
        const sni = findExtension(ch.extensions, ExtensionType.server_name);
        const echExt = findExtension(ch.extensions, ExtensionType.encrypted_client_hello);
        const ech = echExt ? decodeEchClientHello(echExt.data) : undefined;
        seen.push({
          sni: sni ? (decodeServerName(sni.data) ?? '-') : '-',
          ech: ech?.type === 'outer' ? `config_id ${ech.configId}, ${ech.payload.length}-byte payload` : ech ? ech.type : 'none',
        });
      } catch {
        done = true;
        seen.push({ sni: '?', ech: 'not TLS' });
      }
    });
    c.pipe(up).pipe(c);
    c.on('error', () => up.destroy());
    up.on('error', () => c.destroy());
  });
  await new Promise<void>((res) => server.listen(0, '127.0.0.1', res));
  return {
    port: (server.address() as AddressInfo).port,
    take: () => {
      const s = seen;
      seen = [];
      return s;
    },
    close: () =>
      new Promise<void>((res) => {
        for (const s of open) s.destroy();
        server.close(() => res());
      }),
  };
}

// ------------------------------------------------------------ the demo

/** The demo's material on disk: ECH keys, the test CA, a certificate per site. */
async function material(dir: string): Promise<{ created: boolean; pki: TestPki; certs: Map<string, { cert: string; key: string }> }> {
  const keyDir = join(dir, 'keys');
  const pkiDir = join(dir, 'pki');
  await ensureKeyDirectory(keyDir);
  await mkdir(pkiDir, { recursive: true, mode: 0o700 });
  let created = false;
  try {
    await loadEchKeyDirectory(keyDir);
  } catch (e) {
    if (!(e instanceof EchError)) throw e;
    const key = generateEchKey({ publicName: PUBLIC_NAME, maximumNameLength: 32 });
    await writeEchKeyFile(join(keyDir, `ech-${PUBLIC_NAME}.pem`), key.config, key.privateKeyRaw);
    created = true;
  }
  const names = [PUBLIC_NAME, ...SITES];
  const read = (f: string) => readFile(join(pkiDir, f), 'utf8');
  const write = async (f: string, text: string, secret: boolean) => {
    await writeFile(join(pkiDir, f), text, { mode: secret ? 0o600 : 0o644 });
    if (secret) await chmod(join(pkiDir, f), 0o600);
  };
  let pki: TestPki | undefined;
  const certs = new Map<string, { cert: string; key: string }>();
  try {
    pki = createTestPki({ caCert: await read('ca.pem'), caKey: await read('ca.key') });
    // Reuse while the CA has more than a day left.
    if (new Date(new X509Certificate(pki.caCert).validTo).getTime() < Date.now() + 86400_000) pki = undefined;
    for (const n of names) if (pki) certs.set(n, { cert: await read(`${n}.pem`), key: await read(`${n}.key`) });
  } catch {
    pki = undefined;
  }
  if (!pki) {
    pki = createTestPki();
    await write('ca.pem', pki.caCert, false);
    await write('ca.key', pki.caKey, true);
    certs.clear();
    for (const n of names) {
      const leaf = pki.issue([n]);
      certs.set(n, leaf);
      await write(`${n}.pem`, leaf.cert, false);
      await write(`${n}.key`, leaf.key, true);
    }
    created = true;
  }
  return { created, pki, certs };
}

/**
 * Resolves on SIGINT or SIGTERM, or — when stdin is a pipe — when the pipe
 * closes: a demo started by a program that has gone away (a test runner, a
 * script) does not stay behind listening.
 */
function untilSignalOrStdinEnd(): Promise<void> {
  let pipe = false;
  try {
    // a FIFO from a shell pipeline, a socket pair from a Node parent (spawn/execFile)
    const st = fstatSync(0);
    pipe = st.isFIFO() || st.isSocket();
  } catch {
    // no stdin
  }
  return new Promise<void>((res) => {
    const stop = () => {
      process.off('SIGINT', stop);
      process.off('SIGTERM', stop);
      if (pipe) {
        process.stdin.off('end', stop);
        process.stdin.destroy();
      }
      res();
    };
    process.on('SIGINT', stop);
    process.on('SIGTERM', stop);
    if (pipe) {
      process.stdin.on('end', stop);
      process.stdin.on('error', stop);
      process.stdin.resume();
    }
  });
}

/**
 * Options of {@link runDemo}.
 * @group CLI
 */
export interface DemoOptions {
  /** Exit after printing the table (default false: stay up until SIGINT/SIGTERM). */
  once?: boolean;
  /** Port to listen on, 127.0.0.1 (default 0: any free port). */
  port?: number;
  /** Where the table and instructions go (default stdout). */
  out?: { write(s: string): unknown };
  /** The client that drives the front end (default {@link echRequest}). */
  client?: EchRequest;
  /** Resolves when the demo should stop (default: SIGINT or SIGTERM, or the end of stdin when it is a pipe). Ignored with `once`. */
  until?: Promise<void>;
}

/** One row of the demo's table. */
interface DemoRow {
  client: string;
  wireSni: string;
  wireEch: string;
  serverSaw: string;
  clientGot: string;
}

const GET = (host: string) => `GET / HTTP/1.1\r\nHost: ${host}\r\nAccept: application/json\r\nConnection: close\r\n\r\n`;

/**
 * Run the demo in `dirArg` (default a directory under the system temp
 * dir): generate or reuse the keys and test CA, start the cover-domain front
 * end on 127.0.0.1, drive it, print the table, then stay up with
 * instructions (or return at once with `once`). Resolves to an exit code.
 * @group CLI
 * @example
 * ```ts
 * process.exitCode = await runDemo('/tmp/ech-demo', { once: true });
 * ```
 */
export async function runDemo(dirArg?: string, options: DemoOptions = {}): Promise<number> {
  const out = options.out ?? process.stdout;
  const client = options.client ?? echRequest;
  const dir = resolve(dirArg ?? join(tmpdir(), 'ech-server-demo'));
  const m = await material(dir);
  const keys = await loadEchKeyDirectory(join(dir, 'keys'));
  const config = keys.retryConfigs()[0]!;
  const list = keys.retryConfigList()!;
  out.write(`${m.created ? 'Generated' : 'Reusing'} ECH keys and a test CA in ${dir}\n  public name ${config.publicName}, config_id ${config.configId}; hidden sites ${SITES.join(', ')}\n\n`);

  // The server's own view: its JSON-line log, inner names included (this is
  // the operator's side of the connection).
  const events: Array<Record<string, unknown>> = [];
  const fe = new EchFrontEnd({
    keys,
    publicName: { ...m.certs.get(PUBLIC_NAME)!, action: { respond: 'ech-status' } },
    routes: SITES.map((s) => ({ serverName: s, ...m.certs.get(s)!, action: { respond: 'ech-status' } })),
    log: (e) => events.push(e),
    logInnerNames: true,
  });
  const addr = await fe.listen(options.port ?? 0, '127.0.0.1');
  const tap = await wireTap(addr.port);
  try {
    const stale = generateEchKey({ publicName: PUBLIC_NAME, configId: config.configId, maximumNameLength: 32 });
    const scenarios: Array<{ label: string; o: Omit<EchRequestOptions, 'host' | 'port' | 'ca' | 'request'> }> = [
      { label: 'ECH to alpha.example', o: { servername: 'alpha.example', echConfigList: list } },
      { label: 'ECH, stale key, retry', o: { servername: 'beta.example', echConfigList: encodeEchConfigList([stale.config]), retry: true } },
      { label: 'GREASE ECH', o: { servername: PUBLIC_NAME, grease: true } },
      { label: 'no ECH', o: { servername: 'beta.example' } },
    ];
    const rows: DemoRow[] = [];
    for (const s of scenarios) {
      events.length = 0;
      tap.take();
      let clientGot: string;
      try {
        const r = await client({ host: '127.0.0.1', port: tap.port, ca: m.pki.caCert, request: GET(s.o.servername), ...s.o });
        const body = r.response.slice(r.response.indexOf('\r\n\r\n') + 4);
        let site = '?';
        try {
          site = (JSON.parse(body) as { site?: string }).site ?? '?';
        } catch {
          // not the status page
        }
        clientGot = `ECH ${r.echStatus}${r.retried ? ' after retry' : ''}, page of ${site}`;
      } catch (e) {
        const msg = (e as Error).message;
        clientGot = `failed: ${msg.length > 100 ? `${msg.slice(0, 97)}...` : msg}`;
      }
      await new Promise((r) => setTimeout(r, 20)); // the last log line of the connection
      const wire = tap.take();
      const seen = events
        .filter((e) => e['event'] === 'handshake' || e['event'] === 'ech_required')
        .map((e) =>
          e['event'] === 'ech_required'
            ? 'client sent ech_required'
            : e['status'] === 'accepted'
              ? `accepted, inner ${String(e['inner'])}`
              : e['status'] === 'not-offered'
                ? `no ECH, ${String(e['outer'])}`
                : `${String(e['status'])}: ${String(e['outer'])} + retry_configs`,
        );
      rows.push({ client: s.label, wireSni: wire.map((w) => w.sni).join(' → ') || '-', wireEch: wire.map((w) => w.ech).join(' → ') || '-', serverSaw: seen.join(' → ') || '-', clientGot });
    }
    const cols: Array<[keyof DemoRow, string]> = [
      ['client', 'client'],
      ['wireSni', 'wire: SNI'],
      ['wireEch', 'wire: ECH extension'],
      ['serverSaw', 'server saw'],
      ['clientGot', 'client got'],
    ];
    const widths = cols.map(([k, h]) => Math.max(h.length, ...rows.map((r) => r[k].length)));
    const line = (cells: string[]) => cells.map((c, i) => c.padEnd(widths[i]!)).join(' | ').trimEnd();
    out.write(`${line(cols.map(([, h]) => h))}\n${widths.map((w) => '-'.repeat(w)).join('-+-')}\n`);
    for (const r of rows) out.write(`${line(cols.map(([k]) => r[k]))}\n`);
    out.write(`\nOnly "${PUBLIC_NAME}" crosses the wire for ECH clients; the hidden names travel inside the encrypted payload.\n`);
    if (options.once) return 0;

    const b64 = toBase64(list);
    out.write(`
The front end stays up on 127.0.0.1:${addr.port} (Ctrl-C to stop).
  sites:         ${SITES.join(', ')} behind ${PUBLIC_NAME}
  ECHConfigList: ${b64}
  test CA:       ${join(dir, 'pki', 'ca.pem')}
Try (from the project directory; npx runs its ech-server):
  npx ech-server check --connect 127.0.0.1:${addr.port} --name alpha.example --keys ${shellQuote(join(dir, 'keys'))} --ca ${shellQuote(join(dir, 'pki', 'ca.pem'))} --get
`);
    await (options.until ?? untilSignalOrStdinEnd());
    return 0;
  } finally {
    await tap.close();
    await fe.close();
  }
}

/** A path as a POSIX shell word: as is when safe, else in single quotes. */
function shellQuote(s: string): string {
  return /^[\w@%+=:,./-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`;
}

/**
 * Usage of `ech-server demo`.
 * @group CLI
 * @example
 * ```ts
 * process.stdout.write(DEMO_USAGE);
 * ```
 */
export const DEMO_USAGE = `ech-server demo [--dir DIR] [--port N] [--once]

Generates ECH keys for cover.example and a test CA in DIR (default a
directory under the system temp dir; reused on later runs), starts a
cover-domain front end on 127.0.0.1 (alpha.example and beta.example hidden
behind cover.example, each answering with the ech-status page), drives it
with the ECH client (ECH accepted; a stale key, retry_configs and an accepted
retry; GREASE; no ECH) and prints what the wire showed next to what the
server saw. Then it stays up with the address, the ECHConfigList and an
ech-server check command line to try, until SIGINT/SIGTERM (or, when stdin
is a pipe, until it closes); --once exits after the table.`;

/**
 * `ech-server demo ARGS`: parse the arguments and run {@link runDemo}.
 * @group CLI
 * @example
 * ```ts
 * process.exitCode = await runDemoCli(['--dir', '/tmp/ech-demo', '--once']);
 * ```
 */
export async function runDemoCli(args: string[]): Promise<number> {
  let values;
  try {
    values = parseArgs({ args, options: { dir: { type: 'string' }, port: { type: 'string' }, once: { type: 'boolean' }, help: { type: 'boolean', short: 'h' } }, strict: true }).values;
  } catch (e) {
    process.stderr.write(`ech-server demo: ${(e as Error).message}\n\n${DEMO_USAGE}\n`);
    return 2;
  }
  if (values.help) {
    process.stdout.write(`${DEMO_USAGE}\n`);
    return 0;
  }
  const port = values.port === undefined ? 0 : Number(values.port);
  if (!/^\d+$/.test(values.port ?? '0') || port > 65535) {
    process.stderr.write(`ech-server demo: --port must be 0-65535\n\n${DEMO_USAGE}\n`);
    return 2;
  }
  try {
    return await runDemo(values.dir, { once: values.once === true, port });
  } catch (e) {
    // A busy --port (EADDRINUSE: exit 69), an unwritable --dir (exit 73): one line.
    const os = describeCliError(e);
    if (!os) throw e;
    process.stderr.write(`ech-server demo: ${os.message}\n`);
    return os.exitCode;
  }
}
