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
import { X509Certificate } from 'node:crypto';
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
import { createTestPki, type TestPki } from '../testing/pki.js';
import { echRequest, type EchRequest, type EchRequestOptions } from '../testing/request.js';
import { describeCliError } from './errors.js';

const PUBLIC_NAME = 'cover.example';
const SITES = ['alpha.example', 'beta.example'];

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
