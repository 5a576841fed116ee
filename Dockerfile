# Placeholder until the container issue: a serving image without torch.
FROM python:3.11-slim
RUN useradd --create-home --uid 10001 dnnzoo
WORKDIR /app
COPY pyproject.toml README.md ./
COPY dnnzoo dnnzoo
COPY serving serving
COPY protos protos
RUN pip install --no-cache-dir .
USER dnnzoo
EXPOSE 8001 8002
CMD ["dnnzoo", "serve", "--repository", "/models"]
