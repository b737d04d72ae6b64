//! The embedder port's adapters agree: the OpenAI-compatible adapter, pointed at an `/embeddings`
//! endpoint that serves the local all-MiniLM-L6-v2 (this machine can run no other), returns the same
//! vectors as the local adapter, in input order, unit length; a bad endpoint fails at connect with a
//! clear error. Needs the local model (`smb models install`; `scripts/test.sh` installs it).

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use serde_json::{Value, json};
use smb_search::embed::{Embedder, LocalEmbedder, OpenAiEmbedder, cosine};

fn model_dir() -> std::path::PathBuf {
    std::env::var_os("SMB_SEARCH__MODEL_DIR")
        .map(Into::into)
        .unwrap_or_else(smb_search::model::default_dir)
}

/// OpenAI's `POST /v1/embeddings` over the local model; answers in reverse order (clients must sort by
/// `index`) and demands the bearer key.
async fn embeddings(
    State(model): State<Arc<LocalEmbedder>>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Result<Json<Value>, StatusCode> {
    if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some("Bearer sk-local") {
        return Err(StatusCode::UNAUTHORIZED);
    }
    let input: Vec<String> = match &body["input"] {
        Value::String(s) => vec![s.clone()],
        Value::Array(a) => a
            .iter()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect(),
        _ => return Err(StatusCode::BAD_REQUEST),
    };
    let vectors = model
        .embed(&input)
        .await
        .map_err(|_| StatusCode::INTERNAL_SERVER_ERROR)?;
    let data: Vec<Value> = vectors
        .into_iter()
        .enumerate()
        .rev()
        // Not unit length on the wire: the adapter normalises.
        .map(|(i, v)| json!({"object": "embedding", "index": i, "embedding": v.iter().map(|x| x * 3.0).collect::<Vec<f32>>()}))
        .collect();
    Ok(Json(json!({
        "object": "list", "model": body["model"], "data": data,
        "usage": {"prompt_tokens": 1, "total_tokens": 1}
    })))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openai_adapter_and_the_local_model_agree() {
    let local = Arc::new(LocalEmbedder::load(&model_dir()).expect("the local model is installed"));
    let app = axum::Router::new()
        .route("/v1/embeddings", post(embeddings))
        .with_state(local.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}/v1", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let remote = OpenAiEmbedder::connect(
        &base,
        Some("sk-local"),
        "all-minilm-l6-v2",
        Duration::from_secs(10),
    )
    .await
    .expect("connects");
    assert_eq!(remote.dim(), local.dim());
    assert_ne!(
        remote.model_id(),
        local.model_id(),
        "another vector space by name"
    );
    let texts: Vec<String> = [
        "The grinder arrived with a cracked hopper",
        "favors for our wedding",
        "Leave the package at the back door please",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let a = remote.embed(&texts).await.unwrap();
    let b = local.embed(&texts).await.unwrap();
    assert_eq!(a.len(), 3);
    for (x, y) in a.iter().zip(&b) {
        let norm: f32 = x.iter().map(|v| v * v).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-4, "unit length, got {norm}");
        assert!(cosine(x, y) > 0.9999, "same vector in the same order");
    }

    // A wrong key or an endpoint that is not there fails at start, saying what to check.
    let e = OpenAiEmbedder::connect(&base, Some("sk-wrong"), "m", Duration::from_secs(5))
        .await
        .err()
        .expect("a wrong key fails");
    assert!(e.to_string().contains("embeddings"), "{e}");
    let e = OpenAiEmbedder::connect("http://127.0.0.1:9/v1", None, "m", Duration::from_secs(2))
        .await
        .err()
        .expect("no endpoint fails");
    assert!(e.to_string().contains("embeddings"), "{e}");
}
