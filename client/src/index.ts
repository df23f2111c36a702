export {
  type CallOptions,
  type Client,
  type ClientOptions,
  createClient,
  DEFAULT_INITIAL_RETRY_DELAY_MS,
  DEFAULT_MAX_ELAPSED_MS,
  DEFAULT_MAX_RETRIES,
  DEFAULT_MAX_RETRY_DELAY_MS,
  DEFAULT_TIMEOUT_MS,
  type RetryEvent,
  type WriteOptions,
} from "./client.js";
export {
  ApiClientError,
  ApiConnectionError,
  ApiProblem,
  ApiResponseError,
  isApiProblem,
} from "./errors.js";
export { newIdempotencyKey } from "./idempotency-key.js";
export type { RetryReason } from "./retry.js";
export type * from "./types.js";
