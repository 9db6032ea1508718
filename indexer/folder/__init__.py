"""The index folder's format: shards and manifest (store), manifest rules, heads and whitening as stored, verify."""
