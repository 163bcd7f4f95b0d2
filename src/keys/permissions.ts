/**
 * Private key files must not be readable by group or others: such a file is
 * refused when loaded, as OpenSSH refuses an "UNPROTECTED PRIVATE KEY FILE",
 * unless the caller explicitly accepts it
 * (`allowInsecureKeyFilePermissions`).
 *
 * @module
 */
import { open } from 'node:fs/promises';
import { EchError } from '../wire/alert.js';

/**
 * Options of the key loaders about key file permissions.
 * @group Keys
 */
export interface KeyFileOptions {
  /**
   * Load private key files even when group or others may read them
   * (`mode & 0o077`). Default false: such a file is refused with
   * {@link InsecureKeyFileError}. For setups where the file's access is
   * controlled otherwise (e.g. a secrets volume mounted 0640 for a group).
   */
  allowInsecureKeyFilePermissions?: boolean;
}

/**
 * A private key file that group or others may read was refused. Code
 * `ERR_INSECURE_KEY_FILE`; `path` names the file and `mode` its permission
 * bits. The message says how to fix it (`chmod 600 FILE`).
 * @group Errors
 * @example
 * ```ts
 * try { await loadEchKeyDirectory('/etc/ech'); }
 * catch (e) { if (e instanceof InsecureKeyFileError) console.error(`fix: chmod 600 ${e.path}`); }
 * ```
 */
export class InsecureKeyFileError extends EchError {
  /** The file refused. */
  readonly path: string;
  /** Its permission bits (e.g. 0o644). */
  readonly mode: number;
  constructor(path: string, mode: number) {
    super(
      'ERR_INSECURE_KEY_FILE',
      'internal_error',
      `private key file ${path} is readable by group or others (mode 0${(mode & 0o777).toString(8)}); ` +
        `fix it with: chmod 600 ${path} (or set allowInsecureKeyFilePermissions to accept it)`,
    );
    this.name = 'InsecureKeyFileError';
    this.path = path;
    this.mode = mode & 0o777;
  }
}

/** A PEM private key block of any kind (PKCS#8, SEC1 EC, PKCS#1 RSA, encrypted). */
const PRIVATE_KEY_BLOCK = /-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY-----/;

/**
 * Whether group or others have any access to a file of this mode (what
 * OpenSSH refuses for private keys). Always false on Windows, where mode
 * bits do not describe access.
 * @group Keys
 * @example
 * ```ts
 * insecureMode(0o644); // true
 * insecureMode(0o600); // false
 * ```
 */
export function insecureMode(mode: number): boolean {
  return process.platform !== 'win32' && (mode & 0o077) !== 0;
}

/**
 * Read a PEM file; if it holds a private key and group or others may read
 * it, throw {@link InsecureKeyFileError} unless
 * `allowInsecureKeyFilePermissions`. The permission bits are those of the
 * file actually read (one open file, no check-then-read race). Files without
 * a private key (certificates, ECHCONFIG-only files) are not checked.
 * Other errors are the file system's (e.g. ENOENT).
 * @group Keys
 * @example
 * ```ts
 * const pem = await readPrivateKeyFile('/etc/ech-server/cover.key');
 * ```
 */
export async function readPrivateKeyFile(path: string, options: KeyFileOptions = {}): Promise<string> {
  const fh = await open(path, 'r');
  try {
    const { mode } = await fh.stat();
    const text = await fh.readFile('utf8');
    if (!options.allowInsecureKeyFilePermissions && insecureMode(mode) && PRIVATE_KEY_BLOCK.test(text)) {
      throw new InsecureKeyFileError(path, mode);
    }
    return text;
  } finally {
    await fh.close();
  }
}
