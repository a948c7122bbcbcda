#!/usr/bin/env bash
# Create the bucket with versioning, the lifecycle rules and the policy, and the Kubernetes Secret
# the pods read credentials from. Credentials are taken from the environment, never from a file here.
#   AWS_PROFILE=admin NAMESPACE=ml bash infra/s3/setup.sh llava-vsd
set -euo pipefail
bucket=${1:?bucket name}
ns=${NAMESPACE:-default}
here=$(cd "$(dirname "$0")" && pwd)
aws s3api create-bucket --bucket "$bucket" ${AWS_REGION:+--create-bucket-configuration LocationConstraint=$AWS_REGION}
aws s3api put-bucket-versioning --bucket "$bucket" --versioning-configuration Status=Enabled
aws s3api put-bucket-lifecycle-configuration --bucket "$bucket" --lifecycle-configuration "file://$here/lifecycle.json"
sed "s/llava-vsd/$bucket/g" "$here/bucket-policy.json" > /tmp/policy.json
aws s3api put-bucket-policy --bucket "$bucket" --policy file:///tmp/policy.json
# The pipeline's own key pair (or use IRSA / workload identity and skip this Secret).
kubectl -n "$ns" create secret generic llava-vsd-s3 \
  --from-literal=AWS_ACCESS_KEY_ID="${PIPELINE_AWS_ACCESS_KEY_ID:?}" \
  --from-literal=AWS_SECRET_ACCESS_KEY="${PIPELINE_AWS_SECRET_ACCESS_KEY:?}" \
  --dry-run=client -o yaml | kubectl apply -f -
kubectl -n "$ns" create configmap llava-vsd-config --from-literal=AWS_REGION="${AWS_REGION:-us-east-1}" \
  ${AWS_ENDPOINT_URL:+--from-literal=AWS_ENDPOINT_URL=$AWS_ENDPOINT_URL} --dry-run=client -o yaml | kubectl apply -f -
# Ray token auth for the RayCluster (cluster/raycluster.yaml authOptions.secretName).
kubectl -n "$ns" create secret generic llava-vsd-ray-token --from-literal=auth_token="$(openssl rand -hex 32)" \
  --dry-run=client -o yaml | kubectl apply -f -
