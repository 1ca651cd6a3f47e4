"""Training losses. Every loss returns `(loss, logs)`: a scalar tensor to back-propagate and float logs."""
