#!/bin/sh
# The official nginx image's entrypoint contract, for the stand-in: when the
# command is nginx, go through /docker-entrypoint.d/ in version order,
# sourcing executable *.envsh files (their exports reach the later scripts)
# and running executable *.sh files; then exec the command.
set -e

say() {
    [ -n "${NGINX_ENTRYPOINT_QUIET_LOGS:-}" ] || echo "$0: $*"
}

if [ "$1" = "nginx" ] || [ "$1" = "nginx-debug" ]; then
    for f in $(find /docker-entrypoint.d/ -follow -type f -print | sort -V); do
        case "$f" in
            *.envsh|*.sh)
                if [ ! -x "$f" ]; then
                    say "Ignoring $f, not executable"
                elif [ "${f%.envsh}" != "$f" ]; then
                    say "Sourcing $f"
                    . "$f"
                else
                    say "Launching $f"
                    "$f"
                fi
                ;;
            *) say "Ignoring $f" ;;
        esac
    done
    say "Configuration complete; ready for start up"
fi

exec "$@"
