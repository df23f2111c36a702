/**
 * Session and transaction advisory locks taken by jobs, in the two-integer key space so they
 * can never collide with the per-key idempotency locks, which use the single-bigint space.
 */
export const ADVISORY_LOCK_NAMESPACE = 0x1de7;

export const JOB_LOCKS = {
  migrate: 1,
  cleanup: 2,
  completer: 3,
} as const;
