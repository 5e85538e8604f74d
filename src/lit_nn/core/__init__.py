"""What every other package shares: the user-error type and the names runs are recorded under."""
