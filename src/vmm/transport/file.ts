/**
 * File transport: the stream written to a file and read back later (the "save to disk,
 * restore elsewhere" flavour of migration). The file holds the raw stream bytes. Writing
 * goes to a temporary name beside the target and is renamed into place by end() after an
 * fsync, so a reader never sees a half-written file under the final name; abort() deletes
 * the temporary file.
 */
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { TransportError, fromSystemError } from './types.js';
import type { ByteSender } from './types.js';

let tmpSeq = 0;

export class FileSink implements ByteSender {
  readonly path: string;
  readonly tempPath: string;
  bytesSent = 0;
  private fh: fsp.FileHandle | null;
  private state: 'open' | 'ended' | 'failed' = 'open';
  private error: TransportError | null = null;
  private tail: Promise<void> = Promise.resolve();
  private endPromise: Promise<void> | null = null;

  private constructor(target: string, temp: string, fh: fsp.FileHandle) {
    this.path = target;
    this.tempPath = temp;
    this.fh = fh;
  }

  /** Creates the temporary file next to `target` (the target itself appears on end()). */
  static async create(target: string): Promise<FileSink> {
    const temp = path.join(path.dirname(target), `.${path.basename(target)}.partial-${process.pid}-${++tmpSeq}`);
    try {
      return new FileSink(target, temp, await fsp.open(temp, 'wx'));
    } catch (e) {
      throw fromSystemError(e, `create ${target}`);
    }
  }

  send(chunk: Uint8Array): Promise<void> {
    if (this.error) return Promise.reject(this.error);
    if (this.state !== 'open') return Promise.reject(new TransportError('EPIPE', `${this.path}: send after end()`));
    if (chunk.length === 0) return Promise.resolve();
    this.bytesSent += chunk.length;
    return this.queue(async () => {
      let off = 0;
      while (off < chunk.length) {
        const { bytesWritten } = await this.fh!.write(chunk, off, chunk.length - off);
        off += bytesWritten;
      }
    });
  }

  /** Flushes, syncs and renames the file into place. */
  end(): Promise<void> {
    if (this.endPromise) return this.endPromise;
    if (this.error) return Promise.reject(this.error);
    this.state = 'ended';
    this.endPromise = this.queue(async () => {
      await this.fh!.sync();
      await this.fh!.close();
      this.fh = null;
      await fsp.rename(this.tempPath, this.path);
    });
    return this.endPromise;
  }

  /** Resolves when every queued file operation (including abort's cleanup) has finished. */
  idle(): Promise<void> {
    return this.tail;
  }

  /** Drops the partial file; pending and later calls fail. */
  abort(reason = 'aborted'): void {
    if (this.state === 'failed' || (this.state === 'ended' && this.fh === null)) return;
    this.fail(new TransportError('ABORTED', `${this.path}: ${reason}`));
  }

  private fail(e: TransportError): void {
    this.state = 'failed';
    this.error = e;
    const fh = this.fh;
    this.fh = null;
    const cleanup = async () => {
      await fh?.close().catch(() => undefined);
      await fsp.unlink(this.tempPath).catch(() => undefined);
    };
    this.tail = this.tail.then(cleanup, cleanup);
  }

  private queue(op: () => Promise<void>): Promise<void> {
    const run = this.tail.then(async () => {
      if (this.error) throw this.error;
      try {
        await op();
      } catch (e) {
        const err = this.error ?? fromSystemError(e, this.path);
        if (!this.error) this.fail(err);
        throw err;
      }
    });
    this.tail = run.catch(() => undefined);
    return run;
  }
}

/** Reads a file as a sequence of fresh chunks of up to `chunkSize` bytes. */
export async function* readFileChunks(file: string, chunkSize = 1024 * 1024): AsyncGenerator<Uint8Array> {
  let fh: fsp.FileHandle;
  try {
    fh = await fsp.open(file, 'r');
  } catch (e) {
    throw fromSystemError(e, `open ${file}`);
  }
  try {
    for (;;) {
      const buf = new Uint8Array(chunkSize);
      let n: number;
      try {
        n = (await fh.read(buf, 0, chunkSize, null)).bytesRead;
      } catch (e) {
        throw fromSystemError(e, `read ${file}`);
      }
      if (n === 0) return;
      yield n === chunkSize ? buf : buf.subarray(0, n);
    }
  } finally {
    await fh.close();
  }
}
