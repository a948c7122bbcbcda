#!/usr/bin/env bash
# Create the bucket (versioning, public access blocked, lifecycle, policy), the IAM roles the pods
# assume through IRSA, and the ConfigMap and Ray token Secret the pods read. No credential is
# written to a file here or passed to a pod as an environment variable.
#   AWS_PROFILE=admin NAMESPACE=ml OIDC_PROVIDER=oidc.eks.us-east-1.amazonaws.com/id/EXAMPLE \
#     bash infra/s3/setup.sh llava-vsd
# OIDC_PROVIDER is the cluster's IAM OIDC provider (EKS: `aws eks describe-cluster --query
# cluster.identity.oidc.issuer`, without https://). Without it the two roles are not created here.
# S3 stores without web identity (MinIO, other clouds): set S3_CREDENTIALS_DIR to a folder holding
# trainer.credentials and annotator.credentials (AWS shared-credentials files, one key pair per
# role) and switch the pods to the mounted file as infra/README.md shows.
set -euo pipefail
bucket=${1:?bucket name}
ns=${NAMESPACE:-default}
here=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
account=${ACCOUNT_ID:-$(aws sts get-caller-identity --query Account --output text)}

aws s3api create-bucket --bucket "$bucket" ${AWS_REGION:+--create-bucket-configuration LocationConstraint=$AWS_REGION}
aws s3api put-bucket-versioning --bucket "$bucket" --versioning-configuration Status=Enabled
aws s3api put-public-access-block --bucket "$bucket" --public-access-block-configuration \
  BlockPublicAcls=true,IgnorePublicAcls=true,BlockPublicPolicy=true,RestrictPublicBuckets=true
aws s3api put-bucket-lifecycle-configuration --bucket "$bucket" --lifecycle-configuration "file://$here/lifecycle.json"

# One role per job, each trusted by exactly one service account (cluster/serviceaccount-*.yaml).
if [ -n "${OIDC_PROVIDER:-}" ]; then
  for role in llava-vsd-trainer llava-vsd-annotator; do
    sed -e "s|ACCOUNT_ID|$account|g" -e "s|OIDC_PROVIDER|$OIDC_PROVIDER|g" -e "s|NAMESPACE|$ns|g" \
        -e "s|SERVICE_ACCOUNT|$role|g" "$here/irsa-trust-policy.json" > "$tmp/trust-$role.json"
    aws iam create-role --role-name "$role" --assume-role-policy-document "file://$tmp/trust-$role.json" >/dev/null \
      || aws iam update-assume-role-policy --role-name "$role" --policy-document "file://$tmp/trust-$role.json"
  done
fi
# The policy names the roles (llava-vsd-trainer, llava-vsd-annotator, ml-data-consumers,
# llava-vsd-admin): S3 refuses it until they exist. It alone grants S3 access; the roles need no
# S3 permissions of their own, and its Deny statements hold even if someone adds some.
sed -e "s|arn:aws:s3:::llava-vsd|arn:aws:s3:::$bucket|g" -e "s|123456789012|$account|g" \
  "$here/bucket-policy.json" > "$tmp/policy.json"
aws s3api put-bucket-policy --bucket "$bucket" --policy "file://$tmp/policy.json"

kubectl -n "$ns" create configmap llava-vsd-config \
  --from-literal=AWS_REGION="${AWS_REGION:-us-east-1}" \
  --from-literal=ANNOTATOR_ROLE_ARN="arn:aws:iam::$account:role/llava-vsd-annotator" \
  --from-literal=TRAINER_ROLE_ARN="arn:aws:iam::$account:role/llava-vsd-trainer" \
  ${AWS_ENDPOINT_URL:+--from-literal=AWS_ENDPOINT_URL=$AWS_ENDPOINT_URL} --dry-run=client -o yaml | kubectl apply -f -
if [ -n "${S3_CREDENTIALS_DIR:-}" ]; then
  for role in trainer annotator; do
    kubectl -n "$ns" create secret generic "llava-vsd-s3-$role" --from-file=credentials="$S3_CREDENTIALS_DIR/$role.credentials" \
      --dry-run=client -o yaml | kubectl apply -f -
  done
fi
# Ray token auth for the RayCluster (cluster/raycluster.yaml authOptions.secretName).
kubectl -n "$ns" create secret generic llava-vsd-ray-token --from-literal=auth_token="$(openssl rand -hex 32)" \
  --dry-run=client -o yaml | kubectl apply -f -
