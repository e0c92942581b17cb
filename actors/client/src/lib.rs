//! # metawal-client — the HTTP API client of a metawal cluster
//!
//! (being extracted from `metawalctl`; see issue 18)

#![deny(missing_docs)]
