#!/bin/sh
# shellcheck shell=sh
# Measure what hermes-agent reads and writes outside its profile directory (docs/ISOLATION.md).
# Run as root: trace.sh HERMES_BIN WORKDIR   (WORKDIR is created; nothing outside it is written)
# Environment: ISO_UID (default 20001) runs the gateway and owns profiles/alice (0700);
#              SVC_UID (default 20000) owns the root HERMES_HOME (0755), like the service user.
#              HOLD=SECONDS keeps the gateway up that long after the request (hermes's kanban
#              dispatcher first ticks about 30 s after start).
#              KANBAN=profile exports HERMES_KANBAN_HOME=<profile dir> (hermes's shared kanban
#              board, by default in the root HERMES_HOME, then lives in the profile).
#              PRIVATE=yes (with KANBAN=profile) also sets HOME=<profile dir> and
#              TMPDIR=<profile dir>/tmp: the environment docs/ISOLATION.md proposes.
# The gateway runs in its own network namespace (loopback only) under
# `strace -f -e trace=%file,kill,tkill,tgkill`, serves one API request, and is stopped with
# SIGTERM after hermes's planned-stop marker, as a deliberate stop by the tool would. Output: WORKDIR/trace.txt, WORKDIR/gateway.out.
set -eu
hermes=${1:?usage: trace.sh HERMES_BIN WORKDIR} w=${2:?usage: trace.sh HERMES_BIN WORKDIR}
iso_uid=${ISO_UID:-20001} svc_uid=${SVC_UID:-20000}
key=alice-key-0123456789abcdef   # hermes refuses API keys under 16 characters
rm -rf "${w:?}/home" && mkdir -p "$w/home/profiles/alice"
printf 'API_SERVER_ENABLED=true\nAPI_SERVER_KEY=%s\nAPI_SERVER_HOST=127.0.0.1\nAPI_SERVER_PORT=18642\n' \
  "$key" >"$w/home/profiles/alice/.env"
printf '{"desired_state": "running"}\n' >"$w/home/profiles/alice/gateway_state.json"
chown -R "$svc_uid:$svc_uid" "$w/home" && chmod 0755 "$w/home" "$w/home/profiles"
chown -R "$iso_uid:$iso_uid" "$w/home/profiles/alice" && chmod 0700 "$w/home/profiles/alice"
kanban_home=
if [ "${KANBAN:-}" = profile ]; then kanban_home=$w/home/profiles/alice; fi
gw_home=$w/home gw_tmp=/tmp
if [ "${PRIVATE:-}" = yes ]; then
  gw_home=$w/home/profiles/alice gw_tmp=$w/home/profiles/alice/tmp
  mkdir -m 0700 "$gw_tmp" && chown "$iso_uid:$iso_uid" "$gw_tmp"
fi
cd "$w/home"
# shellcheck disable=SC2016 # expanded by the inner shell
exec unshare --net sh -c '
  set -eu
  ip link set lo up
  # As the slot run script does: HERMES_HOME and HOME = the root home, cwd = it (PRIVATE
  # changes HOME and TMPDIR).
  env -i PATH=/usr/bin:/bin HERMES_HOME="$1" HOME="$8" TMPDIR="$9" HERMES_S6_SUPERVISED_CHILD=1 \
    HERMES_SUPERVISED_CHILD=1 HERMES_GATEWAY_MAX_STARTS=0 ${6:+HERMES_KANBAN_HOME="$6"} \
    strace -f -qq -e trace=%file,kill,tkill,tgkill -o "$2/trace.txt" \
    setpriv --reuid "$3" --regid "$3" --clear-groups -- "$4" -p alice gateway run --replace \
    >"$2/gateway.out" 2>&1 &
  tracer=$!
  i=0
  until curl -s -o /dev/null http://127.0.0.1:18642/health; do
    i=$((i + 1))
    if [ "$i" -ge 1200 ]; then echo "no API server after 120 s"; kill "$tracer"; exit 1; fi
    sleep 0.1
  done
  echo "health: $(curl -s http://127.0.0.1:18642/health)"
  echo "models: $(curl -s -H "Authorization: Bearer $5" http://127.0.0.1:18642/v1/models)"
  sleep "$7"
  gw=$(cat "/proc/$tracer/task/$tracer/children")  # setpriv execs hermes: the one child
  gw=${gw%% *}
  echo "stopping gateway pid $gw"
  # A deliberate stop (SPEC §15): hermes'"'"'s .gateway-planned-stop.json first, written as the
  # profile'"'"'s uid (the only uid that can write its 0700 directory), then SIGTERM.
  start=$(cut -d" " -f22 "/proc/$gw/stat")
  printf "{\"target_pid\": %s, \"target_start_time\": %s, \"stopper_pid\": %s, \"written_at\": \"%s\"}\n" \
    "$gw" "$start" "$$" "$(date -u +%Y-%m-%dT%H:%M:%S+00:00)" |
    setpriv --reuid "$3" --regid "$3" --clear-groups -- \
      sh -c "cat >\"\$1/.gateway-planned-stop.json\"" sh "$1/profiles/alice"
  kill -TERM "$gw"
  wait "$tracer" || true
' sh "$w/home" "$w" "$iso_uid" "$hermes" "$key" "$kanban_home" "${HOLD:-0}" \
  "$gw_home" "$gw_tmp"
