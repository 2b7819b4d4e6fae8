//! Key slots (`keys/<id>`): the master key wrapped by a key-encryption key derived from a
//! password with Argon2id. Several slots may exist (`key add | list | remove`); any one opens
//! the repository. Changing a password adds a slot and removes the old one: data is never
//! re-encrypted.

use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::StreamExt;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::repository::crypto::{
    b64, derive_kek, random_bytes, random_id, unb64, KdfParams, MasterKey, SealKey,
};
use crate::store::Store;

/// Argon2id parameters and salt of one slot.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KdfSpec {
    /// Always `argon2id`.
    pub algorithm: String,
    /// Cost parameters.
    #[serde(flatten)]
    pub params: KdfParams,
    /// Salt, base64 (16 random bytes).
    pub salt: String,
}

/// A key slot as stored (plain JSON; the master key inside is encrypted).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KeyFile {
    /// Slot format version.
    pub version: u32,
    /// When the slot was made (UTC).
    pub created: DateTime<Utc>,
    /// Host that made it.
    pub hostname: String,
    /// User that made it.
    pub username: String,
    /// How the key-encryption key is derived.
    pub kdf: KdfSpec,
    /// The wrapped master key: envelope (aad `master key`) under the key-encryption key, base64.
    pub wrapped: String,
}

/// A key slot as listed.
#[derive(Debug, Clone, Serialize)]
pub struct KeyInfo {
    /// Slot id (file name under `keys/`).
    pub id: String,
    /// Creation time.
    pub created: DateTime<Utc>,
    /// Host.
    pub hostname: String,
    /// User.
    pub username: String,
    /// Whether this slot opened the current session.
    pub current: bool,
}

pub(crate) fn username() -> String {
    std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| {
            // SAFETY: getuid has no preconditions.
            format!("uid {}", unsafe { libc::getuid() })
        })
}

/// Wraps `key` under `password` into a new slot; returns the slot id. A password that already
/// opens a slot is refused (two slots with one password make `key remove` ambiguous).
pub async fn add_key(
    store: &dyn Store,
    key: &MasterKey,
    password: &[u8],
    kdf: KdfParams,
) -> Result<String> {
    if password.is_empty() {
        return Err(Error::InvalidInput(
            "empty password: a repository needs a non-empty password".into(),
        ));
    }
    match unlock(store, password).await {
        Ok((id, _)) => {
            return Err(Error::InvalidInput(format!(
                "this password already opens key {}",
                &id[..8.min(id.len())]
            )))
        }
        Err(Error::WrongPassword { .. }) | Err(Error::RepositoryNotFound { .. }) => {}
        Err(e) => return Err(e),
    }
    let mut salt = [0u8; 16];
    random_bytes(&mut salt);
    let pw = password.to_vec();
    let kek = tokio::task::spawn_blocking(move || derive_kek(&pw, &salt, kdf))
        .await
        .map_err(|e| Error::InvalidInput(format!("key derivation task failed: {e}")))??;
    let wrapped = SealKey::new(&kek, 0).seal(b"master key", key.raw());
    let file = KeyFile {
        version: 1,
        created: Utc::now(),
        hostname: super::lock::hostname(),
        username: username(),
        kdf: KdfSpec {
            algorithm: "argon2id".into(),
            params: kdf,
            salt: b64(&salt),
        },
        wrapped: b64(&wrapped),
    };
    let id = random_id();
    store
        .put_new(
            &format!("keys/{id}"),
            Bytes::from(serde_json::to_vec_pretty(&file).expect("key file serializes")),
        )
        .await?;
    Ok(id)
}

pub(crate) async fn read_key_file(store: &dyn Store, path: &str) -> Result<KeyFile> {
    let data = store.get(path).await?;
    serde_json::from_slice(&data).map_err(|e| Error::corrupt(path, e.to_string()))
}

pub(crate) fn try_unwrap(path: &str, kf: &KeyFile, password: &[u8]) -> Result<Option<MasterKey>> {
    if kf.kdf.algorithm != "argon2id" {
        return Err(Error::corrupt(
            path,
            format!("unknown key derivation {}", kf.kdf.algorithm),
        ));
    }
    let salt = unb64(path, &kf.kdf.salt)?;
    let kek = derive_kek(password, &salt, kf.kdf.params)?;
    let wrapped = unb64(path, &kf.wrapped)?;
    match SealKey::new(&kek, 0).open(path, b"master key", &wrapped) {
        Ok(raw) => {
            let raw: [u8; 32] = raw
                .try_into()
                .map_err(|_| Error::corrupt(path, "master key has the wrong length"))?;
            Ok(Some(MasterKey::from_raw(raw)))
        }
        Err(_) => Ok(None),
    }
}

/// Finds the slot that `password` opens. Slots are tried in parallel (Argon2id is slow on
/// purpose).
///
/// Errors: [`Error::WrongPassword`] when none opens; [`Error::RepositoryNotFound`] when there
/// are no slots.
pub async fn unlock(store: &dyn Store, password: &[u8]) -> Result<(String, MasterKey)> {
    let slots = store.list("keys").await?;
    if slots.is_empty() {
        return Err(Error::RepositoryNotFound {
            repo: store.location().to_string(),
        });
    }
    let mut tries = futures::stream::iter(slots.into_iter().map(|o| async move {
        let kf = read_key_file(store, &o.path).await?;
        let pw = password.to_vec();
        let path = o.path.clone();
        let key = tokio::task::spawn_blocking(move || try_unwrap(&path, &kf, &pw))
            .await
            .map_err(|e| Error::InvalidInput(format!("key derivation task failed: {e}")))??;
        Ok::<_, Error>(key.map(|k| (o.path.trim_start_matches("keys/").to_string(), k)))
    }))
    .buffer_unordered(4);
    while let Some(r) = tries.next().await {
        if let Some(found) = r? {
            return Ok(found);
        }
    }
    Err(Error::WrongPassword {
        repo: store.location().to_string(),
    })
}

/// Lists key slots; `current` marks the one with id `current_id`.
pub async fn list_keys(store: &dyn Store, current_id: &str) -> Result<Vec<KeyInfo>> {
    let mut out = Vec::new();
    for o in store.list("keys").await? {
        let kf = read_key_file(store, &o.path).await?;
        let id = o.path.trim_start_matches("keys/").to_string();
        out.push(KeyInfo {
            current: id == current_id,
            id,
            created: kf.created,
            hostname: kf.hostname,
            username: kf.username,
        });
    }
    out.sort_by_key(|a| a.created);
    Ok(out)
}

/// Removes the slot `id` (a unique prefix is accepted). The slot in use cannot be removed, and
/// neither can the last one.
pub async fn remove_key(store: &dyn Store, id: &str, current_id: &str) -> Result<String> {
    if id.len() < 4 {
        return Err(Error::InvalidInput(format!(
            "key id {id:?}: give at least 4 hex digits"
        )));
    }
    let keys = list_keys(store, current_id).await?;
    let matches: Vec<&KeyInfo> = keys.iter().filter(|k| k.id.starts_with(id)).collect();
    let k = match matches.as_slice() {
        [one] => *one,
        [] => return Err(Error::InvalidInput(format!("no key with id {id}"))),
        _ => {
            return Err(Error::InvalidInput(format!(
                "key id prefix {id} is ambiguous"
            )))
        }
    };
    if k.current {
        return Err(Error::InvalidInput(format!(
            "key {} is the one in use; open the repository with another key to remove it",
            k.id
        )));
    }
    store.delete(&format!("keys/{}", k.id)).await?;
    Ok(k.id.clone())
}
