# visit in a container: the web app on the embedded default model, on port 8050, for others to reach.
#
#   docker build -t visit .
#   docker run -p 8050:8050 visit                        # prints a token and a ready link in the log
#   docker run -p 8050:8050 -e VISIT_TOKEN=$(openssl rand -hex 24) visit
#
# The image runs the README's own set-up script (scripts/setup.sh) as an unprivileged user, and the default
# model is dequantised and cached at build time, so a container starts in seconds and needs no network.
# It runs under gunicorn (app.py) and binds 0.0.0.0, so every request needs the access token (visit/ui/access.py); the model box loads only
# the default model unless VISIT_MODELS / VISIT_ALLOW_LOCAL_MODELS / VISIT_ALLOW_DOWNLOADS say more.
FROM python:3.11-slim

# torch's CPU wheels (PyPI's Linux wheels pull the CUDA libraries, GBs the CPU app never uses)
ARG PIP_INDEX_URL=https://download.pytorch.org/whl/cpu
ARG PIP_EXTRA_INDEX_URL=https://pypi.org/simple

RUN useradd --create-home --uid 10001 --shell /usr/sbin/nologin visit
USER visit
WORKDIR /home/visit/app
ENV VISIT_CACHE_DIR=/home/visit/.cache/visit PYTHONUNBUFFERED=1

# the set-up script first (its inputs change rarely): it creates .venv and installs torch, the requirements,
# the default model's package and visit itself (editable, so the sources copied below are what runs)
COPY --chown=visit:visit requirements.txt requirements-dev.txt pyproject.toml README.md ./
COPY --chown=visit:visit scripts ./scripts
COPY --chown=visit:visit visit ./visit
RUN bash scripts/setup.sh \
 && .venv/bin/python -c "from visit.models.loading import default_checkpoint; print(default_checkpoint())" \
 && rm -rf /home/visit/.cache/pip
COPY --chown=visit:visit app.py ./
COPY --chown=visit:visit assets ./assets

ENV VISIT_HOST=0.0.0.0 VISIT_PORT=8050
EXPOSE 8050
# app.py serves under gunicorn (one worker process holds the model, request threads; visit/serving/gunicorn.py).
# `docker stop` sends SIGTERM: the pages are told and running jobs cancelled, and it stops within docker's 10 s.
STOPSIGNAL SIGTERM
# the one path the token gate leaves open answers "ok" and nothing else
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
  CMD [".venv/bin/python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/_visit/health' % os.environ.get('VISIT_PORT', '8050'), timeout=4)"]
CMD [".venv/bin/python", "app.py"]
