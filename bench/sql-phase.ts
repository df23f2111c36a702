import { randomUUID } from "node:crypto";
import { and, eq, sql } from "drizzle-orm";
import type { Database } from "../src/db/client.js";
import { idempotencyKeys } from "../src/db/schema.js";
import { transactionEndingWith } from "../src/idempotency/database.js";
import { requestFingerprint } from "../src/idempotency/fingerprint.js";
import {
  claimKey,
  FINISHED,
  type KeyedRequest,
  STARTED,
  type StoredResponse,
  saveFinishedRecord,
} from "../src/idempotency/store.js";
import { newId } from "../src/ids.js";
import { insertOrder, type OrderWithItems } from "../src/orders/orders.queries.js";
import { type CreateOrderBody, orderJson } from "../src/orders/orders.schema.js";
import { Tally } from "./stats.js";

/** What every direct transaction needs: the same order the HTTP phases create. */
export interface OrderWorkload {
  db: Database;
  tenantId: string;
  /** The body as the handler receives it, after validation. */
  input: CreateOrderBody;
  /** The body as the middleware fingerprints it: the parsed JSON, before validation. */
  json: unknown;
  ttlMs: number;
  waitMs: number;
}

/** One transaction of a direct phase; resolves once it committed. */
export type OrderTransaction = (workload: OrderWorkload) => Promise<void>;

const PATH = "/v1/orders";

function freshRequest(w: OrderWorkload): KeyedRequest {
  return {
    tenantId: w.tenantId,
    key: `bench-${randomUUID()}`,
    method: "POST",
    path: PATH,
    fingerprint: requestFingerprint("POST", PATH, w.json),
  };
}

/** The response the create handler would store, serialised the same way. */
function createdResponse(created: OrderWithItems): StoredResponse {
  return {
    status: 201,
    headers: { "content-type": "application/json", location: `${PATH}/${created.order.id}` },
    body: JSON.stringify(orderJson(created.order, created.items)),
  };
}

/** (a) The order's writes alone: what the claim's cost is measured against. */
export const bareOrder: OrderTransaction = async (w) => {
  await w.db.transaction(async (tx) => {
    // Serialised and dropped: the handler's work stays the same in all three, only the claim varies.
    createdResponse(insertOrder(tx, w.tenantId, w.input, new Date()));
  });
};

/**
 * (b) Our claim, exactly as the middleware runs `POST /v1/orders` with a new key: the placeholder
 * record inserted first (`claimKey`, bounded by `SET LOCAL lock_timeout`), the order's writes,
 * the finished record written over the placeholder with COMMIT behind it.
 */
export const ourClaim: OrderTransaction = async (w) => {
  const request = freshRequest(w);
  // As the middleware sends it: COMMIT right behind the finished record.
  await transactionEndingWith(w.db, async (tx, endWith) => {
    const { record, transactionTime } = await claimKey(tx, request, w.waitMs);
    if (record || !transactionTime) throw new Error(`fresh key ${request.key} has a record`);
    const response = createdResponse(insertOrder(tx, w.tenantId, w.input, transactionTime));
    endWith(saveFinishedRecord(tx, request, response, w.ttlMs, newId("idk")));
  });
};

/**
 * (c) The alternative claim (docs/idempotency.md), for comparison only: the record is inserted
 * first (`ON CONFLICT DO NOTHING`: a concurrent duplicate blocks on the primary key until this
 * transaction ends), then the order's writes, then an `UPDATE` stores the response. Only the
 * path of a new key is implemented; with the benchmark's unique keys a conflict is a bug.
 */
export const recordFirstClaim: OrderTransaction = async (w) => {
  const request = freshRequest(w);
  const ref = and(
    eq(idempotencyKeys.tenantId, request.tenantId),
    eq(idempotencyKeys.key, request.key),
  );
  await w.db.transaction(async (tx) => {
    const claimed = await tx
      .insert(idempotencyKeys)
      .values({
        tenantId: request.tenantId,
        key: request.key,
        recordId: newId("idk"),
        fingerprint: request.fingerprint,
        method: request.method,
        path: request.path,
        recoveryPoint: STARTED,
        lockedUntil: null,
        attempt: 1,
        createdAt: sql`clock_timestamp()`,
        expiresAt: sql`clock_timestamp() + ${w.ttlMs} * interval '1 millisecond'`,
      })
      .onConflictDoNothing({ target: [idempotencyKeys.tenantId, idempotencyKeys.key] })
      .returning({ recordId: idempotencyKeys.recordId });
    if (claimed.length !== 1) throw new Error(`fresh key ${request.key} already has a record`);
    const response = createdResponse(insertOrder(tx, w.tenantId, w.input, new Date()));
    await tx
      .update(idempotencyKeys)
      .set({
        recoveryPoint: FINISHED,
        responseStatus: response.status,
        responseHeaders: response.headers,
        responseBody: response.body,
      })
      .where(ref);
  });
};

/** What one run of concurrent direct transactions measured and found. */
export interface ConcurrentRun {
  /** Transactions that committed. */
  committed: number;
  elapsedSeconds: number;
  /** Milliseconds per committed transaction, from its first statement to its COMMIT. */
  latencies: number[];
  problems: Tally;
}

/**
 * Runs `transaction` in `concurrency` loops for `seconds`, like autocannon's connections: each
 * loop starts its next transaction when the previous one ended. Transactions still running at
 * the deadline finish and count, and the elapsed time includes them.
 */
export async function runConcurrently(
  transaction: () => Promise<void>,
  options: { concurrency: number; seconds: number; sampleLatency: boolean },
): Promise<ConcurrentRun> {
  const problems = new Tally();
  const latencies: number[] = [];
  let committed = 0;
  const started = performance.now();
  const deadline = started + options.seconds * 1000;
  const loop = async () => {
    while (performance.now() < deadline) {
      const begin = performance.now();
      try {
        await transaction();
        committed += 1;
        if (options.sampleLatency) latencies.push(performance.now() - begin);
      } catch (error) {
        problems.add(describeError(error));
      }
    }
  };
  await Promise.all(Array.from({ length: options.concurrency }, loop));
  return { committed, elapsedSeconds: (performance.now() - started) / 1000, latencies, problems };
}

/** The innermost message: drizzle wraps the driver's error in a "Failed query" with the SQL. */
function describeError(error: unknown): string {
  let inner = error;
  while (inner instanceof Error && inner.cause instanceof Error) inner = inner.cause;
  return inner instanceof Error ? inner.message.split("\n", 1)[0] || inner.name : String(inner);
}
