/** Byte transports for the migration stream: in-process pair, file, TCP and UNIX sockets, fault injection. */
export * from './types.js';
export { createPipePair } from './in-process.js';
export { connect, listen, MAX_FRAME } from './socket.js';
export type { Endpoint, Listener, SocketOptions } from './socket.js';
export { FileSink, readFileChunks } from './file.js';
export { withFaults, senderWithFaults } from './fault.js';
export type { FaultPlan } from './fault.js';
