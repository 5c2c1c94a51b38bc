// Auto-extend settings (LVM's snapshot_autoextend_threshold / snapshot_autoextend_percent): their
// ranges and defaults, shared by the daemon's config, the control API and the CLI.

/** Data% at which a COW grows; 100 turns auto-extend off (LVM's default, and ours). */
export const DEFAULT_AUTOEXTEND_THRESHOLD = 100;
/** Growth in percent of the COW's size (LVM's default). */
export const DEFAULT_AUTOEXTEND_PERCENT = 20;

export const AUTOEXTEND_LIMITS = {
  threshold: { min: 1, max: 100 },
  percent: { min: 1, max: 10000 },
} as const;

export type AutoextendSetting = keyof typeof AUTOEXTEND_LIMITS;

/** Why `value` is not a valid setting, or null. */
export function autoextendProblem(setting: AutoextendSetting, value: unknown): string | null {
  const { min, max } = AUTOEXTEND_LIMITS[setting];
  if (typeof value === 'number' && Number.isInteger(value) && value >= min && value <= max) return null;
  const meaning = setting === 'threshold' ? 'a whole percent of Data%; 100 turns auto-extend off' : 'a whole percent of the COW size';
  return `must be ${min} to ${max} (${meaning}), not ${JSON.stringify(value)}`;
}
