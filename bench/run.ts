/**
 * `npm run bench`: the benchmark of idempotent writes. Drives a real server with autocannon
 * (`GET /healthz`, unique-key creates, replays of stored keys) beside its peers and limits, in
 * one run: the naive idempotency a tutorial adds to an Express app (`bench/naive-peer.ts`),
 * pgbench running the statements of our create transaction and of the bare order (the SQL
 * limit, with a client that costs next to nothing), and the create transaction through
 * drizzle and postgres.js together with the alternative claim strategies. The phases take turns
 * in short slices, so the load other users put on a shared machine weighs on all of them alike.
 * Prints markdown tables (or JSON with `--json`); `--help` lists the options. Progress goes to
 * stderr.
 */
import { execFileSync } from "node:child_process";
import { randomUUID } from "node:crypto";
import { chmodSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { cpus, loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import postgres from "postgres";
import { loadConfig } from "../src/config.js";
import { openDatabase } from "../src/db/client.js";
import { startEmbeddedPostgres } from "../src/db/embedded.js";
import { CreateOrderBodySchema } from "../src/orders/orders.schema.js";
import { createTenant, findTenantByApiKey } from "../src/tenants/tenants.queries.js";
import { addUsage, CpuMeter, type CpuUsage, cpuShare } from "./cpu.js";
import { type HttpRequestSpec, KeyLedger, RotatingKeys, runHttp } from "./http-phase.js";
import { PGBENCH_SCRIPTS, runPgbench } from "./pgbench-phase.js";
import {
  BENCH_ORDER_BODY,
  type BenchServer,
  createBenchDatabase,
  startBenchServer,
  startNaivePeer,
} from "./setup.js";
import {
  bareOrder,
  type OrderTransaction,
  type OrderWorkload,
  ourClaim,
  recordFirstClaim,
  runConcurrently,
} from "./sql-phase.js";
import { type PhaseResult, percentiles, Tally } from "./stats.js";

/** Phase ids in the order they run: each ratio's two sides run close to each other. */
const PHASES = [
  "healthz",
  "replay",
  "replay-spread",
  "create",
  "naive",
  "pgbench-create",
  "pgbench-bare",
  "direct",
  "bare",
  "record-first",
] as const;
type PhaseId = (typeof PHASES)[number];

const HELP = `Usage: npm run bench -- [options]

  --url <url>            an already running server (then also --api-key, and DATABASE_URL
                         must be that server's database: the direct-SQL phases and the
                         checks use it). Without --url the benchmark creates a database on
                         DATABASE_URL (without it, on an embedded PostgreSQL of its own,
                         as \`npm start\` would), migrates it, starts the server on it
                         (LOG_LEVEL=info, log read and discarded) and drops the database at
                         the end.
  --api-key <key>        API key of the tenant to use with --url
  --duration <seconds>   measured seconds per phase (default 10)
  --warmup <seconds>     unmeasured seconds before each phase's first slice (default 2)
  --slice <seconds>      the phases take turns in slices of about this long (default 2)
  --connections <n>      HTTP connections and direct-SQL workers (default 16)
  --phases <list>        comma-separated subset of: ${PHASES.join(",")}
  --cpu-prof <dir>       run the server with node --cpu-prof, writing the profile to <dir>
  --json                 print the results as JSON instead of markdown
  --help

DATABASE_POOL_MAX (default 10) sizes both the server's pool and the direct-SQL pool.`;

const LABELS: Record<PhaseId, string> = {
  healthz: "GET /healthz",
  replay: "POST /v1/orders, replay of one stored key",
  "replay-spread": "POST /v1/orders, replays of 64 stored keys in turn (diagnostic)",
  create: "POST /v1/orders, unique keys",
  naive: "naive peer: Express + postgres.js, SELECT key, INSERT order, INSERT key",
  "pgbench-create": "pgbench: our create transaction's statements",
  "pgbench-bare": "pgbench: the bare order transaction",
  direct: "direct SQL: the create transaction = claim (b) through drizzle",
  bare: "direct SQL: claim (a), bare order transaction",
  "record-first": "direct SQL: claim (c), record first, UPDATE at the end",
};

interface Options {
  url?: string;
  apiKey?: string;
  durationSeconds: number;
  warmupSeconds: number;
  sliceSeconds: number;
  connections: number;
  phases: Set<PhaseId>;
  cpuProfDir?: string;
  json: boolean;
}

function parseCommandLine() {
  return parseArgs({
    options: {
      url: { type: "string" },
      "api-key": { type: "string" },
      duration: { type: "string", default: "10" },
      warmup: { type: "string", default: "2" },
      slice: { type: "string", default: "2" },
      connections: { type: "string", default: "16" },
      phases: { type: "string", default: PHASES.join(",") },
      "cpu-prof": { type: "string" },
      json: { type: "boolean", default: false },
      help: { type: "boolean", default: false },
    },
    strict: true,
  });
}

/** The options, or undefined after printing `--help`. */
function parseOptions(): Options | undefined {
  let parsed: ReturnType<typeof parseCommandLine>;
  try {
    parsed = parseCommandLine();
  } catch (error) {
    throw new UsageError((error as Error).message);
  }
  const { values } = parsed;
  if (values.help) {
    process.stdout.write(`${HELP}\n`);
    return undefined;
  }
  const number = (name: string, text: string, min: number) => {
    const value = Number(text);
    if (!Number.isFinite(value) || value < min) throw new UsageError(`--${name} must be ≥ ${min}`);
    return value;
  };
  const phases = new Set<PhaseId>();
  for (const name of values.phases.split(",")) {
    if (!(PHASES as readonly string[]).includes(name)) {
      throw new UsageError(`unknown phase "${name}"; phases: ${PHASES.join(",")}`);
    }
    phases.add(name as PhaseId);
  }
  if (values.url && !values["api-key"]) throw new UsageError("--url needs --api-key");
  if (values.url && values["cpu-prof"]) {
    throw new UsageError("--cpu-prof needs the server the benchmark starts (no --url)");
  }
  return {
    url: values.url?.replace(/\/+$/, ""),
    apiKey: values["api-key"],
    durationSeconds: number("duration", values.duration, 1),
    warmupSeconds: number("warmup", values.warmup, 0),
    sliceSeconds: number("slice", values.slice, 0.5),
    connections: Math.floor(number("connections", values.connections, 1)),
    phases,
    cpuProfDir: values["cpu-prof"],
    json: values.json,
  };
}

class UsageError extends Error {}

function log(line: string): void {
  process.stderr.write(`[bench] ${line}\n`);
}

/** What every run reports about where it ran. */
interface RunInfo {
  date: string;
  commit?: string;
  node: string;
  cpu: string;
  cores: number;
  loadAverageAtStart: number[];
  postgres: string;
  postgresSettings: Record<string, string>;
  server: string;
  connections: number;
  poolMax: number;
  durationSeconds: number;
  warmupSeconds: number;
  /** Each phase's measured time is cut into this many slices, taken in turn with the others. */
  slices: number;
}

interface Ratio {
  name: string;
  value: number;
  /**
   * The same ratio from CPU time per operation (server + this process + the database's
   * backends): what throughput would compare as if our own CPU were the only limit. On a shared
   * machine it varies less than throughput, which also depends on what others run meanwhile.
   */
  byCpu?: number;
  target: number;
  met: boolean;
  /** Either side had errors: the ratio compares something else than intended. */
  invalid: boolean;
}

interface Strategy {
  label: string;
  perSecond: number;
  ofBare: number;
  ofBareByCpu?: number;
}

/** Server, bench and backend CPU per operation, when all three are known. */
function cpuPerOperation(result: PhaseResult | undefined): number | undefined {
  const cpu = result?.cpu;
  if (cpu?.serverUs === undefined || cpu.postgresUs === undefined) return undefined;
  return cpu.serverUs + cpu.benchUs + cpu.postgresUs;
}

async function main(): Promise<number> {
  const options = parseOptions();
  if (!options) return 0;
  const config = loadConfig();
  const cleanups: (() => Promise<unknown>)[] = [];
  const cleanUp = async () => {
    for (const fn of cleanups.splice(0).reverse()) {
      await fn().catch((error: unknown) => log(`cleanup failed: ${String(error)}`));
    }
  };
  process.once("SIGINT", () => {
    log("interrupted: cleaning up");
    void cleanUp().finally(() => process.exit(130));
  });

  try {
    let databaseUrl: string;
    let baseUrl: string;
    let serverPid: number | undefined;
    let serverDescription: string;
    if (options.url) {
      if (!process.env.DATABASE_URL) {
        throw new UsageError("--url needs DATABASE_URL: the running server's database");
      }
      databaseUrl = process.env.DATABASE_URL;
      baseUrl = options.url;
      serverDescription = `already running at ${baseUrl}`;
    } else {
      const adminUrl = process.env.DATABASE_URL || (await embeddedDatabase(cleanups));
      log(`creating and migrating a database on ${redact(adminUrl)}`);
      const database = await createBenchDatabase(adminUrl);
      cleanups.push(database.drop);
      databaseUrl = database.url;
      const server = await startBenchServer({
        databaseUrl,
        nodeArgs: options.cpuProfDir ? ["--cpu-prof", `--cpu-prof-dir=${options.cpuProfDir}`] : [],
      });
      cleanups.push(server.stop);
      baseUrl = server.url;
      serverPid = server.pid;
      serverDescription = `child process (pid ${server.pid}), LOG_LEVEL=info, log piped and discarded`;
      log(`server ready at ${baseUrl}`);
    }

    const handle = openDatabase(databaseUrl, {
      max: config.DATABASE_POOL_MAX,
      applicationName: "bench-direct",
    });
    cleanups.push(handle.close);
    const probe = postgres(databaseUrl, {
      max: 1,
      onnotice: () => {},
      connection: { application_name: "bench-probe" },
    });
    cleanups.push(() => probe.end({ timeout: 5 }));

    let apiKey: string;
    let tenantId: string;
    if (options.apiKey) {
      const tenant = await findTenantByApiKey(handle.db, options.apiKey);
      if (!tenant) throw new UsageError("--api-key matches no tenant in DATABASE_URL's database");
      apiKey = options.apiKey;
      tenantId = tenant.id;
    } else {
      const created = await createTenant(handle.db, { name: "bench" });
      apiKey = created.apiKey;
      tenantId = created.tenant.id;
    }

    let peer: BenchServer | undefined;
    if (options.phases.has("naive")) {
      peer = await startNaivePeer({ databaseUrl, tenantId });
      cleanups.push(peer.stop);
      log(`naive peer ready at ${peer.url}`);
    }
    const info = await runInfo(probe, options, config.DATABASE_POOL_MAX, serverDescription);
    const benchTargets = { databaseUrl, serverPid, peer };
    const bench = new Bench(options, baseUrl, apiKey, probe, tenantId, benchTargets, {
      db: handle.db,
      tenantId,
      input: CreateOrderBodySchema.parse(JSON.parse(BENCH_ORDER_BODY)),
      json: JSON.parse(BENCH_ORDER_BODY),
      ttlMs: config.IDEMPOTENCY_TTL_MS,
      waitMs: config.IDEMPOTENCY_WAIT_MS,
    });
    const results = await bench.run(PHASES.filter((id) => options.phases.has(id)));
    for (const result of results) {
      if (result.problems.length > 0) log(`${result.id}: PROBLEMS: ${result.problems.join("; ")}`);
    }

    const ratios = computeRatios(results);
    const targets = computeTargets(results);
    const strategies = computeStrategies(results);
    process.stdout.write(
      options.json
        ? `${JSON.stringify({ info, phases: results, ratios, targets, strategies }, null, 2)}\n`
        : markdown(info, results, ratios, targets, strategies),
    );
    return results.some((result) => result.problems.length > 0) ? 1 : 0;
  } finally {
    await cleanUp();
  }
}

/**
 * What one phase is: autocannon against the server (or the naive peer), transactions through
 * drizzle and postgres.js in this process, or a pgbench script.
 */
type PhaseWork =
  | { http: HttpRequestSpec; peer?: true }
  | { transaction: OrderTransaction }
  | { pgbench: string };

/** Where the phases send their work. */
interface BenchTargets {
  databaseUrl: string;
  serverPid: number | undefined;
  peer: BenchServer | undefined;
}

/** A PostgreSQL of the benchmark's own, started as `npm start` starts its default one. */
async function embeddedDatabase(cleanups: (() => Promise<unknown>)[]): Promise<string> {
  const root = mkdtempSync(join(tmpdir(), "bench-postgres-"));
  // The server runs as the postgres user when we are root: it must reach its directory.
  chmodSync(root, 0o755);
  cleanups.push(async () => rmSync(root, { recursive: true, force: true }));
  log("no DATABASE_URL: starting an embedded PostgreSQL");
  const embedded = await startEmbeddedPostgres({ dataDir: join(root, "data") });
  cleanups.push(embedded.stop);
  return embedded.url;
}

/** Resident memory of a process in bytes, from /proc; undefined where unreadable. */
function rssBytes(pid: number | undefined): number | undefined {
  if (pid === undefined) return undefined;
  try {
    const match = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
    return match ? Number(match[1]) * 1024 : undefined;
  } catch {
    return undefined;
  }
}

/** A phase's totals over its slices. */
class PhaseTotals {
  count = 0;
  elapsedSeconds = 0;
  readonly latencies: number[] = [];
  readonly statuses = new Map<number, number>();
  readonly problems = new Tally();
  readonly warmupProblems = new Tally();
  cpu: CpuUsage | undefined;
  /** Rows added to the tenant's tables while this phase ran, warm-up included. */
  orders = 0;
  records = 0;
  /** Direct transactions committed, warm-up included. */
  committed = 0;
  /** The largest resident memory of the process serving the phase, seen after a slice. */
  rssBytes: number | undefined;

  constructor(readonly work: PhaseWork) {}
}

/**
 * Runs the phases against one server, tenant and database, interleaved: each phase's measured
 * time is cut into slices and the phases take turns slice by slice. Other users' load on the
 * shared machine then falls on every phase alike, so the ratios compare like with like.
 */
class Bench {
  private readonly cpu: CpuMeter;
  private readonly peerCpu: CpuMeter;
  private readonly keys = new KeyLedger();
  private readonly peerKeys = new KeyLedger();

  constructor(
    private readonly options: Options,
    private readonly baseUrl: string,
    private readonly apiKey: string,
    private readonly probe: postgres.Sql,
    private readonly tenantId: string,
    private readonly targets: BenchTargets,
    private readonly workload: OrderWorkload,
  ) {
    this.cpu = new CpuMeter(probe, targets.serverPid);
    this.peerCpu = new CpuMeter(probe, targets.peer?.pid);
  }

  async run(ids: PhaseId[]): Promise<PhaseResult[]> {
    const totals = new Map<PhaseId, PhaseTotals>();
    for (const id of ids) totals.set(id, new PhaseTotals(await this.prepare(id)));
    const { durationSeconds, warmupSeconds } = this.options;
    const slices = sliceCount(this.options);
    for (let slice = 1; slice <= slices; slice++) {
      log(`round ${slice} of ${slices}: ${ids.join(", ")}`);
      for (const [id, phase] of totals) {
        if (slice === 1 && warmupSeconds > 0) await this.slice(phase, warmupSeconds, false);
        await this.slice(phase, durationSeconds / slices, true);
        if (slice === slices) log(`  ${id}: ${fmt(phase.count / phase.elapsedSeconds, 0)}/s`);
      }
    }
    const results: PhaseResult[] = [];
    for (const [id, phase] of totals) results.push(await this.finish(id, phase));
    return results;
  }

  private async prepare(id: PhaseId): Promise<PhaseWork> {
    switch (id) {
      case "healthz":
        return { http: { method: "GET", path: "/healthz", expectStatus: 200 } };
      case "replay":
        return { http: await this.replaySpec(1) };
      case "replay-spread":
        return { http: await this.replaySpec(64) };
      case "create":
        return {
          http: {
            method: "POST",
            path: "/v1/orders",
            headers: this.postHeaders(),
            body: BENCH_ORDER_BODY,
            expectStatus: 201,
            keys: this.keys,
            check: (response) =>
              response.status === 201 && response.header("idempotent-replayed") !== "false"
                ? "a 201 without Idempotent-Replayed: false"
                : undefined,
          },
        };
      case "naive":
        return {
          peer: true,
          http: {
            method: "POST",
            path: "/v1/orders",
            headers: { "content-type": "application/json" },
            body: BENCH_ORDER_BODY,
            expectStatus: 201,
            keys: this.peerKeys,
          },
        };
      case "pgbench-create":
        return { pgbench: PGBENCH_SCRIPTS.create };
      case "pgbench-bare":
        return { pgbench: PGBENCH_SCRIPTS.bare };
      case "direct":
        return { transaction: ourClaim };
      case "bare":
        return { transaction: bareOrder };
      case "record-first":
        return { transaction: recordFirstClaim };
    }
  }

  /** One warm-up or measured slice of a phase, with the rows it added to the database. */
  private async slice(phase: PhaseTotals, seconds: number, measured: boolean): Promise<void> {
    const before = await this.rowCounts();
    const { work } = phase;
    const peer = "http" in work && work.peer === true;
    const cpu = peer ? this.peerCpu : this.cpu;
    const meter = measured ? await cpu.start() : undefined;
    let operations: number;
    // pgbench's backends come and go with it; their CPU is sampled during the run instead.
    let pgbenchPostgresUs: number | undefined;
    if ("pgbench" in work) {
      const run = await runPgbench({
        databaseUrl: this.targets.databaseUrl,
        script: work.pgbench,
        tenantId: this.tenantId,
        clients: this.options.connections,
        seconds,
        sampleLatency: measured,
        probe: this.probe,
      });
      operations = run.committed;
      phase.committed += run.committed;
      if (measured) {
        appendAll(phase.latencies, run.latencies);
        phase.elapsedSeconds += run.elapsedSeconds;
        if (run.postgresUsPerTransaction !== undefined) {
          pgbenchPostgresUs = run.postgresUsPerTransaction * run.committed;
        }
      }
      mergeTally(measured ? phase.problems : phase.warmupProblems, run.problems);
    } else if ("http" in work) {
      const run = await runHttp(work.http, {
        baseUrl: peer ? (this.targets.peer?.url ?? "") : this.baseUrl,
        connections: this.options.connections,
        seconds,
        sampleLatency: measured,
      });
      operations = run.responses;
      if (measured) {
        for (const [status, n] of run.statuses) {
          phase.statuses.set(status, (phase.statuses.get(status) ?? 0) + n);
        }
        appendAll(phase.latencies, run.latencies);
        phase.elapsedSeconds += run.elapsedSeconds;
      }
      mergeTally(measured ? phase.problems : phase.warmupProblems, run.problems);
    } else {
      const run = await runConcurrently(() => work.transaction(this.workload), {
        concurrency: this.options.connections,
        seconds,
        sampleLatency: measured,
      });
      operations = run.committed;
      phase.committed += run.committed;
      if (measured) {
        appendAll(phase.latencies, run.latencies);
        phase.elapsedSeconds += run.elapsedSeconds;
      }
      mergeTally(measured ? phase.problems : phase.warmupProblems, run.problems);
    }
    if (meter) {
      const usage = await cpu.since(meter);
      if (pgbenchPostgresUs !== undefined) usage.postgresUs = pgbenchPostgresUs;
      phase.cpu = addUsage(phase.cpu, usage);
    }
    if (measured) phase.count += operations;
    if (measured && "http" in work) {
      const rss = rssBytes(peer ? this.targets.peer?.pid : this.targets.serverPid);
      if (rss !== undefined) phase.rssBytes = Math.max(phase.rssBytes ?? 0, rss);
    }
    // autocannon closes its connections at the deadline with up to one request each in flight;
    // the server still finishes those: let them end before the next slice and before counting.
    if ("http" in work) await this.settle();
    const after = await this.rowCounts();
    phase.orders += after.orders - before.orders;
    phase.records += after.records - before.records;
  }

  /** The phase's result, with the checks of its answers against the database. */
  private async finish(id: PhaseId, phase: PhaseTotals): Promise<PhaseResult> {
    const { p50, p99 } = percentiles(phase.latencies);
    const notes: string[] = [];
    const problems = [
      ...phase.problems.lines(),
      ...phase.warmupProblems.lines().map((line) => `warm-up: ${line}`),
    ];
    const { work } = phase;
    const warm = this.options.warmupSeconds > 0 ? " (warm-up included)" : "";
    if ("http" in work) {
      const expected = phase.statuses.get(work.http.expectStatus) ?? 0;
      notes.push(`${expected} of ${phase.count} answers HTTP ${work.http.expectStatus}`);
    }
    if (id === "replay" || id === "replay-spread") {
      if (phase.orders !== 0) problems.push(`${phase.orders} orders created by replays`);
      else notes.push("each the stored response, Idempotent-Replayed: true; no order created");
    } else if (id === "create") {
      problems.push(...(await this.checkCreated(phase, notes, warm)));
    } else if (id === "naive") {
      // The peer's orders carry no record of ours; its keys are its own table's.
      const created = this.peerKeys.created.length;
      if (phase.orders < created) {
        problems.push(`${phase.orders} orders added for ${created} × 201${warm}`);
      } else {
        notes.push(`${phase.orders} orders added for ${created} × 201${warm} (no transaction)`);
      }
    } else if ("transaction" in work || "pgbench" in work) {
      if (phase.orders !== phase.committed) {
        problems.push(`${phase.orders} orders for ${phase.committed} commits${warm}`);
      } else {
        notes.push(`${phase.orders} orders in the database = ${phase.committed} commits${warm}`);
      }
    }
    const cpu = phase.cpu ? cpuShare(phase.cpu, phase.count) : undefined;
    return {
      id,
      label: LABELS[id],
      kind: "http" in work ? "http" : "sql",
      ...(phase.rssBytes !== undefined ? { rssBytes: phase.rssBytes } : {}),
      count: phase.count,
      elapsedSeconds: phase.elapsedSeconds,
      perSecond: phase.count / phase.elapsedSeconds,
      p50Ms: p50,
      p99Ms: p99,
      errorCount: phase.problems.total + phase.warmupProblems.total,
      problems,
      notes,
      ...(cpu ? { cpu } : {}),
    };
  }

  /**
   * Every 201 must have its record, and the orders and records added must be exactly one per
   * 201, plus those of requests still in flight when autocannon closed a connection whose
   * transaction committed anyway (their keys are known, so they are counted, not estimated).
   */
  private async checkCreated(phase: PhaseTotals, notes: string[], warm: string) {
    const problems: string[] = [];
    const created = this.keys.created;
    const [stored] = await this.probe<{ created: number; unanswered: number }[]>`
      SELECT count(*) FILTER (WHERE key = ANY(${created}::text[]))::int AS created,
             count(*) FILTER (WHERE key = ANY(${this.keys.unanswered}::text[]))::int AS unanswered
      FROM idempotency_keys WHERE tenant_id = ${this.tenantId}`;
    const late = stored?.unanswered ?? 0;
    if (stored?.created !== created.length) {
      problems.push(`${created.length} answers 201 but ${stored?.created} of their records exist`);
    }
    const expected = created.length + late;
    if (phase.orders !== expected || phase.records !== expected) {
      problems.push(
        `${phase.orders} orders and ${phase.records} records added for ${created.length} × 201` +
          ` + ${late} committed after their connection closed`,
      );
    } else {
      notes.push(
        `${phase.orders} orders added = ${created.length} × 201${warm}` +
          ` + ${late} that were in flight when autocannon closed their connection, committed`,
      );
    }
    return problems;
  }

  private postHeaders(): Record<string, string> {
    return { authorization: `Bearer ${this.apiKey}`, "content-type": "application/json" };
  }

  /**
   * Stores `keyCount` keys, then replays them in turn: every answer must be its key's stored
   * response. With one key, concurrent replays also queue on that key's record row; many
   * keys show what a replay costs without that queue.
   */
  private async replaySpec(keyCount: number): Promise<HttpRequestSpec> {
    const stored = new Map<string, string>();
    for (let i = 0; i < keyCount; i++) {
      const key = `bench-replay-${randomUUID()}`;
      const first = await fetch(`${this.baseUrl}/v1/orders`, {
        method: "POST",
        headers: { ...this.postHeaders(), "idempotency-key": key },
        body: BENCH_ORDER_BODY,
      });
      const body = await first.text();
      if (first.status !== 201) {
        throw new Error(`storing a key to replay: HTTP ${first.status} ${body}`);
      }
      stored.set(key, body);
    }
    return {
      method: "POST",
      path: "/v1/orders",
      headers: this.postHeaders(),
      body: BENCH_ORDER_BODY,
      expectStatus: 201,
      keys: new RotatingKeys([...stored.keys()]),
      check: (response) => {
        if (response.status !== 201) return undefined;
        if (response.header("idempotent-replayed") !== "true") {
          return "a 201 without Idempotent-Replayed: true";
        }
        const expected = response.key === undefined ? undefined : stored.get(response.key);
        return response.body === expected ? undefined : "a body differing from the stored one";
      },
    };
  }

  private async rowCounts(): Promise<{ orders: number; records: number }> {
    const [row] = await this.probe<{ orders: number; records: number }[]>`
      SELECT (SELECT count(*) FROM orders WHERE tenant_id = ${this.tenantId})::int AS orders,
             (SELECT count(*) FROM idempotency_keys WHERE tenant_id = ${this.tenantId})::int
               AS records`;
    return { orders: row?.orders ?? 0, records: row?.records ?? 0 };
  }

  /** Waits until no other session of this database has been busy for 300 ms (at most 10 s). */
  private async settle(): Promise<void> {
    const deadline = Date.now() + 10_000;
    let quiet = 0;
    while (quiet < 3 && Date.now() < deadline) {
      const [row] = await this.probe<{ busy: number }[]>`
        SELECT count(*)::int AS busy FROM pg_stat_activity
        WHERE datname = current_database() AND pid <> pg_backend_pid() AND state <> 'idle'`;
      quiet = row?.busy === 0 ? quiet + 1 : 0;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }
}

function sliceCount(options: Options): number {
  return Math.max(1, Math.round(options.durationSeconds / options.sliceSeconds));
}

/** `push(...from)` passes every element as an argument, which overflows the stack on big arrays. */
function appendAll(into: number[], from: number[]): void {
  for (const value of from) into.push(value);
}

function mergeTally(into: Tally, from: Tally): void {
  for (const [message, n] of from.counts) into.add(message, n);
}

function computeRatios(results: PhaseResult[]): Ratio[] {
  const find = (id: PhaseId) => results.find((result) => result.id === id);
  const ratios: Ratio[] = [];
  const add = (name: string, numerator: PhaseId, denominator: PhaseId, target: number) => {
    const top = find(numerator);
    const bottom = find(denominator);
    if (!top || !bottom) return;
    const value = top.perSecond / bottom.perSecond;
    const invalid = top.problems.length > 0 || bottom.problems.length > 0;
    const ratio: Ratio = { name, value, target, met: value >= target, invalid };
    const topCpu = cpuPerOperation(top);
    const bottomCpu = cpuPerOperation(bottom);
    if (topCpu && bottomCpu) ratio.byCpu = bottomCpu / topCpu;
    ratios.push(ratio);
  };
  add("create / naive peer", "create", "naive", 1);
  add("create / pgbench of our create transaction", "create", "pgbench-create", 0.5);
  add("replay / GET /healthz", "replay", "healthz", 0.7);
  add("create / direct SQL through drizzle (diagnostic)", "create", "direct", 0.5);
  return ratios;
}

/** A bound on one figure of the run, besides the ratios. */
interface Target {
  name: string;
  measured: number | undefined;
  unit: string;
  limit: number;
  met: boolean;
}

function computeTargets(results: PhaseResult[]): Target[] {
  const create = results.find((result) => result.id === "create");
  if (!create) return [];
  const target = (name: string, measured: number | undefined, unit: string, limit: number) => ({
    name,
    measured,
    unit,
    limit,
    met: measured !== undefined && measured <= limit,
  });
  const serverRss = Math.max(
    ...results.filter((r) => r.kind === "http" && r.id !== "naive").map((r) => r.rssBytes ?? 0),
  );
  return [
    target("server CPU per create", create.cpu?.serverUs, "µs", 400),
    target("PostgreSQL CPU per create", create.cpu?.postgresUs, "µs", 350),
    target("create p99 / p50", create.p99Ms / create.p50Ms, "×", 3),
    target("server RSS under load", serverRss > 0 ? serverRss / 1e6 : undefined, "MB", 200),
  ];
}

function computeStrategies(results: PhaseResult[]): Strategy[] {
  const bare = results.find((result) => result.id === "bare");
  if (!bare) return [];
  const labels: [PhaseId, string][] = [
    ["bare", "(a) bare order transaction (insertOrder only)"],
    ["direct", "(b) ours: record row first (placeholder), response written over it at the end"],
    ["record-first", "(c) INSERT … ON CONFLICT DO NOTHING first, UPDATE with the response"],
  ];
  const bareCpu = cpuPerOperation(bare);
  return labels.flatMap(([id, label]) => {
    const result = results.find((r) => r.id === id);
    if (!result) return [];
    const strategy: Strategy = {
      label: result.problems.length > 0 ? `${label} (**errors: see the checks**)` : label,
      perSecond: result.perSecond,
      ofBare: result.perSecond / bare.perSecond,
    };
    const cpu = cpuPerOperation(result);
    if (cpu && bareCpu) strategy.ofBareByCpu = bareCpu / cpu;
    return [strategy];
  });
}

async function runInfo(
  probe: postgres.Sql,
  options: Options,
  poolMax: number,
  server: string,
): Promise<RunInfo> {
  const settings = await probe<{ name: string; setting: string }[]>`
    SELECT name, setting FROM pg_settings
    WHERE name IN ('fsync', 'synchronous_commit', 'shared_buffers', 'max_connections')`;
  const [version] = await probe<{ version: string }[]>`SELECT version()`;
  let commit: string | undefined;
  try {
    commit = execFileSync("git", ["rev-parse", "--short", "HEAD"], { encoding: "utf8" }).trim();
  } catch {
    commit = undefined;
  }
  return {
    date: new Date().toISOString(),
    ...(commit ? { commit } : {}),
    node: process.version,
    cpu: cpus()[0]?.model ?? "unknown",
    cores: cpus().length,
    loadAverageAtStart: loadavg().map((n) => Math.round(n * 100) / 100),
    postgres: version?.version.split(" on ")[0] ?? "unknown",
    postgresSettings: Object.fromEntries(settings.map((row) => [row.name, row.setting])),
    server,
    connections: options.connections,
    poolMax,
    durationSeconds: options.durationSeconds,
    warmupSeconds: options.warmupSeconds,
    slices: sliceCount(options),
  };
}

function markdown(
  info: RunInfo,
  results: PhaseResult[],
  ratios: Ratio[],
  targets: Target[],
  strategies: Strategy[],
): string {
  const out: string[] = [];
  out.push(
    `Run ${info.date}${info.commit ? ` at ${info.commit}` : ""}: ${info.connections} connections, ` +
      `${info.durationSeconds} s per phase in ${info.slices} slices, phases taking turns, ` +
      `after ${info.warmupSeconds} s warm-up, ` +
      `pool ${info.poolMax}; ${info.cores} × ${info.cpu}, load average ${info.loadAverageAtStart.join(" ")} at start; ` +
      `${info.postgres} (${Object.entries(info.postgresSettings)
        .map(([k, v]) => `${k}=${v}`)
        .join(", ")}); ` +
      `Node ${info.node}; server ${info.server}.`,
    "",
    "| phase | req/s | p50 ms | p99 ms | RSS MB | errors |",
    "|---|--:|--:|--:|--:|---|",
  );
  for (const r of results) {
    const rss = r.rssBytes === undefined ? undefined : r.rssBytes / 1e6;
    out.push(
      `| ${r.label} | ${fmt(r.perSecond, 0)} | ${fmt(r.p50Ms, 2)} | ${fmt(r.p99Ms, 2)} | ` +
        `${fmt(rss, 0)} | ${r.problems.length === 0 ? "none" : `**${r.problems.join("; ")}**`} |`,
    );
  }
  out.push("");
  if (results.some((r) => r.kind === "sql")) {
    out.push("Direct-SQL rows count committed transactions per second.", "");
  }
  if (ratios.length > 0) {
    out.push(
      "| ratio | measured (req/s) | target | | by CPU per operation |",
      "|---|--:|--:|---|--:|",
    );
    for (const ratio of ratios) {
      out.push(
        `| ${ratio.name} | ${fmt(ratio.value, 2)} | ≥ ${ratio.target} | ` +
          `${ratio.invalid ? "**invalid: errors**" : ratio.met ? "met" : "**missed**"} | ` +
          `${fmt(ratio.byCpu, 2)} |`,
      );
    }
    out.push("");
  }
  if (targets.length > 0) {
    out.push("| bound | measured | limit | |", "|---|--:|--:|---|");
    for (const t of targets) {
      out.push(
        `| ${t.name} | ${fmt(t.measured, t.unit === "×" ? 2 : 0)} ${t.unit} | ≤ ${t.limit} ${t.unit} | ` +
          `${t.met ? "met" : "**missed**"} |`,
      );
    }
    out.push("");
  }
  if (strategies.length > 0) {
    out.push(
      "| claim strategy (direct SQL) | tx/s | of (a) | of (a) by CPU per transaction |",
      "|---|--:|--:|--:|",
    );
    for (const s of strategies) {
      out.push(
        `| ${s.label} | ${fmt(s.perSecond, 0)} | ${fmt(s.ofBare, 2)} | ${fmt(s.ofBareByCpu, 2)} |`,
      );
    }
    out.push(
      "",
      '"By CPU" ratios divide the CPU time per operation of the server, this process and the ' +
        "database's backends instead of the rates: the comparison as if our own CPU were the only " +
        "limit, which other users' load on a shared machine disturbs less.",
      "",
    );
  }
  const withCpu = results.filter((r) => r.cpu);
  if (withCpu.length > 0) {
    out.push(
      "| CPU per operation (µs) | server | bench process | Postgres backends | machine busy | other work |",
      "|---|--:|--:|--:|--:|--:|",
    );
    for (const r of withCpu) {
      const cpu = r.cpu;
      if (!cpu) continue;
      out.push(
        `| ${r.label} | ${fmt(cpu.serverUs, 0)} | ${fmt(cpu.benchUs, 0)} | ${fmt(cpu.postgresUs, 0)} | ` +
          `${fmt(cpu.machineBusyPercent, 0)} % | ${fmt(cpu.otherPercent, 0)} % |`,
      );
    }
    out.push(
      "",
      "Machine busy and other work are percentages of all cores; other work is whatever is neither " +
        "the server, this process nor the benchmark database's backends (WAL writer, other users).",
      "",
    );
  }
  out.push("Checks:", "");
  for (const r of results) {
    out.push(`- ${r.label}: ${[...r.notes, ...r.problems.map((p) => `PROBLEM ${p}`)].join("; ")}`);
  }
  return `${out.join("\n")}\n`;
}

function fmt(value: number | undefined, digits: number): string {
  if (value === undefined || Number.isNaN(value)) return "–";
  return value.toLocaleString("en-US", {
    minimumFractionDigits: digits,
    maximumFractionDigits: digits,
  });
}

function redact(url: string): string {
  const parsed = new URL(url);
  if (parsed.password) parsed.password = "***";
  return parsed.toString();
}

main().then(
  (code) => process.exit(code),
  (error: unknown) => {
    process.stderr.write(
      error instanceof UsageError
        ? `${error.message}\n${HELP}\n`
        : `bench failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`,
    );
    process.exit(error instanceof UsageError ? 2 : 1);
  },
);
