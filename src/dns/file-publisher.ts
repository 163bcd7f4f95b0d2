/**
 * Publishing to files, for zones managed elsewhere (a zone file included by
 * the DNS server, a provider's API fed by a script): `PREFIX.zone` with one
 * HTTPS record per name in zone-file syntax, and `PREFIX.json` with the same
 * facts for programs. Both are written atomically (temporary file in the
 * same directory, then rename), mode 0644: they hold only public data.
 *
 * @module
 */
import { randomBytes } from 'node:crypto';
import { constants } from 'node:fs';
import { access, chmod, mkdir, rename, unlink, writeFile } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { decodeEchConfigList } from '../ech/config.js';
import { toBase64 } from '../wire/bytes.js';
import type { EchPublisher } from '../keys/manager.js';
import { httpsRecordZoneLine } from './https-record.js';
import { PublishError } from './errors.js';
import { type PublishReport, parseHttpsName } from './publisher.js';

/**
 * Options of {@link FilePublisher}.
 * @group DNS
 * @example
 * ```ts
 * const opts: FilePublisherOptions = { prefix: '/var/lib/ech/https', alpn: ['h2', 'http/1.1'], ttl: 300 };
 * ```
 */
export interface FilePublisherOptions {
  /** Path prefix: writes `PREFIX.zone` and `PREFIX.json`. */
  prefix: string;
  /** TTL in the zone lines; default 300. */
  ttl?: number;
  /** ALPN ids in the zone lines; default none. */
  alpn?: string[];
  /** Clock for the `updated` field; default `Date.now`. */
  now?: () => number;
}

/**
 * The JSON file the {@link FilePublisher} writes.
 * @group DNS
 * @example
 * ```ts
 * const doc = JSON.parse(await readFile('/var/lib/ech/https.json', 'utf8')) as PublishedFile;
 * ```
 */
export interface PublishedFile {
  /** ISO time of the write. */
  updated: string;
  ttl: number;
  /** The ECHConfigList, base64 (the `ech=` value). */
  echConfigList: string;
  /** config_ids in the list, in order. */
  configIds: number[];
  records: { name: string; port: number; owner: string; zoneLine: string }[];
}

async function writeAtomic(path: string, text: string): Promise<void> {
  const tmp = `${path}.${randomBytes(6).toString('hex')}.tmp`;
  try {
    await writeFile(tmp, text, { mode: 0o644, flag: 'wx' });
    await chmod(tmp, 0o644);
    await rename(tmp, path);
  } catch (e) {
    await unlink(tmp).catch(() => undefined);
    throw new PublishError('ERR_PUBLISH_FILE', `cannot write ${path}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`, { cause: e });
  }
}

/**
 * Writes the HTTPS records to `PREFIX.zone` and `PREFIX.json`.
 * @group DNS
 * @example
 * ```ts
 * const publisher = new FilePublisher({ prefix: '/var/lib/ech/https', alpn: ['h2'] });
 * await publisher.publish(['secret.example', 'other.example:8443'], list);
 * ```
 */
export class FilePublisher implements EchPublisher {
  readonly #opts: FilePublisherOptions;

  constructor(opts: FilePublisherOptions) {
    if (!opts.prefix) throw new PublishError('ERR_PUBLISH_CONFIG', 'the file publisher needs a path prefix');
    this.#opts = { ...opts, prefix: resolve(opts.prefix) };
  }

  /** A short description for logs. */
  get description(): string {
    return `file ${this.#opts.prefix}.{zone,json}`;
  }

  /**
   * Check that the files can be written: the directory of `prefix` exists
   * (or can be made) and is writable. Writes nothing else.
   */
  async check(): Promise<void> {
    const dir = dirname(this.#opts.prefix);
    try {
      await mkdir(dir, { recursive: true });
      await access(dir, constants.W_OK);
    } catch (e) {
      throw new PublishError('ERR_PUBLISH_FILE', `cannot write into ${dir}: ${(e as Error).message}`, { cause: e });
    }
  }

  /** Write both files for these names. */
  async publish(names: readonly string[], echConfigList: Uint8Array): Promise<PublishReport> {
    const ttl = this.#opts.ttl ?? 300;
    const parsed = names.map(parseHttpsName);
    const records = parsed.map((n) => ({
      name: n.name,
      port: n.port,
      owner: n.owner,
      zoneLine: httpsRecordZoneLine({ name: n.name, port: n.port, echConfigList, ttl, ...(this.#opts.alpn ? { alpn: this.#opts.alpn } : {}) }),
    }));
    const doc: PublishedFile = {
      updated: new Date((this.#opts.now ?? Date.now)()).toISOString(),
      ttl,
      echConfigList: toBase64(echConfigList),
      configIds: decodeEchConfigList(echConfigList).configs.map((c) => c.configId),
      records,
    };
    const zone = `; ECH HTTPS records written by ech-server at ${doc.updated}\n${records.map((r) => r.zoneLine).join('\n')}\n`;
    const prefix = this.#opts.prefix;
    await mkdir(dirname(prefix), { recursive: true }).catch((e: unknown) => {
      throw new PublishError('ERR_PUBLISH_FILE', `cannot create ${dirname(prefix)}: ${(e as Error).message}`, { cause: e });
    });
    await writeAtomic(`${prefix}.zone`, zone);
    await writeAtomic(`${prefix}.json`, `${JSON.stringify(doc, null, 2)}\n`);
    return {
      publisher: 'file',
      names: records.map((r) => ({ name: r.name, owner: r.owner, action: 'written' as const, records: 1, ttl })),
      files: [`${prefix}.zone`, `${prefix}.json`],
      maxTtl: ttl,
    };
  }
}
