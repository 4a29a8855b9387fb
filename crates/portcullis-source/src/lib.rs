//! portcullis-source
#![allow(dead_code)]
mod cel;
mod schema;
mod yaml;
