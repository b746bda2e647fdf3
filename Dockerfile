# XGet's production image: one image, every service; `xget run $XGET_SERVICE` picks which.
#
#   docker build -t xget .                                   # every service but the browser
#   docker build -t xget-browser --build-arg WITH_CHROMIUM=1 .  # account-manager (password logins)
#   docker run -e XGET_SERVICE=parser ... xget
#
# What it leaves out: chdb (the embedded ClickHouse, 534 MB), the local brokers and the S3
# server (the `embedded` and `local` extras of pyproject.toml) and infra/ (local starters).
# Production talks to a Kafka cluster, a ClickHouse server and MinIO.

# Pinned to a patch release of the slim Debian image; bump it deliberately.
ARG PYTHON_IMAGE=python:3.11.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY libs libs
COPY services services
COPY schemas schemas
# Wheels of XGet and every dependency, built once; the runtime stage installs them offline.
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM ${PYTHON_IMAGE} AS runtime
ARG WITH_CHROMIUM=0
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    XGET_SERVICE=task-gateway \
    XGET_METRICS_HOST=0.0.0.0 \
    XGET_METRICS_PORT=9100 \
    XGET_CHROMIUM_PATH=/usr/bin/chromium \
    HOME=/tmp
# Debian's chromium for Playwright (its own browser download is not used). Not pinned to a
# version: Debian replaces chromium on every security update and old versions leave the mirror.
# hadolint ignore=DL3008
RUN if [ "$WITH_CHROMIUM" = "1" ]; then \
        apt-get update \
        && apt-get install -y --no-install-recommends chromium fonts-liberation \
        && rm -rf /var/lib/apt/lists/*; \
    fi
COPY --from=build /wheels /wheels
# Exactly the wheels the build stage resolved (no index: nothing newer slips in).
RUN pip install --no-cache-dir --no-index /wheels/*.whl \
    && rm -rf /wheels \
    && useradd --system --uid 10001 --home-dir /tmp --shell /usr/sbin/nologin xget
USER 10001
WORKDIR /tmp
# /metrics, /livez and /readyz of every service; the gateway's API and console on 8080, the
# account-manager's admin API on 8081.
EXPOSE 9100 8080 8081
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=6 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:9100/readyz', timeout=3)"]
# `sh -c` so that XGET_SERVICE is read at start; exec hands the signals to xget itself.
CMD ["sh", "-c", "exec xget run \"$XGET_SERVICE\""]
