//! portcullis-conformance
