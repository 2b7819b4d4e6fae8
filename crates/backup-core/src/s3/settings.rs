//! Where an S3-compatible server is and how to sign in: read from the standard AWS variables
//! or MinIO's, like the AWS CLI and `mc` do.
//!
//! | setting | variables, first set wins | default |
//! |---|---|---|
//! | endpoint | `AWS_ENDPOINT_URL_S3`, `AWS_ENDPOINT_URL`, `AWS_ENDPOINT`, `MINIO_ENDPOINT` | `https://s3.<region>.amazonaws.com` |
//! | access key | `AWS_ACCESS_KEY_ID`, `MINIO_ACCESS_KEY`, `MINIO_ROOT_USER` | required |
//! | secret key | `AWS_SECRET_ACCESS_KEY`, `MINIO_SECRET_KEY`, `MINIO_ROOT_PASSWORD` | required |
//! | session token | `AWS_SESSION_TOKEN` | none |
//! | region | `AWS_REGION`, `AWS_DEFAULT_REGION`, `MINIO_REGION` | `us-east-1` |
//! | plain http allowed | `AWS_ALLOW_HTTP` (`true`/`1`/`yes`/`on`) | no: https only |
//!
//! An endpoint without a scheme (`MINIO_ENDPOINT=host:9000`) means https. A restore into
//! another server reads the same names with a `DBM_DEST_` prefix
//! ([`S3Settings::from_env_prefixed`]).
//!
//! The names and their order are those of the S3 repository's settings
//! (`store::cloud`, which adds the config file's `storage:` section); the two should become one
//! type once both are merged.

use crate::error::{Error, Result};

/// A secret string: never shown by `Debug` or `Display`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(s: impl Into<String>) -> Secret {
        Secret(s.into())
    }
    /// The secret itself (for signing only).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Connection settings of an S3-compatible server (see the module docs for the variables).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Settings {
    /// `scheme://host[:port]`, e.g. `http://127.0.0.1:7480`.
    pub endpoint: String,
    /// Signing region (SigV4), e.g. `us-east-1`.
    pub region: String,
    /// Access key id (not secret; shown nowhere anyway).
    pub access_key_id: String,
    /// Secret access key.
    pub secret_access_key: Secret,
    /// Session token of temporary credentials.
    pub session_token: Option<Secret>,
    /// Whether `http://` endpoints are allowed (`AWS_ALLOW_HTTP=true`).
    pub allow_http: bool,
}

impl S3Settings {
    /// Settings from the process environment.
    ///
    /// Errors: [`Error::InvalidInput`] naming the missing variables, or an `http://`
    /// endpoint without `AWS_ALLOW_HTTP=true`.
    pub fn from_env() -> Result<S3Settings> {
        Self::from_lookup(|k| std::env::var(k).ok().filter(|v| !v.is_empty()))
    }

    /// Settings from the environment names with `prefix` (e.g. `DBM_DEST_AWS_ENDPOINT_URL`)
    /// when any variable with that prefix is set, else `None`.
    pub fn from_env_prefixed(prefix: &str) -> Result<Option<S3Settings>> {
        if !std::env::vars().any(|(k, v)| k.starts_with(prefix) && !v.is_empty()) {
            return Ok(None);
        }
        Self::from_lookup(|k| {
            std::env::var(format!("{prefix}{k}"))
                .ok()
                .filter(|v| !v.is_empty())
        })
        .map(Some)
    }

    /// Settings from any lookup function (testable without touching the environment).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<S3Settings> {
        let first = |names: &[&str]| names.iter().find_map(|n| get(n));
        let region = first(&["AWS_REGION", "AWS_DEFAULT_REGION", "MINIO_REGION"])
            .unwrap_or_else(|| "us-east-1".to_string());
        let allow_http = first(&["AWS_ALLOW_HTTP"])
            .map(|v| {
                matches!(
                    v.trim().to_ascii_lowercase().as_str(),
                    "true" | "1" | "yes" | "on"
                )
            })
            .unwrap_or(false);
        let endpoint = match first(&[
            "AWS_ENDPOINT_URL_S3",
            "AWS_ENDPOINT_URL",
            "AWS_ENDPOINT",
            "MINIO_ENDPOINT",
        ]) {
            Some(e) if e.contains("://") => e,
            Some(e) => format!("https://{e}"),
            None => format!("https://s3.{region}.amazonaws.com"),
        };
        let endpoint = endpoint.trim_end_matches('/').to_string();
        if endpoint.starts_with("http://") && !allow_http {
            return Err(Error::InvalidInput(format!(
                "S3 endpoint {endpoint} is plain http: set AWS_ALLOW_HTTP=true to allow it (https is the default)"
            )));
        }
        if !endpoint.starts_with("http://") && !endpoint.starts_with("https://") {
            return Err(Error::InvalidInput(format!(
                "S3 endpoint {endpoint}: expected an http:// or https:// URL"
            )));
        }
        let access_key_id = first(&["AWS_ACCESS_KEY_ID", "MINIO_ACCESS_KEY", "MINIO_ROOT_USER"]);
        let secret = first(&[
            "AWS_SECRET_ACCESS_KEY",
            "MINIO_SECRET_KEY",
            "MINIO_ROOT_PASSWORD",
        ]);
        let (Some(access_key_id), Some(secret)) = (access_key_id, secret) else {
            return Err(Error::InvalidInput(format!(
                "no S3 credentials for {endpoint}: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or MINIO_ACCESS_KEY and MINIO_SECRET_KEY)"
            )));
        };
        Ok(S3Settings {
            endpoint,
            region,
            access_key_id,
            secret_access_key: Secret(secret),
            session_token: first(&["AWS_SESSION_TOKEN"]).map(Secret),
            allow_http,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn from(pairs: &[(&str, &str)]) -> Result<S3Settings> {
        let m: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        S3Settings::from_lookup(|k| m.get(k).cloned())
    }

    #[test]
    fn aws_names_win_over_minio_names() {
        let s = from(&[
            ("AWS_ENDPOINT_URL", "https://s3.example:9000/"),
            ("MINIO_ENDPOINT", "other:1"),
            ("AWS_ACCESS_KEY_ID", "AK"),
            ("MINIO_ACCESS_KEY", "MK"),
            ("MINIO_SECRET_KEY", "shh"),
        ])
        .unwrap();
        assert_eq!(s.endpoint, "https://s3.example:9000");
        assert_eq!(s.access_key_id, "AK");
        assert_eq!(s.secret_access_key.expose(), "shh");
        assert_eq!(s.region, "us-east-1");
    }

    #[test]
    fn http_needs_opt_in_and_secrets_stay_hidden() {
        let base = [
            ("AWS_ACCESS_KEY_ID", "AK"),
            ("AWS_SECRET_ACCESS_KEY", "topsecret"),
        ];
        let mut v = base.to_vec();
        v.push(("AWS_ENDPOINT_URL", "http://127.0.0.1:7480"));
        let e = from(&v).unwrap_err().to_string();
        assert!(e.contains("AWS_ALLOW_HTTP"), "{e}");
        v.push(("AWS_ALLOW_HTTP", "true"));
        let s = from(&v).unwrap();
        assert!(!format!("{s:?}").contains("topsecret"));
        let s = from(&[("MINIO_ENDPOINT", "minio:9000"), base[0], base[1]]).unwrap();
        assert_eq!(s.endpoint, "https://minio:9000");
        let e = from(&[("AWS_ACCESS_KEY_ID", "AK")])
            .unwrap_err()
            .to_string();
        assert!(e.contains("AWS_SECRET_ACCESS_KEY"), "{e}");
    }
}
