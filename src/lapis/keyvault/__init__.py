"""Lapis's key vault on the wire, and customer-managed keys on accounts.

    shapes.py   Key Vault's JSON (KeyBundle, KeyItem); no I/O
    routes.py   the Key Vault-shaped REST API under /vaults/{vault}/keys/...
    cmk.py      an account's properties.encryption: checked, applied (its data key
                re-wrapped), and followed when a key is rotated, disabled or enabled

The vault itself (keys, versions, wrapping) is lapis.crypto.vault.
"""
