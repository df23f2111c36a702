import { type Logger, pino } from "pino";

export type { Logger };

/**
 * Log lines go to stdout in batches of about this many bytes (a dozen request lines) instead of
 * one write per line. A busy server logs one line per request, each on its own turn of the event
 * loop, so unbatched every line was a write (and a thread-pool round trip) of its own: 4 to 24 µs
 * more CPU per line in two micro-benchmarks, against a replay's 100 µs.
 */
const LOG_BATCH_BYTES = 4096;
/**
 * A batch that has not filled up is written after at most this long, so a quiet server's lines
 * still appear promptly; at exit pino writes what is left synchronously. A SIGKILL loses at most
 * this long's lines.
 */
const LOG_FLUSH_INTERVAL_MS = 100;

/**
 * Structured JSON logs on stdout. Secrets and personal data never reach a log line: the request
 * logger writes neither bodies nor the Authorization header, idempotency keys only as a hash,
 * and errors go through `serializeError`, which keeps none of the values a request carried.
 */
export function createLogger(level: string, destination?: pino.DestinationStream): Logger {
  return pino(
    {
      level,
      base: { service: "idempotent-payments" },
      timestamp: isoTime,
      redact: { paths: ["req.headers.authorization", "apiKey"], censor: "[redacted]" },
      serializers: { err: serializeError },
    },
    destination ?? stdoutDestination(),
  );
}

/**
 * stdout, batched (see `LOG_BATCH_BYTES`). At exit pino writes what is left synchronously;
 * when stdout is a pipe or socket whose reader has gone (a log shipper that died, `| head`),
 * that write fails with EPIPE, and the lines are lost: the exit must still go on. (sonic-boom
 * retried such a write forever, hanging the process after SIGTERM; patched to throw it, see
 * patches/sonic-boom+4.2.1.patch, and the throw is caught here.)
 */
function stdoutDestination(): pino.DestinationStream {
  const stream = pino.destination({
    dest: 1,
    sync: false,
    minLength: LOG_BATCH_BYTES,
    periodicFlush: LOG_FLUSH_INTERVAL_MS,
  });
  const flushSync = stream.flushSync.bind(stream);
  stream.flushSync = () => {
    try {
      flushSync();
    } catch {
      // stdout is gone; nothing can be told about it there.
    }
  };
  return stream;
}

/**
 * Fields of an error that name code and schema, never data: PostgreSQL's SQLSTATE, severity,
 * routine and the constraint, table and column it concerns, Node's errno and syscall.
 */
const SAFE_FIELDS = [
  "code",
  "errno",
  "syscall",
  "severity",
  "routine",
  "constraint_name",
  "table_name",
  "column_name",
] as const;

const MAX_CAUSE_DEPTH = 5;

export interface SerializedError {
  type: string;
  message: string;
  stack?: string;
  cause?: SerializedError;
  [field: string]: unknown;
}

/**
 * An error as a log line may show it. Drivers attach what was sent with a failed query
 * (postgres.js `parameters`, `args` and `query`, drizzle `params` and a message ending in
 * them), and PostgreSQL's messages quote the refused value (`invalid input syntax for type
 * integer: "abc"`) and its `detail` the row's key: a customer's email or an order's items. So
 * this keeps an allow-list of fields, cuts drizzle's parameter list, and blanks every quoted
 * span of the message and the stack's first line; the SQL text itself holds placeholders only.
 */
export function serializeError(error: unknown, depth = 0): SerializedError {
  if (!(error instanceof Error)) {
    return { type: typeof error, message: "[a thrown non-error value]" };
  }
  const message = namesOnly(error) ? error.message : scrub(error.message);
  const serialized: SerializedError = { type: error.constructor?.name ?? error.name, message };
  for (const field of SAFE_FIELDS) {
    const value = (error as unknown as Record<string, unknown>)[field];
    if (typeof value === "string" || typeof value === "number") serialized[field] = value;
  }
  if (error.stack) {
    const frames = error.stack.split("\n").filter((line) => line.startsWith("    at "));
    serialized.stack = [`${error.name}: ${message}`, ...frames].join("\n");
  }
  if (error.cause !== undefined && depth < MAX_CAUSE_DEPTH) {
    serialized.cause = serializeError(error.cause, depth + 1);
  }
  return serialized;
}

/**
 * A message without the content of any quoted span, or, for drizzle's "Failed query: <sql>
 * params: <values>", the SQL alone (its identifiers stay readable; values are placeholders).
 */
function scrub(message: string): string {
  if (message.startsWith(FAILED_QUERY)) return message.replace(/\nparams:[\s\S]*$/, "");
  return message.replace(/"[^"\n]*"|'[^'\n]*'|`[^`\n]*`/g, (span) => `${span[0]}…${span[0]}`);
}

const FAILED_QUERY = "Failed query: ";

/**
 * SQLSTATE classes whose messages quote names, never values: connection (08), authorization
 * (28), catalog and schema names (3D, 3F), syntax and undefined objects (42), resources (53),
 * object state (55), operator intervention (57), system errors (58). Their messages are kept
 * whole (`database "orders_prod" does not exist`); every other message has its quoted spans
 * blanked, since a data exception (22), a raised exception (P0) or an internal error (XX)
 * quotes whatever value caused it.
 */
const NAME_ONLY_CLASSES = new Set(["08", "28", "3D", "3F", "42", "53", "55", "57", "58"]);

/** Whether the error is PostgreSQL's (it has a severity) and of a class that quotes names only. */
function namesOnly(error: Error): boolean {
  const { code, severity } = error as { code?: unknown; severity?: unknown };
  return (
    typeof severity === "string" &&
    typeof code === "string" &&
    NAME_ONLY_CLASSES.has(code.slice(0, 2))
  );
}

let lastMs = -1;
let lastTime = "";

/**
 * pino's `isoTime`, formatted once per millisecond: a busy server writes several lines in the
 * same millisecond, and `toISOString` was a fifth of the logger's cost in a profile.
 */
function isoTime(): string {
  const now = Date.now();
  if (now !== lastMs) {
    lastMs = now;
    lastTime = `,"time":"${new Date(now).toISOString()}"`;
  }
  return lastTime;
}
