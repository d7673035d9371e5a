# One image for every Python process (services, relays, edge, the stream worker, the dev SMTP sink and SMS
# server); the command picks one.
FROM python:3.11-slim AS base
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 UV_COMPILE_BYTECODE=1 UV_LINK_MODE=copy
RUN pip install --no-cache-dir uv
WORKDIR /app
COPY pyproject.toml uv.lock ./
COPY gen gen
COPY services services
COPY edge edge
COPY streams streams
COPY tools tools
RUN uv sync --frozen --no-dev --all-packages
ENV PATH="/app/.venv/bin:$PATH"
RUN useradd --system --uid 10001 apptremind
# Writable state of the non-root user: the stream worker's data dir, the SMTP sink's certificate and mail.
# Named volumes mounted here start out owned by that user.
RUN mkdir -p /var/lib/apptremind/streams /var/lib/apptremind/smtp-certs /var/lib/apptremind/mail \
    && chown -R apptremind /var/lib/apptremind
USER apptremind
EXPOSE 50051 8080 9100 2525 8090
CMD ["apptremind-edge"]
