import { afterEach, describe, expect, it } from 'vitest';
import { createHash, randomBytes } from 'node:crypto';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { existsSync } from 'node:fs';
import { connect, listen, sinkOf, TransportError, withFaults } from '../src/vmm/transport/index.js';
import type { Endpoint, Listener, Transport } from '../src/vmm/transport/index.js';
import { readStream, StreamWriter } from '../src/vmm/stream/index.js';
import { SOURCE, patternPage } from './stream-helpers.js';

const listeners: Listener[] = [];
const transports: Transport[] = [];
let sockSeq = 0;

afterEach(async () => {
  for (const t of transports.splice(0)) t.abort('test cleanup');
  await Promise.all(listeners.splice(0).map((l) => l.close()));
});

async function pair(ep: Endpoint): Promise<{ client: Transport; server: Transport; listener: Listener }> {
  const listener = await listen(ep);
  listeners.push(listener);
  const target: Endpoint = 'path' in listener.address ? listener.address : { host: '127.0.0.1', port: listener.address.port };
  const [client, server] = await Promise.all([connect(target), listener.accept()]);
  transports.push(client, server);
  return { client, server, listener };
}

function unixPath(): string {
  return path.join(os.tmpdir(), `hacc-sim-${process.pid}-${++sockSeq}.sock`);
}

function sha(parts: Uint8Array[]): string {
  const h = createHash('sha256');
  for (const p of parts) h.update(p);
  return h.digest('hex');
}

async function drain(t: Transport): Promise<{ parts: Uint8Array[]; n: number; error: unknown }> {
  const parts: Uint8Array[] = [];
  let n = 0;
  try {
    for await (const c of t) {
      parts.push(c);
      n += c.length;
    }
    return { parts, n, error: null };
  } catch (error) {
    return { parts, n, error };
  }
}

function code(e: unknown): string {
  expect(e).toBeInstanceOf(TransportError);
  return (e as TransportError).code;
}

/** Several MiB in uneven pieces, one larger than a wire frame (4 MiB). */
function payload(): Uint8Array[] {
  return [randomBytes(1), randomBytes(65536 + 3), randomBytes(5 * 1024 * 1024 + 17), randomBytes(700_000)].map(
    (b) => new Uint8Array(b.buffer, b.byteOffset, b.length),
  );
}

describe.each([
  ['TCP loopback', (): Endpoint => ({ host: '127.0.0.1', port: 0 })],
  ['UNIX socket', (): Endpoint => ({ path: unixPath() })],
])('%s transport', (_name, endpoint) => {
  it('a few MiB arrive byte-exact and both sides finish cleanly', async () => {
    const { client, server } = await pair(endpoint());
    const data = payload();
    const total = data.reduce((a, p) => a + p.length, 0);
    const receiving = drain(server);
    for (const p of data) await client.send(p);
    await client.end();
    const got = await receiving;
    expect(got.error).toBeNull();
    expect(got.n).toBe(total);
    expect(sha(got.parts)).toBe(sha(data));
    await Promise.all([client.close(), server.close()]);
    expect(await client.closed).toBeNull();
    expect(await server.closed).toBeNull();
    expect(server.bytesReceived).toBe(total);
  }, 20_000);

  it('a drop mid-stream is reported on both sides', async () => {
    const { client: raw, server } = await pair(endpoint());
    const client = withFaults(raw, { dropAfterBytes: 1024 * 1024 });
    const receiving = drain(server);
    let sendErr: unknown = null;
    try {
      for (let i = 0; i < 8; i++) await client.send(patternPage(i, 256 * 1024));
      await client.end();
    } catch (e) {
      sendErr = e;
    }
    expect(code(sendErr)).toBe('INJECTED');
    const got = await receiving;
    expect(code(got.error)).toBe('ECONNRESET');
    expect(got.n).toBe(1024 * 1024);
    expect((await server.closed)?.code).toBe('ECONNRESET');
    expect(await raw.closed).toBeInstanceOf(TransportError);
  }, 20_000);

  it('a receiver that goes away makes the sender fail instead of hang', async () => {
    const { client, server } = await pair(endpoint());
    const receiving = (async () => {
      let n = 0;
      for await (const c of server) {
        n += c.length;
        if (n >= 512 * 1024) break; // destination rejects the stream
      }
      return n;
    })();
    let sendErr: unknown = null;
    try {
      for (let i = 0; i < 400; i++) await client.send(patternPage(i, 64 * 1024));
      await client.end();
    } catch (e) {
      sendErr = e;
    }
    expect(await receiving).toBeGreaterThanOrEqual(512 * 1024);
    expect(['ECONNRESET', 'EPIPE']).toContain(code(sendErr));
    expect(await client.closed).toBeInstanceOf(TransportError);
  }, 20_000);

  it('a migration stream crosses the socket complete', async () => {
    const { client, server } = await pair(endpoint());
    const w = new StreamWriter(sinkOf(client));
    const receiving = readStream(server, () => undefined);
    await w.header(SOURCE);
    const contents = new Uint8Array(64 * 4096);
    for (let i = 0; i < 64; i += 2) contents.set(patternPage(i), i * 4096);
    await w.ram(0, Array.from({ length: 64 }, (_, i) => i), contents);
    await w.beginDevice('0000:75:00.1');
    await w.deviceData(patternPage(77, 300_000));
    await w.endDevice();
    await w.end();
    await client.end();
    const summary = await receiving;
    expect(summary.ramPages).toBe(64);
    expect(summary.zeroPages).toBe(32);
    expect(summary.deviceDataBytes).toBe(300_000);
  }, 20_000);
});

describe('socket transport setup and protocol errors', () => {
  it('connecting to a closed port is ECONNREFUSED; to a missing socket path ENOENT', async () => {
    const l = await listen({ port: 0 });
    const port = (l.address as { port: number }).port;
    await l.close();
    const e1 = await connect({ port }).then(() => null, (e: unknown) => e);
    expect(code(e1)).toBe('ECONNREFUSED');
    const e2 = await connect({ path: unixPath() }).then(() => null, (e: unknown) => e);
    expect(code(e2)).toBe('ENOENT');
  });

  it('a peer that does not speak the protocol is rejected', async () => {
    const l = await listen({ port: 0 });
    listeners.push(l);
    const port = (l.address as { port: number }).port;
    const raw = net.createConnection({ host: '127.0.0.1', port });
    raw.on('error', () => undefined);
    raw.write('GET / HTTP/1.0\r\n\r\n');
    const server = await l.accept();
    transports.push(server);
    const got = await drain(server);
    expect(code(got.error)).toBe('PROTOCOL');
    raw.destroy();
  });

  it('closing a listener rejects a pending accept and removes its UNIX socket file', async () => {
    const p = unixPath();
    const l = await listen({ path: p });
    expect(existsSync(p)).toBe(true);
    const pending = l.accept();
    await l.close();
    await expect(pending).rejects.toBeInstanceOf(TransportError);
    expect(existsSync(p)).toBe(false);
  });

  it('an idle timeout turns a silent peer into ETIMEDOUT', async () => {
    const l = await listen({ port: 0 }, { idleTimeoutMs: 50 });
    listeners.push(l);
    const client = await connect({ port: (l.address as { port: number }).port });
    transports.push(client);
    const server = await l.accept();
    transports.push(server);
    const got = await drain(server);
    expect(code(got.error)).toBe('ETIMEDOUT');
  });
});
