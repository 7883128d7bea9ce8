# tokenward gateway image, built from this repository's source:
#
#     docker build -t tokenward .
#     docker compose up -d          # the gateway with Redis and PostgreSQL (compose.yaml)
#
# docs/operations.md, "Running in containers", says what to set and why.
FROM python:3.12-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# Install from the source tree (not from a package index), with the shared store and
# log drivers; the build tree is removed afterwards.
COPY pyproject.toml README.md /tmp/tokenward/
COPY src /tmp/tokenward/src
RUN pip install "/tmp/tokenward[redis,postgres]" \
    && rm -rf /tmp/tokenward \
    && useradd --system --uid 10001 --user-group --home-dir /var/lib/tokenward --no-create-home tokenward \
    && mkdir -p /etc/tokenward /var/lib/tokenward/journal \
    && chown -R tokenward:tokenward /var/lib/tokenward

# The default policy (Redis store, PostgreSQL log); compose.yaml mounts the same file
# from deploy/ so that it can be edited without a rebuild.
COPY deploy/policy.yaml /etc/tokenward/policy.yaml

# Unprivileged from here on. The decision log's journal lives under the working
# directory's journal/ (a volume in compose.yaml), owned by this user.
USER tokenward:tokenward
WORKDIR /var/lib/tokenward

EXPOSE 8080

HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/.tokenward/health', timeout=2)"]

ENTRYPOINT ["tokenward"]
# Listen on every interface of the container (the default, 127.0.0.1, is unreachable
# from outside it); the gateway's own log as JSON lines. The upstream comes from the
# policy's upstream.url or --upstream URL.
# ADMIN/LOG FLAGS: the admin listener (`--admin-port 9464 --admin-host 0.0.0.0`:
# Prometheus /metrics and the dashboard) needs TOKENWARD_ADMIN_TOKEN off loopback, so it
# is not in this default command; compose.yaml adds it (docs/observability.md).
CMD ["serve", "--policy", "/etc/tokenward/policy.yaml", "--host", "0.0.0.0", "--port", "8080", "--log-format", "json"]
