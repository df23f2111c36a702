import { execFileSync, spawn } from "node:child_process";
import { once } from "node:events";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { cpus, totalmem } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import autocannon from "autocannon";
import postgres from "postgres";
import { type DatabaseHandle, openDatabase } from "../src/db/client.js";
import { migrateDatabase } from "../src/db/migrate.js";
import { runCleanup } from "../src/idempotency/index.js";
import { createTenant } from "../src/tenants/tenants.queries.js";
import { REPO_ROOT } from "../test/helpers/server-process.js";
import { createDatabase, dropDatabase } from "../test/helpers/test-database.js";
import { BENCH_ORDER_BODY } from "./setup.js";

/**
 * `npm run bench:cleanup`: what the retention cleanup costs live traffic.
 *
 * On a database of its own (created on the server of DATABASE_URL, dropped afterwards) it loads
 * BENCH_RECORDS expired idempotency records, starts the real server, and drives unique-key order
 * creates at BENCH_CONNECTIONS connections without pause while the cleanup deletes the backlog
 * in alternating windows: WINDOW_SECONDS without cleanup, WINDOW_SECONDS with it, until the
 * backlog is gone. Alternating, rather than one phase after the other, puts both sides under
 * the same background load on a shared machine. It does this for the cleanup as shipped (with
 * its pauses) and flat out, then measures the deletion rate with no traffic, and writes the
 * table into docs/benchmarks.md ("Cleanup under load").
 */
const ADMIN_URL = process.env.DATABASE_URL ?? "postgres://postgres@127.0.0.1:5432/test";
const RECORDS = Number(process.env.BENCH_RECORDS ?? 1_000_000);
const CONNECTIONS = Number(process.env.BENCH_CONNECTIONS ?? 16);
const BATCH_SIZE = Number(process.env.CLEANUP_BATCH_SIZE ?? 1000);
/**
 * Long enough that a window holds thousands of creates (the p99 of each side rests on dozens
 * of samples per window), short enough that a backlog spans several windows of each kind.
 */
const WINDOW_SECONDS = Number(process.env.BENCH_WINDOW_SECONDS ?? 10);
/** Lets the server's JIT and pool settle before anything is measured. */
const WARMUP_SECONDS = 5;
/** A backlog not gone by then is a failure worth seeing, not a longer benchmark. */
const LIMIT_SECONDS = 900;
const REPORT = join(REPO_ROOT, "docs/benchmarks.md");
const SECTION = "## Cleanup under load";

interface Side {
  seconds: number;
  creates: number;
  p50: number;
  p99: number;
}

interface Trial {
  label: string;
  pauseRatio: number;
  without: Side;
  during: Side;
  deleted: number;
  deletingSeconds: number;
  windows: number;
}

function log(line: string) {
  process.stderr.write(`[bench:cleanup] ${line}\n`);
}

/** Inserts `count` expired records shaped like stored order answers, spread over 10 tenants. */
async function loadExpiredRecords(sql: postgres.Sql, count: number, tag: string) {
  const started = performance.now();
  await sql`
    INSERT INTO tenants (id, name, api_key_hash)
    SELECT 'ten_bench_' || ${tag} || '_' || t, 'bench ' || t, md5(${tag} || random()::text)
    FROM generate_series(1, 10) AS t`;
  const body = BENCH_ORDER_BODY.padEnd(600, " ");
  await sql`
    INSERT INTO idempotency_keys (tenant_id, key, record_id, fingerprint, method, path,
      recovery_point, response_status, response_headers, response_body, created_at, expires_at)
    SELECT 'ten_bench_' || ${tag} || '_' || (g % 10 + 1), 'bench-expired-' || ${tag} || '-' || g,
      'idk_bench_' || g, md5(g::text) || md5(g::text), 'POST', '/v1/orders', 'finished', 201,
      '{"content-type":"application/json"}'::jsonb, ${body},
      now() - interval '2 days' + g * interval '1 millisecond',
      now() - interval '1 day' + g * interval '1 microsecond'
    FROM generate_series(1, ${count}::int) AS g`;
  // Production tables are vacuumed and analyzed by autovacuum as they grow; a table loaded in
  // one statement is not, and the batch query's plan depends on the statistics.
  await sql`VACUUM ANALYZE idempotency_keys`;
  log(`loaded ${count} expired records in ${((performance.now() - started) / 1000).toFixed(1)} s`);
}

/**
 * Unique-key creates at CONNECTIONS connections until `stop()`; each 2xx latency (autocannon's
 * own clock) goes to whichever side `sideOf()` names when it arrives.
 */
function startLoad(url: string, apiKey: string, name: string, sideOf: () => string) {
  let sequence = 0;
  const latencies = new Map<string, number[]>();
  let failures = 0;
  let finished: () => void = () => {};
  let failed: (error: Error) => void = () => {};
  const done = new Promise<void>((resolve, reject) => {
    finished = resolve;
    failed = reject;
  });
  const instance = autocannon(
    {
      url: `${url}/v1/orders`,
      connections: CONNECTIONS,
      duration: LIMIT_SECONDS,
      requests: [
        {
          method: "POST",
          headers: { authorization: `Bearer ${apiKey}`, "content-type": "application/json" },
          body: BENCH_ORDER_BODY,
          setupRequest: (request) => {
            sequence += 1;
            request.headers = {
              ...request.headers,
              "idempotency-key": `bench-${name}-${process.pid}-${sequence}`,
            };
            return request;
          },
        },
      ],
    },
    (error, result) => {
      if (error) return failed(error);
      failures = result.non2xx + result.errors + result.timeouts;
      finished();
    },
  );
  instance.on("response", (_client, status, _bytes, ms) => {
    if (status < 200 || status >= 300) return;
    const side = sideOf();
    const list = latencies.get(side) ?? [];
    list.push(ms);
    latencies.set(side, list);
  });
  return {
    async stop() {
      instance.stop();
      await done;
      return { latencies, failures };
    },
  };
}

function summarise(latencies: number[] | undefined, seconds: number): Side {
  const sorted = [...(latencies ?? [])].sort((a, b) => a - b);
  const at = (q: number) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? 0;
  return { seconds, creates: sorted.length, p50: at(0.5), p99: at(0.99) };
}

/** Creates run throughout; the cleanup deletes the backlog in every other window. */
async function trial(
  url: string,
  apiKey: string,
  cleaner: DatabaseHandle,
  label: string,
  pauseRatio: number,
): Promise<Trial> {
  let side = "warmup";
  const load = startLoad(url, apiKey, label.replace(/\W+/g, "-"), () => side);
  await sleep(WARMUP_SECONDS * 1000);
  let deleted = 0;
  let deletingMs = 0;
  let withoutMs = 0;
  let windows = 0;
  for (let done = false; !done; ) {
    side = "without";
    const pauseStarted = performance.now();
    await sleep(WINDOW_SECONDS * 1000);
    withoutMs += performance.now() - pauseStarted;
    if (withoutMs + deletingMs > LIMIT_SECONDS * 1000) throw new Error("backlog not gone in time");

    side = "during";
    const windowEnd = AbortSignal.timeout(WINDOW_SECONDS * 1000);
    const run = await runCleanup(cleaner, { batchSize: BATCH_SIZE, signal: windowEnd, pauseRatio });
    side = "without";
    deleted += run.deleted;
    deletingMs += run.durationMs;
    windows += 1;
    done = run.status === "completed";
    log(`${label}: window ${windows}, ${deleted} deleted`);
  }
  // One more window without cleanup, so the last one with it has a neighbour on each side.
  side = "without";
  const lastStarted = performance.now();
  await sleep(WINDOW_SECONDS * 1000);
  withoutMs += performance.now() - lastStarted;
  const { latencies, failures } = await load.stop();
  if (failures > 0) throw new Error(`${label}: ${failures} creates failed`);
  return {
    label,
    pauseRatio,
    without: summarise(latencies.get("without"), withoutMs / 1000),
    during: summarise(latencies.get("during"), deletingMs / 1000),
    deleted,
    deletingSeconds: deletingMs / 1000,
    windows,
  };
}

/**
 * The real server (`src/main.ts`) as production runs it, request log at `info` included; its
 * output goes nowhere, so reading it costs the benchmark nothing. Ready once `/readyz` says so.
 */
async function startBenchServer(databaseUrl: string) {
  const port = await new Promise<number>((resolve) => {
    const probe = createServer().listen(0, "127.0.0.1", () => {
      const { port } = probe.address() as { port: number };
      probe.close(() => resolve(port));
    });
  });
  const child = spawn(process.execPath, ["--import", "tsx", "src/main.ts"], {
    cwd: REPO_ROOT,
    env: {
      ...process.env,
      DATABASE_URL: databaseUrl,
      PORT: String(port),
      HOST: "127.0.0.1",
      MIGRATE_ON_START: "false",
      CLEANUP_INTERVAL_MS: "0",
      LOG_LEVEL: "info",
    },
    stdio: ["ignore", "ignore", "ignore"],
  });
  const url = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 30_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`server exited with ${child.exitCode}`);
    const ready = await fetch(`${url}/readyz`).then(
      (res) => res.ok,
      () => false,
    );
    if (ready) break;
    if (Date.now() > deadline) throw new Error("server not ready in 30 s");
    await sleep(100);
  }
  return {
    url,
    async stop() {
      if (child.exitCode !== null) return;
      const exited = once(child, "exit");
      child.kill("SIGTERM");
      await exited;
    },
  };
}

async function main() {
  const name = `bench_cleanup_${Date.now()}`;
  const url = await createDatabase(ADMIN_URL, name);
  log(`database ${name} on ${new URL(ADMIN_URL).host}`);
  const sql = postgres(url, { max: 1, onnotice: () => {} });
  const cleaner = openDatabase(url, { max: 2, applicationName: "bench-cleanup" });
  let server: Awaited<ReturnType<typeof startBenchServer>> | undefined;
  try {
    await migrateDatabase(url);
    const { apiKey, tenant } = await createTenant(cleaner.db, { name: "bench" });
    server = await startBenchServer(url);
    log(`server ${server.url}`);

    const trials: Trial[] = [];
    for (const [label, pauseRatio] of [
      ["as shipped (pausing as long as each batch took)", 1],
      ["flat out (no pauses)", 0],
    ] as const) {
      await loadExpiredRecords(sql, RECORDS, String(trials.length));
      trials.push(await trial(server.url, apiKey, cleaner, label, pauseRatio));
    }
    await server.stop();
    server = undefined;

    await loadExpiredRecords(sql, RECORDS, "idle");
    const idle = await runCleanup(cleaner, { batchSize: BATCH_SIZE });

    const [left] = await sql`
      SELECT count(*)::int AS n FROM idempotency_keys WHERE expires_at <= now()`;
    const [created] = await sql`
      SELECT count(*)::int AS keys, avg(pg_column_size(k.*))::int AS bytes,
        (SELECT count(*)::int FROM orders WHERE tenant_id = ${tenant.id}) AS orders
      FROM idempotency_keys k WHERE tenant_id = ${tenant.id}`;
    if (left?.n !== 0) throw new Error(`${left?.n} expired records left`);
    if (created?.keys !== created?.orders) {
      throw new Error(`keys and orders differ: ${JSON.stringify(created)}`);
    }
    log(`checked: no expired record left; one key per order, ${created?.keys} of each`);

    const report = renderReport(trials, idle.deleted, idle.durationMs / 1000, created?.bytes);
    process.stdout.write(`${report}\n`);
    writeReport(report);
    log(`written to ${REPORT}`);
  } finally {
    await server?.stop();
    await cleaner.close();
    await sql.end();
    await dropDatabase(ADMIN_URL, name);
  }
}

function renderReport(
  trials: Trial[],
  idleDeleted: number,
  idleSeconds: number,
  recordBytes: number,
): string {
  const ms = (value: number) => `${value.toFixed(1)} ms`;
  const perSecond = (n: number, seconds: number) => Math.round(n / seconds).toLocaleString("en");
  const rows = trials.flatMap((t) => [
    `| ${t.label} | without cleanup | ${perSecond(t.without.creates, t.without.seconds)} | ${ms(t.without.p50)} | ${ms(t.without.p99)} | | |`,
    `| | **during cleanup** | ${perSecond(t.during.creates, t.during.seconds)} | ${ms(t.during.p50)} | ${ms(t.during.p99)} | **${(t.during.p99 / t.without.p99).toFixed(2)}×** | ${perSecond(t.deleted, t.deletingSeconds)} |`,
  ]);
  const shipped = trials[0];
  const cpu = cpus()[0]?.model ?? "unknown CPU";
  return [
    SECTION,
    "",
    `Measured ${new Date().toISOString().slice(0, 10)} with \`npm run bench:cleanup\` (bench/cleanup.ts). ${RECORDS.toLocaleString("en")} expired`,
    "records (order-sized answers, 10 tenants) are loaded with `INSERT … SELECT generate_series`;",
    `unique-key \`POST /v1/orders\` then run without pause at ${CONNECTIONS} connections (autocannon) against`,
    "one server process with the default pool of 10, while the cleanup (`runCleanup`, the code",
    `behind the server's job and \`npm run cleanup\`, batches of ${BATCH_SIZE}) works in every other`,
    `${WINDOW_SECONDS}-second window until the backlog is gone. Each side's latencies are pooled over its`,
    "windows, so both saw the same background load: run one after the other, phases with and",
    "without cleanup differed more through what else the machine was doing than through the cleanup.",
    "",
    "| cleanup | window | creates/s | create p50 | create p99 | p99 ratio | records deleted/s |",
    "| --- | --- | --- | --- | --- | --- | --- |",
    ...rows,
    `| as shipped, with no traffic at all | | | | | | ${perSecond(idleDeleted, idleSeconds)} |`,
    "",
    `Target: create p99 during cleanup ≤ 1.5× without it. As shipped: ${shipped ? (shipped.during.p99 / shipped.without.p99).toFixed(2) : "?"}×,`,
    `deleting ${shipped?.deleted.toLocaleString("en")} records in ${shipped?.windows} windows (${shipped?.deletingSeconds.toFixed(0)} s of deleting).`,
    "Every create answered 201; afterwards no expired record was left and each create had one",
    `order and one key. A stored order answer is ${recordBytes} bytes of row, before indexes.`,
    "",
    `Conditions: a shared machine (other work ran beside it), ${cpus().length} cores (${cpu}), ${Math.round(totalmem() / 2 ** 30)} GiB,`,
    `Node.js ${process.version}; PostgreSQL at ${new URL(ADMIN_URL).host} on the same machine, fsync and`,
    "synchronous commit on. Server, PostgreSQL, load generator and cleanup share the two cores:",
    "read the ratios, from one run, rather than the absolute numbers.",
  ].join("\n");
}

/** Replaces this benchmark's section of docs/benchmarks.md, leaving the other sections alone. */
function writeReport(section: string) {
  const current = existsSync(REPORT) ? readFileSync(REPORT, "utf8") : "# Benchmarks\n";
  const start = current.indexOf(`${SECTION}\n`);
  let next: string;
  if (start === -1) {
    next = `${current.trimEnd()}\n\n${section}\n`;
  } else {
    const rest = current.slice(start + SECTION.length);
    const end = rest.search(/\n## /);
    const tail = end === -1 ? "" : rest.slice(end + 1);
    next = `${current.slice(0, start)}${section}\n${tail ? `\n${tail}` : ""}`;
  }
  writeFileSync(REPORT, next);
  // The project formats Markdown with Biome too (tables padded); keep `npm run lint` clean.
  execFileSync(join(REPO_ROOT, "node_modules/.bin/biome"), ["format", "--write", REPORT]);
}

main().catch((error: unknown) => {
  process.stderr.write(
    `bench:cleanup failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`,
  );
  process.exitCode = 1;
});
