#!/bin/sh
# As in the official nginx image: render every *.template under
# NGINX_ENVSUBST_TEMPLATE_DIR into NGINX_ENVSUBST_OUTPUT_DIR with envsubst,
# replacing only variables that are defined in the environment (and match
# NGINX_ENVSUBST_FILTER), so nginx's own $variables are left alone.
set -e

template_dir="${NGINX_ENVSUBST_TEMPLATE_DIR:-/etc/nginx/templates}"
suffix="${NGINX_ENVSUBST_TEMPLATE_SUFFIX:-.template}"
output_dir="${NGINX_ENVSUBST_OUTPUT_DIR:-/etc/nginx/conf.d}"
filter="${NGINX_ENVSUBST_FILTER:-}"

[ -d "$template_dir" ] || exit 0
if [ ! -w "$output_dir" ]; then
    echo "$0: ERROR: $template_dir exists, but $output_dir is not writable"
    exit 0
fi

defined=$(awk 'END { for (name in ENVIRON) print name }' < /dev/null \
    | grep -E "^${filter}" | sed 's/.*/${&}/' | tr '\n' ' ')

find "$template_dir" -follow -type f -name "*$suffix" -print | while read -r template; do
    relative="${template#"$template_dir"/}"
    output="$output_dir/${relative%"$suffix"}"
    mkdir -p "$(dirname "$output")"
    echo "$0: Running envsubst on $template to $output"
    envsubst "$defined" < "$template" > "$output"
done
