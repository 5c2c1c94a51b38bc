import { describe, expect, it } from 'vitest';
import { preTlsVerdict } from './tls-policy.ts';
import { parseTlsSettings } from './tls-settings.ts';
import { Opt } from './wire.ts';

describe('parseTlsSettings', () => {
  it('defaults to off and ignores credentials when off', () => {
    expect(parseTlsSettings({})).toEqual({ mode: 'off', verifyPeer: false });
    expect(parseTlsSettings({ tls: 'off', tlsCert: 'c' }).mode).toBe('off');
  });

  it('accepts X.509, X.509 with client certificates, and PSK; the mode is case-insensitive', () => {
    expect(parseTlsSettings({ tls: 'Require', tlsCert: 'c', tlsKey: 'k' })).toMatchObject({ mode: 'require', cert: 'c', key: 'k' });
    expect(parseTlsSettings({ tls: 'on', tlsCert: 'c', tlsKey: 'k', tlsCa: 'ca', tlsVerifyPeer: 'yes' }).verifyPeer).toBe(true);
    expect(parseTlsSettings({ tls: 'on', tlsCert: 'c', tlsKey: 'k', tlsCa: 'ca', tlsVerifyPeer: true }).verifyPeer).toBe(true);
    expect(parseTlsSettings({ tls: 'on', tlsPsk: 'p', tlsVerifyPeer: '0' })).toMatchObject({ psk: 'p', verifyPeer: false });
  });

  it.each([
    [{ tls: 'yes' }, /--tls must be off, on or require, not "yes"/],
    [{ tls: 'on' }, /--tls on needs credentials/],
    [{ tls: 'require', tlsCert: 'c' }, /--tls-cert needs --tls-key/],
    [{ tls: 'require', tlsKey: 'k' }, /--tls-key needs --tls-cert/],
    [{ tls: 'on', tlsCert: 'c', tlsKey: 'k', tlsPsk: 'p' }, /choose X\.509 .* or PSK .*, not both/],
    [{ tls: 'on', tlsCert: 'c', tlsKey: 'k', tlsVerifyPeer: true }, /--tls-verify-peer needs --tls-ca/],
    [{ tls: 'on', tlsPsk: 'p', tlsCa: 'ca', tlsVerifyPeer: true }, /--tls-verify-peer needs --tls-ca .* and --tls-cert/],
    [{ tls: 'on', tlsCert: 'c', tlsKey: 'k', tlsCa: 'ca' }, /--tls-ca is used only to verify client certificates: add --tls-verify-peer/],
    [{ tls: 'on', tlsPsk: 'p', tlsVerifyPeer: 'maybe' }, /--tls-verify-peer must be true or false/],
  ])('refuses %j', (raw, message) => {
    expect(() => parseTlsSettings(raw)).toThrow(message);
  });
});

describe('preTlsVerdict (--tls require, before STARTTLS)', () => {
  it('allows STARTTLS and ABORT, closes at EXPORT_NAME, refuses everything else', () => {
    expect(preTlsVerdict(Opt.STARTTLS)).toBe('allow');
    expect(preTlsVerdict(Opt.ABORT)).toBe('allow');
    expect(preTlsVerdict(Opt.EXPORT_NAME)).toBe('close');
    for (const opt of [Opt.LIST, Opt.INFO, Opt.GO, Opt.STRUCTURED_REPLY, Opt.LIST_META_CONTEXT, Opt.SET_META_CONTEXT, Opt.EXTENDED_HEADERS, 0, 4, 0xffffffff]) {
      expect(preTlsVerdict(opt)).toBe('refuse');
    }
  });
});
