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

# Non-root. /var/lib/crisis/textfile holds `crisis report`'s metrics for node_exporter: a compose volume
# mounted there takes this owner, so the unprivileged user can write it.
RUN useradd --create-home --uid 10001 crisis \
    && mkdir -p /var/lib/crisis/textfile && chown crisis /var/lib/crisis/textfile
USER crisis
WORKDIR /home/crisis

# 9108 worker metrics and health; 8080 (8443 with TLS) and 9109 the ingest service and its metrics.
EXPOSE 9108 8080 9109
CMD ["crisis", "worker"]
