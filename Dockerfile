FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY monitor monitor
COPY checks checks
COPY skew skew
COPY explain explain
COPY retrain retrain
COPY dashboards dashboards
COPY bench bench
RUN pip install --no-cache-dir . && useradd --create-home driftline
USER driftline
WORKDIR /home/driftline
ENTRYPOINT ["driftline"]
CMD ["demo", "--workdir", "/home/driftline/demo"]
