# Test only: stands in for node:20.19-bookworm-slim (the Omniboard image's base) where no
# registry can be reached: the same Debian release with Debian's own Node.js (18) and npm.
ARG BASE
FROM ${BASE}
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends nodejs npm \
    && rm -rf /var/lib/apt/lists/*
