// NBD protocol constants (NetworkBlockDevice/nbd doc/proto.md), one table per field, with
// value -> name maps for logs. All values are big-endian on the wire; only codec.ts touches bytes.

export const NBDMAGIC = 0x4e42444d41474943n; // "NBDMAGIC", first 8 bytes of the greeting
export const IHAVEOPT = 0x49484156454f5054n; // "IHAVEOPT", greeting and every option request
export const OPTION_REPLY_MAGIC = 0x0003e889045565a9n;
export const REQUEST_MAGIC = 0x25609513;
export const SIMPLE_REPLY_MAGIC = 0x67446698;
export const STRUCTURED_REPLY_MAGIC = 0x668e33ef;

/** Handshake flags sent by the server (16 bits) and echoed by the client (32 bits). */
export const HandshakeFlag = {
  FIXED_NEWSTYLE: 1 << 0,
  NO_ZEROES: 1 << 1,
} as const;
export const SERVER_HANDSHAKE_FLAGS = HandshakeFlag.FIXED_NEWSTYLE | HandshakeFlag.NO_ZEROES;

/** Option requests (client -> server during the handshake). */
export const Opt = {
  EXPORT_NAME: 1,
  ABORT: 2,
  LIST: 3,
  STARTTLS: 5,
  INFO: 6,
  GO: 7,
  STRUCTURED_REPLY: 8,
  LIST_META_CONTEXT: 9,
  SET_META_CONTEXT: 10,
  EXTENDED_HEADERS: 11,
} as const;

/** Option reply types; the high bit marks an error. */
export const Rep = {
  ACK: 1,
  SERVER: 2,
  INFO: 3,
  META_CONTEXT: 4,
  ERR_UNSUP: 0x80000001,
  ERR_POLICY: 0x80000002,
  ERR_INVALID: 0x80000003,
  ERR_PLATFORM: 0x80000004,
  ERR_TLS_REQD: 0x80000005,
  ERR_UNKNOWN: 0x80000006,
  ERR_SHUTDOWN: 0x80000007,
  ERR_BLOCK_SIZE_REQD: 0x80000008,
  ERR_TOO_BIG: 0x80000009,
} as const;

/** NBD_INFO_* types inside REP_INFO and in GO/INFO requests. */
export const Info = {
  EXPORT: 0,
  NAME: 1,
  DESCRIPTION: 2,
  BLOCK_SIZE: 3,
} as const;

/** Transmission flags (16 bits) sent with the export size. */
export const TxFlag = {
  HAS_FLAGS: 1 << 0,
  READ_ONLY: 1 << 1,
  SEND_FLUSH: 1 << 2,
  SEND_FUA: 1 << 3,
  ROTATIONAL: 1 << 4,
  SEND_TRIM: 1 << 5,
  SEND_WRITE_ZEROES: 1 << 6,
  SEND_DF: 1 << 7,
  CAN_MULTI_CONN: 1 << 8,
  SEND_CACHE: 1 << 10,
  SEND_FAST_ZERO: 1 << 11,
} as const;

/** Commands (the `type` field of a request). */
export const Cmd = {
  READ: 0,
  WRITE: 1,
  DISC: 2,
  FLUSH: 3,
  TRIM: 4,
  CACHE: 5,
  WRITE_ZEROES: 6,
  BLOCK_STATUS: 7,
} as const;
export type CmdValue = (typeof Cmd)[keyof typeof Cmd];

/** Command flags (the `flags` field of a request). */
export const CmdFlag = {
  FUA: 1 << 0,
  NO_HOLE: 1 << 1,
  DF: 1 << 2,
  REQ_ONE: 1 << 3,
  FAST_ZERO: 1 << 4,
} as const;

/** Structured reply chunk types and flags. */
export const Chunk = {
  NONE: 0,
  OFFSET_DATA: 1,
  OFFSET_HOLE: 2,
  BLOCK_STATUS: 5,
  ERROR: 0x8001,
  ERROR_OFFSET: 0x8002,
} as const;
export const CHUNK_FLAG_DONE = 1;

/** Sizes of fixed wire structures in bytes. */
export const Size = {
  GREETING: 18,
  CLIENT_FLAGS: 4,
  OPTION_HEADER: 16,
  OPTION_REPLY_HEADER: 20,
  EXPORT_NAME_REPLY_SHORT: 10,
  EXPORT_NAME_REPLY_PADDING: 124,
  REQUEST: 28,
  SIMPLE_REPLY: 16,
  CHUNK_HEADER: 20,
} as const;

/** The metadata context every export offers. */
export const BASE_ALLOCATION = 'base:allocation';
/** Prefix of qemu's dirty-bitmap contexts, `qemu:dirty-bitmap:<name>` (status bit 0 = dirty). */
export const DIRTY_BITMAP_PREFIX = 'qemu:dirty-bitmap:';
/** NBD_STATE_DIRTY, bit 0 of a dirty-bitmap context's status (qemu's docs/interop/nbd.rst). */
export const STATE_DIRTY = 1;

function invert(table: Record<string, number>): Map<number, string> {
  return new Map(Object.entries(table).map(([name, value]) => [value, name]));
}
const optNames = invert(Opt);
const cmdNames = invert(Cmd);
const repNames = invert(Rep);

export function optName(opt: number): string {
  return optNames.get(opt) ?? `OPT_${opt}`;
}
export function cmdName(cmd: number): string {
  return cmdNames.get(cmd) ?? `CMD_${cmd}`;
}
export function repName(rep: number): string {
  return repNames.get(rep) ?? `REP_${rep.toString(16)}`;
}
