//! portcullis-translate
