// Fixed-newstyle handshake: greeting, client flags, then options until GO/EXPORT_NAME (enter
// transmission), ABORT, or a violation (ProtocolError: close without reply). Each option is
// handled by one entry of OPTION_HANDLERS; anything not in the table gets ERR_UNSUP.
import type { ByteQueue } from './byte-queue.ts';
import {
  decodeClientFlags, decodeGoRequest, decodeMetaContextRequest, decodeOptionHeader, encodeExportNameReply,
  encodeGreeting, encodeInfoBlockSize, encodeInfoExport, encodeInfoString, encodeMetaContextReply,
  encodeOptionReply, encodeServerReply,
} from './codec.ts';
import { ProtocolError } from './errno.ts';
import { exportFlags } from './export-flags.ts';
import { blockSizes, type NbdLimits } from './limits.ts';
import type { ExportProvider, NbdExport } from './exports.ts';
import { BASE_ALLOCATION, HandshakeFlag, IHAVEOPT, Info, Opt, Rep, Size, optName } from './wire.ts';
import type { Logger } from '../log.ts';

/** The context ID used for base:allocation after SET_META_CONTEXT. */
export const BASE_ALLOCATION_ID = 1;

export interface HandshakeIo {
  queue: ByteQueue;
  send(buf: Buffer): void;
  exports: ExportProvider;
  limits: NbdLimits;
  logger: Logger;
  /** True once the server is closing: every further option gets ERR_SHUTDOWN. */
  shuttingDown(): boolean;
}

/** What transmission needs from a successful handshake. */
export interface Negotiated {
  exportName: string;
  export: NbdExport;
  /** Export size read at GO time; requests are checked against it. */
  size: number;
  flags: number;
  structured: boolean;
  /** base:allocation was selected for this export (BLOCK_STATUS allowed). */
  baseAllocation: boolean;
}

interface State {
  io: HandshakeIo;
  noZeroes: boolean;
  structured: boolean;
  /** Export name and selection of the last SET_META_CONTEXT. */
  meta: { exportName: string; baseAllocation: boolean } | undefined;
  optionBudget: number;
  /** LIST raised the option budget already (only the first LIST does). */
  listed: boolean;
}

/** A handler's outcome: keep negotiating, enter transmission, or end the connection quietly. */
type Outcome = 'next' | 'abort' | Negotiated;
type OptionHandler = (st: State, option: number, data: Buffer) => Outcome;

function reply(st: State, option: number, type: number, payload?: Uint8Array): void {
  st.io.send(encodeOptionReply(option, type, payload));
}

function replyError(st: State, option: number, type: number, message: string): 'next' {
  st.io.logger.debug({ option: optName(option), type }, `option rejected: ${message}`);
  reply(st, option, type, Buffer.from(message, 'utf8'));
  return 'next';
}

function negotiated(st: State, exp: NbdExport, name: string): Negotiated {
  const selected = st.meta !== undefined && st.meta.exportName === name && st.meta.baseAllocation;
  return {
    exportName: name, export: exp, size: exp.device.size,
    flags: exportFlags(exp, st.structured), structured: st.structured, baseAllocation: selected,
  };
}

function exportName(st: State, _option: number, data: Buffer): Outcome {
  const name = data.toString('utf8');
  const exp = data.length <= st.io.limits.maxStringLength ? st.io.exports.get(name) : undefined;
  if (!exp) throw new ProtocolError(`EXPORT_NAME for unknown export ${JSON.stringify(name)}`);
  const result = negotiated(st, exp, name);
  st.io.send(encodeExportNameReply(result.size, result.flags, st.noZeroes));
  return result;
}

function goOrInfo(st: State, option: number, data: Buffer): Outcome {
  const request = decodeGoRequest(data, st.io.limits.maxStringLength);
  if (!request) return replyError(st, option, Rep.ERR_INVALID, 'malformed GO/INFO data');
  const exp = st.io.exports.get(request.name);
  if (!exp) return replyError(st, option, Rep.ERR_UNKNOWN, `no export named ${JSON.stringify(request.name)}`);
  const result = negotiated(st, exp, request.name);
  reply(st, option, Rep.INFO, encodeInfoExport(result.size, result.flags));
  for (const info of new Set(request.infos)) {
    if (info === Info.NAME) reply(st, option, Rep.INFO, encodeInfoString(Info.NAME, request.name));
    if (info === Info.DESCRIPTION && exp.description) {
      reply(st, option, Rep.INFO, encodeInfoString(Info.DESCRIPTION, exp.description));
    }
    if (info === Info.BLOCK_SIZE) reply(st, option, Rep.INFO, encodeInfoBlockSize(...blockSizes(st.io.limits)));
  }
  reply(st, option, Rep.ACK);
  return option === Opt.GO ? result : 'next';
}

function list(st: State, option: number, data: Buffer): Outcome {
  if (data.length !== 0) return replyError(st, option, Rep.ERR_INVALID, 'LIST takes no data');
  const exports = st.io.exports.list();
  if (!st.listed) st.optionBudget += 2 * exports.length; // nbdinfo --list: INFO + LIST_META per export
  st.listed = true;
  for (const exp of exports) reply(st, option, Rep.SERVER, encodeServerReply(exp.name, exp.description));
  reply(st, option, Rep.ACK);
  return 'next';
}

function abort(st: State, option: number): Outcome {
  reply(st, option, Rep.ACK);
  return 'abort';
}

function startTls(st: State, option: number, data: Buffer): Outcome {
  if (data.length !== 0) return replyError(st, option, Rep.ERR_INVALID, 'STARTTLS takes no data');
  return replyError(st, option, Rep.ERR_POLICY, 'TLS is not supported by this server');
}

function structuredReply(st: State, option: number, data: Buffer): Outcome {
  if (data.length !== 0) return replyError(st, option, Rep.ERR_INVALID, 'STRUCTURED_REPLY takes no data');
  st.structured = true;
  reply(st, option, Rep.ACK);
  return 'next';
}

/** Does `query` select base:allocation? LIST also accepts the namespace wildcard `base:`. */
function matchesBaseAllocation(query: string, listing: boolean): boolean {
  return query === BASE_ALLOCATION || (listing && query === 'base:');
}

function metaContext(st: State, option: number, data: Buffer): Outcome {
  const listing = option === Opt.LIST_META_CONTEXT;
  if (!st.structured) return replyError(st, option, Rep.ERR_INVALID, 'negotiate STRUCTURED_REPLY first');
  const request = decodeMetaContextRequest(data, st.io.limits.maxStringLength);
  if (!request) return replyError(st, option, Rep.ERR_INVALID, 'malformed meta context data');
  if (!st.io.exports.get(request.exportName)) {
    return replyError(st, option, Rep.ERR_UNKNOWN, `no export named ${JSON.stringify(request.exportName)}`);
  }
  const selected = listing && request.queries.length === 0
    ? true
    : request.queries.some((q) => matchesBaseAllocation(q, listing));
  if (selected) reply(st, option, Rep.META_CONTEXT, encodeMetaContextReply(listing ? 0 : BASE_ALLOCATION_ID, BASE_ALLOCATION));
  if (!listing) st.meta = { exportName: request.exportName, baseAllocation: selected };
  reply(st, option, Rep.ACK);
  return 'next';
}

const OPTION_HANDLERS: Readonly<Record<number, OptionHandler>> = {
  [Opt.EXPORT_NAME]: exportName,
  [Opt.ABORT]: abort,
  [Opt.LIST]: list,
  [Opt.STARTTLS]: startTls,
  [Opt.INFO]: goOrInfo,
  [Opt.GO]: goOrInfo,
  [Opt.STRUCTURED_REPLY]: structuredReply,
  [Opt.LIST_META_CONTEXT]: metaContext,
  [Opt.SET_META_CONTEXT]: metaContext,
};

/** Read one option (header + data) within the limits; undefined when it was answered already. */
async function readOption(st: State): Promise<{ option: number; data: Buffer } | undefined> {
  const { queue, limits } = st.io;
  const header = decodeOptionHeader(await queue.read(Size.OPTION_HEADER));
  if (header.magic !== IHAVEOPT) throw new ProtocolError('bad option magic');
  if (--st.optionBudget < 0) throw new ProtocolError('too many options');
  if (header.length > limits.hardOptionLength) throw new ProtocolError(`option length ${header.length} is absurd`);
  if (header.option === Opt.EXPORT_NAME && header.length > limits.maxStringLength) {
    throw new ProtocolError('EXPORT_NAME too long'); // no error reply exists for EXPORT_NAME
  }
  if (header.length > limits.maxOptionLength) {
    await queue.drain(header.length);
    replyError(st, header.option, Rep.ERR_TOO_BIG, 'option data too large');
    return undefined;
  }
  return { option: header.option, data: await queue.read(header.length) };
}

/**
 * Run the handshake on a fresh connection. Resolves with the negotiated export, or undefined
 * after ABORT or a shutdown refusal; rejects with ProtocolError (or the queue's close error).
 */
export async function negotiate(io: HandshakeIo): Promise<Negotiated | undefined> {
  io.send(encodeGreeting());
  const clientFlags = decodeClientFlags(await io.queue.read(Size.CLIENT_FLAGS));
  if (clientFlags & ~(HandshakeFlag.FIXED_NEWSTYLE | HandshakeFlag.NO_ZEROES)) {
    throw new ProtocolError(`unknown client flags 0x${clientFlags.toString(16)}`);
  }
  const st: State = {
    io, noZeroes: (clientFlags & HandshakeFlag.NO_ZEROES) !== 0, structured: false, meta: undefined,
    optionBudget: io.limits.maxOptions, listed: false,
  };
  for (;;) {
    const opt = await readOption(st);
    if (!opt) continue;
    if (io.shuttingDown()) {
      if (opt.option === Opt.EXPORT_NAME) throw new ProtocolError('server is shutting down');
      replyError(st, opt.option, Rep.ERR_SHUTDOWN, 'server is shutting down');
      return undefined;
    }
    const handler = OPTION_HANDLERS[opt.option];
    const outcome = handler
      ? handler(st, opt.option, opt.data)
      : replyError(st, opt.option, Rep.ERR_UNSUP, `option ${optName(opt.option)} is not supported`);
    if (outcome === 'abort') return undefined;
    if (outcome !== 'next') return outcome;
  }
}
