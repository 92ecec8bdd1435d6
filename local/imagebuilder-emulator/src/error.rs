//! Image Builder's errors as the restJson1 protocol carries them.

#[derive(Debug, thiserror::Error)]
pub(crate) enum ApiError {
    #[error("{0}")]
    InvalidRequest(String),
    /// The body is not JSON or a member has the wrong type: the protocol's own error.
    #[error("{0}")]
    Serialization(String),
    #[error("{0}")]
    InvalidVersionNumber(String),
    #[error("{0}")]
    InvalidParameter(String),
    #[error("{0}")]
    InvalidParameterCombination(String),
    #[error("{0}")]
    InvalidPaginationToken(String),
    #[error("{0}")]
    IdempotentParameterMismatch(String),
    #[error("{0}")]
    ResourceAlreadyExists(String),
    #[error("{0}")]
    ResourceInUse(String),
    #[error("{0}")]
    ResourceDependency(String),
    #[error("{0}")]
    ResourceNotFound(String),
    /// No operation has this method and path.
    #[error("{0}")]
    UnknownOperation(String),
}

impl ApiError {
    /// The code SDKs match on: botocore's `Error.Code`, aws-sdk-rust's `code()`.
    pub(crate) fn code(&self) -> &'static str {
        match self {
            Self::InvalidRequest(_) => "InvalidRequestException",
            Self::Serialization(_) => "SerializationException",
            Self::InvalidVersionNumber(_) => "InvalidVersionNumberException",
            Self::InvalidParameter(_) => "InvalidParameterException",
            Self::InvalidParameterCombination(_) => "InvalidParameterCombinationException",
            Self::InvalidPaginationToken(_) => "InvalidPaginationTokenException",
            Self::IdempotentParameterMismatch(_) => "IdempotentParameterMismatchException",
            Self::ResourceAlreadyExists(_) => "ResourceAlreadyExistsException",
            Self::ResourceInUse(_) => "ResourceInUseException",
            Self::ResourceDependency(_) => "ResourceDependencyException",
            Self::ResourceNotFound(_) => "ResourceNotFoundException",
            Self::UnknownOperation(_) => "UnknownOperationException",
        }
    }

    /// The model's `error.httpStatusCode`: every Image Builder client error is 400 except
    /// ResourceNotFoundException (404).
    pub(crate) fn status(&self) -> u16 {
        match self {
            Self::ResourceNotFound(_) | Self::UnknownOperation(_) => 404,
            _ => 400,
        }
    }
}
