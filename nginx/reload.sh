#!/bin/sh
# Re-render the config and reload nginx without dropping connections.
# `make scale` runs this inside the nginx container after scaling the app
# service; it is only needed on nginx builds without `server ... resolve`.
set -eu
. /docker-entrypoint.d/19-windsock-upstream.envsh
# shellcheck disable=SC2016  # the names are for envsubst, not the shell
envsubst '${NGINX_PORT} ${WINDSOCK_RESOLVER} ${WINDSOCK_UPSTREAM} ${WINDSOCK_STATIC} ${WINDSOCK_CONN_PER_IP}' \
    < /etc/nginx/templates/windsock.conf.template > /etc/nginx/conf.d/windsock.conf
nginx -t -q
nginx -s reload
