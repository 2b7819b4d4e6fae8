//! Key files: a random 256-bit secret in a local file that opens one key slot directly.
//!
//! Made for `archive_command` / `restore_command`, which PostgreSQL runs once per WAL segment:
//! opening a repository with a password costs one Argon2id derivation per key slot (64 MiB,
//! 3 passes; about 0.1–0.3 s and 64 MiB of memory each time). A key file names its slot and
//! holds a secret of full key strength, so its slot can use the cheapest Argon2id parameters
//! (8 KiB, 1 pass) without weakening anything: guessing 256 random bits is infeasible whatever
//! the derivation costs. The file is as sensitive as a password: it is created with mode 0600
//! and refused when group or others can read it.
//!
//! Format (one line): `dbm-key-file-v1 <slot id> <secret, base64>`.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::repository::crypto::{b64, random_bytes, KdfParams};
use crate::repository::{keys, Config, Repository, FORMAT_VERSION};
use crate::store::Store;

const MAGIC: &str = "dbm-key-file-v1";

/// Argon2id cost of a key-file slot (the secret is random: see the module docs).
pub const KEY_FILE_KDF: KdfParams = KdfParams {
    memory_kib: 8,
    iterations: 1,
    parallelism: 1,
};

/// Creates a key file at `path` (which must not exist) and a key slot it opens. Returns the
/// slot id (`key list` shows it; `key remove` revokes the file).
///
/// Errors: [`Error::Io`] when the file exists or cannot be written; store errors.
pub async fn create_key_file(repo: &Repository, path: &Path) -> Result<String> {
    let mut secret = [0u8; 32];
    random_bytes(&mut secret);
    let secret = b64(&secret);
    // Create the file first (exclusively), so an existing file is never replaced.
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| Error::io(path, e))?;
    let id = match keys::add_key(&**repo.store(), repo.key(), secret.as_bytes(), KEY_FILE_KDF).await
    {
        Ok(id) => id,
        Err(e) => {
            let _ = std::fs::remove_file(path);
            return Err(e);
        }
    };
    f.write_all(format!("{MAGIC} {id} {secret}\n").as_bytes())
        .and_then(|_| f.sync_all())
        .map_err(|e| Error::io(path, e))?;
    Ok(id)
}

/// Opens the repository in `store` with the key file at `path`.
///
/// Errors: [`Error::InvalidInput`] for a malformed file or one readable by group/others;
/// [`Error::WrongPassword`] when its slot was removed or does not open;
/// [`Error::RepositoryNotFound`], [`Error::Corrupt`].
pub async fn open_with_key_file(store: Arc<dyn Store>, path: &Path) -> Result<Repository> {
    let meta = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
    if meta.permissions().mode() & 0o077 != 0 {
        return Err(Error::InvalidInput(format!(
            "key file {} can be read by other users; chmod 600 it",
            path.display()
        )));
    }
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let mut parts = text.split_whitespace();
    let (Some(MAGIC), Some(id), Some(secret), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(Error::InvalidInput(format!(
            "{} is not a data-backup-manager key file",
            path.display()
        )));
    };
    if !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(Error::InvalidInput(format!(
            "{}: bad key id",
            path.display()
        )));
    }
    let cfg = match store.get("config").await {
        Ok(b) => b,
        Err(Error::Store(object_store::Error::NotFound { .. })) => {
            return Err(Error::RepositoryNotFound {
                repo: store.location().to_string(),
            })
        }
        Err(e) => return Err(e),
    };
    let slot = format!("keys/{id}");
    let kf = match keys::read_key_file(&*store, &slot).await {
        Ok(k) => k,
        Err(Error::Store(object_store::Error::NotFound { .. })) => {
            return Err(Error::WrongPassword {
                repo: store.location().to_string(),
            })
        }
        Err(e) => return Err(e),
    };
    let key =
        keys::try_unwrap(&slot, &kf, secret.as_bytes())?.ok_or_else(|| Error::WrongPassword {
            repo: store.location().to_string(),
        })?;
    let plain = key.data.open("config", b"config", &cfg)?;
    let config: Config =
        serde_json::from_slice(&plain).map_err(|e| Error::corrupt("config", e.to_string()))?;
    if config.version != FORMAT_VERSION {
        return Err(Error::corrupt(
            "config",
            format!("unsupported format version {}", config.version),
        ));
    }
    Ok(Repository::assemble(store, key, id.to_string(), config))
}
