# The node image: `ctnode serve` (DICOM SCP, STOW-RS, admin API, dashboard) and CPU workers
# (routing, delivery). No torch: `pip install .` without the `model` extra keeps it small.
# Build from the repository root:  docker build -f deploy/node.Dockerfile -t ct-ai-node/node .
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 \
    CTNODE_CONFIG=/etc/ct-ai-node/node.yaml
RUN useradd --system --uid 10001 --home-dir /var/lib/ct-ai-node ctnode \
 && mkdir -p /var/lib/ct-ai-node /etc/ct-ai-node /opt/ct-ai-node \
 && chown ctnode:ctnode /var/lib/ct-ai-node
WORKDIR /opt/ct-ai-node
COPY pyproject.toml README.md ./
COPY dicom_node ./dicom_node
COPY inference ./inference
COPY plugins ./plugins
COPY worker ./worker
COPY configs ./configs
RUN pip install ".[postgres]"
COPY configs/routing.yaml /etc/ct-ai-node/routing.yaml

USER ctnode
# 11112: DICOM SCP (C-STORE in); 8990: admin API, dashboard, /metrics, STOW-RS
EXPOSE 11112 8990
HEALTHCHECK --interval=30s --timeout=5s CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8990/healthz', timeout=4)"]
CMD ["ctnode", "serve"]
