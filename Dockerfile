# One image per backend (build arg BACKEND=rq|arq|celery): the project plus that backend's pinned
# requirements, running the supervisor that starts workers for `retrybench run --external-workers`.
FROM python:3.12-slim
ARG BACKEND=rq
WORKDIR /app
COPY requirements/ requirements/
RUN pip install --no-cache-dir -r requirements/${BACKEND}.txt
COPY implementations/ implementations/
COPY harness/ harness/
ENV PYTHONPATH=/app PYTHONUNBUFFERED=1 RETRYBENCH_BACKEND=${BACKEND} \
    RETRYBENCH_REDIS_URL=redis://redis:6379/0
# Not root (deploy/kubernetes runs it with runAsNonRoot and a read-only root filesystem; /tmp is writable there).
ENV PYTHONDONTWRITEBYTECODE=1 HOME=/tmp
USER 10001:10001
# SIGTERM (docker stop) stops the workers warm, then the supervisor exits.
CMD ["python", "-m", "implementations.processes.external"]
