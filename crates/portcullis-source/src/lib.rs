//! portcullis-source
