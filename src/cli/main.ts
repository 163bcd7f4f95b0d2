#!/usr/bin/env node
/**
 * The `ech-server` command: keygen, dns, inspect, demo. Each subcommand has
 * `--help`. Output meant for programs is one JSON object on stdout; errors go
 * to stderr with a non-zero exit code.
 *
 * @module
 */
import { parseArgs } from 'node:util';
import { readFileSync } from 'node:fs';
import { mkdir, readFile, stat } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { EchError } from '../wire/alert.js';
import { toBase64 } from '../wire/bytes.js';
import { encodeEchConfigList } from '../ech/config.js';
import { decryptClientHello } from '../ech/decrypt.js';
import { readFirstHandshakeMessage } from '../tls/record.js';
import { EchKeySet } from '../keys/key-set.js';
import { KemName, generateEchKey } from '../keys/generate.js';
import { loadEchKeyDirectory, writeEchKeyFile } from '../keys/files.js';
import { httpsRecordZoneLine } from '../dns/https-record.js';
import { DEMO_USAGE, runDemoCli } from './demo.js';
import { ROTATE_USAGE, runRotate } from './rotate.js';
import { KEYSERVER_USAGE, runKeyserver } from './keyserver.js';
import { CHECK_USAGE, runCheck } from './check.js';
import { FLEET_USAGE, runFleet } from './fleet.js';
import { loadServeConfig, type ServeConfig } from '../front/config.js';
import { checkServeConfig, startServe } from '../front/serve.js';
import { resolveWorkers, startWorkers } from '../front/workers.js';
import { jsonLines } from '../front/log.js';
import { CliOutputError, EXIT_CODES_HELP, ExitCode, describeCliError } from './errors.js';

/** A usage error: printed with the subcommand's help, exit code 2. */
class UsageError extends Error {}

interface Command {
  summary: string;
  usage: string;
  run(args: string[]): Promise<number>;
}

function out(value: unknown): void {
  process.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
}

/** Parse `args`; more than `positionals` positional arguments is a usage error. */
function parse<T extends Record<string, { type: 'string' | 'boolean'; short?: string; multiple?: boolean }>>(args: string[], options: T, positionals = 0) {
  let r;
  try {
    r = parseArgs({ args, options: { ...options, help: { type: 'boolean', short: 'h' } }, allowPositionals: true, strict: true });
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
  if (r.positionals.length > positionals) throw new UsageError(`unexpected argument '${r.positionals[positionals]}'`);
  return r;
}

/**
 * `mkdir -p DIR` (mode 0700 for what it creates), one level at a time:
 * Node's recursive mkdir spins forever where mkdir answers ENOENT for a
 * parent that exists (e.g. under /proc). Errors are output errors (exit 73).
 */
async function makeOutputDirectory(dir: string): Promise<void> {
  try {
    if ((await stat(dir)).isDirectory()) return;
    throw Object.assign(new Error(`ENOTDIR: not a directory, mkdir '${dir}'`), { code: 'ENOTDIR', syscall: 'mkdir', path: dir });
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw new CliOutputError(dir, e);
  }
  const parent = dirname(dir);
  if (parent !== dir) await makeOutputDirectory(parent);
  try {
    await mkdir(dir, { mode: 0o700 });
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw new CliOutputError(dir, e);
  }
}

function packageVersion(): string {
  const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
  return pkg.version;
}

const commands: Record<string, Command> = {
  keygen: {
    summary: 'generate an ECH key and write it as an RFC 9934 PEM file',
    usage: `ech-server keygen --public-name NAME [--kem x25519|p256|p384|ml-kem-768|x-wing] [--out DIR] [--max-name-length N]

Writes one PEM key file (PRIVATE KEY + ECHCONFIG, mode 0600) into DIR
(default: the current directory) with a config_id unused by the keys already
there, and prints one JSON object: configId, publicName, kem, echConfigList
(base64, ready for DNS), file.`,
    async run(args) {
      const { values } = parse(args, {
        'public-name': { type: 'string' },
        kem: { type: 'string' },
        out: { type: 'string' },
        'max-name-length': { type: 'string' },
      });
      const publicName = values['public-name'];
      if (!publicName) throw new UsageError('--public-name is required');
      const kem = (values.kem ?? 'x25519') as keyof typeof KemName;
      if (!(kem in KemName)) throw new UsageError(`--kem must be one of ${Object.keys(KemName).join(', ')}`);
      const mnl = values['max-name-length'] === undefined ? 0 : Number(values['max-name-length']);
      const dir = resolve(values.out ?? '.');
      await makeOutputDirectory(dir);
      let existing = new EchKeySet();
      try {
        existing = await loadEchKeyDirectory(dir);
      } catch (e) {
        if (!(e instanceof EchError && /no ECH key files/.test(e.message))) throw e;
      }
      const key = generateEchKey({ publicName, kem, maximumNameLength: mnl, configId: existing.unusedConfigId() });
      const file = join(dir, `ech-${publicName}-${key.config.configId.toString(16).padStart(2, '0')}.pem`);
      try {
        await writeEchKeyFile(file, key.config, key.privateKeyRaw);
      } catch (e) {
        throw new CliOutputError(file, e);
      }
      out({
        configId: key.config.configId,
        publicName,
        kem,
        echConfigList: toBase64(encodeEchConfigList([key.config])),
        file,
      });
      return 0;
    },
  },

  dns: {
    summary: 'print the HTTPS record (zone-file syntax) publishing the keys of a directory',
    usage: `ech-server dns --keys DIR --name NAME [--port N] [--alpn h2,http/1.1] [--ttl S]

Prints the HTTPS record for NAME with ech= set to the ECHConfigList of the
retry keys in DIR. For a port other than 443 the owner is _PORT._https.NAME
and the TargetName is NAME itself (Chromium ignores "." there).`,
    async run(args) {
      const { values } = parse(args, {
        keys: { type: 'string' },
        name: { type: 'string' },
        port: { type: 'string' },
        alpn: { type: 'string' },
        ttl: { type: 'string' },
      });
      if (!values.keys) throw new UsageError('--keys is required');
      if (!values.name) throw new UsageError('--name is required');
      const keys = await loadEchKeyDirectory(values.keys);
      const list = keys.retryConfigList();
      if (!list) throw new EchError('ERR_KEY_FILE', 'internal_error', `no key in ${values.keys} is marked for publication`);
      const port = values.port === undefined ? 443 : Number(values.port);
      const ttl = values.ttl === undefined ? 300 : Number(values.ttl);
      if (!Number.isInteger(ttl) || ttl < 0) throw new UsageError('--ttl must be a whole number of seconds');
      const alpn = values.alpn ? values.alpn.split(',').filter(Boolean) : [];
      process.stdout.write(`${httpsRecordZoneLine({ name: values.name, echConfigList: list, port, alpn, ttl })}\n`);
      return 0;
    },
  },

  inspect: {
    summary: 'decrypt a captured ClientHello with a key directory',
    usage: `ech-server inspect --keys DIR FILE

FILE holds the client's first bytes as raw TLS records (e.g. captured from a
socket). Prints one JSON object: status (accepted | rejected | not-offered |
error), outerServerName, innerServerName (when accepted), configId, alpn, and
alert on error. Exits non-zero on error.`,
    async run(args) {
      const { values, positionals } = parse(args, { keys: { type: 'string' } }, 1);
      if (!values.keys) throw new UsageError('--keys is required');
      if (positionals.length !== 1) throw new UsageError('give exactly one FILE');
      const keys = await loadEchKeyDirectory(values.keys);
      const bytes = new Uint8Array(await readFile(positionals[0]!));
      try {
        const first = readFirstHandshakeMessage(bytes);
        if (!first) throw new EchError('ERR_DECODE', 'decode_error', 'the file ends before a whole ClientHello');
        const r = await decryptClientHello(first.message.raw, keys);
        if (r.status === 'accepted') {
          out({
            status: r.status,
            outerServerName: r.outerServerName ?? null,
            innerServerName: r.innerServerName ?? null,
            configId: r.configId,
            publicName: r.config.publicName,
            alpn: r.alpn,
            outerExtensions: r.outer.extensions.map((e) => e.type),
            innerExtensions: r.inner.extensions.map((e) => e.type),
          });
        } else if (r.status === 'rejected') {
          out({ status: r.status, reason: r.reason, outerServerName: r.outerServerName ?? null, configId: r.configId });
        } else {
          out({ status: r.status, outerServerName: r.outerServerName ?? null });
        }
        return 0;
      } catch (e) {
        if (!(e instanceof EchError)) throw e;
        out({ status: 'error', alert: e.alert, code: e.code, message: e.message });
        return 1;
      }
    },
  },

  serve: {
    summary: 'run the ECH front end described by a JSON config file',
    usage: `ech-server serve --config FILE [--check]

FILE is JSON (relative paths are resolved against FILE's directory):
  {
    "listen": "127.0.0.1:8443",
    "keys": "./keys",                        directory of ECH PEM key files
    "publicName": { "cert": "cover.pem", "key": "cover.key" },
    "groups": ["x25519mlkem768", "x25519"],  optional, preference order (default:
                                             x25519mlkem768, x25519, secp256r1)
    "alpn": ["http/1.1"],                    optional
    "routes": [
      { "serverName": "alpha.example", "cert": "alpha.pem", "key": "alpha.key", "respond": "ech-status" },
      { "serverName": "beta.example", "passthrough": "10.0.0.2:443", "proxyProtocol": true },
      { "serverName": "gamma.example", "cert": "g.pem", "key": "g.key", "forward": "127.0.0.1:8080" },
      { "serverName": "*.legacy.example", "cert": "l.pem", "key": "l.key",
        "forwardTls": { "to": "10.0.0.3:443", "ca": "legacy-ca.pem" } }
    ],
    "limits": { "firstFlightTimeoutMs": 10000, "handshakeTimeoutMs": 30000,
                "maxClientHelloBytes": 65536, "maxConcurrentHandshakes": 10000 },
    "admin": "127.0.0.1:9090",               optional: /metrics (Prometheus), /healthz
    "drainTimeoutMs": 10000,
    "logInnerNames": false,
    "tls12": true,                           optional: false refuses TLS 1.2-only clients
    "logClientAddress": true,                client address:port in connection logs
    "workers": 1,                            optional: N or "auto" (one per core) processes, one port
    "rotation": { ... },                     optional: rotate keys in the server (docs/rotation.md)
    "keyless": { ... },                      optional: keys in a key server (docs/keyless.md)
    "fleet": { ... }                         optional: keys shared through etcd (docs/fleet.md)
  }
A route matches the inner name when ECH is accepted, else the outer name
(exact, then *.wildcard; "alpn" narrows a route to clients offering one of
those protocols). passthrough forwards ClientHelloInner to an ECH-aware
backend (split mode); respond/forward/forwardTls terminate TLS here. Rejected
and GREASE connections get the public name's certificate, its page and
retry_configs. Errors name the field at fault and are reported before
listening. Prints one JSON line {"listening": "host:port"} when ready; logs
are JSON lines on stderr. SIGHUP reloads FILE (keys, certificates, routes)
without dropping connections (a broken FILE is logged as reload_failed and
the running configuration stays); SIGTERM/SIGINT stop accepting and drain.

  --check   load and check everything (files readable, keys and certificates
            load, each key matches its certificate, each certificate covers
            its route's name and the keys' public names), print one JSON line
            {"ok": true, ...} and exit 0, or name the fault and exit 1;
            nothing listens.

A busy port (listen or admin) is exit 69 with nothing left listening.`,
    async run(args) {
      const { values } = parse(args, { config: { type: 'string' }, check: { type: 'boolean' } });
      if (!values.config) throw new UsageError('--config is required');
      const file = values.config;
      // SIGHUP's default action ends the process: a supervisor that sends
      // it while the server starts (or just after the listening line) must
      // not kill it. A SIGHUP before the server runs is kept and reloads
      // once the server is up.
      let running: Awaited<ReturnType<typeof startServe>> | Awaited<ReturnType<typeof startWorkers>> | undefined;
      let hupBeforeStart = false;
      const hup = () => {
        if (!running) {
          hupBeforeStart = true;
          return;
        }
        // A file that does not load or check is a failed reload too:
        // logged (reload_failed), counted, and the old configuration stays.
        running.reload(() => loadServeConfig(file)).catch(() => undefined);
      };
      if (!values.check) process.on('SIGHUP', hup);
      // One write per line, as it happens: a line about a connection is out
      // before the client sees the outcome it describes (the batch option
      // of jsonLines delays lines to the end of the loop turn, and measured
      // no gain here: the server finishes about one handshake per turn).
      const log = jsonLines(process.stderr);
      let config: ServeConfig;
      try {
        config = await loadServeConfig(file);
        if (values.check) {
          const report = await checkServeConfig(config);
          process.stdout.write(`${JSON.stringify({ ok: true, config: resolve(file), ...report })}\n`);
          return 0;
        }
        // "workers": N > 1 → a primary and N worker processes (src/front/workers.ts).
        running = resolveWorkers(config.workers) > 1 ? await startWorkers(config, log) : await startServe(config, log);
      } catch (e) {
        process.off('SIGHUP', hup);
        throw e;
      }
      const started = running;
      // Every handler is in place before the listening line: a supervisor
      // may signal as soon as it reads it.
      const stopped = new Promise<void>((res) => {
        const stop = () => {
          process.off('SIGTERM', stop);
          process.off('SIGINT', stop);
          process.off('SIGHUP', hup);
          started.close().then(res, res);
        };
        process.on('SIGTERM', stop);
        process.on('SIGINT', stop);
      });
      // The log lines of the start (worker_started...) come out before the
      // listening line that tells a supervisor the server is up.
      log.flush();
      process.stdout.write(
        `${JSON.stringify({ listening: `${started.host}:${started.port}`, admin: started.adminPort ?? null, pid: process.pid, routes: config.routes.map((r) => r.serverName) })}\n`,
      );
      if (hupBeforeStart) hup();
      await stopped;
      return 0;
    },
  },

  check: {
    summary: 'connect with the ECH client and report accepted / rejected (retry_configs) / GREASE',
    usage: CHECK_USAGE,
    run: runCheck,
  },

  rotate: {
    summary: 'one ECH key rotation step: create, publish, promote, retire, delete (for cron)',
    usage: ROTATE_USAGE,
    run: runRotate,
  },

  keyserver: {
    summary: 'run a keyless key server: ECH decapsulation and CertificateVerify signatures for front ends',
    usage: KEYSERVER_USAGE,
    run: runKeyserver,
  },

  fleet: {
    summary: 'fleet mode: make a key-encryption key, show the fleet status from etcd (docs/fleet.md)',
    usage: FLEET_USAGE,
    run: runFleet,
  },

  demo: {
    summary: 'a defo.ie-style cover domain on 127.0.0.1, driven by the ECH client: what the wire shows vs what the server saw',
    usage: DEMO_USAGE,
    run: runDemoCli,
  },
};

function mainHelp(): string {
  const names = Object.keys(commands);
  const w = Math.max(...names.map((n) => n.length));
  return `ech-server — server side of TLS Encrypted Client Hello (RFC 9849)

Usage: ech-server <command> [options]   (ech-server <command> --help)
       ech-server --version

${names.map((n) => `  ${n.padEnd(w)}  ${commands[n]!.summary}`).join('\n')}

Errors are one line on stderr naming the file, field or address at fault.
${EXIT_CODES_HELP}`;
}

/**
 * Run the CLI with `argv` (without node and script); resolves to the exit
 * code.
 * @group CLI
 * @example
 * ```ts
 * process.exitCode = await main(['keygen', '--public-name', 'cover.example']);
 * ```
 */
export async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (!name || name === '--help' || name === '-h' || name === 'help') {
    process.stdout.write(mainHelp());
    return name ? 0 : 2;
  }
  if (name === '--version' || name === '-V') {
    process.stdout.write(`${packageVersion()}\n`);
    return 0;
  }
  const cmd = commands[name];
  if (!cmd) {
    process.stderr.write(`ech-server: unknown command '${name}'\n\n${mainHelp()}`);
    return 2;
  }
  if (rest.includes('--help') || rest.includes('-h')) {
    process.stdout.write(`${cmd.usage}\n`);
    return 0;
  }
  try {
    return await cmd.run(rest);
  } catch (e) {
    if (e instanceof UsageError) {
      process.stderr.write(`ech-server ${name}: ${e.message}\n\n${cmd.usage}\n`);
      return ExitCode.usage;
    }
    const os = describeCliError(e);
    if (os) {
      process.stderr.write(`ech-server ${name}: ${os.message}\n`);
      return os.exitCode;
    }
    if (e instanceof EchError) {
      process.stderr.write(`ech-server ${name}: ${e.message}\n`);
      return ExitCode.failure;
    }
    throw e;
  }
}

const invokedDirectly = process.argv[1] !== undefined && /[\\/](main\.js|ech-server)$/.test(process.argv[1]);
if (invokedDirectly) {
  main(process.argv.slice(2)).then(
    (code) => {
      process.exitCode = code;
      // The command is done (serve: drained and closed): the process exits
      // within a second, as nginx's does after its drain, even if some
      // handle (a late socket, a library's timer) would keep the event loop
      // alive. Unref'd, so a clean exit does not wait for it.
      setTimeout(() => process.exit(), 1000).unref();
    },
    (e: unknown) => {
      process.stderr.write(`ech-server: internal error: ${(e as Error).stack ?? String(e)}\n`);
      process.exitCode = ExitCode.software;
    },
  );
}
