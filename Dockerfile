# One image for every process of the referral assistant (README "Containers,
# systemd and Kubernetes"). The default command is the web service; compose.yaml
# and deploy/k8s/ run the others from this same image with their own command:
#
#   web      python -m bot.web                      (the default CMD, HOST:WEB_PORT)
#   rasa     python -m bot.rasa_ext run --model models --endpoints endpoints.production.yml
#              --credentials credentials.yml --interface 0.0.0.0 --port 5005
#   actions  python -m actions --actions actions --port 5055   (binds SANIC_HOST)
#   migrate  deploy/migrate.sh                      (once per release, before the others)
#
# Build:  docker build -t referral-assistant:0.1.0 .
#
# The tag is pinned; pin the digest too (python:3.10.18-slim-bookworm@sha256:...)
# where the registry can be reached. Bookworm: one wheel in constraints.txt
# needs glibc 2.34.
FROM python:3.10.18-slim-bookworm

# Numeric ids, so Kubernetes can check runAsNonRoot without reading /etc/passwd.
RUN groupadd --system --gid 10001 referral \
 && useradd --system --uid 10001 --gid referral --home-dir /home/referral --create-home \
      --shell /usr/sbin/nologin referral

WORKDIR /opt/referral-assistant
ENV PATH=/opt/referral-assistant/.venv/bin:$PATH \
    HOME=/home/referral \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    RASA_TELEMETRY_ENABLED=false

# Dependencies first, so a change to the code does not install them again. As
# the Makefile does: the sentence encoder by its hash, then everything at the
# versions in constraints.txt. The install is editable (-e) on purpose:
# bot.config.PROJECT_ROOT must be this folder, where config.yml, domain.yml,
# data/ and models/ are; a copy in site-packages would look for them there.
# The empty packages stand in for the code until it is copied below.
COPY constraints.txt pyproject.toml ./
RUN python -m venv .venv \
 && sed -n 's/^\([^#][^ ]*==[^ ]*\)  *# *sha256:\([0-9a-f]\{64\}\)$/\1 --hash=sha256:\2/p' \
      constraints.txt > /tmp/hashed-requirements.txt \
 && pip install --no-cache-dir --no-deps --require-hashes -r /tmp/hashed-requirements.txt \
 && mkdir bot actions && touch README.md bot/__init__.py actions/__init__.py \
 && pip install --no-cache-dir -c constraints.txt -e . \
 && rm -rf bot actions README.md /tmp/hashed-requirements.txt

COPY . .
# The crisis detector's heads and the Rasa model are trained here, once, so
# every container of a release answers with the same model. Rasa's training
# cache (.rasa/) is not needed afterwards. The code stays owned by root: the
# processes can read it, not change it.
RUN referral-assistant train \
 && rm -rf .rasa var \
 && python -m compileall -q bot actions \
 && mkdir -p var \
 && chown referral:referral var

USER 10001:10001
# Rasa writes its telemetry setting into $HOME at first start; written now,
# a read-only root file system has nothing to write.
RUN rasa telemetry disable

# HOST and SANIC_HOST: each container has its own network namespace; which
# ports other containers and the outside reach is set by compose.yaml (only
# `web` is published) and deploy/k8s/network-policy.yaml.
# One BLAS thread per process (as bot/runner.py sets): the crisis encoder's
# matrices are small, and more threads only spin on the other cores.
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    OPENBLAS_NUM_THREADS=1 \
    OMP_NUM_THREADS=1 \
    LOG_FORMAT=json \
    REFERRAL_PROFILE=production \
    REFERRAL_VAR_DIR=/opt/referral-assistant/var \
    HOST=0.0.0.0 \
    WEB_PORT=8080 \
    SANIC_HOST=0.0.0.0 \
    ACTION_PORT=5055

# web, rasa, actions
EXPOSE 8080 5005 5055

# For the default command (web). Not /healthz: that also reports on Rasa and the
# action server (503 "degraded"), and the web service is still doing its job
# then, telling people the service is unavailable and where to get help.
HEALTHCHECK --interval=15s --timeout=3s --start-period=60s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/api/openapi.json' % os.environ.get('WEB_PORT', '8080'), timeout=2)"]

CMD ["python", "-m", "bot.web"]
