"""What a person reads: human units (`units`), the live terminal dashboard (`dashboard`) and the
snapshot of a running agent both it and the local status page draw (`snapshot`)."""
