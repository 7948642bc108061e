//! Every error a command can answer with. Messages never echo argument bytes: an argument may
//! hold anything, including NUL, and error replies must stay one clean line.

use crate::window::WindowError;
use thiserror::Error;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum CommandError {
    #[error("ERR wrong number of arguments for '{0}' command")]
    WrongArity(&'static str),
    #[error("ERR {0} must be a non-negative integer")]
    NotAnInteger(&'static str),
    #[error("ERR {0} is out of range (the maximum is 18446744073709551615)")]
    OutOfRange(&'static str),
    #[error("ERR syntax error: unknown option (expected {0})")]
    UnknownOption(&'static str),
    #[error(
        "ERR WINDOW must be a positive multiple of 60 milliseconds, at most 9223372036854775800"
    )]
    InvalidWindow,
    #[error(
        "ERR window mismatch: this key was created with WINDOW {existing} ms, not {requested} ms"
    )]
    WindowMismatch { existing: u64, requested: u64 },
    #[error("ERR numkeys must be between 1 and {0}")]
    NumKeys(usize),
    #[error("ERR syntax error: {0}")]
    Syntax(&'static str),
    #[error("ERR a window is ms (a positive multiple of 60) or a period: day, week or month, optionally with :<UTC offset minutes>, e.g. day:-480")]
    InvalidClock,
    #[error("ERR a packed scope is seven comma-separated values: window,rpm,itpm,otpm,cost_limit,cost_charge,concurrency")]
    PackedScope,
    #[error("ERR LEASE must be a positive number of milliseconds")]
    InvalidLease,
    #[error("ERR scope {0}: a concurrency limit needs LEASE ms")]
    LeaseRequired(usize),
    #[error("ERR scope {0}: this key was created with another window or period")]
    ClockMismatch(usize),
    #[error("ERR invalid ticket: not a ticket issued for this key's buckets")]
    InvalidTicket,
    #[error("ERR ticket is in the future")]
    TicketInFuture,
    #[error("ERR invalid state: {0}")]
    InvalidState(&'static str),
    #[error("ERR malformed packed LLMRL.APPLY payload")]
    MalformedEffect,
    #[error("ERR the server clock is unavailable")]
    NoClock,
    #[error("WRONGTYPE Operation against a key holding the wrong kind of value")]
    WrongType,
    #[error("ERR internal error in llmrl (a bug, logged; nothing was recorded)")]
    Internal,
}

impl From<crate::multi::MultiError> for CommandError {
    fn from(error: crate::multi::MultiError) -> Self {
        use crate::multi::MultiError;
        match error {
            MultiError::ClockMismatch { index } => CommandError::ClockMismatch(index),
            MultiError::LeaseRequired { index } => CommandError::LeaseRequired(index),
            MultiError::TicketInFuture => CommandError::TicketInFuture,
            MultiError::Window(error) => error.into(),
        }
    }
}

impl From<WindowError> for CommandError {
    fn from(error: WindowError) -> Self {
        match error {
            WindowError::InvalidWindow => CommandError::InvalidWindow,
            WindowError::InvalidTicket => CommandError::InvalidTicket,
            WindowError::TicketInFuture => CommandError::TicketInFuture,
            WindowError::InvalidState(what) => CommandError::InvalidState(what),
        }
    }
}
