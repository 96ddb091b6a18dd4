#!/usr/bin/env bash
# Prints a line every second, like a tiny worker.
n=0
while true; do
  n=$((n + 1))
  echo "tick $n (pm_id $pm_id, instance $NODE_APP_INSTANCE)"
  sleep 1
done
