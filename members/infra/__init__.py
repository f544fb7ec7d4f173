"""Infrastructure every side uses: crash-safe writes, locks, folder transactions, the user-error type, field checks."""
