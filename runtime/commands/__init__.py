"""One module per ``lmstep`` subcommand; each defines ``register(app)``."""
