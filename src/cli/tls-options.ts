// The TLS flags, shared by `nbdsnap daemon` and `nbdsnap serve` (anchors: nbdkit --tls,
// --tls-certificates, --tls-psk, --tls-verify-peer; qemu-nbd --tls-creds).
import type { Command } from 'commander';

/** The flags as commander parses them (camelCase). */
export interface TlsFlags {
  tls?: string;
  tlsCert?: string;
  tlsKey?: string;
  tlsCa?: string;
  tlsVerifyPeer?: boolean;
  tlsPsk?: string;
}

export const TLS_HELP = `
TLS (off unless --tls on|require; applies to the Unix socket and TCP alike):
  --tls on        clients may use NBD_OPT_STARTTLS or stay in plaintext
  --tls require   every option before STARTTLS is refused (NBD_REP_ERR_TLS_REQD)
  X.509           --tls-cert FILE --tls-key FILE (PEM); add --tls-ca FILE --tls-verify-peer to
                  require client certificates signed by that CA
  PSK             --tls-psk FILE, nbdkit's format: one "username:hexkey" line per client
                  (psktool -u alice -p FILE); the client's identity is its username`;

export function addTlsOptions(cmd: Command): Command {
  return cmd
    .option('--tls <mode>', 'off, on (TLS optional) or require (TLS mandatory)')
    .option('--tls-cert <file>', 'server certificate (PEM, may hold the chain)')
    .option('--tls-key <file>', 'private key of --tls-cert (PEM, unencrypted)')
    .option('--tls-ca <file>', 'CA certificates that client certificates must chain to (with --tls-verify-peer)')
    .option('--tls-verify-peer', 'require a valid client certificate')
    .option('--tls-psk <file>', 'pre-shared keys, "username:hexkey" per line');
}

/** `nbdsnap daemon` only: the same settings in a config file and the environment. */
export const TLS_CONFIG_HELP = `
  config file keys tls, tlsCert, tlsKey, tlsCa, tlsVerifyPeer (true/false), tlsPsk; variables
  NBDSNAP_TLS, NBDSNAP_TLS_CERT, NBDSNAP_TLS_KEY, NBDSNAP_TLS_CA, NBDSNAP_TLS_VERIFY_PEER,
  NBDSNAP_TLS_PSK. Every file is read and checked at startup.`;
