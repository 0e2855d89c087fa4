# The crisis-pipeline worker image: `crisis worker` by default, `crisis migrate` for the one-shot migration.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src
COPY pyproject.toml requirements.lock ./
COPY schemas ./schemas
COPY streams ./streams
COPY agents ./agents
COPY sinks ./sinks
COPY domain ./domain
COPY crisis ./crisis
RUN pip install -c requirements.lock . \
    && rm -rf /src/build /src/*.egg-info

# Non-root; Faust keeps its data directory under the working directory, so it must be writable.
RUN useradd --create-home --uid 10001 crisis
USER crisis
WORKDIR /home/crisis

# 9108 worker metrics; 8080 and 9109 the ingest service and its metrics (`crisis ingest`).
EXPOSE 9108 8080 9109
CMD ["crisis", "worker"]
