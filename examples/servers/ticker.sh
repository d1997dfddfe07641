#!/bin/sh
# ticker: an example server for nm. Prints a timestamped line every 2 seconds, in the foreground,
# until it is stopped. nm stops a server with SIGTERM to its process group (SIGKILL after the
# server's stop_timeout); the trap makes that a clean exit with status 0.

trap 'echo "ticker stopping"; exit 0' TERM INT

echo "ticker started, pid $$"
while :; do
    echo "$(date '+%Y-%m-%dT%H:%M:%S%z') tick"
    # sleep in the background and wait for it, so the trap runs as soon as TERM arrives even if
    # only this shell (not its whole group) is signalled
    sleep 2 &
    wait $!
done
