/**
 * The fleet's key-encryption key (KEK): 32 random bytes in a local file
 * (mode 0600) that every member holds. Every ECH private key and ticket key
 * the fleet keeps in etcd is sealed with it (AES-256-GCM, the value's etcd
 * path as additional data), so etcd, its backups and its snapshots see only
 * ciphertext, and a sealed value copied to another path does not open.
 *
 * Sealed value: `"EK1" || iv[12] || ciphertext || tag[16]`.
 *
 * @module
 */
import { createCipheriv, createDecipheriv, createHash, randomBytes } from 'node:crypto';
import { chmod, open, readFile, stat } from 'node:fs/promises';
import { EchError } from '../wire/alert.js';

const MAGIC = Buffer.from('EK1');
const KEK_BYTES = 32;

/**
 * A KEK problem: unreadable or malformed file, loose permissions, or a
 * sealed value that does not open (wrong KEK, or tampered). `code` is
 * `ERR_FLEET_KEK`.
 * @group Fleet
 * @example
 * ```ts
 * try { openSealed(kek, path, value); } catch (e) { if (e instanceof FleetKekError) console.error(e.message); }
 * ```
 */
export class FleetKekError extends EchError {
  constructor(message: string, options?: ErrorOptions) {
    super('ERR_FLEET_KEK', 'internal_error', message, options);
    this.name = 'FleetKekError';
  }
}

/**
 * A loaded key-encryption key.
 * @group Fleet
 * @example
 * ```ts
 * const kek = await readKekFile('/etc/ech-server/fleet.kek');
 * console.log(kek.fingerprint); // safe to log
 * ```
 */
export interface FleetKek {
  /** The 32 secret bytes (never logged). */
  readonly key: Uint8Array;
  /** The file it came from, for messages. */
  readonly source: string;
  /** First 8 bytes of SHA-256 over the key, hex: tells KEKs apart without revealing them. */
  readonly fingerprint: string;
}

function kekFrom(key: Uint8Array, source: string): FleetKek {
  return { key, source, fingerprint: createHash('sha256').update(key).digest('hex').slice(0, 16) };
}

/**
 * Write a new random KEK to `file` (base64, one line), mode 0600. Refuses
 * to overwrite an existing file: replacing the KEK of a running fleet
 * would make every sealed key in etcd unreadable.
 * @group Fleet
 * @example
 * ```ts
 * await writeNewKekFile('/etc/ech-server/fleet.kek');
 * ```
 */
export async function writeNewKekFile(file: string): Promise<FleetKek> {
  const key = new Uint8Array(randomBytes(KEK_BYTES));
  let fh;
  try {
    fh = await open(file, 'wx', 0o600);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new FleetKekError(code === 'EEXIST' ? `${file} already exists (a fleet's KEK is never overwritten; choose another name)` : `cannot create ${file}: ${code ?? (e as Error).message}`, { cause: e });
  }
  try {
    await fh.writeFile(`${Buffer.from(key).toString('base64')}\n`);
  } finally {
    await fh.close();
  }
  await chmod(file, 0o600);
  return kekFrom(key, file);
}

/**
 * Read a KEK file. It must be a regular file readable by its owner only
 * (no group or other permission bits) holding 32 bytes in base64.
 * @group Fleet
 * @example
 * ```ts
 * const kek = await readKekFile(config.fleet.kekFile);
 * ```
 */
export async function readKekFile(file: string): Promise<FleetKek> {
  let st;
  let text: string;
  try {
    st = await stat(file);
    text = await readFile(file, 'utf8');
  } catch (e) {
    throw new FleetKekError(`cannot read ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`, { cause: e });
  }
  if (!st.isFile()) throw new FleetKekError(`${file} is not a regular file`);
  if ((st.mode & 0o077) !== 0) {
    throw new FleetKekError(`${file} is readable by others (mode ${(st.mode & 0o777).toString(8).padStart(4, '0')}); chmod 600 it`);
  }
  const b64 = text.trim();
  const key = /^[A-Za-z0-9+/]+={0,2}$/.test(b64) ? Buffer.from(b64, 'base64') : Buffer.alloc(0);
  if (key.length !== KEK_BYTES) throw new FleetKekError(`${file} does not hold a KEK (${KEK_BYTES} bytes in base64; make one with 'ech-server fleet kek --out FILE')`);
  return kekFrom(new Uint8Array(key), file);
}

/**
 * Seal `plain` for storage at etcd key `path` (AES-256-GCM, random IV,
 * `path` as additional data).
 * @group Fleet
 * @example
 * ```ts
 * const value = seal(kek, '/ech-server/prod/ech/0a', pkcs8);
 * ```
 */
export function seal(kek: FleetKek, path: string, plain: Uint8Array): Uint8Array {
  const iv = randomBytes(12);
  const c = createCipheriv('aes-256-gcm', kek.key, iv);
  c.setAAD(Buffer.from(path, 'utf8'));
  const body = Buffer.concat([c.update(plain), c.final(), c.getAuthTag()]);
  return new Uint8Array(Buffer.concat([MAGIC, iv, body]));
}

/**
 * Open a value {@link seal} made for `path`. Throws {@link FleetKekError}
 * when it does not open: a different KEK, a value moved from another path,
 * or a tampered value; never returns garbage.
 * @group Fleet
 * @example
 * ```ts
 * const pkcs8 = openSealed(kek, '/ech-server/prod/ech/0a', value);
 * ```
 */
export function openSealed(kek: FleetKek, path: string, sealed: Uint8Array): Uint8Array {
  const b = Buffer.from(sealed.buffer, sealed.byteOffset, sealed.byteLength);
  if (b.length < MAGIC.length + 12 + 16 || !b.subarray(0, MAGIC.length).equals(MAGIC)) {
    throw new FleetKekError(`${path}: not a sealed value`);
  }
  try {
    const d = createDecipheriv('aes-256-gcm', kek.key, b.subarray(3, 15));
    d.setAAD(Buffer.from(path, 'utf8'));
    d.setAuthTag(b.subarray(b.length - 16));
    return new Uint8Array(Buffer.concat([d.update(b.subarray(15, b.length - 16)), d.final()]));
  } catch (e) {
    throw new FleetKekError(`${path} does not open with the KEK in ${kek.source} (fingerprint ${kek.fingerprint}): a different KEK than the fleet's, or a tampered value`, { cause: e });
  }
}
