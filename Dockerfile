# One image per backend (build arg BACKEND=rq|arq|celery): the project plus that backend's pinned requirements.
FROM python:3.11-slim
ARG BACKEND=rq
WORKDIR /app
COPY requirements/ requirements/
RUN pip install --no-cache-dir -U pip && pip install --no-cache-dir -r requirements/${BACKEND}.txt
COPY implementations/ implementations/
COPY harness/ harness/
ENV PYTHONPATH=/app PYTHONUNBUFFERED=1
# RETRYBENCH_CONFIG (the run's JSON config) comes from the environment; see README "docker compose".
CMD ["python", "-m", "implementations.worker", "--concurrency", "1"]
