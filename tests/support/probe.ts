// A probe for the permission sandbox: run under the daemon's exact Deno flags, it attempts the
// operations named in its JSON argument and prints what happened to each, so a test can show that
// Deno itself (not foreman's own checks) refuses everything outside the computed grants.
//
//   deno run <daemon flags> tests/support/probe.ts '[{"op":"connect","host":"127.0.0.2","port":80}]'

import { dropPermissions } from "../../src/permissions.ts";

export type ProbeOp =
  /** Gives up every permission as the launcher does once the daemon runs. */
  | { op: "drop" }
  | { op: "connect"; host: string; port: number }
  | { op: "listen"; host: string; port: number }
  | { op: "fetch"; url: string }
  | { op: "read"; path: string }
  | { op: "write"; path: string }
  | { op: "run"; cmd: string }
  | { op: "env"; name: string }
  | { op: "sys" };

export interface ProbeResult {
  op: ProbeOp;
  ok: boolean;
  /** The error's class name when the operation failed (NotCapable for a permission refusal). */
  error?: string;
  message?: string;
}

async function attempt(op: ProbeOp): Promise<void> {
  switch (op.op) {
    case "drop": {
      const held = dropPermissions();
      if (held.length > 0) throw new Error(`still held: ${held.join(", ")}`);
      return;
    }
    case "connect": {
      const conn = await Deno.connect({ hostname: op.host, port: op.port });
      conn.close();
      return;
    }
    case "listen":
      Deno.listen({ hostname: op.host, port: op.port }).close();
      return;
    case "fetch": {
      const res = await fetch(op.url);
      await res.body?.cancel();
      return;
    }
    case "read":
      await Deno.readFile(op.path);
      return;
    case "write":
      await Deno.writeTextFile(op.path, "probe\n");
      return;
    case "run":
      await new Deno.Command(op.cmd).output();
      return;
    case "env":
      Deno.env.get(op.name);
      return;
    case "sys":
      Deno.hostname();
      return;
  }
}

if (import.meta.main) {
  const ops = JSON.parse(Deno.args[0]!) as ProbeOp[];
  const results: ProbeResult[] = [];
  for (const op of ops) {
    try {
      await attempt(op);
      results.push({ op, ok: true });
    } catch (err) {
      const e = err as Error;
      // fetch wraps some failures in a TypeError; the permission error, if any, is its cause.
      const cause = e.cause instanceof Error ? e.cause : undefined;
      const refused = e instanceof Deno.errors.NotCapable ? e : cause;
      results.push({
        op,
        ok: false,
        error: (refused instanceof Deno.errors.NotCapable ? refused : e).name,
        message: (refused instanceof Deno.errors.NotCapable ? refused : e).message,
      });
    }
  }
  console.log(JSON.stringify(results));
}
