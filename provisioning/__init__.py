"""Gateway identity: the key pair, the CSR, certificate checks, install and rotation, and a small
lab CA for tests and labs (`provisioning/README.md`).

    keys     EC P-256 key generated on the gateway (mode 0600 from creation) and the CSR
    certs    check a certificate against the key, the gateway id and the CA; install atomically
    probe    one MQTT CONNECT over TLS: does the broker accept this identity, and why not
    labca    a throwaway CA for tests and labs (never for a fleet)
    ops      the `cert.renew`, `cert.install` and `cert.rollback` commands
    watch    the expiry watch: a `cert.expiring` event from 30 days before
"""
