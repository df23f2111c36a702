import { type SQL, sql } from "drizzle-orm";
import type postgres from "postgres";
import type { IdempotencyExecutor as Executor, IdempotencyDatabase } from "./database.js";
import { idempotencyKeys } from "./schema.js";
import { FINISHED, STARTED } from "./store.js";

/**
 * Recovery points whose record may go once expired. `started` holds nothing the provider
 * knows about and `finished` only a stored answer; any point in between may stand for money
 * taken at the provider that the completer job still has to record, so it stays.
 */
export const DELETABLE_RECOVERY_POINTS = [STARTED, FINISHED] as const;

/**
 * How long one cleanup batch may wait for a lock. Rows locked by live requests are
 * skipped (SKIP LOCKED), so the only wait left is behind a migration or maintenance command
 * holding the table; five seconds lets a short one finish, and past that the run fails and the
 * next interval tries again instead of queueing traffic behind the cleanup.
 */
const CLEANUP_LOCK_TIMEOUT_MS = 5000;

/**
 * Idle time after each full batch, as a multiple of the time the batch took: with 1 a backlog
 * is worked through at most half of the time, and the pause grows by itself when a loaded
 * database or process makes batches slower. Deleting flat out under a saturating create load
 * raised the creates' p99 1.5× on the two-core benchmark machine; pausing as long as each batch
 * took kept it at 1.04× and still deleted 14 000 records a second (docs/benchmarks.md), far
 * above any rate at which records are created.
 */
const CLEANUP_PAUSE_RATIO = 1;

/** Waits `ms`, or less if `signal` aborts meanwhile. */
function pause(ms: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const done = () => {
      clearTimeout(timer);
      signal?.removeEventListener("abort", done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal?.addEventListener("abort", done, { once: true });
  });
}

/**
 * The records cleanup may delete, in one place: past `expires_at`, no live lease (a multi-phase
 * request still running holds `locked_until` in the future), and at a recovery point with
 * nothing left to complete.
 */
function deletable(): SQL {
  const k = idempotencyKeys;
  return sql`${k.expiresAt} <= now()
    AND (${k.lockedUntil} IS NULL OR ${k.lockedUntil} < now())
    AND ${k.recoveryPoint} IN (${sql.join(
      DELETABLE_RECOVERY_POINTS.map((point) => sql`${point}`),
      sql`, `,
    )})`;
}

/**
 * Deletes at most `limit` deletable records and returns how many it deleted, tenant by tenant:
 * the tenants of the `limit` oldest deletable records are looked up first, then each tenant's
 * records go in one statement of their own, filtered by `tenant_id` (Citus locks rows only in
 * a statement that names its distribution column, and a statement of one tenant runs on one
 * node). Rows locked by a live request (a re-execution of an expired key, a claim replacing it,
 * another cleanup batch) are skipped, never waited for; a row that changed before it was locked
 * is checked again against the predicate by PostgreSQL, so a record renewed by a re-execution
 * that just committed is not deleted.
 *
 * With `lockTimeoutMs`, each tenant's statement runs in a transaction of its own that waits at
 * most that long for a lock (`executor` must then be the pool); without it, the statements run
 * on `executor` as they are (a transaction passed in keeps them all).
 */
export async function deleteExpiredRecords(
  executor: Executor,
  params: { limit: number; lockTimeoutMs?: number },
): Promise<number> {
  const tenants = await executor.execute<{ tenantId: string }>(sql`
    SELECT DISTINCT tenant_id AS "tenantId" FROM (
      SELECT tenant_id FROM ${idempotencyKeys} WHERE ${deletable()}
      ORDER BY expires_at LIMIT ${params.limit}
    ) AS oldest`);
  let deleted = 0;
  for (const { tenantId } of tenants) {
    const limit = params.limit - deleted;
    if (limit <= 0) break;
    const timeout = params.lockTimeoutMs;
    deleted +=
      timeout === undefined
        ? await deleteTenantRecords(executor, tenantId, limit)
        : await (executor as IdempotencyDatabase).transaction(async (tx) => {
            await tx.execute(sql.raw(`SET LOCAL lock_timeout = '${Math.max(1, timeout)}ms'`));
            return deleteTenantRecords(tx, tenantId, limit);
          });
  }
  return deleted;
}

/** One tenant's share of a batch: one statement, so one short transaction on one node. */
async function deleteTenantRecords(
  executor: Executor,
  tenantId: string,
  limit: number,
): Promise<number> {
  const [row] = await executor.execute<{ deleted: number }>(sql`
    WITH doomed AS (
      SELECT tenant_id, key FROM ${idempotencyKeys}
      WHERE tenant_id = ${tenantId} AND ${deletable()}
      ORDER BY expires_at
      LIMIT ${limit}
      FOR UPDATE SKIP LOCKED
    ), deleted AS (
      DELETE FROM ${idempotencyKeys} AS k USING doomed
      WHERE k.tenant_id = ${tenantId} AND k.tenant_id = doomed.tenant_id AND k.key = doomed.key
      RETURNING 1
    )
    SELECT count(*)::int AS deleted FROM deleted`);
  return row?.deleted ?? 0;
}

/** How many records are deletable right now: the total a progress bar starts from. */
export async function countExpiredRecords(executor: Executor): Promise<number> {
  const [row] = await executor.execute<{ n: number }>(
    sql`SELECT count(*)::int AS n FROM ${idempotencyKeys} WHERE ${deletable()}`,
  );
  return row?.n ?? 0;
}

export interface CleanupProgress {
  /** Records deleted so far in this run. */
  deleted: number;
  batches: number;
  /** Deletable records when the run began, if `countFirst` asked for it. */
  total?: number;
}

/** The pool cleanup runs on: drizzle over a postgres.js pool of at least two connections. */
export interface CleanupDatabase {
  db: IdempotencyDatabase;
  client: postgres.Sql;
}

/**
 * The session advisory lock that keeps cleanup runs apart, in PostgreSQL's two-integer key
 * space (the per-key request locks use the single-bigint space, so the two never meet).
 */
export interface CleanupRunLock {
  namespace: number;
  id: number;
}

/** Default `runLock`: namespace 0x1de7, id 2. */
export const DEFAULT_CLEANUP_RUN_LOCK: CleanupRunLock = { namespace: 0x1de7, id: 2 };

export interface CleanupOptions {
  /** Most records per statement. */
  batchSize: number;
  /** The lock that makes runs across processes take turns. Default `DEFAULT_CLEANUP_RUN_LOCK`. */
  runLock?: CleanupRunLock;
  /** Count the deletable records first, for a progress bar. Costs one index scan. */
  countFirst?: boolean;
  /** Called once the run holds the lock (with the total, if counted) and after every batch. */
  onProgress?: (progress: CleanupProgress) => void;
  /** Stops the run between two batches (shutdown). */
  signal?: AbortSignal;
  /**
   * Idle time after each full batch as a multiple of the batch's duration. Default
   * `CLEANUP_PAUSE_RATIO`; the benchmark compares it with 0.
   */
  pauseRatio?: number;
}

export interface CleanupResult extends CleanupProgress {
  /**
   * `completed`: nothing deletable is left; `skipped`: another runner holds the cleanup lock;
   * `aborted`: the signal stopped it between batches.
   */
  status: "completed" | "skipped" | "aborted";
  durationMs: number;
}

/**
 * Deletes every deletable record once, in batches of `batchSize`, and returns what it did.
 *
 * One runner at a time across all processes: the run holds a session advisory lock (`runLock`,
 * in the two-integer space, so it never meets a request's key lock) on a connection it
 * reserves from the pool for its duration, and a second runner finds the lock taken and returns
 * `skipped` at once. The batches run on the pool's other connections, each in a transaction of
 * its own per tenant, so no transaction outlives a batch and a crash loses at most the batch in flight;
 * after each full batch the run pauses as long as the batch took, leaving the CPUs to traffic.
 * Correctness does not rest on the run lock: SKIP LOCKED alone keeps two runners from deleting
 * a record twice or waiting on each other; the lock keeps the work in one place. The pool must
 * therefore have at least two connections.
 */
export async function runCleanup(
  database: CleanupDatabase,
  options: CleanupOptions,
): Promise<CleanupResult> {
  if (database.client.options.max < 2) {
    throw new Error("runCleanup needs a pool of at least 2 connections: one holds the run lock");
  }
  const { namespace, id } = options.runLock ?? DEFAULT_CLEANUP_RUN_LOCK;
  const started = performance.now();
  const progress: CleanupProgress = { deleted: 0, batches: 0 };
  const finish = (status: CleanupResult["status"]): CleanupResult => ({
    status,
    ...progress,
    durationMs: performance.now() - started,
  });

  const lockConnection = await database.client.reserve();
  try {
    const [lock] = await lockConnection<{ locked: boolean }[]>`
      SELECT pg_try_advisory_lock(${namespace}, ${id}) AS locked`;
    if (!lock?.locked) return finish("skipped");
    try {
      if (options.countFirst) progress.total = await countExpiredRecords(database.db);
      options.onProgress?.({ ...progress });
      for (;;) {
        if (options.signal?.aborted) return finish("aborted");
        const batchStarted = performance.now();
        const deleted = await deleteExpiredRecords(database.db, {
          limit: options.batchSize,
          lockTimeoutMs: CLEANUP_LOCK_TIMEOUT_MS,
        });
        if (deleted > 0) {
          progress.deleted += deleted;
          progress.batches += 1;
          options.onProgress?.({ ...progress });
        }
        // A short batch means fewer rows matched than asked: what is left is locked by live
        // requests or expires later, and the next run picks it up.
        if (deleted < options.batchSize) return finish("completed");
        const pauseRatio = options.pauseRatio ?? CLEANUP_PAUSE_RATIO;
        await pause((performance.now() - batchStarted) * pauseRatio, options.signal);
      }
    } finally {
      // Should this fail, the connection is broken, and PostgreSQL released the lock with it.
      await lockConnection`SELECT pg_advisory_unlock(${namespace}, ${id})`;
    }
  } finally {
    lockConnection.release();
  }
}
