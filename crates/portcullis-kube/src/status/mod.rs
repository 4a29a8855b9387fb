//! Status write-back: what to write ([`merge`]) and writing it ([`writer`]).

pub mod merge;
pub mod writer;

pub use writer::{StatusWriter, WriterOptions};
