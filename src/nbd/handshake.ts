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
import { listMetaContexts, selectMetaContexts, type MetaContext } from './meta-contexts.ts';
import { preTlsVerdict } from './tls-policy.ts';
import { HandshakeFlag, IHAVEOPT, Info, Opt, Rep, Size, optName } from './wire.ts';
import type { Logger } from '../log.ts';

export interface HandshakeIo {
  queue: ByteQueue;
  send(buf: Buffer): void;
  exports: ExportProvider;
  limits: NbdLimits;
  logger: Logger;
  /** True once the server is closing: every further option gets ERR_SHUTDOWN. */
  shuttingDown(): boolean;
  /** Present when the server offers TLS (--tls on/require); absent: STARTTLS gets ERR_POLICY. */
  tls?: HandshakeTls;
}

export interface HandshakeTls {
  /** --tls require: only STARTTLS and ABORT before TLS (tls-policy.ts). */
  required: boolean;
  /** Send `ack` in plaintext and upgrade the connection; rejects if the TLS handshake fails. */
  upgrade(ack: Buffer): Promise<void>;
}

/** What transmission needs from a successful handshake. */
export interface Negotiated {
  exportName: string;
  export: NbdExport;
  /** Export size read at GO time; requests are checked against it. */
  size: number;
  flags: number;
  structured: boolean;
  /** The metadata contexts selected for this export (BLOCK_STATUS allowed when there are any). */
  metaContexts: readonly MetaContext[];
}

interface State {
  io: HandshakeIo;
  noZeroes: boolean;
  structured: boolean;
  /** Export name and selection of the last SET_META_CONTEXT. */
  meta: { exportName: string; contexts: MetaContext[] } | undefined;
  optionBudget: number;
  /** LIST raised the option budget already (only the first LIST does). */
  listed: boolean;
  /** STARTTLS succeeded on this connection. */
  tlsActive?: boolean;
  /** A plaintext option was refused with ERR_TLS_REQD already (logged once per connection). */
  plainRefused?: boolean;
}

/** A handler's outcome: keep negotiating, upgrade to TLS, enter transmission, or end the connection quietly. */
type Outcome = 'next' | 'abort' | 'starttls' | Negotiated;
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
  const selected = st.meta !== undefined && st.meta.exportName === name ? st.meta.contexts : [];
  return {
    exportName: name, export: exp, size: exp.device.size,
    flags: exportFlags(exp, st.structured), structured: st.structured, metaContexts: selected,
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
  if (!st.io.tls) return replyError(st, option, Rep.ERR_POLICY, 'TLS is not enabled on this server');
  if (st.tlsActive) return replyError(st, option, Rep.ERR_INVALID, 'TLS is already active');
  return 'starttls';
}

/** ACK in plaintext, upgrade; nothing negotiated before TLS survives it (the spec; qemu and nbdkit agree). */
async function enterTls(st: State, option: number): Promise<void> {
  await st.io.tls!.upgrade(encodeOptionReply(option, Rep.ACK));
  st.tlsActive = true;
  st.structured = false;
  st.meta = undefined;
}

/** --tls require before TLS: true when the option was refused (ERR_TLS_REQD); EXPORT_NAME closes. */
function refusedBeforeTls(st: State, option: number): boolean {
  if (!st.io.tls?.required || st.tlsActive) return false;
  const verdict = preTlsVerdict(option);
  if (verdict === 'allow') return false;
  if (verdict === 'close') throw new ProtocolError('plaintext EXPORT_NAME refused: TLS is required');
  if (!st.plainRefused) st.io.logger.warn(`plaintext client refused: TLS is required (it sent ${optName(option)} without STARTTLS)`);
  st.plainRefused = true;
  replyError(st, option, Rep.ERR_TLS_REQD, 'TLS is required: send NBD_OPT_STARTTLS first');
  return true;
}

function structuredReply(st: State, option: number, data: Buffer): Outcome {
  if (data.length !== 0) return replyError(st, option, Rep.ERR_INVALID, 'STRUCTURED_REPLY takes no data');
  st.structured = true;
  reply(st, option, Rep.ACK);
  return 'next';
}

/** LIST (context ID 0) or SET (selection kept for GO on the same export); rules in meta-contexts.ts. */
function metaContext(st: State, option: number, data: Buffer): Outcome {
  const listing = option === Opt.LIST_META_CONTEXT;
  if (!st.structured) return replyError(st, option, Rep.ERR_INVALID, 'negotiate STRUCTURED_REPLY first');
  const request = decodeMetaContextRequest(data, st.io.limits.maxStringLength);
  if (!request) return replyError(st, option, Rep.ERR_INVALID, 'malformed meta context data');
  const exp = st.io.exports.get(request.exportName);
  if (!exp) return replyError(st, option, Rep.ERR_UNKNOWN, `no export named ${JSON.stringify(request.exportName)}`);
  if (listing) {
    for (const name of listMetaContexts(exp, request.queries)) reply(st, option, Rep.META_CONTEXT, encodeMetaContextReply(0, name));
  } else {
    const contexts = selectMetaContexts(exp, request.queries);
    for (const c of contexts) reply(st, option, Rep.META_CONTEXT, encodeMetaContextReply(c.id, c.name));
    st.meta = { exportName: request.exportName, contexts };
  }
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
    if (!refusedBeforeTls(st, header.option)) replyError(st, header.option, Rep.ERR_TOO_BIG, 'option data too large');
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
    if (refusedBeforeTls(st, opt.option)) continue;
    const handler = OPTION_HANDLERS[opt.option];
    const outcome = handler
      ? handler(st, opt.option, opt.data)
      : replyError(st, opt.option, Rep.ERR_UNSUP, `option ${optName(opt.option)} is not supported`);
    if (outcome === 'abort') return undefined;
    if (outcome === 'starttls') await enterTls(st, opt.option);
    else if (outcome !== 'next') return outcome;
  }
}
