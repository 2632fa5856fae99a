# syntax=docker/dockerfile:1
#
# Production image for hermes-tasks: s6-overlay v3 as PID 1 (/init), one supervised hermes
# gateway per profile, slots published at every boot by /etc/cont-init.d/02-reconcile-profiles.
#
#   docker build -t hermes-tasks .
#   docker run -d --name hermes -v hermes-data:/opt/data hermes-tasks
#
# Needs BuildKit (COPY --chmod, RUN --mount). TARGETARCH is set by BuildKit; amd64 and arm64
# are supported.

# One base for every stage, pinned by tag (Debian 12, CPython 3.11: the combination
# hermes-agent 0.19.0 was measured on). Bump deliberately.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# ---------------------------------------------------------------------------------------------
# Stage 1: build this project's wheel. The build backend (hatchling) stays in this stage.
# ---------------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS build

WORKDIR /src
# Only what the wheel is made of (pyproject force-includes templates/ and inventory/), so a
# change to tests or docs does not invalidate this layer.
COPY pyproject.toml README.md ./
COPY hermes_tasks/ hermes_tasks/
COPY templates/ templates/
COPY inventory/ inventory/
RUN pip wheel --no-cache-dir --no-deps . -w /dist

# ---------------------------------------------------------------------------------------------
# Stage 2: the runtime image.
# ---------------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE}

LABEL org.opencontainers.image.title="hermes-tasks" \
      org.opencontainers.image.description="hermes gateways, one per profile, supervised by s6-overlay" \
      org.opencontainers.image.licenses="MIT"

# --- s6-overlay ------------------------------------------------------------------------------
# Pinned release; every tarball is checked against a pinned SHA-256 before it is unpacked, so a
# tampered or truncated download fails the build instead of producing an image.
# curl (not ADD) because ADD cannot retry and does not see TARGETARCH in its URL.
# The symlinks tarball adds /usr/bin/* links to the s6 tools; our own scripts still use the
# absolute /command/... paths (docker exec does not have /command on PATH).
ARG TARGETARCH
ARG S6_OVERLAY_VERSION=3.2.3.0
ARG S6_OVERLAY_NOARCH_SHA256=b720f9d9340efc8bb07528b9743813c836e4b02f8693d90241f047998b4c53cf
ARG S6_OVERLAY_X86_64_SHA256=a93f02882c6ed46b21e7adb5c0add86154f01236c93cd82c7d682722e8840563
ARG S6_OVERLAY_AARCH64_SHA256=0952056ff913482163cc30e35b2e944b507ba1025d78f5becbb89367bf344581
ARG S6_OVERLAY_SYMLINKS_SHA256=a60dc5235de3ecbcf874b9c1f18d73263ab99b289b9329aa950e8729c4789f0e

# curl and xz-utils are only needed to fetch and unpack s6-overlay, so they are removed again
# in the same layer; ca-certificates stays (the gateways talk TLS).
RUN set -eu; \
    arch="${TARGETARCH:-amd64}"; \
    case "${arch}" in \
        amd64) s6_arch=x86_64; s6_arch_sha256="${S6_OVERLAY_X86_64_SHA256}" ;; \
        arm64) s6_arch=aarch64; s6_arch_sha256="${S6_OVERLAY_AARCH64_SHA256}" ;; \
        *) echo "Unsupported TARGETARCH '${arch}': this image supports amd64 and arm64 only" >&2; exit 1 ;; \
    esac; \
    apt-get update; \
    apt-get install -y --no-install-recommends ca-certificates curl xz-utils; \
    base="https://github.com/just-containers/s6-overlay/releases/download/v${S6_OVERLAY_VERSION}"; \
    dl=/tmp/s6-overlay; \
    mkdir -p "${dl}"; \
    curl -fsSL --retry 3 -o "${dl}/noarch.tar.xz" "${base}/s6-overlay-noarch.tar.xz"; \
    curl -fsSL --retry 3 -o "${dl}/arch.tar.xz" "${base}/s6-overlay-${s6_arch}.tar.xz"; \
    curl -fsSL --retry 3 -o "${dl}/symlinks-noarch.tar.xz" "${base}/s6-overlay-symlinks-noarch.tar.xz"; \
    printf '%s  %s\n' "${S6_OVERLAY_NOARCH_SHA256}" "${dl}/noarch.tar.xz" > "${dl}/noarch.sha256"; \
    printf '%s  %s\n' "${s6_arch_sha256}" "${dl}/arch.tar.xz" > "${dl}/arch.sha256"; \
    printf '%s  %s\n' "${S6_OVERLAY_SYMLINKS_SHA256}" "${dl}/symlinks-noarch.tar.xz" > "${dl}/symlinks-noarch.sha256"; \
    sha256sum -c "${dl}/noarch.sha256"; \
    sha256sum -c "${dl}/arch.sha256"; \
    sha256sum -c "${dl}/symlinks-noarch.sha256"; \
    tar -C / -Jxpf "${dl}/noarch.tar.xz"; \
    tar -C / -Jxpf "${dl}/arch.tar.xz"; \
    tar -C / -Jxpf "${dl}/symlinks-noarch.tar.xz"; \
    rm -rf "${dl}"; \
    apt-get purge -y --auto-remove curl xz-utils; \
    rm -rf /var/lib/apt/lists/*; \
    test -x /init; \
    test -x /command/with-contenv

# --- s6-overlay behaviour --------------------------------------------------------------------
# S6_BEHAVIOUR_IF_STAGE2_FAILS=1: a failing cont-init script (in practice a reconcile that
# exits 1 or 2) prints "cont-init: warning: some scripts exited nonzero" and boot goes on.
#  - Not 0 (the default): a failed reconcile at boot must be visible in `docker logs`, next to
#    reconcile's own "failed:" lines and the failed rows in $HERMES_HOME/logs/container-boot.log.
#  - Not 2 (stop the container): reconcile exits 2 when one profile failed and the others were
#    published and are starting; stopping would take every healthy gateway down for one broken
#    profile. /run is rebuilt on every start, so the same failure recurs on every boot: with a
#    restart policy a broken volume becomes a boot loop, and a stopped container cannot be
#    inspected or repaired with `docker exec`. Kept running, the operator fixes the cause and
#    re-runs `hermes-tasks reconcile`, which is idempotent.
# S6_CMD_WAIT_FOR_SERVICES_MAXTIME=0 (the 3.2 default, stated so nobody "fixes" it): no overall
#    deadline for stage 2. The whole cont-init loop counts against it; a hit deadline fails the
#    s6-rc transition, so a long reconcile over many profiles would be cut off halfway and the
#    services after it never brought up. reconcile bounds its own waits (lock_timeout, s6-svwait
#    -t), so it cannot hang the boot forever.
ENV S6_BEHAVIOUR_IF_STAGE2_FAILS=1 \
    S6_CMD_WAIT_FOR_SERVICES_MAXTIME=0

# --- service user and data volume ------------------------------------------------------------
# uid/gid 10000 match the inventory's service_uid/service_gid. No -m: the home is the data
# volume, and the image must not seed dotfiles into it. /var/cache/hermes-tasks (root's, 0700,
# the inventory's render_cache_dir) keeps rendered scripts across container restarts, so a
# restarted container's boot does not import Jinja, and the parsed inventory (primed below),
# so no boot or status imports PyYAML; /run/service is wiped every time.
RUN groupadd -g 10000 hermes \
    && useradd -u 10000 -g 10000 -M -d /opt/data -s /bin/sh hermes \
    && mkdir -p /opt/data \
    && chown 10000:10000 /opt/data \
    && install -d -m 0700 /var/cache/hermes-tasks

# --- hermes-agent and hermes-tasks ------------------------------------------------------------
# One venv holds the gateway (hermes-agent with its `messaging` extra, pinned: without it there
# is no aiohttp, so no API server and no messaging platform) and this tool; its bin/ goes on PATH so
# `hermes` and `hermes-tasks` resolve for the run scripts and for `docker exec` alike. The wheel
# is bind-mounted from the build stage so it never lands in a layer. Loading the shipped
# inventory once primes the parsed-inventory cache: keyed by the bytes parsed and PyYAML's own,
# it still matches at every boot of this image, even the first. hermes_tasks.prime renders what
# every boot renders from the settings alone (the profiles' shared script formats, the
# registrar's slot) into the render cache, so a new container's first boot imports no Jinja;
# nothing is reconciled here. It runs as the boot's own interpreter path (hermes-tasks-boot's
# shebang): the registrar's run names that path, so another spelling of it would miss.
RUN --mount=type=bind,from=build,source=/dist,target=/tmp/dist \
    python -m venv /opt/hermes-tasks/venv \
    && /opt/hermes-tasks/venv/bin/pip install --no-cache-dir \
        "hermes-agent[messaging]==0.19.0" \
        /tmp/dist/*.whl \
    && /opt/hermes-tasks/venv/bin/hermes-tasks --help > /dev/null \
    && /opt/hermes-tasks/venv/bin/python -c "from hermes_tasks import inventory; inventory.load()" \
    && test -s /var/cache/hermes-tasks/.hermes-tasks.inventory \
    && "$(sed -n '1s/^#!//p' /opt/hermes-tasks/venv/bin/hermes-tasks-boot)" -m hermes_tasks.prime \
        > /dev/null \
    && test -s /var/cache/hermes-tasks/.hermes-tasks.cache \
    && /opt/hermes-tasks/venv/bin/python -c "import aiohttp" \
    && test -x /opt/hermes-tasks/venv/bin/hermes

ENV PATH="/opt/hermes-tasks/venv/bin:${PATH}" \
    HERMES_HOME=/opt/data \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1

# s6-overlay does not hand the image's PATH to what it runs: /init gives stage 2 (cont-init)
# and the whole supervision tree S6_GLOBAL_PATH (default /command:/usr/bin:/bin), and stage 0
# drops PATH from the saved container environment, so `with-contenv` cannot bring it back.
# Without this the gateway run scripts would not find `hermes` in the venv (the shipped
# inventory names it by name): "s6-applyuidgid: fatal: unable to exec hermes", restarted
# every second. Same directories as `docker exec` sees, /command first as s6-overlay has it.
ENV S6_GLOBAL_PATH="/command:${PATH}"

# --- boot wiring ------------------------------------------------------------------------------
# 01 hands a fresh root-owned volume to the service user (non-recursive, no symlinks);
# 02 runs `hermes-tasks reconcile`. They run as root, one at a time, in byte order.
COPY --chmod=0755 docker/cont-init.d/ /etc/cont-init.d/
# The main program: runs the container's command (`dashboard`, `gateway run`, …) as
# hermes-agent's image does; the boot reads that command to pick the container's role.
COPY --chmod=0755 docker/main-wrapper.sh /opt/hermes-tasks/main-wrapper.sh

VOLUME /opt/data
WORKDIR /opt/data

# Healthy when every gateway that should run here is ready and s6-svscan supervises them
# (`gateway.status --health`: one line per problem, exit 1). A gateway starts in 1.2-1.8 s and
# s6 restarts a crashed one after 1 s, so a 15 s interval with 3 retries reports a real
# failure within a minute without flapping on a restart; the start period covers a first boot
# that publishes and starts hundreds of gateways (checked every 2 s meanwhile, Docker 25+).
HEALTHCHECK --interval=15s --timeout=10s --start-period=120s --start-interval=2s --retries=3 \
    CMD ["/opt/hermes-tasks/venv/bin/hermes-tasks", "gateway.status", "--health"]

ENTRYPOINT ["/init", "/opt/hermes-tasks/main-wrapper.sh"]
# No command: /init runs stage 2, then the wrapper waits while s6 supervises the gateways
# until the container is stopped. A command is hermes's, as in hermes-agent's image:
# `docker run IMAGE dashboard` (no gateway slot here), `docker run IMAGE gateway run`.
# (A new ENTRYPOINT already drops the base image's CMD ["python3"]; the empty CMD states it.)
CMD []

# s6-overlay's stage 2 (cont-init, reconcile, s6-rc) needs root. Nothing long-running stays
# root: every gateway and logger run script drops to the service user with s6-setuidgid.
# DL3002 (last USER is root) is exactly this choice; DL3066 (non-numeric user) does not apply
# to root, which is uid 0 on every system.
# hadolint ignore=DL3002,DL3066
USER root
