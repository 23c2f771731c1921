# syntax=docker/dockerfile:1.7
# One image, several processes (web, worker, beat, the migrate hook): each runs in its own
# container, as the numeric non-root user 10001 the Helm chart also names.
#
# The base is pinned by tag AND digest: the tag says what it is, the digest (the multi-arch
# index of python:3.11.10-slim-bookworm, the last push of that tag) makes a re-pushed tag
# unable to change the image under us; Docker checks the digest and ignores the tag. To bump:
#   docker buildx imagetools inspect python:3.11.NN-slim-bookworm   # the "Digest:" line
# then write python:3.11.NN-slim-bookworm@sha256:<that digest> in BOTH FROM lines below (the
# same value: the runtime must match the interpreter the venv was built with), rebuild, and
# run `make deploy-check` (hadolint DL3006/DL3007 and checkov CKV_DOCKER_7 stay clean).
FROM python:3.11.10-slim-bookworm@sha256:840e180ebcc6e5c8efab209c43f5e40fd2af98cb49db5c7103c90539c56bb30e AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /build
COPY requirements.lock .
RUN python -m venv /opt/venv \
 && /opt/venv/bin/pip install --no-cache-dir --require-hashes -r requirements.lock
WORKDIR /app
COPY . .
# Static files are collected at build time (no write to the image at run time).
RUN DJANGO_ENV=development SECRET_KEY=collectstatic-only-not-a-secret \
    /opt/venv/bin/python manage.py collectstatic --noinput --verbosity 0

FROM python:3.11.10-slim-bookworm@sha256:840e180ebcc6e5c8efab209c43f5e40fd2af98cb49db5c7103c90539c56bb30e
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PATH="/opt/venv/bin:$PATH" \
    DJANGO_ENV=production LOG_FORMAT=json PROMETHEUS_MULTIPROC_DIR=/tmp/prometheus
RUN groupadd --system --gid 10001 app \
 && useradd --system --uid 10001 --gid 10001 --home-dir /app --shell /usr/sbin/nologin app
COPY --from=build /opt/venv /opt/venv
WORKDIR /app
# Code and static files belong to root and are read-only to the runtime user; only var/
# (the SQLite demo database, never used in production) and /tmp are writable.
COPY --from=build --chown=root:root /app /app
RUN mkdir -p /app/var && chown 10001:10001 /app/var
USER 10001:10001
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen(urllib.request.Request('http://127.0.0.1:8000/healthz', headers={'Host': os.environ.get('ALLOWED_HOSTS', 'localhost').split(',')[0]}), timeout=4)"]
ENTRYPOINT ["scripts/docker-entrypoint.sh"]
# No secrets in the image: SECRET_KEY, DATABASE_URL, STRIPE_* come from the environment or
# the mounted secret files at run time.
CMD ["gunicorn", "config.wsgi", "-c", "python:ops.gunicorn_conf"]
