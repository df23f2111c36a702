import {
  errorResponseText,
  idempotencyEndpointMismatch,
  idempotencyKeyTooLong,
  idempotencyParamsMismatch,
  StripeSimError,
} from "./errors.js";
import type { OperationContext, PostOperation } from "./operation.js";
import { canonicalParams, type Params } from "./params.js";
import type { SimStore } from "./state.js";

/** Stripe's limit on the length of an `Idempotency-Key`. */
export const IDEMPOTENCY_KEY_MAX_LENGTH = 255;

/** Runs tasks one after another per key; tasks with different keys run freely. */
export class KeyedLock {
  readonly #tails = new Map<string, Promise<unknown>>();

  /** Runs `task` once every earlier task for `key` has settled. */
  async run<T>(key: string, task: () => Promise<T>): Promise<T> {
    const previous = this.#tails.get(key) ?? Promise.resolve();
    const current = previous.then(task, task);
    const tail = current.catch(() => undefined);
    this.#tails.set(key, tail);
    try {
      return await current;
    } finally {
      if (this.#tails.get(key) === tail) {
        this.#tails.delete(key);
      }
    }
  }
}

/** One POST as the idempotency layer sees it. */
export interface PostRequest {
  path: string;
  params: Params;
  idempotencyKey: string | null;
}

/** The response to send: status and exact body text, plus where a replay came from. */
export interface PostOutcome {
  status: number;
  body: string;
  /** The `Request-Id` of the original request when this is a replay, otherwise null. */
  replayOf: string | null;
}

interface Execution {
  status: number;
  body: string;
  /** False when validation rejected the request, so nothing may be stored. */
  executed: boolean;
}

function toExecution(error: unknown, executed: boolean): Execution {
  if (error instanceof StripeSimError) {
    return { status: error.status, body: errorResponseText(error), executed };
  }
  throw error;
}

function execute<Input>(
  operation: PostOperation<Input>,
  params: Params,
  context: OperationContext,
): Execution {
  let input: Input;
  try {
    input = operation.validate(params);
  } catch (error) {
    return toExecution(error, false);
  }
  try {
    const body = operation.execute(input, context);
    return { status: 200, body: JSON.stringify(body, null, 2), executed: true };
  } catch (error) {
    return toExecution(error, true);
  }
}

/**
 * Runs a POST with Stripe's idempotency semantics.
 *
 * Without a key the operation simply runs. With a key, requests are serialised per key; the
 * first one that gets past validation stores its status and body (5xx excepted), and later
 * ones with the same path and parameters get that response back byte for byte without running
 * anything. A different path or different parameters under a used key is an
 * `idempotency_error`. The response is returned only after the effects and the stored
 * response are persisted, so a crash can never forget something a client was told.
 */
export async function executeIdempotently<Input>(
  store: SimStore,
  locks: KeyedLock,
  request: PostRequest,
  operation: PostOperation<Input>,
  context: OperationContext,
): Promise<PostOutcome> {
  const key = request.idempotencyKey;
  if (key === null) {
    const execution = execute(operation, request.params, context);
    await store.persist();
    return { status: execution.status, body: execution.body, replayOf: null };
  }
  if (key.length > IDEMPOTENCY_KEY_MAX_LENGTH) {
    const error = idempotencyKeyTooLong(IDEMPOTENCY_KEY_MAX_LENGTH);
    return { status: error.status, body: errorResponseText(error), replayOf: null };
  }
  const fingerprint = canonicalParams(request.params);
  return locks.run(key, async () => {
    const record = store.state.idempotencyKeys.get(key);
    if (record !== undefined) {
      const mismatch =
        record.path !== request.path
          ? idempotencyEndpointMismatch(key, request.path, record.path)
          : record.fingerprint !== fingerprint
            ? idempotencyParamsMismatch(key)
            : null;
      if (mismatch !== null) {
        return { status: mismatch.status, body: errorResponseText(mismatch), replayOf: null };
      }
      store.state.counters.idempotent_replays += 1;
      return { status: record.status, body: record.body, replayOf: record.request_id };
    }
    const execution = execute(operation, request.params, context);
    if (execution.executed && execution.status < 500) {
      store.state.idempotencyKeys.set(key, {
        key,
        path: request.path,
        fingerprint,
        status: execution.status,
        body: execution.body,
        request_id: context.requestId,
        created: Date.now(),
      });
    }
    await store.persist();
    return { status: execution.status, body: execution.body, replayOf: null };
  });
}
