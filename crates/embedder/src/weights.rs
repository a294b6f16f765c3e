//! Model configuration and weights, loaded from a sentence-transformers model directory.

use std::path::{Path, PathBuf};

use safetensors::{Dtype, SafeTensors};
use serde::Deserialize;

use crate::linear::{PackedWeight, WeightDtype};

#[derive(Debug, thiserror::Error)]
pub enum WeightsError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid {path}: {source}")]
    Json {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("invalid safetensors file: {0}")]
    SafeTensors(#[from] safetensors::SafeTensorError),
    #[error(
        "tensor {name}: expected f32 of shape {expected:?}, found {dtype:?} of shape {found:?}"
    )]
    Shape {
        name: String,
        expected: Vec<usize>,
        found: Vec<usize>,
        dtype: Dtype,
    },
    #[error("unsupported model: {0}")]
    Unsupported(String),
    #[error(
        "--dtype bf16-amx: this CPU has no AMX-BF16, or Linux refused the tile state (it needs \
         5.16 or later), or SEMCACHE_EMBEDDER_KERNEL names another kernel; use f16"
    )]
    AmxUnavailable,
}

/// The parts of a HF `config.json` for BERT that the forward pass needs.
#[derive(Debug, Clone, Deserialize)]
pub struct BertConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub intermediate_size: usize,
    pub max_position_embeddings: usize,
    #[serde(default = "default_type_vocab")]
    pub type_vocab_size: usize,
    #[serde(default = "default_eps")]
    pub layer_norm_eps: f64,
    #[serde(default = "default_act")]
    pub hidden_act: String,
    #[serde(default = "default_pos")]
    pub position_embedding_type: String,
}

fn default_type_vocab() -> usize {
    2
}
fn default_eps() -> f64 {
    1e-12
}
fn default_act() -> String {
    "gelu".into()
}
fn default_pos() -> String {
    "absolute".into()
}

#[derive(Deserialize)]
struct SentenceBertConfig {
    max_seq_length: Option<usize>,
}

impl BertConfig {
    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_attention_heads
    }
}

/// One encoder layer. Linear weights are transposed to `[in, out]` and packed for the GEMM
/// kernel once, here; Q, K and V are fused into one `[h, 3h]` matrix so they take one pass.
pub struct Layer {
    pub qkv_w: PackedWeight,
    pub qkv_b: Vec<f32>,
    pub out_w: PackedWeight,
    pub out_b: Vec<f32>,
    pub ln1_w: Vec<f32>,
    pub ln1_b: Vec<f32>,
    pub ff1_w: PackedWeight,
    pub ff1_b: Vec<f32>,
    pub ff2_w: PackedWeight,
    pub ff2_b: Vec<f32>,
    pub ln2_w: Vec<f32>,
    pub ln2_b: Vec<f32>,
}

pub struct Weights {
    pub config: BertConfig,
    /// Storage of the linear layers' weights (everything else is f32).
    pub dtype: WeightDtype,
    /// Longest input in tokens (special tokens included); longer inputs are truncated.
    pub max_seq_length: usize,
    pub word: Vec<f32>,
    /// Position embedding plus the token-type-0 embedding, pre-added: every input is one segment.
    pub pos_type: Vec<f32>,
    pub emb_ln_w: Vec<f32>,
    pub emb_ln_b: Vec<f32>,
    pub layers: Vec<Layer>,
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T, WeightsError> {
    let text = std::fs::read(path).map_err(|source| WeightsError::Io {
        path: path.to_owned(),
        source,
    })?;
    serde_json::from_slice(&text).map_err(|source| WeightsError::Json {
        path: path.to_owned(),
        source,
    })
}

struct Loader<'a> {
    st: SafeTensors<'a>,
    prefix: &'static str,
    dtype: WeightDtype,
}

impl Loader<'_> {
    fn get(&self, name: &str, shape: &[usize]) -> Result<Vec<f32>, WeightsError> {
        let full = format!("{}{name}", self.prefix);
        let t = self.st.tensor(&full)?;
        if t.dtype() != Dtype::F32 || t.shape() != shape {
            return Err(WeightsError::Shape {
                name: full,
                expected: shape.to_vec(),
                found: t.shape().to_vec(),
                dtype: t.dtype(),
            });
        }
        Ok(t.data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect())
    }

    /// A PyTorch `Linear` weight `[out, in]`, packed as the `[in, out]` right-hand side.
    fn packed(&self, name: &str, out: usize, inp: usize) -> Result<PackedWeight, WeightsError> {
        Ok(PackedWeight::pack_as(
            &self.linear_t(name, out, inp)?,
            inp,
            out,
            self.dtype,
        ))
    }

    /// A PyTorch `Linear` weight `[out, in]`, returned transposed as `[in, out]`.
    fn linear_t(&self, name: &str, out: usize, inp: usize) -> Result<Vec<f32>, WeightsError> {
        let w = self.get(name, &[out, inp])?;
        let mut t = vec![0.0; out * inp];
        for o in 0..out {
            for i in 0..inp {
                t[i * out + o] = w[o * inp + i];
            }
        }
        Ok(t)
    }
}

impl Weights {
    /// Loads `config.json`, `model.safetensors` and (if present) `sentence_bert_config.json`.
    pub fn load(dir: &Path) -> Result<Self, WeightsError> {
        Self::load_as(dir, WeightDtype::F32)
    }

    /// Like [`Weights::load`], with the linear layers' weights stored as `dtype` (rounded to
    /// nearest); embeddings, biases and LayerNorm parameters stay f32.
    pub fn load_as(dir: &Path, dtype: WeightDtype) -> Result<Self, WeightsError> {
        if dtype == WeightDtype::Bf16Amx && !crate::amx::available() {
            return Err(WeightsError::AmxUnavailable);
        }
        let config: BertConfig = read_json(&dir.join("config.json"))?;
        if config.hidden_act != "gelu" {
            return Err(WeightsError::Unsupported(format!(
                "hidden_act {:?} (only \"gelu\")",
                config.hidden_act
            )));
        }
        if config.position_embedding_type != "absolute" {
            return Err(WeightsError::Unsupported(format!(
                "position_embedding_type {:?}",
                config.position_embedding_type
            )));
        }
        if config.num_attention_heads == 0
            || !config
                .hidden_size
                .is_multiple_of(config.num_attention_heads)
        {
            return Err(WeightsError::Unsupported(
                "hidden_size not divisible by num_attention_heads".into(),
            ));
        }
        let st_path = dir.join("sentence_bert_config.json");
        let max_seq_length = if st_path.exists() {
            read_json::<SentenceBertConfig>(&st_path)?.max_seq_length
        } else {
            None
        }
        .unwrap_or(config.max_position_embeddings)
        .min(config.max_position_embeddings);

        let path = dir.join("model.safetensors");
        let bytes = std::fs::read(&path).map_err(|source| WeightsError::Io {
            path: path.clone(),
            source,
        })?;
        let st = SafeTensors::deserialize(&bytes)?;
        // Checkpoints saved from BertForX carry a "bert." prefix; plain BertModel ones don't.
        let prefix = if st.names().iter().any(|n| n.starts_with("bert.")) {
            "bert."
        } else {
            ""
        };
        let l = Loader { st, prefix, dtype };
        let (h, im) = (config.hidden_size, config.intermediate_size);

        let word = l.get("embeddings.word_embeddings.weight", &[config.vocab_size, h])?;
        let mut pos_type = l.get(
            "embeddings.position_embeddings.weight",
            &[config.max_position_embeddings, h],
        )?;
        let types = l.get(
            "embeddings.token_type_embeddings.weight",
            &[config.type_vocab_size, h],
        )?;
        for row in pos_type.chunks_exact_mut(h) {
            for (p, t) in row.iter_mut().zip(&types[..h]) {
                *p += t;
            }
        }
        // Fold the attention scale 1/sqrt(d) into the query projection.
        let scale = 1.0 / (config.head_dim() as f32).sqrt();
        let mut layers = Vec::with_capacity(config.num_hidden_layers);
        for i in 0..config.num_hidden_layers {
            let p = format!("encoder.layer.{i}.");
            let q = l.linear_t(&format!("{p}attention.self.query.weight"), h, h)?;
            let k = l.linear_t(&format!("{p}attention.self.key.weight"), h, h)?;
            let v = l.linear_t(&format!("{p}attention.self.value.weight"), h, h)?;
            let mut qkv_w = Vec::with_capacity(h * 3 * h);
            for r in 0..h {
                qkv_w.extend(q[r * h..(r + 1) * h].iter().map(|x| x * scale));
                qkv_w.extend_from_slice(&k[r * h..(r + 1) * h]);
                qkv_w.extend_from_slice(&v[r * h..(r + 1) * h]);
            }
            let mut qkv_b = Vec::with_capacity(3 * h);
            qkv_b.extend(
                l.get(&format!("{p}attention.self.query.bias"), &[h])?
                    .iter()
                    .map(|x| x * scale),
            );
            qkv_b.extend(l.get(&format!("{p}attention.self.key.bias"), &[h])?);
            qkv_b.extend(l.get(&format!("{p}attention.self.value.bias"), &[h])?);
            layers.push(Layer {
                qkv_w: PackedWeight::pack_as(&qkv_w, h, 3 * h, dtype),
                qkv_b,
                out_w: l.packed(&format!("{p}attention.output.dense.weight"), h, h)?,
                out_b: l.get(&format!("{p}attention.output.dense.bias"), &[h])?,
                ln1_w: l.get(&format!("{p}attention.output.LayerNorm.weight"), &[h])?,
                ln1_b: l.get(&format!("{p}attention.output.LayerNorm.bias"), &[h])?,
                ff1_w: l.packed(&format!("{p}intermediate.dense.weight"), im, h)?,
                ff1_b: l.get(&format!("{p}intermediate.dense.bias"), &[im])?,
                ff2_w: l.packed(&format!("{p}output.dense.weight"), h, im)?,
                ff2_b: l.get(&format!("{p}output.dense.bias"), &[h])?,
                ln2_w: l.get(&format!("{p}output.LayerNorm.weight"), &[h])?,
                ln2_b: l.get(&format!("{p}output.LayerNorm.bias"), &[h])?,
            });
        }
        Ok(Weights {
            dtype,
            max_seq_length,
            word,
            pos_type,
            emb_ln_w: l.get("embeddings.LayerNorm.weight", &[h])?,
            emb_ln_b: l.get("embeddings.LayerNorm.bias", &[h])?,
            layers,
            config,
        })
    }
}
