#!/command/with-contenv sh
# shellcheck shell=sh
# The container's main program (ENTRYPOINT ["/init", "/opt/hermes-tasks/main-wrapper.sh"]),
# as in hermes-agent's image: `docker run IMAGE dashboard` runs `hermes dashboard` as the
# service user, `docker run IMAGE gateway run` the legacy command (hermes itself hands it to
# s6 and waits). No command: the container is a pure supervisor of the gateway slots.
# The boot (hermes-tasks-boot) reads this command from the process list to pick the role:
# dashboard publishes no gateway slot, `gateway run` seeds the default gateway `running`.
set -eu

if [ "$#" -eq 0 ]; then
    # Nothing to run: stay up while s6 supervises the gateways (the container stops with us).
    exec sleep infinity
fi
if [ "$(id -u)" != 0 ]; then
    exec hermes "$@"  # docker run --user: already unprivileged
fi
exec /command/s6-setuidgid hermes hermes "$@"
