# syntax=docker/dockerfile:1
# goldtrail server image: multi-stage, slim, non-root. Settings come from the environment
# (PROTOCOL.md section 8); keys and the database live in the /data volume, never in the image.

FROM python:3.11-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY ledger ./ledger
COPY api ./api
COPY clients ./clients
RUN python -m venv /opt/goldtrail \
 && /opt/goldtrail/bin/pip install --no-compile . \
 && /opt/goldtrail/bin/pip check

FROM python:3.11-slim-bookworm AS runtime
RUN groupadd --system --gid 10001 goldtrail \
 && useradd --system --uid 10001 --gid goldtrail --home-dir /data --shell /usr/sbin/nologin goldtrail \
 && mkdir -p /data && chown goldtrail:goldtrail /data
COPY --from=build /opt/goldtrail /opt/goldtrail
ENV PATH=/opt/goldtrail/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    GOLDTRAIL_DATABASE_URL=sqlite:////data/goldtrail.db \
    GOLDTRAIL_LOG_KEY_FILE=/data/goldtrail-log.key
USER 10001:10001
WORKDIR /data
VOLUME ["/data"]
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
  CMD ["python", "-c", "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4).status == 200 else 1)"]
ENTRYPOINT ["goldtrail"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8000"]
