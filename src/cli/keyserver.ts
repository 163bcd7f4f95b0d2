/**
 * `ech-server keyserver`: the key server of keyless mode, run from a JSON
 * configuration file. Prints one JSON line `{"listening": "host:port"}` when
 * ready; operational logs and (by default) the audit log are JSON lines on
 * stderr. Wired into the main command as `ech-server keyserver`; the module
 * also runs on its own (`node dist/cli/keyserver.js --config FILE`).
 *
 * @module
 */
import http from 'node:http';
import { parseArgs } from 'node:util';
import { EchError } from '../wire/alert.js';
import { jsonLines } from '../front/log.js';
import { describeCliError } from './errors.js';
import { KeyServer } from '../keyless/server.js';
import { listenAdmin } from '../front/admin.js';
import { auditSink, keyServerOptionsFromConfig, loadKeyServerConfig } from '../keyless/keyserver-config.js';

/**
 * `--help` text of `ech-server keyserver`.
 * @group CLI
 * @example
 * ```ts
 * process.stdout.write(KEYSERVER_USAGE);
 * ```
 */
export const KEYSERVER_USAGE = `ech-server keyserver --config FILE

Keyless mode: holds ECH keys and TLS certificate keys, and answers decap
(ECH: the KEM shared secret for one ClientHello) and sign (a TLS 1.3
CertificateVerify) requests from front ends over mutually authenticated TLS.
Private keys never leave this process. See docs/keyless.md.

FILE is JSON (relative paths are resolved against FILE's directory):
  {
    "listen": "127.0.0.1:7443",
    "cert": "keyserver.pem", "key": "keyserver.key",   this server's identity
    "ca": "front-ends-ca.pem",             client certificates must chain to it
    "echKeys": "./ech-keys",               RFC 9934 key files (with private keys)
    "tlsKeys": [{ "cert": "alpha.pem", "key": "alpha.key" }],
    "clients": [
      { "name": "edge-1.example",          a DNS name or CN of the client cert
        "ech": ["cover.example", 183],     ECH keys by public_name or config_id ("*": all)
        "tls": ["alpha.example"],          TLS keys by certificate name ("*": all)
        "keyIds": ["<64 hex digits>"],     or by key id
        "ratePerSecond": 1000, "burst": 2000 }
    ],
    "auditLog": "audit.jsonl",             optional (default stderr), mode 0600
    "idleTimeoutMs": 300000,
    "admin": "127.0.0.1:9102"              optional: plain HTTP GET /metrics, /healthz
  }
SIGHUP reloads FILE's keys and clients (listen, cert, key, ca and auditLog
stay); a client removed from "clients" is refused from its next request on.
The audit log has one JSON line per operation: op, key, keyId, client,
remote, result (ok, unknown-key, forbidden, rate-limited, bad-request,
crypto-failed, internal), durationMs. No secrets, no request data.
A client refused before any request is logged as keyserver_client_refused
with its address and port and a reason: certificate_rejected (with the
OpenSSL verify code, e.g. UNABLE_TO_VERIFY_LEAF_SIGNATURE), no_certificate,
dropped (closed before the TLS handshake finished) or tls_error; /metrics
counts them in ech_keyserver_clients_refused_total{reason}.
SIGTERM/SIGINT stop.`;

/**
 * Run `ech-server keyserver` with its arguments; resolves to the exit code
 * once stopped (SIGTERM/SIGINT). Configuration errors name their field and
 * exit 1 before anything listens; usage errors exit 2.
 * @group CLI
 * @example
 * ```ts
 * process.exitCode = await runKeyserver(['--config', '/etc/ech-keyserver.json']);
 * ```
 */
export async function runKeyserver(args: string[]): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({ args, options: { config: { type: 'string' }, help: { type: 'boolean', short: 'h' } }, strict: true }));
  } catch (e) {
    process.stderr.write(`ech-server keyserver: ${(e as Error).message}\n\n${KEYSERVER_USAGE}\n`);
    return 2;
  }
  if (values.help) {
    process.stdout.write(`${KEYSERVER_USAGE}\n`);
    return 0;
  }
  if (!values.config) {
    process.stderr.write(`ech-server keyserver: --config is required\n\n${KEYSERVER_USAGE}\n`);
    return 2;
  }
  const log = jsonLines(process.stderr);
  let server: KeyServer;
  let audit: Awaited<ReturnType<typeof auditSink>>;
  let addr: { host: string; port: number };
  let admin: http.Server | undefined;
  let adminPort: number | undefined;
  try {
    const config = await loadKeyServerConfig(values.config);
    const options = await keyServerOptionsFromConfig(config);
    audit = await auditSink(config.auditLog);
    server = new KeyServer({ ...options, audit: audit.sink, log });
    addr = await server.listen(config.listen.port, config.listen.host);
    if (config.admin) {
      const ks = server;
      const a = config.admin;
      ({ server: admin, port: adminPort } = await listenAdmin(a, {
        metrics: () => ks.renderMetrics(),
        health: () => ({ ok: true, body: `${JSON.stringify({ ok: true, keys: ks.keys().length })}\n`, contentType: 'application/json' }),
      }).catch(async (e: NodeJS.ErrnoException) => {
        await server.close();
        throw Object.assign(new Error(`admin ${a.host}:${a.port}: ${e.code ?? e.message}`), { code: e.code });
      }));
    }
  } catch (e) {
    const os = describeCliError(e); // a busy port: exit 69
    if (os) {
      process.stderr.write(`ech-server keyserver: ${os.message}\n`);
      return os.exitCode;
    }
    if (!(e instanceof EchError) && !(e as NodeJS.ErrnoException).code) throw e;
    process.stderr.write(`ech-server keyserver: ${(e as Error).message}\n`);
    return 1;
  }
  const file = values.config;
  const hup = () => {
    loadKeyServerConfig(file)
      .then(async (next) => {
        server.update(await keyServerOptionsFromConfig(next));
        log({ event: 'keyserver_reloaded', keys: server.keys().length, clients: next.clients.length });
      })
      .catch((e: unknown) => log({ event: 'keyserver_reload_failed', error: (e as Error).message }));
  };
  process.on('SIGHUP', hup);
  const stopped = new Promise<void>((res) => {
    const stop = () => {
      process.off('SIGTERM', stop);
      process.off('SIGINT', stop);
      process.off('SIGHUP', hup);
      res();
    };
    process.on('SIGTERM', stop);
    process.on('SIGINT', stop);
  });
  // Every handler is in place before the listening line: a supervisor may
  // signal as soon as it reads it (SIGHUP's default action ends a process).
  process.stdout.write(`${JSON.stringify({ listening: `${addr.host}:${addr.port}`, admin: adminPort ?? null, pid: process.pid, keys: server.keys() })}\n`);
  await stopped;
  admin?.close();
  await server.close();
  await audit.close();
  return 0;
}

const invokedDirectly = process.argv[1] !== undefined && /[\\/]keyserver\.js$/.test(process.argv[1]);
if (invokedDirectly) {
  runKeyserver(process.argv.slice(2)).then(
    (code) => {
      process.exitCode = code;
    },
    (e: unknown) => {
      process.stderr.write(`ech-server keyserver: internal error: ${(e as Error).stack ?? String(e)}\n`);
      process.exitCode = 70;
    },
  );
}
