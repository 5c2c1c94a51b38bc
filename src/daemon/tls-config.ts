// The daemon's TLS settings in its three sources: flags (--tls, --tls-cert, ...), config-file keys
// (tls, tlsCert, ...; paths relative to the file) and NBDSNAP_TLS* variables. config.ts merges
// them with the other keys and loads the credentials (nbd/tls-credentials.ts) at startup.
import type { RawTlsSettings } from '../nbd/tls-settings.ts';

export const TLS_ENV_NAMES: Record<keyof RawTlsSettings, string> = {
  tls: 'NBDSNAP_TLS',
  tlsCert: 'NBDSNAP_TLS_CERT',
  tlsKey: 'NBDSNAP_TLS_KEY',
  tlsCa: 'NBDSNAP_TLS_CA',
  tlsVerifyPeer: 'NBDSNAP_TLS_VERIFY_PEER',
  tlsPsk: 'NBDSNAP_TLS_PSK',
};

/** TLS keys that are not paths. */
export const TLS_NOT_PATHS = ['tls', 'tlsVerifyPeer'];
/** TLS keys a config file may give as JSON booleans. */
export const TLS_BOOLEANS = new Set(['tlsVerifyPeer']);
