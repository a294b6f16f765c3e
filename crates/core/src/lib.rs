//! Pure decision logic of the semcache filter.
//!
//! Nothing here calls the proxy-wasm host or does I/O: the filter glue in the root crate reads
//! from the host, feeds events to [`machine::Machine`] and applies the effects it returns. That
//! keeps every decision testable natively in milliseconds.

pub mod apim;
pub mod breadth;
pub mod completion;
pub mod config;
pub mod embeddings;
pub mod entry;
pub mod guards;
pub mod local;
pub mod machine;
pub mod metrics;
pub mod packed;
pub mod partition;
pub mod prompt;
pub mod request;
pub mod resp;
pub mod settings;
pub mod speculation;
pub mod sse;
pub mod store;
