FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY libs libs
COPY services services
COPY infra infra
COPY schemas schemas
RUN pip install --no-cache-dir .
ENTRYPOINT []
CMD ["xget", "--help"]
