#!/bin/sh
# flaky: an example server for nm that always fails. It runs for 3 seconds, then exits with
# status 1, to show the restart policy at work: FAILED_RESTARTING while it waits restart_delay,
# and FAILED_NOT_RESTARTABLE once restart_max restarts within restart_interval are spent.

echo "flaky started, pid $$; failing in 3 s"
sleep 3
echo "flaky: something went wrong, exiting with status 1" >&2
exit 1
