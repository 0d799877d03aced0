# The GPU worker image: `ctnode worker --queues inference-stat,inference,inference-shadow` with the model
# (`.[model]`: torch, MONAI). torch comes first from the CUDA wheel index (TORCH_INDEX_URL):
# pyproject pins torch==2.13.0, which the CUDA build (2.13.0+cuXXX) satisfies, so pip keeps it
# instead of fetching the CPU build. Run with the NVIDIA container runtime (docker-compose.yml).
# Build from the repository root:  docker build -f deploy/worker.Dockerfile -t ct-ai-node/worker .
FROM python:3.11-slim-bookworm

ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cu126
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 \
    CTNODE_CONFIG=/etc/ct-ai-node/node.yaml
RUN useradd --system --uid 10001 --home-dir /var/lib/ct-ai-node ctnode \
 && mkdir -p /var/lib/ct-ai-node /etc/ct-ai-node /opt/ct-ai-node \
 && chown ctnode:ctnode /var/lib/ct-ai-node
RUN pip install "torch==${TORCH_VERSION}" --index-url "${TORCH_INDEX_URL}"
WORKDIR /opt/ct-ai-node
COPY pyproject.toml README.md ./
COPY dicom_node ./dicom_node
COPY inference ./inference
COPY plugins ./plugins
COPY worker ./worker
COPY configs ./configs
RUN pip install ".[model,postgres]"
COPY configs/routing.yaml /etc/ct-ai-node/routing.yaml

USER ctnode
# Celery's warm shutdown on SIGTERM lets the running job finish (compose: stop_grace_period).
STOPSIGNAL SIGTERM
CMD ["ctnode", "worker", "--queues", "inference-stat,inference,inference-shadow", "--concurrency", "1"]
