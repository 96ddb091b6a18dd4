#!/usr/bin/env bash
# A job that works a little and then says how it ended:
# exit 3 = all done, anything else = failed.
echo "job $pm_id working"
sleep "${JOB_SECONDS:-2}"
exit "${JOB_EXIT:-3}"
