/**
 * `npm run bench`: the issue-2 benchmark of idempotent writes. Drives a real server with
 * autocannon (`GET /healthz`, unique-key creates, replays of one stored key) and runs the create
 * endpoint's transaction straight through postgres.js beside it, in the same run, together with
 * the claim strategies docs/benchmarks.md compares. The phases take turns in short slices, so the
 * load other users put on a shared machine weighs on all of them alike. Prints a markdown table (or JSON with
 * `--json`); `--help` lists the options. Progress goes to stderr.
 */
import { execFileSync } from "node:child_process";
import { randomUUID } from "node:crypto";
import { cpus, loadavg } from "node:os";
import { parseArgs } from "node:util";
import postgres from "postgres";
import { loadConfig } from "../src/config.js";
import { openDatabase } from "../src/db/client.js";
import { CreateOrderBodySchema } from "../src/orders/orders.schema.js";
import { createTenant, findTenantByApiKey } from "../src/tenants/tenants.queries.js";
import { addUsage, CpuMeter, type CpuUsage, cpuShare } from "./cpu.js";
import { type HttpRequestSpec, KeyLedger, RotatingKeys, runHttp } from "./http-phase.js";
import { BENCH_ORDER_BODY, createBenchDatabase, startBenchServer } from "./setup.js";
import {
  advisoryLockClaim,
  bareOrder,
  type OrderTransaction,
  type OrderWorkload,
  recordFirstClaim,
  runConcurrently,
} from "./sql-phase.js";
import { type PhaseResult, percentiles, Tally } from "./stats.js";

const DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/test";

/** Phase ids in the order they run: each ratio's two sides run one after the other. */
const PHASES = [
  "healthz",
  "replay",
  "replay-spread",
  "create",
  "direct",
  "bare",
  "record-first",
] as const;
type PhaseId = (typeof PHASES)[number];

const HELP = `Usage: npm run bench -- [options]

  --url <url>            an already running server (then also --api-key, and DATABASE_URL
                         must be that server's database: the direct-SQL phases and the
                         checks use it). Without --url the benchmark creates a database on
                         DATABASE_URL (default ${DEFAULT_DATABASE_URL}),
                         migrates it, starts the server on it (LOG_LEVEL=info, log read
                         and discarded) and drops the database at the end.
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
  direct: "direct SQL: the create transaction = claim (b)",
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
      const adminUrl = process.env.DATABASE_URL || DEFAULT_DATABASE_URL;
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

    const info = await runInfo(probe, options, config.DATABASE_POOL_MAX, serverDescription);
    const bench = new Bench(options, baseUrl, apiKey, probe, tenantId, serverPid, {
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
    const strategies = computeStrategies(results);
    process.stdout.write(
      options.json
        ? `${JSON.stringify({ info, phases: results, ratios, strategies }, null, 2)}\n`
        : markdown(info, results, ratios, strategies),
    );
    return results.some((result) => result.problems.length > 0) ? 1 : 0;
  } finally {
    await cleanUp();
  }
}

/** What one phase is: autocannon against the server, or direct transactions. */
type PhaseWork = { http: HttpRequestSpec } | { transaction: OrderTransaction };

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

  constructor(readonly work: PhaseWork) {}
}

/**
 * Runs the phases against one server, tenant and database, interleaved: each phase's measured
 * time is cut into slices and the phases take turns slice by slice. Other users' load on the
 * shared machine then falls on every phase alike, so the ratios compare like with like.
 */
class Bench {
  private readonly cpu: CpuMeter;
  private readonly keys = new KeyLedger();

  constructor(
    private readonly options: Options,
    private readonly baseUrl: string,
    private readonly apiKey: string,
    private readonly probe: postgres.Sql,
    private readonly tenantId: string,
    serverPid: number | undefined,
    private readonly workload: OrderWorkload,
  ) {
    this.cpu = new CpuMeter(probe, serverPid);
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
      case "direct":
        return { transaction: advisoryLockClaim };
      case "bare":
        return { transaction: bareOrder };
      case "record-first":
        return { transaction: recordFirstClaim };
    }
  }

  /** One warm-up or measured slice of a phase, with the rows it added to the database. */
  private async slice(phase: PhaseTotals, seconds: number, measured: boolean): Promise<void> {
    const before = await this.rowCounts();
    const meter = measured ? await this.cpu.start() : undefined;
    const { work } = phase;
    let operations: number;
    if ("http" in work) {
      const run = await runHttp(work.http, {
        baseUrl: this.baseUrl,
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
    if (meter) phase.cpu = addUsage(phase.cpu, await this.cpu.since(meter));
    if (measured) phase.count += operations;
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
    } else if ("transaction" in work) {
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
   * response. With one key, concurrent replays also queue on that key's advisory lock; many
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
  const add = (name: string, numerator: PhaseId, denominator: PhaseId) => {
    const top = find(numerator);
    const bottom = find(denominator);
    if (!top || !bottom) return;
    const value = top.perSecond / bottom.perSecond;
    const invalid = top.problems.length > 0 || bottom.problems.length > 0;
    const ratio: Ratio = { name, value, target: 0.5, met: value >= 0.5, invalid };
    const topCpu = cpuPerOperation(top);
    const bottomCpu = cpuPerOperation(bottom);
    if (topCpu && bottomCpu) ratio.byCpu = bottomCpu / topCpu;
    ratios.push(ratio);
  };
  add("create / direct SQL", "create", "direct");
  add("replay / GET /healthz", "replay", "healthz");
  return ratios;
}

function computeStrategies(results: PhaseResult[]): Strategy[] {
  const bare = results.find((result) => result.id === "bare");
  if (!bare) return [];
  const labels: [PhaseId, string][] = [
    ["bare", "(a) bare order transaction (insertOrder only)"],
    ["direct", "(b) ours: advisory lock + lookup, record written once at the end"],
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
    "| phase | req/s | p50 ms | p99 ms | errors |",
    "|---|--:|--:|--:|---|",
  );
  for (const r of results) {
    out.push(
      `| ${r.label} | ${fmt(r.perSecond, 0)} | ${fmt(r.p50Ms, 2)} | ${fmt(r.p99Ms, 2)} | ` +
        `${r.problems.length === 0 ? "none" : `**${r.problems.join("; ")}**`} |`,
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
