/** Migration stream: format constants and types, writer, incremental reader, CRC-32. */
export * from './format.js';
export * from './errors.js';
export { crc32, crc32Table, crc32IsNative } from './crc32.js';
export { StreamWriter } from './writer.js';
export type { ChunkSink, StreamWriterOptions } from './writer.js';
export { StreamReader, readStream } from './reader.js';
export type { StreamReaderOptions, StreamSummary } from './reader.js';
