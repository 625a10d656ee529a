# Least privilege for Stockade: read the tools' secrets, nothing else.
path "secret/data/tools/*" {
  capabilities = ["read"]
}
