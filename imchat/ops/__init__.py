"""Operations: the command line, the infrastructure check, migrations and the local test services."""
