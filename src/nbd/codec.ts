// Pure big-endian encoders and decoders for every NBD wire structure. Nothing here knows about
// sockets or sessions; this is the only module in src/nbd that calls Buffer read*/write*.
import {
  CHUNK_FLAG_DONE, Chunk, Info, IHAVEOPT, NBDMAGIC, OPTION_REPLY_MAGIC, SERVER_HANDSHAKE_FLAGS,
  SIMPLE_REPLY_MAGIC, STRUCTURED_REPLY_MAGIC, Size,
} from './wire.ts';
import type { Extent } from '../block/device.ts';

export interface OptionHeader {
  magic: bigint;
  option: number;
  length: number;
}

export interface Request {
  magic: number;
  flags: number;
  type: number;
  /** Opaque 8 bytes, echoed unchanged. */
  cookie: bigint;
  /** Byte offset; Infinity when the 64-bit value is not an exact JS number (always out of range). */
  offset: number;
  length: number;
}

/** GO/INFO option data: the export name and the NBD_INFO_* types asked for. */
export interface GoRequest {
  name: string;
  infos: number[];
}

/** LIST/SET_META_CONTEXT option data. */
export interface MetaContextRequest {
  exportName: string;
  queries: string[];
}

// ---- handshake -------------------------------------------------------------------------------

export function encodeGreeting(): Buffer {
  const buf = Buffer.allocUnsafe(Size.GREETING);
  buf.writeBigUInt64BE(NBDMAGIC, 0);
  buf.writeBigUInt64BE(IHAVEOPT, 8);
  buf.writeUInt16BE(SERVER_HANDSHAKE_FLAGS, 16);
  return buf;
}

export function decodeClientFlags(buf: Uint8Array): number {
  return Buffer.from(buf.buffer, buf.byteOffset, buf.length).readUInt32BE(0);
}

export function decodeOptionHeader(buf: Buffer): OptionHeader {
  return { magic: buf.readBigUInt64BE(0), option: buf.readUInt32BE(8), length: buf.readUInt32BE(12) };
}

export function encodeOptionReply(option: number, type: number, payload?: Uint8Array): Buffer {
  const length = payload?.length ?? 0;
  const buf = Buffer.allocUnsafe(Size.OPTION_REPLY_HEADER + length);
  buf.writeBigUInt64BE(OPTION_REPLY_MAGIC, 0);
  buf.writeUInt32BE(option, 8);
  buf.writeUInt32BE(type >>> 0, 12);
  buf.writeUInt32BE(length, 16);
  if (payload) buf.set(payload, Size.OPTION_REPLY_HEADER);
  return buf;
}

/** Reply to NBD_OPT_EXPORT_NAME: size, flags, then 124 zero bytes unless NO_ZEROES was agreed. */
export function encodeExportNameReply(size: number, flags: number, noZeroes: boolean): Buffer {
  const buf = Buffer.alloc(Size.EXPORT_NAME_REPLY_SHORT + (noZeroes ? 0 : Size.EXPORT_NAME_REPLY_PADDING));
  buf.writeBigUInt64BE(BigInt(size), 0);
  buf.writeUInt16BE(flags, 8);
  return buf;
}

export function encodeInfoExport(size: number, flags: number): Buffer {
  const buf = Buffer.allocUnsafe(12);
  buf.writeUInt16BE(Info.EXPORT, 0);
  buf.writeBigUInt64BE(BigInt(size), 2);
  buf.writeUInt16BE(flags, 10);
  return buf;
}

export function encodeInfoString(type: number, text: string): Buffer {
  const str = Buffer.from(text, 'utf8');
  const buf = Buffer.allocUnsafe(2 + str.length);
  buf.writeUInt16BE(type, 0);
  str.copy(buf, 2);
  return buf;
}

export function encodeInfoBlockSize(minimum: number, preferred: number, maximum: number): Buffer {
  const buf = Buffer.allocUnsafe(14);
  buf.writeUInt16BE(Info.BLOCK_SIZE, 0);
  buf.writeUInt32BE(minimum, 2);
  buf.writeUInt32BE(preferred, 6);
  buf.writeUInt32BE(maximum, 10);
  return buf;
}

/** REP_SERVER payload: name length, name, optional description. */
export function encodeServerReply(name: string, description = ''): Buffer {
  const nameBytes = Buffer.from(name, 'utf8');
  const descBytes = Buffer.from(description, 'utf8');
  const buf = Buffer.allocUnsafe(4 + nameBytes.length + descBytes.length);
  buf.writeUInt32BE(nameBytes.length, 0);
  nameBytes.copy(buf, 4);
  descBytes.copy(buf, 4 + nameBytes.length);
  return buf;
}

/** REP_META_CONTEXT payload: context id and name. */
export function encodeMetaContextReply(id: number, name: string): Buffer {
  const nameBytes = Buffer.from(name, 'utf8');
  const buf = Buffer.allocUnsafe(4 + nameBytes.length);
  buf.writeUInt32BE(id, 0);
  nameBytes.copy(buf, 4);
  return buf;
}

/** A bounds-checked cursor over option data; every getter returns undefined on overrun. */
class Cursor {
  private pos = 0;
  private readonly buf: Buffer;
  constructor(buf: Buffer) {
    this.buf = buf;
  }
  u16(): number | undefined {
    if (this.pos + 2 > this.buf.length) return undefined;
    this.pos += 2;
    return this.buf.readUInt16BE(this.pos - 2);
  }
  u32(): number | undefined {
    if (this.pos + 4 > this.buf.length) return undefined;
    this.pos += 4;
    return this.buf.readUInt32BE(this.pos - 4);
  }
  string(length: number): string | undefined {
    if (this.pos + length > this.buf.length) return undefined;
    this.pos += length;
    return this.buf.toString('utf8', this.pos - length, this.pos);
  }
  /** A string preceded by its 32-bit length, at most `max` bytes. */
  prefixedString(max: number): string | undefined {
    const length = this.u32();
    return length === undefined || length > max ? undefined : this.string(length);
  }
  get atEnd(): boolean {
    return this.pos === this.buf.length;
  }
}

/** Parse GO/INFO data; undefined when the lengths do not add up exactly (-> ERR_INVALID). */
export function decodeGoRequest(data: Buffer, maxName: number): GoRequest | undefined {
  const cur = new Cursor(data);
  const name = cur.prefixedString(maxName);
  const count = cur.u16();
  if (name === undefined || count === undefined) return undefined;
  const infos: number[] = [];
  for (let i = 0; i < count; i++) {
    const info = cur.u16();
    if (info === undefined) return undefined;
    infos.push(info);
  }
  return cur.atEnd ? { name, infos } : undefined;
}

/** Parse LIST/SET_META_CONTEXT data; undefined when malformed (-> ERR_INVALID). */
export function decodeMetaContextRequest(data: Buffer, maxName: number): MetaContextRequest | undefined {
  const cur = new Cursor(data);
  const exportName = cur.prefixedString(maxName);
  const count = cur.u32();
  if (exportName === undefined || count === undefined) return undefined;
  const queries: string[] = [];
  for (let i = 0; i < count; i++) {
    const query = cur.prefixedString(maxName);
    if (query === undefined) return undefined;
    queries.push(query);
  }
  return cur.atEnd ? { exportName, queries } : undefined;
}

// ---- transmission ----------------------------------------------------------------------------

export function decodeRequest(buf: Buffer): Request {
  const high = buf.readUInt32BE(16);
  const low = buf.readUInt32BE(20);
  return {
    magic: buf.readUInt32BE(0),
    flags: buf.readUInt16BE(4),
    type: buf.readUInt16BE(6),
    cookie: buf.readBigUInt64BE(8),
    offset: high < 0x200000 ? high * 0x100000000 + low : Infinity,
    length: buf.readUInt32BE(24),
  };
}

/** Write a 16-byte simple reply header at `at`. */
export function writeSimpleReply(buf: Buffer, at: number, error: number, cookie: bigint): void {
  buf.writeUInt32BE(SIMPLE_REPLY_MAGIC, at);
  buf.writeUInt32BE(error, at + 4);
  buf.writeBigUInt64BE(cookie, at + 8);
}

export function encodeSimpleReply(error: number, cookie: bigint): Buffer {
  const buf = Buffer.allocUnsafe(Size.SIMPLE_REPLY);
  writeSimpleReply(buf, 0, error, cookie);
  return buf;
}

/** Write a 20-byte structured chunk header at `at`. */
export function writeChunkHeader(buf: Buffer, at: number, flags: number, type: number, cookie: bigint, length: number): void {
  buf.writeUInt32BE(STRUCTURED_REPLY_MAGIC, at);
  buf.writeUInt16BE(flags, at + 4);
  buf.writeUInt16BE(type, at + 6);
  buf.writeBigUInt64BE(cookie, at + 8);
  buf.writeUInt32BE(length, at + 16);
}

/** Bytes in front of READ data: simple reply header, or chunk header + offset. */
export function readReplyHeaderSize(structured: boolean): number {
  return structured ? Size.CHUNK_HEADER + 8 : Size.SIMPLE_REPLY;
}

/** Fill the header room in front of `dataLength` bytes of READ data (one OFFSET_DATA chunk, DONE). */
export function writeReadReplyHeader(buf: Buffer, structured: boolean, cookie: bigint, offset: number, dataLength: number): void {
  if (!structured) return writeSimpleReply(buf, 0, 0, cookie);
  writeChunkHeader(buf, 0, CHUNK_FLAG_DONE, Chunk.OFFSET_DATA, cookie, 8 + dataLength);
  buf.writeBigUInt64BE(BigInt(offset), Size.CHUNK_HEADER);
}

/** A final ERROR chunk: errno, message length, message. */
export function encodeErrorChunk(cookie: bigint, errno: number, message: string): Buffer {
  const text = Buffer.from(message, 'utf8');
  const buf = Buffer.allocUnsafe(Size.CHUNK_HEADER + 6 + text.length);
  writeChunkHeader(buf, 0, CHUNK_FLAG_DONE, Chunk.ERROR, cookie, 6 + text.length);
  buf.writeUInt32BE(errno, Size.CHUNK_HEADER);
  buf.writeUInt16BE(text.length, Size.CHUNK_HEADER + 4);
  text.copy(buf, Size.CHUNK_HEADER + 6);
  return buf;
}

/** A BLOCK_STATUS chunk for one context: id then (length, flags) pairs. */
export function encodeBlockStatusChunk(cookie: bigint, done: boolean, contextId: number, extents: readonly Extent[]): Buffer {
  const length = 4 + 8 * extents.length;
  const buf = Buffer.allocUnsafe(Size.CHUNK_HEADER + length);
  writeChunkHeader(buf, 0, done ? CHUNK_FLAG_DONE : 0, Chunk.BLOCK_STATUS, cookie, length);
  buf.writeUInt32BE(contextId, Size.CHUNK_HEADER);
  let at = Size.CHUNK_HEADER + 4;
  for (const extent of extents) {
    buf.writeUInt32BE(extent.length, at);
    buf.writeUInt32BE(extent.flags, at + 4);
    at += 8;
  }
  return buf;
}
