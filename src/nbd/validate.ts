// Request validation at the edge (nbdkit's validate_request): after this, command handlers
// only assert. Each command has one rule row; the checks run in a fixed order so that the
// answer for a request that is wrong in several ways is predictable.
import { NbdError } from './errno.ts';
import type { Request } from './codec.ts';
import { Cmd, CmdFlag, TxFlag } from './wire.ts';

/** What a connection negotiated, as far as validation cares. */
export interface ValidationContext {
  size: number;
  /** Advertised transmission flags. */
  flags: number;
  /** At least one metadata context was selected (BLOCK_STATUS allowed). */
  metaContext: boolean;
  maxPayload: number;
}

interface CommandRule {
  /** Command flags allowed besides FUA (FUA is allowed on every command once advertised). */
  flags: number;
  /** Transmission flag that must have been advertised (0: none). */
  needs: number;
  /** A write-type command: EPERM on read-only exports. */
  writes: boolean;
  /** Past the end: ENOSPC for commands that store data (WRITE, WRITE_ZEROES), else EINVAL. */
  stores?: boolean;
  /** offset/length describe a range inside the export (false: both must be 0, or are ignored). */
  ranged: boolean;
  /** The length is a payload (READ data or WRITE data), capped by maxPayload. */
  payload: boolean;
}

const RULES: Readonly<Record<number, CommandRule>> = {
  [Cmd.READ]: { flags: CmdFlag.DF, needs: 0, writes: false, ranged: true, payload: true },
  [Cmd.WRITE]: { flags: 0, needs: 0, writes: true, stores: true, ranged: true, payload: true },
  [Cmd.FLUSH]: { flags: 0, needs: TxFlag.SEND_FLUSH, writes: false, ranged: false, payload: false },
  [Cmd.TRIM]: { flags: 0, needs: TxFlag.SEND_TRIM, writes: true, ranged: true, payload: false },
  [Cmd.CACHE]: { flags: 0, needs: TxFlag.SEND_CACHE, writes: false, ranged: true, payload: false },
  [Cmd.WRITE_ZEROES]: {
    flags: CmdFlag.NO_HOLE | CmdFlag.FAST_ZERO, needs: TxFlag.SEND_WRITE_ZEROES, writes: true, stores: true, ranged: true, payload: false,
  },
  [Cmd.BLOCK_STATUS]: { flags: CmdFlag.REQ_ONE, needs: 0, writes: false, ranged: true, payload: false },
};

function fail(message: string, errno: 'EINVAL' | 'EPERM' | 'ENOSPC' = 'EINVAL'): NbdError {
  return new NbdError(errno, message);
}

function checkFlags(req: Request, rule: CommandRule, ctx: ValidationContext): NbdError | undefined {
  if (req.flags & ~(rule.flags | CmdFlag.FUA)) return fail(`flags 0x${req.flags.toString(16)} not valid here`);
  if (req.flags & CmdFlag.FUA && !(ctx.flags & TxFlag.SEND_FUA)) return fail('FUA was not advertised');
  if (req.flags & CmdFlag.DF && !(ctx.flags & TxFlag.SEND_DF)) return fail('DF needs structured replies');
  if (req.flags & CmdFlag.FAST_ZERO && !(ctx.flags & TxFlag.SEND_FAST_ZERO)) return fail('FAST_ZERO was not advertised');
  return undefined;
}

function checkRange(req: Request, rule: CommandRule, ctx: ValidationContext): NbdError | undefined {
  if (!rule.ranged) return req.offset !== 0 || req.length !== 0 ? fail('offset and length must be 0') : undefined;
  if (req.length === 0) return fail('zero-length request');
  if (rule.payload && req.length > ctx.maxPayload) return fail(`length ${req.length} exceeds ${ctx.maxPayload}`);
  if (req.offset + req.length > ctx.size) {
    return fail(`${req.offset}+${req.length} is beyond the end (${ctx.size})`, rule.stores ? 'ENOSPC' : 'EINVAL');
  }
  return undefined;
}

/** The error to answer `req` with, or undefined when it may run. DISC is never rejected. */
export function validateRequest(req: Request, ctx: ValidationContext): NbdError | undefined {
  if (req.type === Cmd.DISC) return undefined;
  const rule = RULES[req.type];
  if (!rule) return fail(`unknown command ${req.type}`);
  const flagError = checkFlags(req, rule, ctx);
  if (flagError) return flagError;
  if (rule.writes && ctx.flags & TxFlag.READ_ONLY) return fail('export is read-only', 'EPERM');
  if (rule.needs && !(ctx.flags & rule.needs)) return fail('command was not advertised');
  if (req.type === Cmd.BLOCK_STATUS && !ctx.metaContext) return fail('no metadata context selected');
  return checkRange(req, rule, ctx);
}
