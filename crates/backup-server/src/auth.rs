//! Bearer-token authentication (RFC 6750 `Authorization: Bearer <token>`).
//!
//! Tokens are compared in constant time: the presented token and every configured token are
//! hashed with SHA-256 (equal lengths, so the length does not leak either) and compared with
//! `subtle`; all configured tokens are always compared, so timing does not tell which matched.

use http::{HeaderMap, StatusCode};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::config::Token;
use crate::error::ApiError;

/// Who made a request: the token's name (recorded as the audit user).
#[derive(Debug, Clone)]
pub struct Caller {
    /// Token name.
    pub name: String,
    /// Read-only token.
    pub read_only: bool,
}

/// The configured tokens, pre-hashed.
pub struct Auth {
    tokens: Vec<([u8; 32], Caller)>,
}

fn hash(b: &[u8]) -> [u8; 32] {
    Sha256::digest(b).into()
}

impl Auth {
    /// From resolved tokens.
    pub fn new(tokens: &[Token]) -> Auth {
        Auth {
            tokens: tokens
                .iter()
                .map(|t| {
                    (
                        hash(&t.secret),
                        Caller {
                            name: t.name.clone(),
                            read_only: t.read_only,
                        },
                    )
                })
                .collect(),
        }
    }

    /// Authenticates a request: 401 without a bearer token or with an unknown one.
    pub fn authenticate(&self, headers: &HeaderMap) -> Result<Caller, ApiError> {
        let unauthorized =
            |m: &str| ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", m.to_string());
        let value = headers
            .get(http::header::AUTHORIZATION)
            .ok_or_else(|| unauthorized("missing Authorization: Bearer <token> header"))?;
        let value = value
            .to_str()
            .map_err(|_| unauthorized("malformed Authorization header"))?;
        let presented = match value.split_once(' ') {
            Some((scheme, t)) if scheme.eq_ignore_ascii_case("bearer") => t.trim(),
            _ => {
                return Err(unauthorized(
                    "Authorization header must use the Bearer scheme",
                ))
            }
        };
        let h = hash(presented.as_bytes());
        let mut found: Option<&Caller> = None;
        for (t, caller) in &self.tokens {
            if bool::from(t.ct_eq(&h)) {
                found = Some(caller);
            }
        }
        found.cloned().ok_or_else(|| unauthorized("invalid token"))
    }
}

impl Caller {
    /// 403 unless the caller may change things (create, restore, delete, schedule changes).
    pub fn require_write(&self) -> Result<(), ApiError> {
        if self.read_only {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                format!("token {} is read-only", self.name),
            ));
        }
        Ok(())
    }
}
