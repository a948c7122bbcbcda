#!/usr/bin/env bash
# Release the cluster image and pin it, by digest, in the manifests the cluster runs.
#   bash infra/release.sh pin-base                 # once, and to move to a new Ray base: resolve the
#                                                  # Dockerfile's base tag to a digest -> infra/ray-base.digest (commit it)
#   bash infra/release.sh build 0.1.0-gpu          # build on the pinned base, push, then `render` with the pushed digest
#   bash infra/release.sh render sha256:<digest> [out_dir]   # cluster/*.yaml with the digest filled in -> out_dir
#                                                  # (default dist/cluster), validated with --release
#   kubectl apply -f dist/cluster/
# The committed manifests name the image ghcr.io/llava-vsd/llava-vsd@${LLAVA_VSD_IMAGE_DIGEST}: applied
# unrendered they fail to pull instead of running a tag, and `cluster/validate.py --release` refuses them.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
image=${IMAGE:-ghcr.io/llava-vsd/llava-vsd}
python=${PYTHON:-python3}
digest_re='^sha256:[0-9a-f]{64}$'
base=$(sed -n 's/^FROM \([^@ ]*\)@.*/\1/p' "$here/Dockerfile" | head -1)

check_digest() {  # refuse anything that is not exactly one sha256 digest
  [[ "$1" =~ $digest_re ]] || { echo "not a sha256 digest: '$1'" >&2; exit 2; }
}

case "${1:-}" in
  pin-base)
    digest=$(docker buildx imagetools inspect "$base" --format '{{json .Manifest}}' \
      | "$python" -c 'import json, sys; print(json.load(sys.stdin)["digest"])')
    check_digest "$digest"
    echo "$digest" > "$here/ray-base.digest"
    echo "$base@$digest -> infra/ray-base.digest (commit it)"
    ;;
  build)
    tag=${2:?image tag, e.g. 0.1.0-gpu}
    [ -f "$here/ray-base.digest" ] || { echo "infra/ray-base.digest missing: run '$0 pin-base' first" >&2; exit 2; }
    base_digest=$(tr -d '[:space:]' < "$here/ray-base.digest")
    check_digest "$base_digest"
    meta=$(mktemp)
    trap 'rm -f "$meta"' EXIT
    docker buildx build -f "$here/Dockerfile" --build-arg RAY_BASE_DIGEST="$base_digest" \
      -t "$image:$tag" --push --metadata-file "$meta" "$repo"
    digest=$("$python" -c 'import json, sys; print(json.load(open(sys.argv[1]))["containerimage.digest"])' "$meta")
    "$0" render "$digest"
    ;;
  render)
    digest=${2:?sha256:<digest> of the pushed image}
    out=${3:-$repo/dist/cluster}
    check_digest "$digest"
    mkdir -p "$out"
    for manifest in "$repo"/cluster/*.yaml; do
      sed "s|$image@\${LLAVA_VSD_IMAGE_DIGEST}|$image@$digest|g" "$manifest" > "$out/$(basename "$manifest")"
    done
    "$python" "$repo/cluster/validate.py" --release "$out"/*.yaml
    echo "rendered $image@$digest into $out"
    ;;
  *)
    sed -n '2,10p' "$0" >&2
    exit 2
    ;;
esac
