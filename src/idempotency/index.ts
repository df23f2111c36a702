/**
 * The idempotency layer's public surface: everything a host app imports comes from here.
 * See README.md beside this file for the adoption.
 */

export {
  type CleanupDatabase,
  type CleanupOptions,
  type CleanupProgress,
  type CleanupResult,
  type CleanupRunLock,
  countExpiredRecords,
  DEFAULT_CLEANUP_RUN_LOCK,
  DELETABLE_RECOVERY_POINTS,
  deleteExpiredRecords,
  runCleanup,
} from "./cleanup.js";
export type {
  IdempotencyDatabase,
  IdempotencyExecutor,
  IdempotencyTransaction,
  TransactionOf,
} from "./database.js";
export { pipeline, sqlOf, transactionEndingWith } from "./database.js";
export {
  drive,
  Execution,
  type ExecutionOptions,
  LeaseLost,
  type PhaseResponse,
  type PhaseStep,
} from "./execution.js";
export { requestFingerprint } from "./fingerprint.js";
export {
  IDEMPOTENCY_KEY_HEADER_PATTERN,
  IDEMPOTENCY_KEY_PATTERN,
  type ParsedIdempotencyKey,
  parseIdempotencyKey,
} from "./key.js";
export { idempotency } from "./middleware.js";
export {
  DEFAULT_TENANT_ID,
  defaultStoreStatus,
  type IdempotencyEvent,
  type IdempotencyOptions,
  type IdempotencyOutcome,
  type IdempotencyVariables,
} from "./options.js";
export { type PhasedIdempotencyOptions, phasedIdempotency } from "./phased.js";
export {
  IDEMPOTENCY_PROBLEMS,
  IdempotencyRejection,
  type IdempotencyRejectionCode,
  PROBLEM_TYPE_BASE,
  problemJson,
  type RejectionHandler,
} from "./rejection.js";
export { ReplayCache } from "./replay-cache.js";
export { sendStored } from "./request.js";
export {
  defineIdempotencyKeys,
  type IdempotencyKeysTableOptions,
  type IdempotencyRecord,
  idempotencyKeys,
} from "./schema.js";
export {
  FINISHED,
  findAbandonedRecords,
  KeyLockTimeout,
  type KeyRef,
  STARTED,
  type StoredResponse,
} from "./store.js";
