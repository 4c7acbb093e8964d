# The harness's own image: `harness` with the locust extra, for `harness load` masters and
# `harness worker` processes on other hosts or pods (examples/kubernetes/).
#
#   docker build -t fallback-harness:0.1.0 .
#   docker run --rm -v harness-reports:/reports fallback-harness:0.1.0 run scenarios/regional-outage.yaml
#
# The shipped scenarios and the registry they reference are copied beside each other (the registry
# reference is relative to the scenario file), so the example above runs as written.
# Not in the image: the real gateways (LiteLLM, Portkey) and their configs under fixtures/, which the
# scenarios in scenarios/gateways/ need; build on this image and `harness setup-gateways` for those.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# A fixed uid, so a PodSecurity "restricted" policy (runAsNonRoot) can check it without a name lookup.
RUN groupadd --system --gid 10001 harness \
    && useradd --system --uid 10001 --gid harness --home-dir /home/harness --create-home harness

WORKDIR /opt/fallback-harness
# Only what the build needs first, so a change to a scenario does not reinstall the package.
COPY pyproject.toml README.md ./
COPY harness ./harness
# DL3013 asks for `pkg==version`: this installs the project itself, with the bounds of pyproject.toml.
# hadolint ignore=DL3013
RUN pip install ".[load]"

COPY scenarios ./scenarios
COPY policy ./policy

# Reports go to a volume; the run's private working folder (keys at run time, 0700, removed on exit)
# stays in the user's own state folder, never in the volume.
# `reports` (the default --report-dir, relative to the WORKDIR) is the volume too.
RUN mkdir -p /reports && chown harness:harness /reports && ln -s /reports reports
VOLUME ["/reports"]
ENV HARNESS_STATE_DIR=/home/harness/.local/state/fallback-harness

USER 10001:10001
# 5557: locust's master port (`harness load --master-bind 0.0.0.0:5557`).
EXPOSE 5557
ENTRYPOINT ["harness"]
CMD ["--help"]
