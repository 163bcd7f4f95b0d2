/**
 * Errors an operator meets on the command line: operating-system errors
 * (a missing file, a directory that cannot be written, a busy port) become
 * one line naming the path or address and a distinct exit code, taken from
 * sysexits.h where one fits. Anything else that is not an {@link EchError}
 * stays an internal error (exit 70, with its stack: a bug to report).
 *
 * @module
 */
import { EchError } from '../wire/alert.js';

/**
 * Exit codes of the `ech-server` command.
 * @group CLI
 * @example
 * ```ts
 * if (code === ExitCode.unavailable) console.error('port busy');
 * ```
 */
export const ExitCode = {
  /** Done. */
  ok: 0,
  /** A configuration, key or certificate error (the message names the field or file), a failed check, a handshake error. */
  failure: 1,
  /** A usage error: unknown option, missing or unexpected argument. */
  usage: 2,
  /** EX_NOINPUT: an input file or directory is missing or cannot be read. */
  noInput: 66,
  /** EX_UNAVAILABLE: cannot listen on an address (in use, not available, not permitted). */
  unavailable: 69,
  /** EX_SOFTWARE: an internal error (a bug; the stack is printed). */
  software: 70,
  /** EX_CANTCREAT: an output file or directory cannot be created. */
  cantCreate: 73,
  /** EX_IOERR: another input/output error (disk full, I/O error). */
  ioError: 74,
} as const;

/**
 * The exit-code table printed by `ech-server --help` (and the README).
 * @group CLI
 * @example
 * ```ts
 * process.stdout.write(EXIT_CODES_HELP);
 * ```
 */
export const EXIT_CODES_HELP = `Exit codes:
   0  done
   1  configuration, key or certificate error; failed check or handshake
   2  usage error (unknown option, missing or unexpected argument)
  66  an input file or directory is missing or unreadable (ENOENT, EACCES, ...)
  69  cannot listen: address in use or not available (EADDRINUSE, ...)
  70  internal error (a bug: please report it with the printed stack)
  73  cannot create an output file or directory (EACCES, ENOTDIR, EROFS, ...)
  74  other input/output error (ENOSPC, EIO, ...)
`;

const DESCRIPTIONS: Record<string, string> = {
  ENOENT: 'no such file or directory',
  EACCES: 'permission denied',
  EPERM: 'operation not permitted',
  ENOTDIR: 'not a directory',
  EISDIR: 'is a directory',
  EEXIST: 'file exists',
  EROFS: 'read-only file system',
  ENOSPC: 'no space left on device',
  EDQUOT: 'disk quota exceeded',
  EIO: 'input/output error',
  ELOOP: 'too many symbolic links',
  ENAMETOOLONG: 'file name too long',
  EMFILE: 'too many open files',
  EADDRINUSE: 'address already in use',
  EADDRNOTAVAIL: 'address not available',
};

/** Errors that mean "this path is not there / not for you", as opposed to a failing device. */
const PATH_ERRORS = new Set(['ENOENT', 'EACCES', 'EPERM', 'ENOTDIR', 'EISDIR', 'EEXIST', 'EROFS', 'ELOOP', 'ENAMETOOLONG']);

/** System calls that create or change files: their failure is about output. */
const OUTPUT_SYSCALLS = new Set(['mkdir', 'mkdtemp', 'rename', 'chmod', 'fchmod', 'chown', 'unlink', 'rmdir', 'rm', 'copyfile', 'symlink', 'link', 'write', 'utime']);

type Errno = Error & { code: string; syscall?: string; path?: string; address?: string; port?: number; field?: string };

function isErrno(e: unknown): e is Errno {
  const x = e as Errno | undefined;
  return e instanceof Error && typeof x?.code === 'string' && /^E[A-Z0-9]+$/.test(x.code) && (typeof x.syscall === 'string' || typeof x.path === 'string');
}

function describe(code: string): string {
  return `${DESCRIPTIONS[code] ?? 'system error'} (${code})`;
}

/**
 * An operating-system error while creating output (a key file or its
 * directory): exit code {@link ExitCode.cantCreate}.
 * @group CLI
 * @example
 * ```ts
 * try { await mkdir(dir); } catch (e) { throw new CliOutputError(dir, e); }
 * ```
 */
export class CliOutputError extends Error {
  /** The path that could not be created. */
  readonly path: string;
  constructor(path: string, cause: unknown) {
    super(`cannot create ${path}: ${isErrno(cause) ? describe(cause.code) : (cause as Error).message}`, { cause });
    this.name = 'CliOutputError';
    this.path = path;
  }
}

/**
 * Map an error to the one line the CLI prints and its exit code; undefined
 * when the error is neither an operating-system error (directly or as the
 * `cause` of an {@link EchError}) nor a {@link CliOutputError}.
 * @group CLI
 * @example
 * ```ts
 * const d = describeCliError(e);
 * if (d) { process.stderr.write(`ech-server: ${d.message}\n`); process.exitCode = d.exitCode; }
 * ```
 */
export function describeCliError(e: unknown): { message: string; exitCode: number } | undefined {
  if (e instanceof CliOutputError) {
    const code = isErrno(e.cause) ? e.cause.code : '';
    return { message: e.message, exitCode: code && !PATH_ERRORS.has(code) ? ExitCode.ioError : ExitCode.cantCreate };
  }
  const os = isErrno(e) ? e : e instanceof EchError && isErrno(e.cause) ? e.cause : undefined;
  if (!os) return undefined;
  if (os.syscall === 'listen' || os.syscall === 'bind') {
    const where = os.address !== undefined ? `${os.address.includes(':') ? `[${os.address}]` : os.address}:${os.port ?? ''}` : 'the address';
    const field = typeof (e as Errno).field === 'string' ? `${(e as Errno).field}: ` : '';
    return { message: `${field}cannot listen on ${where}: ${describe(os.code)}`, exitCode: ExitCode.unavailable };
  }
  const output = OUTPUT_SYSCALLS.has(os.syscall ?? '');
  const exitCode = !PATH_ERRORS.has(os.code) ? ExitCode.ioError : output ? ExitCode.cantCreate : ExitCode.noInput;
  // An EchError's message already names the file (and the errno code).
  if (e !== os) return { message: (e as Error).message, exitCode };
  const path = os.path ?? '?';
  return { message: `${output ? 'cannot create' : 'cannot read'} ${path}: ${describe(os.code)}`, exitCode };
}
