// autocannon ships no types and @types/autocannon would be a dependency for four calls: this
// declares only the part of its programmatic API (9.0) that the benchmark uses.
declare module "autocannon" {
  import type { EventEmitter } from "node:events";

  namespace autocannon {
    /** Response headers as autocannon hands them to `onResponse`: names as sent by the server. */
    type ResponseHeaders = Record<string, string | string[]>;

    interface RequestSpec {
      method?: string;
      path?: string;
      headers?: Record<string, string>;
      body?: string;
      /** Called before every request; `context` belongs to one connection. */
      setupRequest?: (request: RequestSpec, context: Record<string, unknown>) => RequestSpec;
      onResponse?: (
        status: number,
        body: string,
        context: Record<string, unknown>,
        headers: ResponseHeaders,
      ) => void;
    }

    interface Options extends RequestSpec {
      url: string;
      connections?: number;
      /** Seconds. */
      duration?: number;
      /** Seconds before a request counts as timed out. */
      timeout?: number;
      requests?: RequestSpec[];
    }

    interface Result {
      errors: number;
      timeouts: number;
      non2xx: number;
      statusCodeStats: Record<string, { count: number }>;
      /** Seconds. */
      duration: number;
    }

    interface Instance extends EventEmitter, PromiseLike<Result> {
      stop(): void;
    }
  }

  function autocannon(options: autocannon.Options): autocannon.Instance;
  export = autocannon;
}
