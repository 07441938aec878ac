"""The AdminApi operator: turns one AdminApi manifest into the guide's Deployment, Service and Secrets."""

GROUP = "aistreams.io"
VERSION = "v1alpha1"
PLURAL = "adminapis"
KIND = "AdminApi"
FIELD_MANAGER = "adminapi-operator"
