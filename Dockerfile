# The code location image: the pipeline with exactly the locked dependencies, serving Dagster's
# gRPC API to a webserver and a daemon that run elsewhere (see docs/operations.md, "Scaling out").
# Build from the repository root:  docker build -t ubiops-usage:latest .
FROM python:3.11-slim-bookworm

ENV UV_VERSION=0.13.8 \
    UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    PYTHONUNBUFFERED=1

RUN pip install --no-cache-dir "uv==${UV_VERSION}"

WORKDIR /opt/ubiops-usage

# Dependencies first (cached while only the code changes), exactly as uv.lock pins them. Without
# the dev group and without the optional `emulator` extra: production runs talk to the real API.
# (starlette and uvicorn still arrive as dependencies of dagster-webserver, not of the project.)
COPY pyproject.toml uv.lock README.md ./
RUN uv sync --frozen --no-dev --no-install-project

COPY common ./common
COPY ubiops_api ./ubiops_api
COPY extraction ./extraction
COPY insights ./insights
COPY alerting ./alerting
COPY reports ./reports
COPY pipelines ./pipelines
COPY assets ./assets
COPY warehouse ./warehouse
COPY emulator ./emulator
COPY docs ./docs
COPY workspace.yaml quotas.example.yaml ./
RUN uv sync --frozen --no-dev

ENV PATH="/opt/ubiops-usage/.venv/bin:${PATH}" \
    DAGSTER_HOME=/opt/dagster \
    USAGE_WAREHOUSE=/var/lib/ubiops-usage
RUN mkdir -p "${DAGSTER_HOME}" "${USAGE_WAREHOUSE}" \
    && useradd --system --home-dir /var/lib/ubiops-usage usage \
    && chown usage "${DAGSTER_HOME}" "${USAGE_WAREHOUSE}"
USER usage

EXPOSE 4000
CMD ["dagster", "code-server", "start", "--host", "0.0.0.0", "--port", "4000", \
     "--module-name", "pipelines.definitions"]
