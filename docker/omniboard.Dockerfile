# Omniboard, the web UI over Sacred's MongoDB runs, at a pinned version. BASE: any Debian
# bookworm with Node.js and npm (make test-container builds it on a locally made one).
ARG BASE=node:20.19-bookworm-slim
FROM ${BASE}
RUN npm install --global --no-audit --no-fund omniboard@2.16.1 && npm cache clean --force
USER 1000:1000
EXPOSE 9000
# MONGO_URI (with credentials) comes from docker-compose.yml.
ENTRYPOINT ["sh", "-c", "exec omniboard --mu \"$MONGO_URI\""]
