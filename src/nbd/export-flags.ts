// The transmission flags an export advertises, derived from its device's capabilities. The
// session validates requests against the same value, so what is advertised is what is allowed.
import { TxFlag } from './wire.ts';
import { isReadOnly, type NbdExport } from './exports.ts';

/** Flags for one connection: `structured` (STRUCTURED_REPLY negotiated) enables DF. */
export function exportFlags(exp: NbdExport, structured: boolean): number {
  const caps = exp.device.caps;
  let flags = TxFlag.HAS_FLAGS | TxFlag.CAN_MULTI_CONN | TxFlag.SEND_CACHE;
  if (structured) flags |= TxFlag.SEND_DF;
  if (isReadOnly(exp)) return flags | TxFlag.READ_ONLY;
  if (caps.flush) flags |= TxFlag.SEND_FLUSH;
  if (caps.fua) flags |= TxFlag.SEND_FUA;
  if (caps.trim) flags |= TxFlag.SEND_TRIM;
  if (caps.zero) flags |= TxFlag.SEND_WRITE_ZEROES;
  if (caps.zero && caps.fastZero) flags |= TxFlag.SEND_FAST_ZERO;
  return flags;
}
