# syntax=docker/dockerfile:1
# Duly image: one image, three roles (`duly migrate`, `duly worker`, `duly api`); see docker-compose.yml.

# --- builder: compilers live here only (durable-rules 2.0.28 builds its C extension from source)
FROM python:3.11-slim-bookworm AS builder

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

RUN apt-get update \
    && apt-get install -y --no-install-recommends gcc g++ build-essential \
    && rm -rf /var/lib/apt/lists/*

RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

WORKDIR /src
# The locked versions the suite was green with, hash-checked (README "Dependencies"); build
# isolation off so durable-rules builds with the pinned setuptools. A layer of its own: code
# changes do not reinstall the dependencies.
COPY requirements-build.lock requirements.lock ./
RUN pip install --require-hashes -r requirements-build.lock \
    && pip install --require-hashes --no-build-isolation -r requirements.lock

COPY pyproject.toml README.md ./
COPY domain/ domain/
COPY duly/ duly/
COPY workflows/ workflows/
COPY activities/ activities/
COPY rules/ rules/
COPY api/ api/
COPY notifications/ notifications/
COPY store/ store/
COPY services/ services/
RUN pip install --no-deps --no-build-isolation . \
    && pip check \
    && duly --help > /dev/null

# --- runtime: the venv only, no compilers, not root
FROM python:3.11-slim-bookworm AS runtime

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    DULY_API_HOST=0.0.0.0 \
    DULY_DATA_DIR=/app/.duly

RUN groupadd --system --gid 10001 duly \
    && useradd --system --uid 10001 --gid duly --home-dir /app --create-home --shell /usr/sbin/nologin duly

# Same base image in both stages, so the venv's interpreter symlinks still resolve.
COPY --from=builder /opt/venv /opt/venv

WORKDIR /app
USER 10001:10001

EXPOSE 8000
ENTRYPOINT ["duly"]
CMD ["api"]
