// What a client may do before TLS when the server requires it (the spec's FORCEDTLS mode,
// nbdkit --tls=require): STARTTLS and ABORT only. Every other option, unknown ones included, is
// refused with ERR_TLS_REQD before it is looked at, so a plaintext client learns nothing about the
// exports (not even whether a name exists: INFO would otherwise answer ERR_UNKNOWN).
// EXPORT_NAME has no error reply, so it closes the connection.
import { Opt } from './wire.ts';

export type PreTlsVerdict = 'allow' | 'refuse' | 'close';

/** The fate of `option` sent in plaintext to a server that requires TLS. */
export function preTlsVerdict(option: number): PreTlsVerdict {
  if (option === Opt.STARTTLS || option === Opt.ABORT) return 'allow';
  return option === Opt.EXPORT_NAME ? 'close' : 'refuse';
}
