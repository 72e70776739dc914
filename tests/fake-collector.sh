#!/usr/bin/env bash
# A stand-in for an OpenTelemetry Collector in the agent's tests: `fake-collector.sh --config FILE`.
# Exits at once (status 3) when the config contains "fake-collector: crash"; otherwise runs until it
# is terminated.
config=""
while [ $# -gt 0 ]; do
  case "$1" in
    --config) config="$2"; shift 2 ;;
    *) shift ;;
  esac
done
[ -r "$config" ] || { echo "fake-collector: no readable config" >&2; exit 2; }
if grep -q "fake-collector: crash" "$config"; then
  echo "fake-collector: crash requested" >&2
  exit 3
fi
trap 'exit 0' TERM INT
while true; do sleep 0.2; done
