#!/bin/sh
# The official redis image is compiled with protected mode off, so other
# containers on the network can connect without a password. Debian's
# redis-server has it on; turn it off the same way for every redis-server run
# (a config file, if given, must stay the first argument).
set -e
if [ "${1:-}" = "redis-server" ]; then
    shift
    if [ $# -gt 0 ] && [ "${1#-}" = "$1" ]; then
        conf=$1
        shift
        set -- redis-server "$conf" --protected-mode no "$@"
    else
        set -- redis-server --protected-mode no "$@"
    fi
fi
exec "$@"
