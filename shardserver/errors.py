"""DynamoDB's error types as one exception hierarchy.

Handlers raise these; only the protocol layer turns them into the wire
envelope (`{"__type": ..., "message": ...}` with the HTTP status).  Nothing
here knows about sockets or JSON.
"""

PREFIX = "com.amazonaws.dynamodb.v20120810#"
COYOTE = "com.amazon.coral.service#"


class DynamoDBError(Exception):
    """Base of every error the API returns to a client."""

    type_name = "InternalServerError"
    type_prefix = PREFIX
    status = 400
    retryable = False

    def __init__(self, message: str = ""):
        super().__init__(message)
        self.message = message

    @property
    def wire_type(self) -> str:
        return self.type_prefix + self.type_name

    @property
    def message_key(self) -> str:
        """The body member that carries the message."""
        return "message"

    def extra_fields(self) -> dict:
        """Additional top-level fields of the error body (e.g. Item)."""
        return {}


class ValidationException(DynamoDBError):
    type_name = "ValidationException"
    type_prefix = COYOTE


class SerializationException(DynamoDBError):
    type_name = "SerializationException"
    type_prefix = COYOTE


class UnknownOperationException(DynamoDBError):
    type_name = "UnknownOperationException"
    type_prefix = COYOTE


class ResourceNotFoundException(DynamoDBError):
    type_name = "ResourceNotFoundException"


class ResourceInUseException(DynamoDBError):
    type_name = "ResourceInUseException"


class TableNotFoundException(DynamoDBError):
    """The error of the backup and export operations for a table that does not exist
    (they do not answer ResourceNotFoundException)."""

    type_name = "TableNotFoundException"


class PolicyNotFoundException(DynamoDBError):
    type_name = "PolicyNotFoundException"


class GlobalTableNotFoundException(DynamoDBError):
    type_name = "GlobalTableNotFoundException"


class ExportNotFoundException(DynamoDBError):
    type_name = "ExportNotFoundException"


class ImportNotFoundException(DynamoDBError):
    type_name = "ImportNotFoundException"


class LimitExceededException(DynamoDBError):
    type_name = "LimitExceededException"


class ConditionalCheckFailedException(DynamoDBError):
    type_name = "ConditionalCheckFailedException"

    def __init__(self, message: str = "The conditional request failed", item: dict | None = None):
        super().__init__(message)
        self.item = item

    @property
    def message_key(self) -> str:
        # DynamoDB capitalises the member when the body also carries the old item
        # (ReturnValuesOnConditionCheckFailure=ALL_OLD); SDKs read either spelling.
        return "message" if self.item is None else "Message"

    def extra_fields(self) -> dict:
        return {"Item": self.item} if self.item is not None else {}


class DuplicateItemException(DynamoDBError):
    """PartiQL INSERT of a primary key that already exists."""

    type_name = "DuplicateItemException"


class TransactionCanceledException(DynamoDBError):
    type_name = "TransactionCanceledException"

    def __init__(self, message: str, reasons: list | None = None):
        super().__init__(message)
        self.reasons = reasons or []

    def extra_fields(self) -> dict:
        return {"CancellationReasons": self.reasons}


class TransactionConflictException(DynamoDBError):
    """A single-item write met an item that a transaction is writing right now."""

    type_name = "TransactionConflictException"


class TransactionInProgressException(DynamoDBError):
    """A retry of a TransactWriteItems whose first attempt (same token) is still running."""

    type_name = "TransactionInProgressException"


class IdempotentParameterMismatchException(DynamoDBError):
    type_name = "IdempotentParameterMismatchException"


class ItemCollectionSizeLimitExceededException(DynamoDBError):
    type_name = "ItemCollectionSizeLimitExceededException"


class ProvisionedThroughputExceededException(DynamoDBError):
    type_name = "ProvisionedThroughputExceededException"
    retryable = True


class RequestLimitExceeded(DynamoDBError):
    type_name = "RequestLimitExceeded"
    retryable = True


class MissingAuthenticationTokenException(DynamoDBError):
    type_name = "MissingAuthenticationTokenException"
    type_prefix = COYOTE


class UnrecognizedClientException(DynamoDBError):
    type_name = "UnrecognizedClientException"
    type_prefix = COYOTE


class InvalidSignatureException(DynamoDBError):
    type_name = "InvalidSignatureException"
    type_prefix = COYOTE


class AccessDeniedException(DynamoDBError):
    type_name = "AccessDeniedException"
    type_prefix = COYOTE


class InternalServerError(DynamoDBError):
    type_name = "InternalServerError"
    status = 500
    retryable = True


class ServiceUnavailableException(DynamoDBError):
    """A shard is restarting or unreachable: the client should retry."""

    type_name = "ServiceUnavailable"
    type_prefix = COYOTE
    status = 503
    retryable = True


class IncompleteSignatureException(DynamoDBError):
    type_name = "IncompleteSignatureException"
    type_prefix = COYOTE


class ExpiredIteratorException(DynamoDBError):
    """DynamoDB Streams: a shard iterator older than 15 minutes."""

    type_name = "ExpiredIteratorException"


class TrimmedDataAccessException(DynamoDBError):
    """DynamoDB Streams: a position older than the stream's retention period (24 hours)."""

    type_name = "TrimmedDataAccessException"


# Backups and point-in-time recovery.

class TableAlreadyExistsException(DynamoDBError):
    type_name = "TableAlreadyExistsException"


class TableInUseException(DynamoDBError):
    type_name = "TableInUseException"


class BackupNotFoundException(DynamoDBError):
    type_name = "BackupNotFoundException"


class BackupInUseException(DynamoDBError):
    type_name = "BackupInUseException"


class ContinuousBackupsUnavailableException(DynamoDBError):
    type_name = "ContinuousBackupsUnavailableException"


class PointInTimeRecoveryUnavailableException(DynamoDBError):
    type_name = "PointInTimeRecoveryUnavailableException"


class InvalidRestoreTimeException(DynamoDBError):
    type_name = "InvalidRestoreTimeException"
