import { describe, expect, it } from 'vitest';
import { createPipePair, sinkOf, TransportError, withFaults } from '../src/vmm/transport/index.js';
import type { Transport } from '../src/vmm/transport/index.js';
import { readStream, StreamError, StreamWriter } from '../src/vmm/stream/index.js';
import { SOURCE, concat, patternPage } from './stream-helpers.js';

async function drain(t: Transport): Promise<{ bytes: Uint8Array; error: unknown }> {
  const got: Uint8Array[] = [];
  try {
    for await (const c of t) got.push(c);
    return { bytes: concat(got), error: null };
  } catch (error) {
    return { bytes: concat(got), error };
  }
}

function code(e: unknown): string {
  expect(e).toBeInstanceOf(TransportError);
  return (e as TransportError).code;
}

describe('in-process transport pair', () => {
  it('delivers bytes in order, ends cleanly, and both sides close with null', async () => {
    const [a, b] = createPipePair();
    const reading = drain(b);
    const parts = [patternPage(1, 100), patternPage(2, 5000), patternPage(3, 1)];
    for (const p of parts) await a.send(p);
    await a.end();
    const got = await reading;
    expect(got.error).toBeNull();
    expect(got.bytes).toEqual(concat(parts));
    await Promise.all([a.close(), b.close()]);
    expect(await a.closed).toBeNull();
    expect(await b.closed).toBeNull();
    expect(a.bytesSent).toBe(5101);
    expect(b.bytesReceived).toBe(5101);
  });

  it('copies on send: changing the buffer afterwards does not change what arrives', async () => {
    const [a, b] = createPipePair();
    const buf = new Uint8Array([1, 2, 3]);
    await a.send(buf);
    buf[0] = 99;
    await a.end();
    expect((await drain(b)).bytes).toEqual(new Uint8Array([1, 2, 3]));
  });

  it('a chunk handed over (transfer) reaches the receiver as the same buffer, not a copy', async () => {
    const [a, b] = createPipePair();
    const kept = new Uint8Array([4, 5, 6]);
    const copied = new Uint8Array([7, 8]);
    const got: Uint8Array[] = [];
    const reading = (async () => {
      for await (const c of b) got.push(c);
    })();
    await a.send(kept, { transfer: true });
    await a.send(copied);
    await a.end();
    await reading;
    expect(got[0]).toBe(kept);
    expect(got[1]).not.toBe(copied);
    expect(got[1]).toEqual(copied);
    expect(a.bytesSent).toBe(5);
  });

  it('send after end is EPIPE', async () => {
    const [a] = createPipePair();
    void a.end();
    await expect(a.send(new Uint8Array(1))).rejects.toMatchObject({ code: 'EPIPE' });
  });

  it('an abort mid-stream is an error on both sides, after the bytes already delivered', async () => {
    const [a, b] = createPipePair();
    await a.send(new Uint8Array([7, 7]));
    a.abort('source crashed');
    const got = await drain(b);
    expect(got.bytes).toEqual(new Uint8Array([7, 7]));
    expect(code(got.error)).toBe('ECONNRESET');
    expect((await a.closed)?.code).toBe('ABORTED');
    expect((await b.closed)?.code).toBe('ECONNRESET');
    await expect(a.send(new Uint8Array(1))).rejects.toMatchObject({ code: 'ABORTED' });
    await expect(b.close()).rejects.toBeInstanceOf(TransportError);
  });

  it('a receiver that stops reading early breaks the connection for the sender', async () => {
    const [a, b] = createPipePair();
    await a.send(new Uint8Array(10));
    for await (const _ of b) break;
    await expect(a.send(new Uint8Array(1))).rejects.toMatchObject({ code: 'ECONNRESET' });
    await expect(a.end()).rejects.toBeInstanceOf(TransportError);
  });

  it('dropAfterBytes delivers exactly N bytes, then both sides fail', async () => {
    const [a0, b] = createPipePair();
    const a = withFaults(a0, { dropAfterBytes: 1000 });
    const reading = drain(b);
    await a.send(new Uint8Array(600).fill(1));
    const err = await a.send(new Uint8Array(600).fill(2)).then(() => null, (e: unknown) => e);
    expect(code(err)).toBe('INJECTED');
    expect(a.fired).toBe(true);
    const got = await reading;
    expect(got.bytes.length).toBe(1000);
    expect(got.bytes[999]).toBe(2);
    expect(code(got.error)).toBe('ECONNRESET');
    await expect(a.end()).rejects.toMatchObject({ code: 'INJECTED' });
  });

  it('a migration stream crosses the pair complete; a corrupted byte is caught by the reader', async () => {
    for (const corruptAt of [undefined, 300]) {
      const [a0, b] = createPipePair();
      const a = corruptAt === undefined ? a0 : withFaults(a0, { corruptAt });
      const w = new StreamWriter(sinkOf(a));
      const page = patternPage(5);
      const receiving = readStream(b, () => undefined);
      const sending = (async () => {
        await w.header(SOURCE);
        await w.ram(0, [1, 2], concat([page, page]));
        await w.end();
        await a.end();
      })().then(() => null, (e: unknown) => e);
      if (corruptAt === undefined) {
        const summary = await receiving;
        expect(summary.ramPages).toBe(2);
        expect(await sending).toBeNull();
      } else {
        // byte 300 lies in the page data (header 50 + section head 13 + table 26 = 89)
        const err = await receiving.then(() => null, (e: unknown) => e);
        expect(err).toBeInstanceOf(StreamError);
        expect((err as StreamError).message).toBe('checksum mismatch in RAM section 1');
        const sendErr = await sending;
        if (sendErr !== null) expect(code(sendErr)).toBe('ECONNRESET');
      }
    }
  });
});
