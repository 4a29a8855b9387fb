//! portcullis-dataplane
