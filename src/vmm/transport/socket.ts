/**
 * TCP and UNIX-domain socket transports (node:net).
 *
 * Wire protocol (both directions): frames of u8 type | be32 length | payload.
 *   HELLO    first frame each side sends; payload "hisi-acc-sim transport 1"
 *   DATA     payload bytes (a send() larger than MAX_FRAME goes out as several frames)
 *   FIN      this direction has ended (length 0)
 *   FIN_ACK  the peer's FIN was received (length 0)
 * A socket that closes before both directions exchanged FIN and FIN_ACK is a dropped
 * connection, whatever TCP said: an orderly TCP FIN from a crashed or killed peer must not
 * pass for the end of the stream.
 */
import * as net from 'node:net';
import { ByteQueue } from '../stream/byte-queue.js';
import { BaseTransport } from './base.js';
import { TransportError, fromSystemError } from './types.js';
import type { Transport } from './types.js';

const T_HELLO = 0x48;
const T_DATA = 0x01;
const T_FIN = 0x02;
const T_FIN_ACK = 0x03;
const HELLO = new TextEncoder().encode('hisi-acc-sim transport 1');
/** Largest frame payload sent or accepted. */
export const MAX_FRAME = 4 * 1024 * 1024;
/** Receive-queue bounds for pausing / resuming the socket. */
const HIGH_WATER = 16 * 1024 * 1024;
const LOW_WATER = 4 * 1024 * 1024;
/** How long a failed connection waits for the peer to close before it is destroyed. */
const LINGER_MS = 1000;

export type Endpoint = { host?: string; port: number } | { path: string };

export interface SocketOptions {
  /** Abort with ETIMEDOUT after this long without any traffic (off by default). */
  idleTimeoutMs?: number;
}

function frameHead(type: number, len: number): Uint8Array {
  const h = new Uint8Array(5);
  h[0] = type;
  new DataView(h.buffer).setUint32(1, len);
  return h;
}

class SocketTransport extends BaseTransport {
  private readonly sock: net.Socket;
  private readonly rx = new ByteQueue();
  private helloSeen = false;
  private frameType = -1; // -1: waiting for a frame head
  private frameLen = 0;
  private paused = false;
  private sockFailed = false;
  private readonly pending = new Set<(e: TransportError) => void>();

  constructor(sock: net.Socket, label: string, opts: SocketOptions) {
    super(label);
    this.sock = sock;
    sock.setNoDelay(true);
    if (opts.idleTimeoutMs) {
      sock.setTimeout(opts.idleTimeoutMs, () => {
        this.fail(new TransportError('ETIMEDOUT', `${label}: no traffic for ${opts.idleTimeoutMs} ms`));
      });
    }
    sock.on('data', (d: Buffer) => this.onData(new Uint8Array(d.buffer, d.byteOffset, d.length)));
    sock.on('error', (e) => {
      this.sockFailed = true;
      this.fail(fromSystemError(e, label));
    });
    sock.on('end', () => {
      if (!this.done) this.fail(new TransportError('ECONNRESET', `${label}: connection closed by peer before the transfer finished`));
    });
    sock.on('close', () => {
      if (this.done) this.finished();
      else this.fail(new TransportError('ECONNRESET', `${label}: connection closed before the transfer finished`));
    });
    this.inbox.onTake = () => {
      if (this.paused && this.inbox.bytes < LOW_WATER) {
        this.paused = false;
        this.sock.resume();
      }
    };
    sock.write(frameHead(T_HELLO, HELLO.length));
    sock.write(HELLO);
  }

  protected transmit(chunk: Uint8Array): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const settle = (e: TransportError) => {
        this.pending.delete(settle);
        reject(e);
      };
      this.pending.add(settle);
      const done = (err?: Error | null) => {
        if (!this.pending.delete(settle)) return;
        if (err) reject(this.error ?? fromSystemError(err, this.label));
        else resolve();
      };
      this.sock.cork();
      for (let at = 0; at < chunk.length; at += MAX_FRAME) {
        const part = chunk.subarray(at, Math.min(chunk.length, at + MAX_FRAME));
        const last = at + MAX_FRAME >= chunk.length;
        this.sock.write(frameHead(T_DATA, part.length));
        this.sock.write(part, last ? done : undefined);
      }
      this.sock.uncork();
    });
  }

  protected transmitFin(): void {
    this.sock.write(frameHead(T_FIN, 0));
  }

  protected transmitFinAck(): void {
    this.sock.write(frameHead(T_FIN_ACK, 0));
  }

  protected shutdown(): void {
    this.sock.end();
  }

  protected teardown(e: TransportError): void {
    for (const reject of [...this.pending]) reject(e);
    this.rx.clear();
    const sock = this.sock;
    if (sock.destroyed) return;
    if (this.sockFailed) {
      sock.destroy();
      return;
    }
    // Close with FIN after what was already handed over: destroying a socket that holds
    // unread input sends a TCP reset, and the peer's kernel may then drop bytes we sent.
    // Input from now on is read and discarded; a peer that never closes is cut off later.
    if (this.paused) sock.resume();
    sock.end();
    const timer = setTimeout(() => sock.destroy(), LINGER_MS);
    timer.unref();
    sock.once('close', () => clearTimeout(timer));
  }

  private onData(d: Uint8Array): void {
    if (this.error) return;
    this.rx.push(d);
    for (;;) {
      if (this.error) return;
      if (this.frameType < 0) {
        if (this.rx.length < 5) return;
        const h = this.rx.take(5);
        this.frameType = h[0]!;
        this.frameLen = new DataView(h.buffer, h.byteOffset, 5).getUint32(1);
        if (!this.checkHead()) return;
      }
      if (this.rx.length < this.frameLen) return;
      const type = this.frameType;
      const payload = this.rx.take(this.frameLen);
      this.frameType = -1;
      switch (type) {
        case T_HELLO:
          if (!sameBytes(payload, HELLO)) {
            this.protocol('peer sent an unknown HELLO');
            return;
          }
          this.helloSeen = true;
          break;
        case T_DATA:
          // net sockets hand out a fresh buffer per read, so the view can be kept as is
          this.received(payload);
          if (!this.paused && this.inbox.bytes > HIGH_WATER) {
            this.paused = true;
            this.sock.pause();
          }
          break;
        case T_FIN:
          this.receivedFin();
          break;
        default:
          this.receivedFinAck();
      }
    }
  }

  private checkHead(): boolean {
    const t = this.frameType;
    if (!this.helloSeen) {
      if (t !== T_HELLO || this.frameLen !== HELLO.length) return this.protocol('peer did not open with HELLO');
      return true;
    }
    if (t === T_DATA) {
      if (this.frameLen === 0 || this.frameLen > MAX_FRAME) return this.protocol(`bad DATA frame length ${this.frameLen}`);
      if (this.gotFin) return this.protocol('DATA after FIN');
      return true;
    }
    if ((t === T_FIN || t === T_FIN_ACK) && this.frameLen === 0) return true;
    return this.protocol(`unexpected frame type 0x${t.toString(16)} length ${this.frameLen}`);
  }

  private protocol(msg: string): false {
    this.fail(new TransportError('PROTOCOL', `${this.label}: ${msg}`));
    return false;
  }
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

function describe(ep: Endpoint): string {
  return 'path' in ep ? `unix ${ep.path}` : `tcp ${ep.host ?? '127.0.0.1'}:${ep.port}`;
}

/** Connects to a listening transport endpoint. */
export function connect(ep: Endpoint, opts: SocketOptions = {}): Promise<Transport> {
  const label = `${describe(ep)} (client)`;
  return new Promise((resolve, reject) => {
    const sock = 'path' in ep ? net.createConnection({ path: ep.path }) : net.createConnection({ host: ep.host ?? '127.0.0.1', port: ep.port });
    const onError = (e: Error) => reject(fromSystemError(e, `connect ${describe(ep)}`));
    sock.once('error', onError);
    sock.once('connect', () => {
      sock.off('error', onError);
      resolve(new SocketTransport(sock, label, opts));
    });
  });
}

export interface Listener {
  /** Where it listens: the bound port (useful with port 0) or the socket path. */
  readonly address: { host: string; port: number } | { path: string };
  /** Resolves with the next incoming connection. */
  accept(): Promise<Transport>;
  /** Stops listening; pending accept() calls reject and unaccepted connections are aborted. */
  close(): Promise<void>;
}

/** Listens on TCP (`{port, host?}`, default host 127.0.0.1, port 0 = ephemeral) or a UNIX socket path. */
export function listen(ep: Endpoint, opts: SocketOptions = {}): Promise<Listener> {
  return new Promise((resolve, reject) => {
    const ready: Transport[] = [];
    const waiting: Array<{ resolve: (t: Transport) => void; reject: (e: unknown) => void }> = [];
    let closed = false;
    const server = net.createServer((sock) => {
      if (closed) {
        sock.destroy();
        return;
      }
      const label = 'path' in ep ? `unix ${ep.path} (server)` : `tcp ${sock.localAddress}:${sock.localPort} <- ${sock.remotePort} (server)`;
      const t = new SocketTransport(sock, label, opts);
      const w = waiting.shift();
      if (w) w.resolve(t);
      else ready.push(t);
    });
    server.on('error', (e) => reject(fromSystemError(e, `listen ${describe(ep)}`)));
    const onListening = () => {
      const a = server.address();
      const address =
        'path' in ep ? { path: ep.path } : { host: (a as net.AddressInfo).address, port: (a as net.AddressInfo).port };
      resolve({
        address,
        accept() {
          if (closed) return Promise.reject(new TransportError('ECONNRESET', 'listener closed'));
          const t = ready.shift();
          if (t) return Promise.resolve(t);
          return new Promise((res, rej) => waiting.push({ resolve: res, reject: rej }));
        },
        close() {
          if (closed) return Promise.resolve();
          closed = true;
          for (const w of waiting.splice(0)) w.reject(new TransportError('ECONNRESET', 'listener closed'));
          for (const t of ready.splice(0)) t.abort('listener closed before accept');
          return new Promise<void>((res) => server.close(() => res()));
        },
      });
    };
    if ('path' in ep) server.listen(ep.path, onListening);
    else server.listen(ep.port, ep.host ?? '127.0.0.1', onListening);
  });
}
