import type { Execution, IdempotencyRejection, PhaseStep } from "../idempotency/index.js";
import { ApiError, problemBody } from "./errors.js";
import { PROBLEM_CONTENT_TYPE } from "./problem.js";

/**
 * The idempotency layer's `onRejection`: its answers become ApiErrors with the same code, so
 * `onError` renders them like every other problem (request id, logging, one body shape).
 */
export function throwRejection(_c: unknown, rejection: IdempotencyRejection): never {
  throw new ApiError(rejection.code, {
    headers: rejection.options.headers,
    errors: rejection.options.errors,
  });
}

/** A final phase step answering with a problem, stored like any other business outcome. */
export function phaseProblem(execution: Execution, error: ApiError): PhaseStep {
  return {
    response: {
      status: error.status,
      body: problemBody(error, execution.options.requestId),
      headers: { "content-type": PROBLEM_CONTENT_TYPE, ...error.headers },
    },
  };
}
