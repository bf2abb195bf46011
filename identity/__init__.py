"""Machine identity: Ed25519 keys, did:peaq and did:key, DID documents, the DID registry, the keystore and the signed envelope.

Depends on nothing else in this project (see ARCHITECTURE.md)."""
