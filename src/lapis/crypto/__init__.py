"""Encryption at rest: envelope encryption with a service key or customer-managed keys.

    envelope.py   seal / open: AES-256-GCM, values that name their data key (lapis:v1:...)
    kek.py        the service-managed key-encryption key, a 0600 file under LAPIS_HOME
    keyring.py    Keyring: data keys in the database, wrapped; the seal/open pair
    vault.py      Vault: Lapis's key vault (RSA keys, versions, enabled), wraps data keys
    fields.py     which column is sealed under which key and context; the upgrade step

The store (lapis.store.sql.SqlStore) builds one Keyring at open and is the
only reader and writer of sealed columns; everything above it sees plaintext.
The data plane never sees this package: its directory holds the account keys
opened, in memory only.
"""
