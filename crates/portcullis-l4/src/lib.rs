//! Layer-4 proxying for Portcullis (work in progress).
#![deny(missing_docs)]
