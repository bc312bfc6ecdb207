# agentplatform server image: agents and templates come from the project folder.
FROM python:3.13-slim
WORKDIR /app
ENV PYTHONUNBUFFERED=1 AGENTS_DIR=/app/agents DATABASE_URL=sqlite:////data/agentplatform.db
COPY pyproject.toml setup.py README.md ./
COPY agentplatform ./agentplatform
# A C compiler only for the install, to build the resampler's kernel (setup.py); the
# image checks it was built, since without it calls would run on the slower NumPy path.
RUN apt-get update && apt-get install -y --no-install-recommends gcc libc6-dev \
 && pip install --no-cache-dir . \
 && apt-get purge -y --auto-remove gcc libc6-dev && rm -rf /var/lib/apt/lists/* \
 && cd / && python -c "import agentplatform.audio._polyphase"
COPY agents ./agents
COPY templates ./templates
COPY static ./static
RUN mkdir -p /data
EXPOSE 8000
HEALTHCHECK CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz')"
CMD ["agentplatform", "serve", "--host", "0.0.0.0", "--port", "8000"]
