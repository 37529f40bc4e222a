//! Docker image references, parsed and normalised exactly as Docker (distribution/reference) does.
//! OWNED BY HELPER: placeholder signatures only.

use crate::digest::Digest;
use crate::error::Result;

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Reference {
    /// Registry host, with `:port` when given; `docker.io` when the reference named none.
    pub registry: String,
    /// Repository path within the registry, e.g. `library/alpine`.
    pub repository: String,
    pub tag: Option<String>,
    pub digest: Option<Digest>,
}

impl Reference {
    pub fn parse(_s: &str) -> Result<Reference> {
        todo!()
    }
}
