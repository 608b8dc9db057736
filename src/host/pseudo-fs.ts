/**
 * /sys and /dev of the simulated host, kept in a memfs Volume so the tree can be listed,
 * walked and symlinks resolved like the real thing.
 *
 * memfs has no file hooks, so the attribute semantics live beside it: a file created with
 * `attr()` has a `show` (what a read returns, computed from live state at every read and
 * then stored into the memfs file) and/or a `store` (what a write does). `read`/`write`
 * give the behaviour of open+read/write on sysfs:
 *
 * - missing path -> ENOENT, a directory -> EISDIR, a symlink is followed;
 * - reading an attribute without show, or writing one without store -> EACCES (kernfs
 *   refuses the open even for root);
 * - a write of more than PAGE_SIZE bytes is cut to PAGE_SIZE; an empty write does nothing;
 * - device nodes (plain files made by `node()`) are not readable/writable this way: EINVAL.
 *
 * Direct reads of `vol` see the value of each attribute as of its last read or `sync()`.
 */
import { Volume } from 'memfs';
import { Errno, KernelError, syscall } from '../uapi/errno.js';

export const SYSFS_PAGE_SIZE = 4096;

export interface PseudoAttr {
  show?: () => string;
  store?: (text: string) => void;
}

function errnoOf(e: unknown): number {
  if (e instanceof KernelError) return -e.errno;
  const code = (e as { code?: unknown }).code;
  if (typeof code === 'string' && code in Errno) return -Errno[code as keyof typeof Errno];
  throw e;
}

export class PseudoFs {
  readonly vol = new Volume();
  private readonly attrs = new Map<string, PseudoAttr>();

  mkdir(path: string): void {
    this.vol.mkdirSync(path, { recursive: true });
  }

  /** Creates (or replaces) an attribute file; mode 0644 / 0444 / 0200 from its operations. */
  attr(path: string, a: PseudoAttr): void {
    const mode = (a.show ? 0o444 : 0) | (a.store ? 0o200 : 0);
    this.attrs.set(path, a);
    this.setContent(path, a.show ? safeShow(a.show) : '', mode);
  }

  /** memfs enforces modes, so content updates of read-only files go through a chmod. */
  private setContent(path: string, text: string, mode: number): void {
    if (this.exists(path, false)) this.vol.chmodSync(path, 0o644);
    this.vol.writeFileSync(path, text, { mode: 0o644 });
    this.vol.chmodSync(path, mode);
  }

  private modeOf(path: string): number {
    return Number(this.vol.lstatSync(path).mode) & 0o777;
  }

  /** A device node (char device stand-in): present in listings, opened through the host. */
  node(path: string): void {
    this.vol.writeFileSync(path, '', { mode: 0o600 });
  }

  symlink(target: string, path: string): void {
    if (this.exists(path, false)) this.vol.unlinkSync(path);
    this.vol.symlinkSync(target, path);
  }

  /** Removes a file, link or whole directory (and the attributes below it). */
  remove(path: string): void {
    if (!this.exists(path, false)) return;
    if (this.vol.lstatSync(path).isDirectory()) this.vol.rmSync(path, { recursive: true, force: true });
    else this.vol.unlinkSync(path);
    const prefix = path.endsWith('/') ? path : `${path}/`;
    for (const p of [...this.attrs.keys()]) if (p === path || p.startsWith(prefix)) this.attrs.delete(p);
  }

  /** Whether a path exists (following symlinks unless `follow` is false). */
  exists(path: string, follow = true): boolean {
    try {
      if (follow) this.vol.statSync(path);
      else this.vol.lstatSync(path);
      return true;
    } catch {
      return false;
    }
  }

  /** The real path behind `path`, or -errno. */
  resolve(path: string): string | number {
    if (typeof path !== 'string' || !path.startsWith('/')) return -Errno.EINVAL;
    try {
      return String(this.vol.realpathSync(path));
    } catch (e) {
      return errnoOf(e);
    }
  }

  /** read(2) of a whole attribute: its text, or -errno. */
  read(path: string): string | number {
    const real = this.resolve(path);
    if (typeof real === 'number') return real;
    if (this.vol.statSync(real).isDirectory()) return -Errno.EISDIR;
    const a = this.attrs.get(real);
    if (!a) return -Errno.EINVAL;
    if (!a.show) return -Errno.EACCES;
    let text: string;
    try {
      text = a.show();
    } catch (e) {
      return errnoOf(e);
    }
    this.setContent(real, text, this.modeOf(real));
    return text;
  }

  /** write(2) of `text` to an attribute: 0 or -errno. */
  write(path: string, text: string): number {
    const real = this.resolve(path);
    if (typeof real === 'number') return real;
    if (this.vol.statSync(real).isDirectory()) return -Errno.EISDIR;
    const a = this.attrs.get(real);
    if (!a) return -Errno.EINVAL;
    if (!a.store) return -Errno.EACCES;
    if (typeof text !== 'string') return -Errno.EFAULT;
    const buf = text.length > SYSFS_PAGE_SIZE ? text.slice(0, SYSFS_PAGE_SIZE) : text;
    if (buf.length === 0) return 0;
    const store = a.store;
    const r = syscall(() => store(buf));
    return r < 0 ? r : 0;
  }

  /** readlink(2): the link text, -EINVAL for a non-link, -ENOENT if missing. */
  readlink(path: string): string | number {
    try {
      return String(this.vol.readlinkSync(path));
    } catch (e) {
      return errnoOf(e);
    }
  }

  /** Directory entries (sorted), or -errno (ENOTDIR for a file). */
  list(path: string): string[] | number {
    try {
      return (this.vol.readdirSync(path) as string[]).map(String).sort();
    } catch (e) {
      return errnoOf(e);
    }
  }

  /** Rewrites every readable attribute with its current value. */
  sync(): void {
    for (const [p, a] of this.attrs) if (a.show) this.setContent(p, safeShow(a.show), this.modeOf(p));
  }
}

function safeShow(show: () => string): string {
  try {
    return show();
  } catch (e) {
    if (e instanceof KernelError) return '';
    throw e;
  }
}
