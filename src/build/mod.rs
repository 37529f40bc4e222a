//! The builder: running a parsed Dockerfile ([`crate::dockerfile`]) and its build cache.

pub mod cache;
pub mod executor;
