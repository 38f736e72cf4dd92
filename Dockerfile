# callprobe in a container: docker build -t callprobe . && docker run -d --name callprobe -p 127.0.0.1:9465:9465 \
#   -v callprobe-data:/var/lib/callprobe -v $PWD/callprobe.yaml:/etc/callprobe/callprobe.yaml:ro callprobe
# Inside a container, listen on 0.0.0.0 (with http.token set) so the published port reaches it.
FROM node:20-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json tsconfig.json ./
COPY src ./src
RUN npm ci --no-audit --no-fund && npm prune --omit=dev

FROM node:20-bookworm-slim
ENV NODE_ENV=production
WORKDIR /app
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY package.json ./
COPY probes ./probes
COPY config ./config
RUN mkdir -p /var/lib/callprobe /etc/callprobe && chown node:node /var/lib/callprobe
USER node
EXPOSE 9465
HEALTHCHECK --interval=60s --timeout=5s CMD node -e "fetch('http://127.0.0.1:9465/healthz').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"
ENTRYPOINT ["node", "dist/cli.js"]
CMD ["run"]
