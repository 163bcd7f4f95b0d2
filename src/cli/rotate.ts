/**
 * `ech-server rotate`: one key rotation step, for cron. Prints one JSON
 * object of what it did.
 *
 * @module
 */
import { readFile } from 'node:fs/promises';
import { parseArgs } from 'node:util';
import { resolve } from 'node:path';
import { KemName } from '../keys/generate.js';
import { EchKeyManager, type EchPublisher } from '../keys/manager.js';
import { FilePublisher } from '../dns/file-publisher.js';
import { Rfc2136Publisher } from '../dns/rfc2136.js';
import { parseHttpsName } from '../dns/publisher.js';
import { TsigAlgorithm, tsigKey } from '../dns/tsig.js';

/**
 * `--help` text of `ech-server rotate`.
 * @group CLI
 * @example
 * ```ts
 * process.stdout.write(ROTATE_USAGE);
 * ```
 */
export const ROTATE_USAGE = `ech-server rotate --keys DIR --state FILE --public-name NAME [options] [publisher]
ech-server rotate --check [publisher]

One rotation step, meant to run from cron every few minutes: creates a key
when the newest is --period old (it decrypts at once), publishes the newest
key once --publish-delay has passed, makes it the retry config, renames the
keys it replaced to *.retired.pem (still decrypting), and deletes them
--ttl + --margin seconds later (or later still, when DNS served the replaced
record with a longer TTL than --ttl: the longer TTL + --margin). If
publishing fails nothing is promoted or deleted and the exit code is 1; the
next run tries again.
Every run first checks the publisher's credentials (for --dns-server a
TSIG-signed SOA query of --zone whose signed answer must verify; for
--publish-file that the directory is writable), even when nothing is due, so
a wrong TSIG secret fails the first cron run, not the next rotation.
--check does only that check and exits 0 (ok) or 1 (with the reason).
Prints one JSON object: time, created, published, withdrawn, deleted (config
ids), error ({code, message} or null), keys (each key's phase and times),
next (when the next step is due).

Keys and state:
  --keys DIR             key directory (RFC 9934 PEM files, 0600; created 0700)
  --state FILE           state file with the keys' timestamps (JSON, 0600)
  --public-name NAME     public_name of new keys
  --kem NAME             KEM of new keys: x25519 (default), p256, p384,
                         ml-kem-768, x-wing (no browser supports these yet:
                         docs/post-quantum.md)
  --max-name-length N    maximum_name_length of new keys (default 0)

Schedule (seconds):
  --period S             make a new key this often (default 86400)
  --ttl S                TTL the HTTPS records are published with; records
                         that exist are rewritten with it too (default 300)
  --margin S             keep withdrawn keys ttl + this long (default 3600)
  --publish-delay S      wait this long between creating and publishing a
                         key, so every server sharing DIR loads it first
                         (default 0)

Names:
  --names A,B            HTTPS records to publish in: HOST or HOST:PORT
                         (a port other than 443 means _PORT._https.HOST)

Publisher (at most one; with none, DNS is updated by hand from the output):
  --publish-file PREFIX  write PREFIX.zone (zone-file lines) and PREFIX.json
  --alpn A,B             alpn= of the zone lines / of created records

  --dns-server HOST:PORT RFC 2136 UPDATE to the zone's primary server
  --zone Z               the zone to update
  --tsig-name N          TSIG key name
  --tsig-secret B64      TSIG secret (visible in ps: prefer the next two)
  --tsig-secret-file F   read the base64 TSIG secret from F
                         (or set ECH_TSIG_SECRET in the environment)
  --tsig-algorithm A     hmac-sha256 (default), hmac-sha384, hmac-sha512
  --create-if-missing    give names without an HTTPS record one
                         (default: such names are skipped)
  --tcp                  use TCP instead of UDP
  --timeout MS           wait this long for each answer (default 3000)

Exit codes: 0 done, 1 publishing or another step failed, 2 usage error.

Example (crontab, every 5 minutes):
  */5 * * * * ech-server rotate --keys /etc/ech --state /var/lib/ech/rotation.json \\
      --public-name cover.example --names secret.example --dns-server 192.0.2.53 \\
      --zone example --tsig-name ech-update. --tsig-secret-file /etc/ech/tsig.b64
`;

class UsageError extends Error {}

function secondsOpt(v: string | undefined, name: string): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!/^\d+$/.test(v) || !Number.isSafeInteger(n)) throw new UsageError(`${name} must be a whole number of seconds`);
  return n;
}

const list = (v: string | undefined) => (v ? v.split(',').map((s) => s.trim()).filter(Boolean) : undefined);

/**
 * Run `ech-server rotate` with these arguments; resolves to the exit code.
 * @group CLI
 * @example
 * ```ts
 * const code = await runRotate(['--keys', '/etc/ech', '--state', '/var/lib/ech/state.json', '--public-name', 'cover.example']);
 * ```
 */
export async function runRotate(args: string[]): Promise<number> {
  let values;
  try {
    values = parseArgs({
      args,
      strict: true,
      allowPositionals: false,
      options: {
        help: { type: 'boolean', short: 'h' },
        keys: { type: 'string' },
        state: { type: 'string' },
        'public-name': { type: 'string' },
        kem: { type: 'string' },
        'max-name-length': { type: 'string' },
        period: { type: 'string' },
        ttl: { type: 'string' },
        margin: { type: 'string' },
        'publish-delay': { type: 'string' },
        names: { type: 'string' },
        'publish-file': { type: 'string' },
        alpn: { type: 'string' },
        'dns-server': { type: 'string' },
        zone: { type: 'string' },
        'tsig-name': { type: 'string' },
        'tsig-secret': { type: 'string' },
        'tsig-secret-file': { type: 'string' },
        'tsig-algorithm': { type: 'string' },
        'create-if-missing': { type: 'boolean' },
        tcp: { type: 'boolean' },
        timeout: { type: 'string' },
        check: { type: 'boolean' },
      },
    }).values;
  } catch (e) {
    process.stderr.write(`ech-server rotate: ${(e as Error).message}\n\n${ROTATE_USAGE}`);
    return 2;
  }
  if (values.help) {
    process.stdout.write(ROTATE_USAGE);
    return 0;
  }
  let manager: EchKeyManager | undefined;
  let publisher: EchPublisher | undefined;
  const checkOnly = values.check === true;
  try {
    if (!checkOnly && !values.keys) throw new UsageError('--keys is required');
    if (!checkOnly && !values.state) throw new UsageError('--state is required');
    const publicName = values['public-name'];
    if (!checkOnly && !publicName) throw new UsageError('--public-name is required');
    const kem = values.kem;
    if (kem !== undefined && !(kem in KemName)) throw new UsageError(`--kem must be one of ${Object.keys(KemName).join(', ')}`);
    const mnl = values['max-name-length'] === undefined ? undefined : Number(values['max-name-length']);
    if (mnl !== undefined && !(Number.isInteger(mnl) && mnl >= 0 && mnl <= 255)) throw new UsageError('--max-name-length must be 0 to 255');
    const names = list(values.names) ?? [];
    for (const n of names) {
      try {
        parseHttpsName(n);
      } catch (e) {
        throw new UsageError(`--names: ${(e as Error).message}`);
      }
    }
    const ttl = secondsOpt(values.ttl, '--ttl');
    const alpn = list(values.alpn);
    if (values['publish-file'] && values['dns-server']) throw new UsageError('give --publish-file or --dns-server, not both');
    if (values['publish-file']) {
      if (!names.length && !checkOnly) throw new UsageError('--publish-file needs --names');
      publisher = new FilePublisher({ prefix: values['publish-file'], ...(ttl !== undefined ? { ttl } : {}), ...(alpn ? { alpn } : {}) });
    } else if (values['dns-server']) {
      if (!names.length && !checkOnly) throw new UsageError('--dns-server needs --names');
      if (!values.zone) throw new UsageError('--dns-server needs --zone');
      let secret = values['tsig-secret'];
      if (values['tsig-secret-file']) secret = (await readFile(values['tsig-secret-file'], 'utf8')).trim();
      secret ??= process.env['ECH_TSIG_SECRET'];
      const alg = values['tsig-algorithm'] ?? 'hmac-sha256';
      if (!(alg in TsigAlgorithm)) throw new UsageError(`--tsig-algorithm must be one of ${Object.keys(TsigAlgorithm).join(', ')}`);
      if (values['tsig-name'] && !secret) throw new UsageError('--tsig-name needs --tsig-secret, --tsig-secret-file or ECH_TSIG_SECRET');
      if (secret && !values['tsig-name']) throw new UsageError('a TSIG secret needs --tsig-name');
      const timeoutMs = values.timeout === undefined ? undefined : Number(values.timeout);
      if (timeoutMs !== undefined && !(Number.isInteger(timeoutMs) && timeoutMs > 0)) throw new UsageError('--timeout must be a whole number of milliseconds');
      publisher = new Rfc2136Publisher({
        server: values['dns-server'],
        zone: values.zone,
        ...(values['tsig-name'] && secret ? { tsig: tsigKey(values['tsig-name'], secret, alg as TsigAlgorithm) } : {}),
        ...(values['create-if-missing'] ? { createIfMissing: alpn ? { alpn } : true } : {}),
        ...(ttl !== undefined ? { ttl } : {}),
        ...(values.tcp ? { transport: 'tcp' as const } : {}),
        ...(timeoutMs !== undefined ? { timeoutMs } : {}),
      });
    } else if (values.zone || values['tsig-name'] || values['tsig-secret'] || values['create-if-missing']) {
      throw new UsageError('--zone, --tsig-* and --create-if-missing need --dns-server');
    }
    if (checkOnly && !publisher) throw new UsageError('--check needs a publisher: --dns-server or --publish-file');
    const period = secondsOpt(values.period, '--period');
    if (period === 0) throw new UsageError('--period must be at least 1');
    const margin = secondsOpt(values.margin, '--margin');
    const publishDelay = secondsOpt(values['publish-delay'], '--publish-delay');
    if (!checkOnly) manager = await EchKeyManager.open({
      keyDirectory: resolve(values.keys!),
      stateFile: resolve(values.state!),
      publicName: publicName!,
      names,
      ...(kem ? { kem: kem as KemName } : {}),
      ...(mnl !== undefined ? { maximumNameLength: mnl } : {}),
      ...(period !== undefined ? { period } : {}),
      ...(ttl !== undefined ? { ttl } : {}),
      ...(margin !== undefined ? { margin } : {}),
      ...(publishDelay !== undefined ? { publishDelay } : {}),
      ...(publisher ? { publisher } : {}),
    });
  } catch (e) {
    if (e instanceof UsageError) {
      process.stderr.write(`ech-server rotate: ${e.message}\n\n${ROTATE_USAGE}`);
      return 2;
    }
    const err = e as Error & { code?: string };
    process.stderr.write(`ech-server rotate: ${err.code ? `${err.code}: ` : ''}${err.message}\n`);
    return err.code === 'ERR_PUBLISH_CONFIG' || err.code === 'ERR_INVALID_ARGUMENT' ? 2 : 1;
  }
  // The credentials first, every run: a broken TSIG secret in cron must fail
  // now, not at the next rotation a day later.
  try {
    await publisher?.check?.();
  } catch (e) {
    const err = e as Error & { code?: string };
    const error = { code: err.code ?? 'ERR_PUBLISH', message: err.message };
    // The same JSON shape as a step whose publishing failed (cron parses it).
    const out = manager
      ? { time: new Date().toISOString(), created: [], published: null, withdrawn: [], deleted: [], error, keys: manager.status(), next: new Date(manager.nextDue()).toISOString() }
      : { ok: false, publisher: publisher?.description ?? null, error };
    process.stdout.write(`${JSON.stringify(out, null, 2)}\n`);
    process.stderr.write(`ech-server rotate: publisher check failed, nothing changed: ${err.code ? `${err.code}: ` : ''}${err.message}\n`);
    return 1;
  }
  if (!manager) {
    process.stdout.write(`${JSON.stringify({ ok: true, publisher: publisher?.description ?? null }, null, 2)}\n`);
    return 0;
  }
  try {
    const report = await manager.step();
    process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
    if (report.error) {
      process.stderr.write(`ech-server rotate: publishing failed, keys unchanged: ${report.error.code}: ${report.error.message}\n`);
      return 1;
    }
    return 0;
  } catch (e) {
    const err = e as Error & { code?: string };
    process.stderr.write(`ech-server rotate: ${err.code ? `${err.code}: ` : ''}${err.message}\n`);
    return 1;
  }
}
