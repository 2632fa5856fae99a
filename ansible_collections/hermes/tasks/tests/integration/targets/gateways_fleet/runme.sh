#!/usr/bin/env bash
# The gateways role on a fleet (the inventory named by fleet_inventory in
# tests/integration/integration_config.yml):
# check mode predicts exactly what the run does, the run leaves each host with the slots
# Ansible resolved for it (its `expected_slots`), and a second run changes nothing.
set -eux
cd "$(dirname "$0")"
inventory=$(sed -n 's/^fleet_inventory: *//p' ../../integration_config.yml)
[ -n "$inventory" ]

# "host changed" for every host of a playbook run's recap
changes() {
  sed -n 's/^\([^ ]*\) *: ok=[0-9]* *changed=\([0-9]*\) .*failed=\([0-9]*\) .*/\1 \2 \3/p' "$1" | sort
}

ansible-playbook -i "$inventory" converge.yml --check | tee "$OUTPUT_DIR/check.out"
ansible-playbook -i "$inventory" converge.yml | tee "$OUTPUT_DIR/run.out"
[ "$(changes "$OUTPUT_DIR/check.out")" = "$(changes "$OUTPUT_DIR/run.out")" ]
changes "$OUTPUT_DIR/run.out" | awk '$2 == 0 || $3 != 0 { exit 1 }'

ansible-playbook -i "$inventory" verify.yml

for mode in --check ""; do
  # shellcheck disable=SC2086 # an empty mode is no argument
  ansible-playbook -i "$inventory" converge.yml $mode | tee "$OUTPUT_DIR/again.out"
  changes "$OUTPUT_DIR/again.out" | awk '$2 != 0 || $3 != 0 { exit 1 }'
done
