# agentplatform server image: agents and templates come from the project folder.
FROM python:3.13-slim
WORKDIR /app
ENV PYTHONUNBUFFERED=1 AGENTS_DIR=/app/agents DATABASE_URL=sqlite:////data/agentplatform.db
COPY pyproject.toml README.md ./
COPY agentplatform ./agentplatform
RUN pip install --no-cache-dir .
COPY agents ./agents
COPY templates ./templates
COPY static ./static
RUN mkdir -p /data
EXPOSE 8000
HEALTHCHECK CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz')"
CMD ["agentplatform", "serve", "--host", "0.0.0.0", "--port", "8000"]
