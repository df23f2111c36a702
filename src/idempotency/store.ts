import { and, eq, type SQL, sql } from "drizzle-orm";
import {
  type IdempotencyExecutor as Executor,
  pipeline,
  sqlOf,
  type IdempotencyTransaction as Transaction,
} from "./database.js";
import { type IdempotencyRecord, idempotencyKeys } from "./schema.js";

/** A response as stored and replayed: the status, the headers that matter, the exact body. */
export interface StoredResponse {
  status: number;
  headers: Record<string, string>;
  body: string;
}

/** Which key: idempotency keys are scoped to a tenant. */
export interface KeyRef {
  tenantId: string;
  key: string;
}

/** A key together with the request it was sent with. */
export interface KeyedRequest extends KeyRef {
  fingerprint: string;
  method: string;
  path: string;
}

/** The recovery point of a record whose response is stored. */
export const FINISHED = "finished";
/** The recovery point of a claimed record before any business write. */
export const STARTED = "started";

/** The claim waited `waitMs` and the key's record is still held by another transaction. */
export class KeyLockTimeout extends Error {
  override name = "KeyLockTimeout";
}

/** The SQLSTATE of a PostgreSQL error, looking through drizzle's wrapping. */
export function pgErrorCode(error: unknown): string | undefined {
  for (let e = error; e instanceof Error; e = e.cause) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === "string" && /^[0-9A-Z]{5}$/.test(code)) return code;
  }
  return undefined;
}

/** The columns of a record as the layer reads them; `expired` and `expiresInMs` by `now()`. */
const FOUND_COLUMNS_TEXT = `record_id AS "recordId", fingerprint,
      recovery_point AS "recoveryPoint", attempt, response_status AS "responseStatus",
      response_headers AS "responseHeaders", response_body AS "responseBody",
      expires_at <= now() AS expired,
      coalesce(locked_until > clock_timestamp(), false) AS "leaseActive",
      (extract(epoch FROM expires_at - clock_timestamp()) * 1000)::float8 AS "expiresInMs"`;
const FOUND_COLUMNS = sql.raw(FOUND_COLUMNS_TEXT);

/**
 * Claims a key for the rest of the transaction and looks its record up: the first statements
 * of every idempotent transaction. The claim is the key's record row itself, so it holds
 * wherever the row lives (one PostgreSQL, or the shard of a distributed table on any node):
 *
 * - `INSERT ... ON CONFLICT DO NOTHING` of a placeholder record. When the key is new, the
 *   placeholder is this transaction's until it commits, and a concurrent duplicate's INSERT
 *   blocks on its primary key until then: it finds the committed record (and replays it) or,
 *   after a rollback, inserts its own.
 * - When a committed record exists, `SELECT ... FOR UPDATE` locks and reads it, so a request
 *   replacing an expired record, a phase of a multi-phase request and cleanup never overlap.
 *   A row deleted meanwhile (cleanup) sends the claim back to the INSERT.
 *
 * Every wait is bounded by `waitMs` (PostgreSQL's `lock_timeout`, set with `SET LOCAL` so that
 * Citus passes it on to the node holding the shard when the connection has
 * `citus.propagate_set_commands = local`), then reset so the business writes after it keep the
 * session's setting. The lookup is its own statement, after the INSERT: in READ COMMITTED a
 * statement's snapshot is taken when it starts, so it sees what a waited-for duplicate committed.
 *
 * The placeholder (recovery point `started`, no response, expired at once) never commits as
 * such: the caller overwrites it with `saveFinishedRecord` or `claimRecord` in the same
 * transaction.
 *
 * @returns `record` undefined when the key was free and the placeholder is written;
 *   `transactionTime` the transaction's `now()` (to the millisecond) when the placeholder was
 *   written, undefined when a record was found (see `transactionTimeOf`); `waitedMs`
 *   0 unless the claim met an existing record and took `NOTICEABLE_WAIT_MS` or more (a row lock
 *   does not say whether it waited; a placeholder written at the first try waited for nobody,
 *   or for a duplicate that rolled back, which is not counted, however slow the round trip)
 * @throws KeyLockTimeout when another transaction still holds the key after `waitMs`
 */
export async function claimKey(
  tx: Transaction,
  request: KeyedRequest,
  waitMs: number,
): Promise<{
  record: FoundRecord | undefined;
  transactionTime: Date | undefined;
  waitedMs: number;
}> {
  const started = performance.now();
  const sql = sqlOf(tx);
  // lock_timeout 0 would mean no limit; 1 ms is as close to "do not wait" as it goes.
  const setTimeout = `SET LOCAL lock_timeout = '${Math.max(1, Math.ceil(waitMs))}ms'`;
  const { tenantId, key } = request;
  const placeholder = [tenantId, key, request.fingerprint, request.method, request.path];
  let record: FoundRecord | undefined;
  let transactionTime: Date | undefined;
  let firstTry = true;
  try {
    // One round trip: the lookup after the INSERT finds this transaction's own placeholder when
    // the INSERT wrote one (and is then ignored), the committed record otherwise.
    for (; ; firstTry = false) {
      const [, [inserted], locked] = await pipeline([
        sql.unsafe(setTimeout),
        sql.unsafe<{ transactionTime: Timestamp }[]>(CLAIM_PLACEHOLDER, placeholder),
        sql.unsafe<FoundRecord[]>(LOCK_RECORD, [tenantId, key]),
        sql.unsafe(RESET_TIMEOUT),
      ]);
      if (inserted) {
        transactionTime = dateOf(inserted.transactionTime);
        break;
      }
      [record] = locked;
      if (record) break;
      // Deleted (cleanup) between the INSERT's conflict and the lookup: claim again.
    }
  } catch (error) {
    if (pgErrorCode(error) === "55P03") throw new KeyLockTimeout();
    throw error;
  }
  const tookMs = performance.now() - started;
  const mayHaveWaited = record !== undefined || !firstTry;
  return {
    record,
    transactionTime,
    waitedMs: mayHaveWaited && tookMs >= NOTICEABLE_WAIT_MS ? tookMs : 0,
  };
}

const CLAIM_PLACEHOLDER = `INSERT INTO idempotency_keys (tenant_id, key, record_id, fingerprint,
    method, path, recovery_point, created_at, expires_at)
  VALUES ($1, $2, '', $3, $4, $5, '${STARTED}', now(), now())
  ON CONFLICT (tenant_id, key) DO NOTHING RETURNING created_at AS "transactionTime"`;
const LOCK_RECORD = `SELECT ${FOUND_COLUMNS_TEXT} FROM idempotency_keys
  WHERE tenant_id = $1 AND key = $2 FOR UPDATE`;
/**
 * The transaction's `now()`, as the placeholder's `created_at` has it when the INSERT wrote one,
 * or from this statement, which reads no table: on Citus both come from the node the client is
 * connected to, whose clock stamps the transaction's modifications (a `now()` in a query of a
 * distributed table may run on the worker holding the shard, whose own transaction began later).
 */
const TRANSACTION_TIME = 'SELECT now() AS "transactionTime"';

/**
 * The transaction's `now()` read on its own: for a request executing anew over an expired
 * record, whose claim wrote no placeholder to return it (one more round trip, on a rare path).
 */
export async function transactionTimeOf(tx: Transaction): Promise<Date> {
  const [time] = await sqlOf(tx).unsafe<{ transactionTime: Timestamp }[]>(TRANSACTION_TIME);
  if (!time) throw new Error("SELECT now() returned no row");
  return dateOf(time.transactionTime);
}

/**
 * A `timestamptz` as the client returns it: text under drizzle's parsers (PostgreSQL's output
 * format, which `Date` reads, offset included), a `Date` under postgres.js's own. Citus refuses
 * a function of it in `RETURNING`, so the conversion is done here.
 */
type Timestamp = string | Date;
const dateOf = (value: Timestamp): Date => (value instanceof Date ? value : new Date(value));
const RESET_TIMEOUT = "SET LOCAL lock_timeout TO DEFAULT";

/**
 * How long the claim must take to count as a wait. A row lock wait, unlike the advisory lock's
 * try-then-wait, does not say whether it waited; a claim that took longer than a few round
 * trips did, and shorter ones are reported as no wait.
 */
const NOTICEABLE_WAIT_MS = 10;

/**
 * Locks an existing record without waiting, for work that must not queue behind a request
 * holding the key (the completer).
 * @throws KeyLockTimeout when another transaction holds the record
 */
export async function lockRecordNoWait(tx: Transaction, ref: KeyRef): Promise<boolean> {
  try {
    const rows = await tx.execute(sql`
      SELECT 1 AS locked FROM idempotency_keys
      WHERE tenant_id = ${ref.tenantId} AND key = ${ref.key} FOR UPDATE NOWAIT`);
    return rows.length > 0;
  } catch (error) {
    if (pgErrorCode(error) === "55P03") throw new KeyLockTimeout();
    throw error;
  }
}

/** What the layer reads of a record to decide how to answer. */
export type FoundRecord = {
  recordId: string;
  fingerprint: string;
  recoveryPoint: string;
  attempt: number;
  responseStatus: number | null;
  responseHeaders: Record<string, string> | null;
  responseBody: string | null;
  /** Past `expires_at`, by the database clock. */
  expired: boolean;
  /** An execution holds the record's lease right now. */
  leaseActive: boolean;
  /** Milliseconds until `expires_at`, by the database clock (negative once expired). */
  expiresInMs: number;
};

/*
 * The statements every idempotent request runs (the lookup, the finished record) are written as
 * SQL rather than built with drizzle's query builder: building and mapping them cost more CPU
 * than the statements themselves, and the layer's own SQL reads fine as SQL.
 */

export async function findRecord(
  executor: Executor,
  ref: KeyRef,
): Promise<FoundRecord | undefined> {
  const [record] = await executor.execute<FoundRecord>(sql`
    SELECT ${FOUND_COLUMNS}
    FROM idempotency_keys WHERE tenant_id = ${ref.tenantId} AND key = ${ref.key}`);
  return record;
}

/**
 * The transaction's `now()` plus a number of milliseconds, computed by the database. `now()`
 * rather than `clock_timestamp()`: Citus refuses volatile functions in UPDATE and in ON CONFLICT
 * on distributed tables, and the layer's transactions are short, so the two differ by at most
 * the claim's wait.
 */
function clockPlus(ms: number): SQL {
  return sql`now() + ${ms} * interval '1 millisecond'`;
}

/**
 * Writes the finished record of a request executed in one transaction, in that transaction,
 * over the row `claimKey` locked: its placeholder, or an expired record of the same key.
 * `recordId` names the new incarnation of the key. A live record is a bug in the caller (it
 * must have claimed the key and looked first), so that fails loudly, and fails the statement
 * itself (a division by the zero rows written), not only its promise: the transaction is then
 * aborted whatever the caller does next.
 *
 * It may be the transaction's last statement and sent without waiting for its answer, so that
 * COMMIT follows it in the same round trip; the caller must then await the returned promise
 * after COMMIT. PostgreSQL answers the COMMIT of an aborted transaction with ROLLBACK, not an
 * error, so this promise is what tells whether the record, and everything with it, was written.
 */
export async function saveFinishedRecord(
  tx: Transaction,
  request: KeyedRequest,
  response: StoredResponse,
  ttlMs: number,
  recordId: string,
): Promise<void> {
  await writeOne(
    tx,
    SAVE_FINISHED,
    [
      ...recordParameters(request, recordId),
      response.status,
      JSON.stringify(response.headers),
      response.body,
      ttlMs,
    ],
    () => `idempotency record ${request.key} exists and is live; it was not claimed`,
  );
}

const SAVE_FINISHED = failsUnlessWritten(`UPDATE idempotency_keys SET record_id = $3,
    fingerprint = $4, method = $5, path = $6, recovery_point = '${FINISHED}', locked_until = NULL,
    attempt = 1, response_status = $7, response_headers = $8::jsonb, response_body = $9,
    created_at = now(), expires_at = now() + $10 * interval '1 millisecond'
  WHERE tenant_id = $1 AND key = $2 AND expires_at <= now()`);

/** $1 to $6 of the statements that write a new incarnation of a key's record. */
function recordParameters(request: KeyedRequest, recordId: string): string[] {
  const { tenantId, key, fingerprint, method, path } = request;
  return [tenantId, key, recordId, fingerprint, method, path];
}

/**
 * An UPDATE that fails when it writes no row: a division by the count of rows written (SQLSTATE
 * 22012 for none). A statement that fails aborts its transaction, so a record write that missed
 * takes the business writes with it even when it was sent with COMMIT behind it and nobody
 * looked at its row count before COMMIT (see `transactionEndingWith`).
 */
function failsUnlessWritten(update: string): string {
  return `WITH written AS (${update} RETURNING 1) SELECT 1 / count(*) AS written FROM written`;
}

/** Runs a `failsUnlessWritten` statement; one that wrote nothing throws `missed()`. */
async function writeOne(
  tx: Transaction,
  text: string,
  parameters: (string | number)[],
  missed: () => string,
): Promise<void> {
  try {
    await sqlOf(tx).unsafe(text, parameters);
  } catch (error) {
    if (pgErrorCode(error) === "22012") throw new Error(missed());
    throw error;
  }
}

/** The stored response of a finished record. */
export function storedResponseOf(
  record: Pick<IdempotencyRecord, "responseStatus" | "responseHeaders" | "responseBody">,
): StoredResponse | undefined {
  if (record.responseStatus === null || record.responseBody === null) return undefined;
  return {
    status: record.responseStatus,
    headers: record.responseHeaders ?? {},
    body: record.responseBody,
  };
}

/** The part of a record an execution carries between phases. */
export interface ClaimedRecord {
  recordId: string;
  attempt: number;
  recoveryPoint: string;
}

const claimedColumns = {
  recordId: idempotencyKeys.recordId,
  attempt: idempotencyKeys.attempt,
  recoveryPoint: idempotencyKeys.recoveryPoint,
};

function whereKey(ref: KeyRef, attempt?: number): SQL | undefined {
  return and(
    eq(idempotencyKeys.tenantId, ref.tenantId),
    eq(idempotencyKeys.key, ref.key),
    attempt === undefined ? undefined : eq(idempotencyKeys.attempt, attempt),
  );
}

function one<T>(rows: T[], what: string): T {
  const [row] = rows;
  if (!row) throw new Error(`idempotency record: ${what} matched no row`);
  return row;
}

/**
 * Claims a key for a request that runs in several transactions: writes its record at `started`
 * with a lease over the row `claimKey` locked (its placeholder, or an expired record that had
 * nothing in flight). The caller has claimed the key and decided it is free.
 */
export async function claimRecord(
  tx: Transaction,
  request: KeyedRequest,
  leaseMs: number,
  ttlMs: number,
  recordId: string,
): Promise<ClaimedRecord> {
  await writeOne(
    tx,
    CLAIM_RECORD,
    [...recordParameters(request, recordId), leaseMs, ttlMs],
    () => "idempotency record: claim matched no row",
  );
  return { recordId, attempt: 1, recoveryPoint: STARTED };
}

const CLAIM_RECORD = failsUnlessWritten(`UPDATE idempotency_keys SET record_id = $3,
    fingerprint = $4, method = $5, path = $6, recovery_point = '${STARTED}',
    locked_until = now() + $7 * interval '1 millisecond', attempt = 1, response_status = NULL,
    response_headers = NULL, response_body = NULL, created_at = now(),
    expires_at = now() + $8 * interval '1 millisecond'
  WHERE tenant_id = $1 AND key = $2`);

/**
 * Takes over a record whose lease ran out (its execution crashed, timed out, or gave up with an
 * unknown provider outcome): the attempt counter moves on, so the old execution can no longer
 * commit a phase, and the new one resumes from the record's recovery point.
 */
export async function takeOverRecord(
  executor: Executor,
  ref: KeyRef,
  leaseMs: number,
): Promise<ClaimedRecord> {
  const rows = await executor
    .update(idempotencyKeys)
    .set({ attempt: sql`${idempotencyKeys.attempt} + 1`, lockedUntil: clockPlus(leaseMs) })
    .where(whereKey(ref))
    .returning(claimedColumns);
  return one(rows, "take-over");
}

/**
 * Takes over a record for the completer, only if it still sits between phases with its lease
 * run out for at least `graceMs` by the database clock.
 * @returns undefined when the record is no longer abandoned
 */
export async function takeOverAbandonedRecord(
  executor: Executor,
  ref: KeyRef,
  leaseMs: number,
  graceMs: number,
): Promise<ClaimedRecord | undefined> {
  const [row] = await executor
    .update(idempotencyKeys)
    .set({ attempt: sql`${idempotencyKeys.attempt} + 1`, lockedUntil: clockPlus(leaseMs) })
    .where(and(whereKey(ref), abandoned(graceMs)))
    .returning(claimedColumns);
  return row;
}

/** Stopped between phases, lease run out at least `graceMs` ago. */
function abandoned(graceMs: number): SQL {
  // Literal recovery points, to match the partial index's predicate.
  return sql`${sql.raw(`recovery_point NOT IN ('${STARTED}', '${FINISHED}')`)}
    AND ${idempotencyKeys.lockedUntil} < now() - ${graceMs} * interval '1 millisecond'`;
}

/** Locks the record row for a phase and tells whether `attempt` still owns it. */
export async function fenceRecord(tx: Transaction, ref: KeyRef, attempt: number): Promise<boolean> {
  const [row] = await sqlOf(tx).unsafe<{ attempt: number; recoveryPoint: string }[]>(FENCE, [
    ref.tenantId,
    ref.key,
  ]);
  return row?.attempt === attempt && row.recoveryPoint !== FINISHED;
}

const FENCE = `SELECT attempt, recovery_point AS "recoveryPoint" FROM idempotency_keys
  WHERE tenant_id = $1 AND key = $2 FOR UPDATE`;

/**
 * Moves a record to its next recovery point and renews the lease. It may be sent with COMMIT
 * behind it (see `transactionEndingWith`): a record `attempt` no longer owns fails the
 * statement, and with it the phase.
 */
export async function advanceRecord(
  tx: Transaction,
  ref: KeyRef,
  attempt: number,
  recoveryPoint: string,
  leaseMs: number,
): Promise<void> {
  await writeOne(
    tx,
    ADVANCE,
    [ref.tenantId, ref.key, attempt, recoveryPoint, leaseMs],
    () => "idempotency record: advance matched no row",
  );
}

const ADVANCE = failsUnlessWritten(`UPDATE idempotency_keys SET recovery_point = $4,
    locked_until = now() + $5 * interval '1 millisecond'
  WHERE tenant_id = $1 AND key = $2 AND attempt = $3`);

/**
 * Stores the final response of a multi-phase request. The retention period counts from here
 * when the request outlived it, so a retry can never execute a finished payment twice. It may
 * be sent with COMMIT behind it, like `advanceRecord`.
 */
export async function finishRecord(
  tx: Transaction,
  ref: KeyRef,
  attempt: number,
  response: StoredResponse,
  ttlMs: number,
): Promise<void> {
  await writeOne(
    tx,
    FINISH,
    [
      ref.tenantId,
      ref.key,
      attempt,
      response.status,
      JSON.stringify(response.headers),
      response.body,
      ttlMs,
    ],
    () => "idempotency record: finish matched no row",
  );
}

const FINISH = failsUnlessWritten(`UPDATE idempotency_keys SET recovery_point = '${FINISHED}',
    locked_until = NULL, response_status = $4, response_headers = $5::jsonb, response_body = $6,
    expires_at = greatest(expires_at, now() + $7 * interval '1 millisecond')
  WHERE tenant_id = $1 AND key = $2 AND attempt = $3`);

/**
 * Ends an execution that stops without a final response. A record still at `started` has no
 * business effect and is deleted (the request was rejected, or failed before its first phase);
 * any other keeps its recovery point with the lease released, for a retry or the completer.
 */
export async function releaseRecord(
  executor: Executor,
  ref: KeyRef,
  attempt: number,
): Promise<void> {
  const deleted = await executor
    .delete(idempotencyKeys)
    .where(and(whereKey(ref, attempt), eq(idempotencyKeys.recoveryPoint, STARTED)))
    .returning(claimedColumns);
  if (deleted.length > 0) return;
  await executor
    .update(idempotencyKeys)
    .set({ lockedUntil: sql`now()` })
    .where(and(whereKey(ref, attempt), sql`${idempotencyKeys.recoveryPoint} <> ${FINISHED}`));
}

/**
 * Records stopped between phases whose lease ran out at least `graceMs` ago: the clients that
 * started them did not come back, so the completer finishes them.
 */
export async function findAbandonedRecords(
  executor: Executor,
  graceMs: number,
  limit: number,
): Promise<(KeyRef & { path: string })[]> {
  return executor
    .select({
      tenantId: idempotencyKeys.tenantId,
      key: idempotencyKeys.key,
      path: idempotencyKeys.path,
    })
    .from(idempotencyKeys)
    .where(abandoned(graceMs))
    .orderBy(idempotencyKeys.lockedUntil)
    .limit(limit);
}
