"""The rules behind cluster/validate.py: schemas per kind, the pods each manifest makes, and the
security rules of issue 15 (pod security, tokens, credentials, network exposure, images, S3 roles)."""
