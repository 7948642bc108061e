//! Answering an admitted request: the built-in mock, or a proxy to a real upstream. Both settle the
//! reservation with what the answer really used.

pub mod mock;
pub mod proxy;
