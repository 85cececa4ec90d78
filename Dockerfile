# driftline: `docker build -t driftline .` (docker-compose.yml builds and runs it with
# Prometheus, Alertmanager and Grafana).
FROM python:3.11-slim
ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY core core
COPY monitor monitor
COPY checks checks
COPY skew skew
COPY explain explain
COPY retrain retrain
COPY dashboards dashboards
COPY bench bench
# The compiled kernels are built ahead of time (gcc links them; removed after), from /
# so that the installed package, not /app, gets the module. The demo folder exists (owned by
# driftline) before a named volume is mounted on it, so the volume starts writable by the
# unprivileged user.
RUN pip install . \
    && apt-get update && apt-get install -y --no-install-recommends gcc libc6-dev \
    && cd / && python -m core.kernel_build core.kernel_passes checks._cdf_kernels && cd /app \
    && apt-get purge -y gcc libc6-dev && apt-get autoremove -y && rm -rf /var/lib/apt/lists/* \
    && useradd --create-home driftline \
    && install -d -o driftline -g driftline /home/driftline/demo
USER driftline
WORKDIR /home/driftline
EXPOSE 9108
# In a container the service binds beyond loopback, so it requires a bearer token:
# DRIFTLINE_TOKEN, or `serve --token-file FILE` (docker-compose.yml reads a secret).
ENTRYPOINT ["driftline"]
CMD ["demo", "--serve", "--workdir", "/home/driftline/demo", "--host", "0.0.0.0", "--port", "9108"]
