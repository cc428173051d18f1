// The simulator's public port: a TCP relay in front of an internal Deno.serve, so that a fault or
// stop() can cut a client's connection at any moment (even before headers), as a crashing Ollama
// would, and so that a handler learns the moment its client goes away.

const MAX_DEAD_CONNS = 4096;

export class FrontConn {
  readonly closed = new AbortController();
  #killed = false;

  constructor(readonly client: Deno.TcpConn, readonly upstream: Deno.TcpConn) {}

  kill(): void {
    if (this.#killed) return;
    this.#killed = true;
    for (const c of [this.client, this.upstream]) {
      try {
        c.close();
      } catch {
        // already closed by the other side
      }
    }
    this.closed.abort();
  }
}

async function relay(from: Deno.Conn, to: Deno.Conn, fc: FrontConn): Promise<void> {
  const buf = new Uint8Array(64 * 1024);
  try {
    while (true) {
      const n = await from.read(buf);
      if (n === null) break;
      for (let off = 0; off < n;) off += await to.write(buf.subarray(off, n));
    }
  } catch {
    // a side went away; closing both below is all there is to do
  }
  fc.kill();
}

export class Front {
  #listener: Deno.TcpListener | undefined;
  #accepting: Promise<void> | undefined;
  #stopped = true;
  #tasks = new Set<Promise<void>>();
  #byUpstreamPort = new Map<number, FrontConn>();
  #dead: number[] = [];
  #upstreamPort: number;

  constructor(upstreamPort: number) {
    this.#upstreamPort = upstreamPort;
  }

  listen(hostname: string, port: number): number {
    const listener = Deno.listen({ hostname, port, transport: "tcp" });
    this.#listener = listener;
    this.#stopped = false;
    this.#accepting = this.#accept(listener);
    return listener.addr.port;
  }

  /** The client connection behind the internal server's peer port. */
  conn(upstreamPort: number): FrontConn | undefined {
    return this.#byUpstreamPort.get(upstreamPort);
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    try {
      this.#listener?.close();
    } catch {
      // already closed
    }
    this.#listener = undefined;
    await this.#accepting;
    for (const fc of this.#byUpstreamPort.values()) fc.kill();
    await Promise.all(this.#tasks);
  }

  async #accept(listener: Deno.TcpListener): Promise<void> {
    while (true) {
      let client: Deno.TcpConn;
      try {
        client = await listener.accept();
      } catch {
        return; // listener closed
      }
      const task = this.#serve(client);
      this.#tasks.add(task);
      void task.finally(() => this.#tasks.delete(task));
    }
  }

  async #serve(client: Deno.TcpConn): Promise<void> {
    let upstream: Deno.TcpConn;
    try {
      upstream = await Deno.connect({ hostname: "127.0.0.1", port: this.#upstreamPort });
    } catch {
      client.close();
      return;
    }
    const fc = new FrontConn(client, upstream);
    if (this.#stopped) return fc.kill();
    client.setNoDelay(true);
    upstream.setNoDelay(true);
    const key = upstream.localAddr.port;
    this.#byUpstreamPort.set(key, fc);
    await Promise.all([relay(client, upstream, fc), relay(upstream, client, fc)]);
    // The internal server may still be starting a request that came in just before the close; it
    // must find this (aborted) connection, so the entry stays until the port is reused or aged out.
    this.#dead.push(key);
    while (this.#dead.length > MAX_DEAD_CONNS) {
      const old = this.#dead.shift()!;
      if (this.#byUpstreamPort.get(old)?.closed.signal.aborted) this.#byUpstreamPort.delete(old);
    }
  }
}
