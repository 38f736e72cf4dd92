# callprobe in a container (README, "Installing for Docker"):
#   docker build -t callprobe .
#   docker run -d --name callprobe --restart unless-stopped -p 127.0.0.1:9465:9465 \
#     -v callprobe-data:/var/lib/callprobe -v $PWD/callprobe.yaml:/etc/callprobe/callprobe.yaml:ro callprobe
# The mounted config listens on 0.0.0.0:9465 with an http.token: 127.0.0.1 inside the container is
# the container's own loopback, which the published port never reaches.
# BASE is any Debian 12 image with Node.js 20 and npm (the tests build one offline: test/docker/).
ARG BASE=node:20-bookworm-slim

FROM ${BASE} AS build
WORKDIR /app
COPY package.json package-lock.json tsconfig.json ./
# No install scripts: no runtime dependency has one, and `prepare` would build before src/ is here.
RUN npm ci --ignore-scripts --no-audit --no-fund
COPY src ./src
RUN npm run build && npm prune --omit=dev --ignore-scripts --no-audit --no-fund

FROM ${BASE}
ENV NODE_ENV=production
# As the systemd unit runs it: a 1 MiB young-generation semi-space and two malloc arenas take
# about 20 MiB off the idle RSS (npm run bench, "Idle RSS").
ENV NODE_OPTIONS="--max-old-space-size=128 --max-semi-space-size=1" MALLOC_ARENA_MAX=2
# Records go to the volume unless the config names a dataDir: callprobe takes its default data
# directory from STATE_DIRECTORY, as systemd's StateDirectory= sets it.
ENV STATE_DIRECTORY=/var/lib/callprobe
WORKDIR /app
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY package.json ./
COPY probes ./probes
COPY config ./config
RUN mkdir -p /var/lib/callprobe /etc/callprobe && chown node:node /var/lib/callprobe
USER node
VOLUME /var/lib/callprobe
EXPOSE 9465
# /healthz at the address the mounted config listens on (it needs no token).
HEALTHCHECK --interval=60s --timeout=10s --start-period=30s \
  CMD ["node", "dist/cli.js", "healthcheck", "--config", "/etc/callprobe/callprobe.yaml"]
ENTRYPOINT ["node", "dist/cli.js"]
CMD ["run", "--config", "/etc/callprobe/callprobe.yaml"]
