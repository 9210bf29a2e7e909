"""The package's exceptions. Their messages never carry secret values."""


class SetupError(Exception):
    """Something the user configures is wrong or missing: flags, config, secrets, jars."""


class ConfigError(SetupError):
    """The configuration could not be loaded or is invalid."""


class SecretError(SetupError):
    """A secret is missing or its backend cannot be reached."""


class DatabaseConfigError(SetupError):
    """The connection string cannot be used."""


class SourceConfigError(SetupError):
    """The Kafka source is not configured completely."""


class SparkSetupError(SetupError):
    """The Spark session cannot be built as configured."""


class DatabaseError(Exception):
    """The database refused, failed or disagrees with what the package expects."""


class RecreatedTopicError(SourceConfigError):
    """A topic's offsets went back below what the offset ledger committed: it was recreated."""
