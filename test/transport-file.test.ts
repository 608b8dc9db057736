import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { FileSink, readFileChunks, senderWithFaults, sinkOf, TransportError } from '../src/vmm/transport/index.js';
import type { ByteSender } from '../src/vmm/transport/index.js';
import { readStream, StreamError, StreamWriter } from '../src/vmm/stream/index.js';
import { SOURCE, concat, patternPage } from './stream-helpers.js';

let dir = '';
beforeEach(() => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'hacc-file-'));
});
afterEach(() => {
  rmSync(dir, { recursive: true, force: true });
});

async function writeMigration(sender: ByteSender): Promise<void> {
  const w = new StreamWriter(sinkOf(sender));
  await w.header(SOURCE);
  const contents = concat([patternPage(1), new Uint8Array(4096), patternPage(2)]);
  await w.ram(0, [4, 5, 6], contents);
  await w.beginDevice('0000:75:00.1');
  await w.deviceData(patternPage(3, 10_000));
  await w.endDevice();
  await w.end();
}

describe('file transport', () => {
  it('round trip: the stream written to a file reads back complete', async () => {
    const target = path.join(dir, 'vm.mig');
    const sink = await FileSink.create(target);
    await writeMigration(sink);
    expect(existsSync(target)).toBe(false); // only the temporary file exists before end()
    await sink.end();
    expect(existsSync(target)).toBe(true);
    expect(readdirSync(dir)).toEqual(['vm.mig']);
    expect(readFileSync(target).length).toBe(sink.bytesSent);
    const pages: number[] = [];
    const summary = await readStream(readFileChunks(target, 1000), (ev) => {
      if (ev.type === 'ram') pages.push(...ev.pfns);
    });
    expect(pages).toEqual([4, 5, 6]);
    expect(summary.zeroPages).toBe(1);
    expect(summary.deviceDataBytes).toBe(10_000);
    expect(summary.bytes).toBe(sink.bytesSent);
  });

  it('abort leaves no file behind, and later sends fail', async () => {
    const target = path.join(dir, 'vm.mig');
    const sink = await FileSink.create(target);
    await sink.send(new Uint8Array(100));
    sink.abort('migration cancelled');
    await expect(sink.send(new Uint8Array(1))).rejects.toMatchObject({ code: 'ABORTED' });
    await expect(sink.end()).rejects.toBeInstanceOf(TransportError);
    await sink.idle();
    expect(readdirSync(dir)).toEqual([]);
  });

  it('reading a missing file is ENOENT', async () => {
    const it = readFileChunks(path.join(dir, 'none.mig'));
    await expect(it.next()).rejects.toMatchObject({ code: 'ENOENT' });
  });

  it('a truncated file is rejected as a truncated stream', async () => {
    const target = path.join(dir, 'vm.mig');
    const sink = await FileSink.create(target);
    await writeMigration(sink);
    await sink.end();
    const full = readFileSync(target);
    writeFileSync(target, full.subarray(0, full.length - 5000));
    const err = await readStream(readFileChunks(target), () => undefined).then(() => null, (e: unknown) => e);
    expect(err).toBeInstanceOf(StreamError);
    expect((err as StreamError).code).toBe('TRUNCATED');
  });

  it('a byte corrupted on the way to the file is a checksum mismatch', async () => {
    const target = path.join(dir, 'vm.mig');
    const sink = await FileSink.create(target);
    const faulty = senderWithFaults(sink, { corruptAt: 100, corruptXor: 0x80 });
    await writeMigration(faulty);
    await faulty.end();
    expect(faulty.fired).toBe(true);
    const err = await readStream(readFileChunks(target), () => undefined).then(() => null, (e: unknown) => e);
    expect(err).toBeInstanceOf(StreamError);
    expect((err as StreamError).message).toBe('checksum mismatch in RAM section 1');
  });

  it('a refused target directory fails creation with a TransportError', async () => {
    const err = await FileSink.create(path.join(dir, 'missing', 'vm.mig')).then(() => null, (e: unknown) => e);
    expect(err).toBeInstanceOf(TransportError);
    expect((err as TransportError).code).toBe('ENOENT');
  });
});
