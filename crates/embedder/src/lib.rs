//! semcache-embedder: a local OpenAI-compatible embeddings server for all-MiniLM-L6-v2.

pub mod amx;
pub mod api;
pub mod batcher;
pub mod config;
pub mod forward;
pub mod kernels;
pub mod linear;
pub mod matmul;
pub mod tokenize;
pub mod weights;
