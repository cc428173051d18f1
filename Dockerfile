# foreman on the official Deno image. Dependencies are cached in their own layer (it changes only
# with deno.json/deno.lock), and the daemon runs under the least-privilege flags that
# `foreman permissions` computes for this container's configuration (the ENV below):
#   FOREMAN_ADDR=0.0.0.0:8080 FOREMAN_OLLAMA_URL=http://ollama:11434 FOREMAN_DB=/data/foreman.db
# and the optional config file /app/foreman.toml (not in the image; mount one to use it).
# tests/deploy_test.ts recomputes them and fails if the ENTRYPOINT below drifts. A configuration
# that needs more (webhook hosts, a remote target, secret files) needs other flags: print them
# with `deno task cli permissions` and override the entrypoint (see docs/deploy.md).
ARG DENO_VERSION=2.9.6
FROM denoland/deno:${DENO_VERSION}

WORKDIR /app
# /data holds the SQLite database (a volume).
RUN mkdir -p /data && chown deno:deno /data /app
USER deno

COPY --chown=deno:deno deno.json deno.lock ./
RUN deno install --frozen

COPY --chown=deno:deno main.ts ./
COPY --chown=deno:deno src ./src
RUN deno cache --frozen main.ts src/cli/healthcheck.ts

ENV FOREMAN_ADDR=0.0.0.0:8080 \
    FOREMAN_OLLAMA_URL=http://ollama:11434 \
    FOREMAN_DB=/data/foreman.db
VOLUME /data
EXPOSE 8080

ENTRYPOINT ["deno", "run", "--allow-net=0.0.0.0:8080,ollama:11434", "--allow-read=/data,/app/foreman.toml", "--allow-write=/data", "--allow-env=FOREMAN_*", "--no-prompt", "--unstable-no-legacy-abort", "main.ts"]
CMD ["serve"]
