"""The shared edge: configuration, secrets, errors, the command line, row shapes and the
Spark session. Everything else imports from here; this imports nothing above it."""
