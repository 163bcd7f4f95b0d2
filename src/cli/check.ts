/**
 * `ech-server check`: connect to a server with the library's ECH client
 * (`connectEch`) and print one JSON object saying what happened — accepted,
 * rejected (with the server's retry_configs), GREASE, or no ECH — and, with
 * `--get`, the body of `GET /`. Exit code 0 when a connection authenticated
 * for `--name` was made (with `--get`: and an HTTP answer came back), 1
 * when not, 2 on usage errors.
 *
 * @module
 */
import { readFile } from 'node:fs/promises';
import { parseArgs } from 'node:util';
import { EchError } from '../wire/alert.js';
import { fromBase64, toBase64 } from '../wire/bytes.js';
import { loadEchKeyDirectory } from '../keys/files.js';
import { describeCliError } from './errors.js';
import { connectEch, EchRejectedError, type EchConnectOptions, type EchConnectResult } from '../tls13/ech-client.js';

/**
 * `--help` text of `ech-server check`.
 * @group CLI
 * @example
 * ```ts
 * process.stdout.write(CHECK_USAGE);
 * ```
 */
export const CHECK_USAGE = `ech-server check --connect HOST:PORT --name NAME [--ech-config-list BASE64 | --keys DIR]
                 [--ca FILE] [--grease] [--retry] [--get] [--alpn h2,http/1.1] [--timeout MS]

Connects with the library's ECH client: ClientHelloInner carries NAME, the
outer hello the ECHConfig's public_name. Acceptance is read from the accept
confirmation in ServerHello.random (RFC 9849 §6.1.4). On rejection the
certificate is checked for the public name, retry_configs are read and the
connection is closed with ech_required; with --retry one more connection is
made with those retry_configs.

  --ech-config-list BASE64   the ECHConfigList to offer (e.g. from DNS)
  --keys DIR                 use the retry keys of a key directory instead
  --ca FILE                  trusted CAs, PEM (default: Node's root certificates)
  --grease                   without a config: send a GREASE ECH extension
  --retry                    on rejection, reconnect once with retry_configs
  --get                      send "GET /" over HTTP/1.1 and print the body
  --alpn LIST                ALPN protocols (default http/1.1 with --get)
  --timeout MS               per connection (default 10000)

Prints one JSON object: handshake, echStatus (accepted | rejected | grease |
not-offered), retried, retryConfigs (base64 or null), alpn,
peerCertificateSubject, resumed, helloRetryRequest, error ({code, alert,
message} or null), and with --get: status and body (parsed when JSON).
Exits 0 when a connection authenticated for NAME was made (and, with --get,
an HTTP status line came back), 1 otherwise (a connection closed with no
HTTP answer is error ERR_NO_HTTP_ANSWER), 2 on usage errors.`;

/** A usage error (exit code 2). */
class CheckUsageError extends Error {}

/** What `check` prints. */
interface CheckReport {
  handshake: boolean;
  echStatus: 'accepted' | 'rejected' | 'grease' | 'not-offered' | null;
  retried: boolean;
  retryConfigs: string | null;
  alpn: string | null;
  peerCertificateSubject: string | null;
  resumed: boolean;
  helloRetryRequest: boolean;
  error: { code: string; alert: string | null; message: string } | null;
  status?: number | null;
  body?: unknown;
}

function parseHostPort(s: string): { host: string; port: number } {
  const m = /^\[([^\]]+)\]:(\d+)$/.exec(s) ?? /^([^:]+):(\d+)$/.exec(s);
  const port = m ? Number(m[2]) : NaN;
  if (!m || !Number.isInteger(port) || port < 1 || port > 65535) throw new CheckUsageError(`--connect '${s}' is not HOST:PORT`);
  return { host: m[1]!, port };
}

function errorOf(e: unknown): NonNullable<CheckReport['error']> {
  if (e instanceof EchError) return { code: e.code, alert: e.alert, message: e.message };
  const err = e as NodeJS.ErrnoException;
  return { code: err?.code ?? 'ERR_UNKNOWN', alert: null, message: err?.message ?? String(e) };
}

/** Send `GET /` over HTTP/1.1 with Connection: close and read the answer until the server closes. */
function httpGet(r: EchConnectResult, host: string, timeoutMs: number): Promise<{ status: number | null; body: unknown }> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    const timer = setTimeout(() => {
      r.socket.destroy();
      reject(new EchError('ERR_TIMEOUT', 'internal_error', `no complete HTTP answer within ${timeoutMs} ms`));
    }, timeoutMs);
    r.socket.on('data', (d: Buffer) => chunks.push(d));
    r.socket.once('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    r.socket.once('close', () => {
      clearTimeout(timer);
      const text = Buffer.concat(chunks).toString('utf8');
      const split = text.indexOf('\r\n\r\n');
      const head = split < 0 ? text : text.slice(0, split);
      let body = split < 0 ? '' : text.slice(split + 4);
      const status = /^HTTP\/1\.[01] (\d{3})/.exec(head);
      if (/^transfer-encoding:\s*chunked/im.test(head)) body = dechunk(body);
      let parsed: unknown = body;
      if (/^content-type:\s*application\/json/im.test(head)) {
        try {
          parsed = JSON.parse(body);
        } catch {
          // keep the text
        }
      }
      resolve({ status: status ? Number(status[1]) : null, body: parsed });
    });
    r.socket.write(`GET / HTTP/1.1\r\nHost: ${host}\r\nAccept: application/json, text/html;q=0.9\r\nConnection: close\r\nUser-Agent: ech-server-check\r\n\r\n`);
  });
}

function dechunk(s: string): string {
  let out = '';
  let rest = s;
  for (;;) {
    const eol = rest.indexOf('\r\n');
    if (eol < 0) return out;
    const n = parseInt(rest.slice(0, eol), 16);
    if (!(n > 0)) return out;
    out += rest.slice(eol + 2, eol + 2 + n);
    rest = rest.slice(eol + 2 + n + 2);
  }
}

/**
 * Run `ech-server check` with its arguments; prints one JSON object and
 * resolves to the exit code (0: a connection authenticated for `--name`;
 * 1: no such connection, e.g. ECH rejected without `--retry`; 2: usage).
 * @group CLI
 * @example
 * ```ts
 * process.exitCode = await runCheck(['--connect', '127.0.0.1:8443', '--name', 'alpha.example', '--keys', './keys', '--ca', 'ca.pem', '--get']);
 * ```
 */
export async function runCheck(args: string[]): Promise<number> {
  let opts: EchConnectOptions;
  let get: boolean;
  try {
    const { values, positionals } = (() => {
      try {
        return parseArgs({
          args,
          options: {
            connect: { type: 'string' },
            name: { type: 'string' },
            'ech-config-list': { type: 'string' },
            keys: { type: 'string' },
            ca: { type: 'string' },
            grease: { type: 'boolean' },
            retry: { type: 'boolean' },
            get: { type: 'boolean' },
            alpn: { type: 'string' },
            timeout: { type: 'string' },
            help: { type: 'boolean', short: 'h' },
          },
          allowPositionals: true,
          strict: true,
        });
      } catch (e) {
        throw new CheckUsageError((e as Error).message);
      }
    })();
    if (values.help) {
      process.stdout.write(`${CHECK_USAGE}\n`);
      return 0;
    }
    if (positionals.length) throw new CheckUsageError(`unexpected argument '${positionals[0]}'`);
    if (!values.connect) throw new CheckUsageError('--connect is required');
    if (!values.name) throw new CheckUsageError('--name is required');
    if (values['ech-config-list'] !== undefined && values.keys !== undefined) {
      throw new CheckUsageError('give --ech-config-list or --keys, not both');
    }
    const { host, port } = parseHostPort(values.connect);
    const timeoutMs = values.timeout === undefined ? 10_000 : Number(values.timeout);
    if (!Number.isInteger(timeoutMs) || timeoutMs <= 0) throw new CheckUsageError('--timeout must be a positive whole number of ms');
    let echConfigList: Uint8Array | undefined;
    if (values['ech-config-list'] !== undefined) {
      try {
        echConfigList = fromBase64(values['ech-config-list']);
      } catch {
        throw new CheckUsageError('--ech-config-list is not base64');
      }
    } else if (values.keys !== undefined) {
      echConfigList = (await loadEchKeyDirectory(values.keys)).retryConfigList();
      if (!echConfigList) throw new EchError('ERR_KEY_FILE', 'internal_error', `no key in ${values.keys} is marked for publication (retry)`);
    }
    get = values.get ?? false;
    const alpn = values.alpn ? values.alpn.split(',').filter(Boolean) : get ? ['http/1.1'] : undefined;
    opts = {
      host,
      port,
      servername: values.name,
      ...(echConfigList ? { echConfigList } : {}),
      ...(values.grease ? { grease: true } : {}),
      ...(values.retry ? { retry: true } : {}),
      ...(values.ca ? { ca: await readFile(values.ca, 'utf8') } : {}),
      ...(alpn ? { ALPNProtocols: alpn } : {}),
      timeoutMs,
    };
  } catch (e) {
    if (e instanceof CheckUsageError) {
      process.stderr.write(`ech-server check: ${e.message}\n\n${CHECK_USAGE}\n`);
      return 2;
    }
    const os = describeCliError(e); // e.g. --ca or --keys missing: exit 66
    process.stderr.write(`ech-server check: ${os ? os.message : (e as Error).message}\n`);
    return os ? os.exitCode : 1;
  }

  const report: CheckReport = {
    handshake: false,
    echStatus: null,
    retried: false,
    retryConfigs: null,
    alpn: null,
    peerCertificateSubject: null,
    resumed: false,
    helloRetryRequest: false,
    error: null,
  };
  let code = 0;
  try {
    const r = await connectEch(opts);
    Object.assign(report, {
      handshake: true,
      echStatus: r.echStatus,
      retried: r.retried,
      retryConfigs: r.retryConfigs ? toBase64(r.retryConfigs) : null,
      alpn: r.alpnProtocol || null,
      peerCertificateSubject: r.peerCertificate?.subject ?? null,
      resumed: r.resumed,
      helloRetryRequest: r.helloRetry,
    });
    if (get) {
      if (r.alpnProtocol && r.alpnProtocol !== 'http/1.1') {
        r.socket.destroy();
        throw new EchError('ERR_PROTOCOL', 'internal_error', `--get speaks HTTP/1.1, the server chose ${r.alpnProtocol}`);
      }
      const answer = await httpGet(r, opts.servername, opts.timeoutMs ?? 10_000);
      Object.assign(report, answer);
      // A probe must not pass when the server (or the backend behind it)
      // closed the connection without an HTTP answer.
      if (answer.status === null) {
        code = 1;
        report.error = { code: 'ERR_NO_HTTP_ANSWER', alert: null, message: 'the connection closed with no HTTP answer (no status line)' };
      }
    } else {
      r.socket.end();
    }
  } catch (e) {
    code = 1;
    report.error = errorOf(e);
    if (e instanceof EchRejectedError) {
      // The handshake completed for the public name only: not a success
      // (RFC 9849 §6.1.7), but what the server sent is worth printing.
      report.echStatus = 'rejected';
      report.retryConfigs = e.retryConfigs ? toBase64(e.retryConfigs) : null;
      report.peerCertificateSubject = e.peerCertificates[0]?.subject ?? null;
    }
  }
  process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
  return code;
}
