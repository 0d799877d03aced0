# Orthanc with the ct-ai-node plugin, from Debian's packages (orthanc-python embeds CPython 3.11,
# the plugin imports the project's venv: deploy/orthanc/README.md). Configuration is mounted at
# /etc/ct-ai-node/orthanc/ (docker-compose.yml: deploy/compose/orthanc.json + users.json).
# Build from the repository root:  docker build -f deploy/orthanc.Dockerfile -t ct-ai-node/orthanc .
FROM debian:bookworm-slim

ENV PIP_NO_CACHE_DIR=1 CTNODE_CONFIG=/etc/ct-ai-node/node.yaml
RUN apt-get update \
 && apt-get install -y --no-install-recommends orthanc orthanc-python orthanc-dicomweb python3-venv ca-certificates \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /opt/ct-ai-node
COPY pyproject.toml README.md ./
COPY dicom_node ./dicom_node
COPY inference ./inference
COPY plugins ./plugins
COPY worker ./worker
COPY configs ./configs
RUN python3 -m venv /opt/ct-ai-node/.venv && /opt/ct-ai-node/.venv/bin/pip install .
COPY deploy/orthanc/users.example.json /etc/ct-ai-node/orthanc/users.json

USER orthanc
# 4242: DICOM (C-STORE from scanners/PACS); 8042: REST + DICOMweb
EXPOSE 4242 8042
CMD ["/usr/sbin/Orthanc", "/etc/ct-ai-node/orthanc/"]
