//! Word-piece tokenisation with the model's own `tokenizer.json`.

use std::path::Path;

use tokenizers::{Tokenizer, TruncationParams};

#[derive(Debug, thiserror::Error)]
pub enum TokenizeError {
    #[error("cannot load {path}: {message}")]
    Load { path: String, message: String },
    #[error("tokenizer failed: {0}")]
    Encode(String),
}

pub struct TextTokenizer {
    inner: Tokenizer,
}

impl TextTokenizer {
    /// Loads `tokenizer.json` from `dir`, with padding off and truncation at `max_len` tokens
    /// (special tokens included), which is what sentence-transformers does. The shipped file
    /// pads every input to 128 and truncates at 128, so both are overridden here.
    pub fn from_dir(dir: &Path, max_len: usize) -> Result<Self, TokenizeError> {
        let path = dir.join("tokenizer.json");
        let load_err = |message: String| TokenizeError::Load {
            path: path.display().to_string(),
            message,
        };
        let mut inner = Tokenizer::from_file(&path).map_err(|e| load_err(e.to_string()))?;
        inner.with_padding(None);
        inner
            .with_truncation(Some(TruncationParams {
                max_length: max_len,
                ..Default::default()
            }))
            .map_err(|e| load_err(e.to_string()))?;
        Ok(Self { inner })
    }

    /// Token ids of one input, `[CLS] ... [SEP]`, truncated.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>, TokenizeError> {
        let enc = self
            .inner
            .encode(text, true)
            .map_err(|e| TokenizeError::Encode(e.to_string()))?;
        Ok(enc.get_ids().to_vec())
    }
}
