import { z } from "zod";

/** Body of `POST /_sim/faults`: one rule, added to those already set. */
export const FaultRuleSchema = z.strictObject({
  /** Delay before every matching API request (GET or POST) is handled, until cleared. */
  latency_ms: z.int().min(0).max(600_000).default(0),
  /** The next N matching POSTs answer 500 `api_error` and do nothing. */
  error_500: z.int().min(0).default(0),
  /** The next N matching POSTs take effect, then lose their response (connection destroyed). */
  lose_response: z.int().min(0).default(0),
  /** Only requests whose path starts with this, e.g. `/v1/refunds`. Default: every API path. */
  path_prefix: z.string().startsWith("/").optional(),
});

/** One fault rule with its remaining counts. */
export type FaultRule = z.infer<typeof FaultRuleSchema>;

/** What to do to one API request. */
export interface FaultDecision {
  latencyMs: number;
  error500: boolean;
  loseResponse: boolean;
}

function matches(rule: FaultRule, path: string): boolean {
  return rule.path_prefix === undefined || path.startsWith(rule.path_prefix);
}

/**
 * The fault rules set through the control API. Counts are consumed when a request *starts*,
 * so N concurrent requests consume exactly N and the outcome does not depend on timing.
 */
export class FaultInjector {
  #rules: FaultRule[] = [];

  /** The rules still in force, with their remaining counts. */
  list(): FaultRule[] {
    return this.#rules.map((rule) => ({ ...rule }));
  }

  add(rule: FaultRule): void {
    this.#rules.push({ ...rule });
  }

  clear(): void {
    this.#rules = [];
  }

  /** Decides (and counts) the faults for one API request. */
  decide(method: string, path: string): FaultDecision {
    const matching = this.#rules.filter((rule) => matches(rule, path));
    const latencyMs = Math.max(0, ...matching.map((rule) => rule.latency_ms));
    let error500 = false;
    let loseResponse = false;
    if (method === "POST") {
      const errorRule = matching.find((rule) => rule.error_500 > 0);
      const loseRule = matching.find((rule) => rule.lose_response > 0);
      if (errorRule !== undefined) {
        errorRule.error_500 -= 1;
        error500 = true;
      } else if (loseRule !== undefined) {
        loseRule.lose_response -= 1;
        loseResponse = true;
      }
      this.#rules = this.#rules.filter(
        (rule) => rule.latency_ms > 0 || rule.error_500 > 0 || rule.lose_response > 0,
      );
    }
    return { latencyMs, error500, loseResponse };
  }
}
