import { execFile } from "node:child_process";
import { mkdtemp, readdir, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import type postgres from "postgres";
import { isPostgresProcess, processTicks, US_PER_TICK } from "./cpu.js";
import { Tally } from "./stats.js";

const BENCH_DIR = fileURLToPath(new URL(".", import.meta.url));

/** The pgbench scripts in `bench/`, by phase. */
export const PGBENCH_SCRIPTS = {
  create: join(BENCH_DIR, "create-order.pgbench.sql"),
  bare: join(BENCH_DIR, "bare-order.pgbench.sql"),
} as const;

/** What one pgbench run measured. */
export interface PgbenchRun {
  /** Transactions that committed. */
  committed: number;
  elapsedSeconds: number;
  /** Milliseconds per transaction, from pgbench's per-transaction log. */
  latencies: number[];
  problems: Tally;
  /**
   * PostgreSQL CPU per transaction in microseconds: pgbench's backends exist only while it
   * runs, so their CPU is sampled during the run and divided by the transactions its log shows
   * in the same window. Undefined without latency logging or a readable /proc.
   */
  postgresUsPerTransaction?: number;
}

const APPLICATION_NAME = "bench-pgbench";
const SAMPLE_MS = 200;

/** Reads the CPU ticks of pgbench's backends every 200 ms while `running` holds. */
async function sampleBackends(probe: postgres.Sql, running: () => boolean) {
  const samples: { at: number; ticks: Map<number, number> }[] = [];
  while (running()) {
    const rows = await probe<{ pid: number }[]>`
      SELECT pid FROM pg_stat_activity WHERE application_name = ${APPLICATION_NAME}`;
    const ticks = new Map<number, number>();
    for (const { pid } of rows) {
      const t = isPostgresProcess(pid) ? processTicks(pid) : undefined;
      if (t !== undefined) ticks.set(pid, t);
    }
    if (ticks.size > 0) samples.push({ at: Date.now() / 1000, ticks });
    await new Promise((resolve) => setTimeout(resolve, SAMPLE_MS));
  }
  return samples;
}

/**
 * Runs one pgbench script for `seconds` (whole seconds: pgbench's `-T`) at `clients`
 * connections with prepared statements, the way a well-written client would send them.
 * pgbench's C client costs next to nothing, so its rate is what PostgreSQL itself can do.
 */
export async function runPgbench(options: {
  databaseUrl: string;
  script: string;
  tenantId: string;
  clients: number;
  seconds: number;
  sampleLatency: boolean;
  /** A connection to the same server, to find pgbench's backends for the CPU samples. */
  probe?: postgres.Sql;
}): Promise<PgbenchRun> {
  const seconds = Math.max(1, Math.round(options.seconds));
  const logDir = await mkdtemp(join(tmpdir(), "bench-pgbench-"));
  const problems = new Tally();
  try {
    const args = [
      "--no-vacuum",
      "--protocol=prepared",
      `--client=${options.clients}`,
      `--jobs=${Math.min(2, options.clients)}`,
      `--time=${seconds}`,
      `--file=${options.script}`,
      `--define=tenant=${options.tenantId}`,
      ...(options.sampleLatency ? ["--log", `--log-prefix=${join(logDir, "tx")}`] : []),
      options.databaseUrl,
    ];
    let stdout = "";
    let done = false;
    const sampling =
      options.probe && options.sampleLatency
        ? sampleBackends(options.probe, () => !done)
        : Promise.resolve([]);
    try {
      ({ stdout } = await promisify(execFile)("pgbench", args, {
        encoding: "utf8",
        maxBuffer: 16 * 1024 * 1024,
        env: { ...process.env, PGAPPNAME: APPLICATION_NAME },
      }));
    } catch (error) {
      const failed = error as { stdout?: string; stderr?: string; message: string };
      stdout = failed.stdout ?? "";
      problems.add(`pgbench failed: ${(failed.stderr ?? failed.message).split("\n", 1)[0]}`);
    }
    const processed = /number of transactions actually processed: (\d+)/.exec(stdout);
    const failedTx = /number of failed transactions: (\d+)/.exec(stdout);
    if (failedTx && Number(failedTx[1]) > 0)
      problems.add("failed transactions", Number(failedTx[1]));
    done = true;
    const samples = await sampling;
    const latencies: number[] = [];
    const endedAt: number[] = [];
    if (options.sampleLatency) {
      for (const name of await readdir(logDir)) {
        // Each line: client_id transaction_no latency_us script_no epoch_s epoch_us
        for (const line of (await readFile(join(logDir, name), "utf8")).split("\n")) {
          const fields = line.split(" ");
          const latencyUs = Number(fields[2]);
          if (line.length === 0 || !Number.isFinite(latencyUs)) continue;
          latencies.push(latencyUs / 1000);
          endedAt.push(Number(fields[4]) + Number(fields[5]) / 1e6);
        }
      }
    }
    const run: PgbenchRun = {
      committed: processed ? Number(processed[1]) : 0,
      elapsedSeconds: seconds,
      latencies,
      problems,
    };
    // The window starts once every client's backend is there: one that connected after the
    // first sample would otherwise count none of its CPU.
    const connected = Math.max(0, ...samples.map((s) => s.ticks.size));
    const first = samples.find((s) => s.ticks.size === connected);
    const last = samples.findLast((s) => s.ticks.size === connected);
    if (first && last && last.at > first.at) {
      let ticks = 0;
      for (const [pid, end] of last.ticks) ticks += end - (first.ticks.get(pid) ?? end);
      const inWindow = endedAt.filter((t) => t > first.at && t <= last.at).length;
      if (inWindow > 0) run.postgresUsPerTransaction = (ticks * US_PER_TICK) / inWindow;
    }
    return run;
  } finally {
    await rm(logDir, { recursive: true, force: true });
  }
}
