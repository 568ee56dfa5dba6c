//! What kind of failure an error is, in words every layer shares.
//!
//! Domain modules return their own typed errors and say which [`ErrorKind`]
//! each one is; they never name a status code. The transport layer has the
//! one table from a kind to an HTTP status and a gRPC code
//! (`edge::error::status_of`), so a new kind does not compile until someone
//! picks both.

/// The kinds of failure a caller can act on differently.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The request is malformed or names something impossible: fix it, do not retry.
    Invalid,
    /// No credentials, or unknown ones.
    Unauthenticated,
    /// Valid credentials without the permission asked.
    Forbidden,
    /// A database, table, token or path that does not exist.
    NotFound,
    /// Something to create exists already.
    AlreadyExists,
    /// The method is not served on this path.
    MethodNotAllowed,
    /// A request body past a configured size.
    TooLarge,
    /// A request body in an encoding the server does not read.
    UnsupportedEncoding,
    /// The client stopped sending, or sent too slowly.
    RequestTimeout,
    /// A quota (tables, columns, series) would be exceeded.
    LimitExceeded,
    /// Shed load or a dependency down: retry after a pause.
    Unavailable,
    /// The request needs more memory than the server leaves it.
    ResourcesExhausted,
    /// The server gave up on its own work in time.
    TimedOut,
    /// Valid, but not built.
    NotImplemented,
    /// A bug or corrupt state on the server's side.
    Internal,
}
