import { readFileSync } from "node:fs";
import type postgres from "postgres";
import type { CpuShare } from "./stats.js";

/** Linux reports process CPU in clock ticks; 100 per second on every mainstream kernel config. */
const TICKS_PER_SECOND = 100;
export const US_PER_TICK = 1e6 / TICKS_PER_SECOND;

/** A starting point for `CpuMeter.since`. */
export interface CpuReading {
  benchUs: number;
  serverTicks?: number;
  /** Ticks per backend pid, so backends that appear later count from zero. */
  backendTicks?: Map<number, number>;
  machine?: { busy: number; total: number };
}

/** CPU time spent between two readings, in microseconds; sums over several windows. */
export interface CpuUsage {
  benchUs: number;
  serverUs?: number;
  postgresUs?: number;
  machineBusyUs?: number;
  machineTotalUs?: number;
}

/**
 * Where CPU went during a phase, read from /proc: the server process, this process, and the
 * PostgreSQL backends serving the benchmark's database (when PostgreSQL runs on this machine),
 * against the whole machine's busy time, so a phase slowed by someone else's work shows it.
 * Everything is best-effort: an unreadable /proc leaves the field out.
 */
export class CpuMeter {
  constructor(
    private readonly sql: postgres.Sql,
    private readonly serverPid: number | undefined,
  ) {}

  async start(): Promise<CpuReading> {
    return this.read(await this.backendPids());
  }

  /** The CPU used since `begin`. */
  async since(begin: CpuReading): Promise<CpuUsage> {
    const end = this.read(await this.backendPids());
    const usage: CpuUsage = { benchUs: end.benchUs - begin.benchUs };
    if (begin.serverTicks !== undefined && end.serverTicks !== undefined) {
      usage.serverUs = (end.serverTicks - begin.serverTicks) * US_PER_TICK;
    }
    if (begin.backendTicks && end.backendTicks) {
      let ticks = 0;
      for (const [pid, now] of end.backendTicks) ticks += now - (begin.backendTicks.get(pid) ?? 0);
      usage.postgresUs = ticks * US_PER_TICK;
    }
    if (begin.machine && end.machine) {
      usage.machineBusyUs = (end.machine.busy - begin.machine.busy) * US_PER_TICK;
      usage.machineTotalUs = (end.machine.total - begin.machine.total) * US_PER_TICK;
    }
    return usage;
  }

  private async backendPids(): Promise<number[]> {
    try {
      const rows = await this.sql<{ pid: number }[]>`
        SELECT pid FROM pg_stat_activity WHERE datname = current_database()`;
      return rows.map((row) => row.pid);
    } catch {
      return [];
    }
  }

  private read(backendPids: number[]): CpuReading {
    const usage = process.cpuUsage();
    const reading: CpuReading = { benchUs: usage.user + usage.system };
    if (this.serverPid !== undefined) reading.serverTicks = processTicks(this.serverPid);
    const backends = new Map<number, number>();
    for (const pid of backendPids) {
      // A pid from a remote server or another pid namespace may name an unrelated process here.
      if (!isPostgresProcess(pid)) continue;
      const ticks = processTicks(pid);
      if (ticks !== undefined) backends.set(pid, ticks);
    }
    if (backends.size > 0) reading.backendTicks = backends;
    reading.machine = machineTicks();
    return reading;
  }
}

/** Adds two usages field by field; a field missing from either is missing from the sum. */
export function addUsage(a: CpuUsage | undefined, b: CpuUsage): CpuUsage {
  if (!a) return b;
  const sum = (x?: number, y?: number) => (x === undefined || y === undefined ? undefined : x + y);
  const usage: CpuUsage = { benchUs: a.benchUs + b.benchUs };
  for (const field of ["serverUs", "postgresUs", "machineBusyUs", "machineTotalUs"] as const) {
    const value = sum(a[field], b[field]);
    if (value !== undefined) usage[field] = value;
  }
  return usage;
}

/** Usage per operation, and how much of the machine was busy and with what. */
export function cpuShare(usage: CpuUsage, operations: number): CpuShare | undefined {
  if (operations <= 0) return undefined;
  const share: CpuShare = {
    benchUs: usage.benchUs / operations,
    machineBusyPercent: Number.NaN,
  };
  if (usage.serverUs !== undefined) share.serverUs = usage.serverUs / operations;
  if (usage.postgresUs !== undefined) share.postgresUs = usage.postgresUs / operations;
  if (usage.machineBusyUs !== undefined && usage.machineTotalUs) {
    share.machineBusyPercent = (100 * usage.machineBusyUs) / usage.machineTotalUs;
    // Without the server's pid (--url) its CPU would hide in "other": leave that out.
    if (usage.serverUs !== undefined && usage.postgresUs !== undefined) {
      const ours = usage.benchUs + usage.serverUs + usage.postgresUs;
      share.otherPercent = Math.max(0, (100 * (usage.machineBusyUs - ours)) / usage.machineTotalUs);
    }
  }
  return share;
}

/** utime + stime of a process, in ticks; undefined when it is not visible here. */
export function processTicks(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    // The command name (field 2) may contain spaces; the fields after its ")" are fixed.
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    // utime and stime are fields 14 and 15 of the whole line, 12 and 13 after the name.
    return Number(fields[11]) + Number(fields[12]);
  } catch {
    return undefined;
  }
}

export function isPostgresProcess(pid: number): boolean {
  try {
    return readFileSync(`/proc/${pid}/comm`, "utf8").startsWith("postgres");
  } catch {
    return false;
  }
}

/** Busy and total ticks of all cores together, from the first line of /proc/stat. */
function machineTicks(): { busy: number; total: number } | undefined {
  try {
    const line = readFileSync("/proc/stat", "utf8").split("\n", 1)[0] ?? "";
    const ticks = line.trim().split(/\s+/).slice(1).map(Number);
    // user nice system idle iowait irq softirq steal; guest time is already inside user.
    const total = ticks.slice(0, 8).reduce((a, b) => a + b, 0);
    const idle = (ticks[3] ?? 0) + (ticks[4] ?? 0);
    return { busy: total - idle, total };
  } catch {
    return undefined;
  }
}
