//! Portcullis conformance support: the `portcullis-echo` backend (a behavioural
//! twin of the upstream Gateway API `echo-basic` image) and helpers shared by the
//! `portcullis-conformance` runner binary.
#![deny(missing_docs)]

pub mod echo;
