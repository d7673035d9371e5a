# One image for every Python process (services, relays, edge, stream processors); the command picks one.
FROM python:3.11-slim AS base
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 UV_COMPILE_BYTECODE=1 UV_LINK_MODE=copy
RUN pip install --no-cache-dir uv
WORKDIR /app
COPY pyproject.toml uv.lock ./
COPY gen gen
COPY services services
COPY edge edge
COPY tools tools
RUN uv sync --frozen --no-dev --all-packages
ENV PATH="/app/.venv/bin:$PATH"
RUN useradd --system --uid 10001 apptremind
USER apptremind
EXPOSE 50051 8080 9100
CMD ["apptremind-edge"]
