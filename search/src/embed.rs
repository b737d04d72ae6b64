//! The embedder port: text to a unit-length dense vector. Adapters: the local all-MiniLM-L6-v2 run
//! in-process with candle, and any OpenAI-compatible embeddings endpoint.

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config as BertConfig};
use smb_core::Error;
use tokenizers::{PaddingParams, Tokenizer, TruncationParams};

#[async_trait]
pub trait Embedder: Send + Sync {
    /// Names the model and its settings: a different id means a different vector space (re-index).
    fn model_id(&self) -> &str;
    fn dim(&self) -> usize;
    /// One unit vector per text, in order.
    async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, Error>;
}

pub type DynEmbedder = Arc<dyn Embedder>;

/// The files the local model needs, all in one directory.
pub const MODEL_FILES: [&str; 3] = ["config.json", "tokenizer.json", "model.safetensors"];

/// all-MiniLM-L6-v2 (sentence-transformers): BERT, mean pooling, L2 normalisation, 384 dimensions.
pub struct MiniLm {
    model: BertModel,
    tokenizer: Tokenizer,
    device: Device,
    dim: usize,
}

/// Longest input in tokens; the model was trained on 256 (longer text is truncated, as sentence-transformers does).
const MAX_TOKENS: usize = 256;
/// Texts per forward pass.
const BATCH: usize = 32;

impl MiniLm {
    pub fn load(dir: &Path) -> Result<Self, Error> {
        let missing: Vec<&str> = MODEL_FILES
            .iter()
            .copied()
            .filter(|f| !dir.join(f).is_file())
            .collect();
        if !missing.is_empty() {
            return Err(Error::invalid(format!(
                "the embedding model in {} is missing {}; install it with `smb models install`",
                dir.display(),
                missing.join(", ")
            )));
        }
        let fail = |what: &str, e: &dyn std::fmt::Display| {
            Error::invalid(format!(
                "the embedding model in {} could not be loaded ({what}: {e}); reinstall it with `smb models install`",
                dir.display()
            ))
        };
        let config: BertConfig = std::fs::read_to_string(dir.join("config.json"))
            .map_err(|e| fail("config.json", &e))
            .and_then(|s| serde_json::from_str(&s).map_err(|e| fail("config.json", &e)))?;
        let mut tokenizer =
            Tokenizer::from_file(dir.join("tokenizer.json")).map_err(|e| fail("tokenizer", &e))?;
        tokenizer.with_padding(Some(PaddingParams::default()));
        tokenizer
            .with_truncation(Some(TruncationParams {
                max_length: MAX_TOKENS,
                ..Default::default()
            }))
            .map_err(|e| fail("tokenizer", &e))?;
        let device = Device::Cpu;
        let weights =
            std::fs::read(dir.join("model.safetensors")).map_err(|e| fail("weights", &e))?;
        let vb = VarBuilder::from_buffered_safetensors(weights, DType::F32, &device)
            .map_err(|e| fail("weights", &e))?;
        let dim = config.hidden_size;
        let model = BertModel::load(vb, &config).map_err(|e| fail("weights", &e))?;
        Ok(Self {
            model,
            tokenizer,
            device,
            dim,
        })
    }

    /// Embeds on the calling thread (CPU bound: call from the blocking pool).
    pub fn embed_blocking(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, Error> {
        let mut out = Vec::with_capacity(texts.len());
        for chunk in texts.chunks(BATCH) {
            out.extend(
                self.forward(chunk)
                    .map_err(|e| Error::internal("embedding", e))?,
            );
        }
        Ok(out)
    }

    fn forward(&self, texts: &[String]) -> anyhow::Result<Vec<Vec<f32>>> {
        let enc = self
            .tokenizer
            .encode_batch(texts.to_vec(), true)
            .map_err(|e| anyhow::anyhow!("tokenizing: {e}"))?;
        let n = enc.len();
        let len = enc.first().map_or(0, |e| e.get_ids().len());
        let ids: Vec<u32> = enc.iter().flat_map(|e| e.get_ids().to_vec()).collect();
        let mask: Vec<u32> = enc
            .iter()
            .flat_map(|e| e.get_attention_mask().to_vec())
            .collect();
        let ids = Tensor::from_vec(ids, (n, len), &self.device)?;
        let mask = Tensor::from_vec(mask, (n, len), &self.device)?;
        let types = ids.zeros_like()?;
        let hidden = self.model.forward(&ids, &types, Some(&mask))?; // (n, len, dim)
        // Mean over the real tokens only.
        let m = mask.to_dtype(DType::F32)?.unsqueeze(2)?; // (n, len, 1)
        let summed = hidden.broadcast_mul(&m)?.sum(1)?; // (n, dim)
        let counts = m.sum(1)?.clamp(1e-9, f32::MAX)?; // (n, 1)
        let mean = summed.broadcast_div(&counts)?;
        let norm = mean.sqr()?.sum_keepdim(1)?.sqrt()?.clamp(1e-12, f32::MAX)?;
        let unit = mean.broadcast_div(&norm)?;
        Ok(unit.to_vec2::<f32>()?)
    }
}

/// The local model behind the port: work goes to the blocking pool.
pub struct LocalEmbedder {
    model: Arc<MiniLm>,
    id: String,
}

impl LocalEmbedder {
    pub fn load(dir: &Path) -> Result<Self, Error> {
        let model = MiniLm::load(dir)?;
        Ok(Self {
            id: format!("all-minilm-l6-v2-{}", model.dim),
            model: Arc::new(model),
        })
    }
}

#[async_trait]
impl Embedder for LocalEmbedder {
    fn model_id(&self) -> &str {
        &self.id
    }
    fn dim(&self) -> usize {
        self.model.dim
    }
    async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, Error> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        let model = self.model.clone();
        let texts = texts.to_vec();
        tokio::task::spawn_blocking(move || model.embed_blocking(&texts))
            .await
            .map_err(|e| Error::internal("embedding task", e))?
    }
}

/// Any OpenAI-compatible `/embeddings` endpoint (OpenAI, vLLM, Ollama, llama.cpp, TEI…).
pub struct OpenAiEmbedder {
    client: async_openai::Client<async_openai::config::OpenAIConfig>,
    model: String,
    id: String,
    dim: usize,
}

/// Texts per request.
const OPENAI_BATCH: usize = 256;

impl OpenAiEmbedder {
    /// Connects and learns the vector size with one probe request (so a wrong URL, key or model fails at
    /// start, not at the first sync).
    pub async fn connect(
        base_url: &str,
        api_key: Option<&str>,
        model: &str,
        timeout: std::time::Duration,
    ) -> Result<Self, Error> {
        // reqwest 0.13 under async-openai is built without a default TLS provider: install ring's.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut config = async_openai::config::OpenAIConfig::new().with_api_base(base_url);
        if let Some(k) = api_key {
            config = config.with_api_key(k);
        }
        let http = reqwest013::Client::builder()
            .timeout(timeout)
            .build()
            .map_err(|e| Error::internal("embeddings http client", e))?;
        let client = async_openai::Client::build(http, config);
        let mut me = Self {
            client,
            model: model.to_string(),
            id: String::new(),
            dim: 0,
        };
        let probe = me.call(&["dimension probe".to_string()]).await?;
        me.dim = probe.first().map_or(0, Vec::len);
        if me.dim == 0 {
            return Err(Error::unavailable(format!(
                "the embeddings endpoint {base_url} returned no vector for model {model}"
            )));
        }
        me.id = format!("openai-{}-{}", model, me.dim);
        Ok(me)
    }

    async fn call(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, Error> {
        let req = async_openai::types::embeddings::CreateEmbeddingRequestArgs::default()
            .model(self.model.clone())
            .input(texts.to_vec())
            .build()
            .map_err(|e| Error::internal("embeddings request", e))?;
        let res = self.client.embeddings().create(req).await.map_err(|e| {
            tracing::warn!(error = %e, "embeddings endpoint failed");
            Error::unavailable("the embeddings service did not answer; try again shortly")
        })?;
        let mut data = res.data;
        data.sort_by_key(|e| e.index);
        if data.len() != texts.len() {
            return Err(Error::internal(
                "embeddings",
                format!("{} vectors for {} texts", data.len(), texts.len()),
            ));
        }
        Ok(data.into_iter().map(|e| unit(e.embedding)).collect())
    }
}

fn unit(mut v: Vec<f32>) -> Vec<f32> {
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if n > 0.0 {
        v.iter_mut().for_each(|x| *x /= n);
    }
    v
}

#[async_trait]
impl Embedder for OpenAiEmbedder {
    fn model_id(&self) -> &str {
        &self.id
    }
    fn dim(&self) -> usize {
        self.dim
    }
    async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, Error> {
        let mut out = Vec::with_capacity(texts.len());
        for chunk in texts.chunks(OPENAI_BATCH) {
            out.extend(self.call(chunk).await?);
        }
        Ok(out)
    }
}

/// Cosine similarity of two unit vectors.
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}
