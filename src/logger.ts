import { type Logger, pino } from "pino";

export type { Logger };

/**
 * Structured JSON logs on stdout. Secrets never reach a log line: the request logger writes
 * neither bodies nor the Authorization header, and idempotency keys only as a hash.
 */
export function createLogger(level: string, destination?: pino.DestinationStream): Logger {
  return pino(
    {
      level,
      base: { service: "idempotent-payments" },
      timestamp: pino.stdTimeFunctions.isoTime,
      redact: { paths: ["req.headers.authorization", "apiKey"], censor: "[redacted]" },
    },
    destination ?? pino.destination({ dest: 1, sync: false }),
  );
}
