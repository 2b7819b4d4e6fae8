//! Request and response plumbing: size-limited bodies, JSON and query parsing that names the
//! bad field, JSON replies, CORS headers.

use bytes::Bytes;
use http::{header, HeaderValue, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// The response body type of every reply.
pub type Body = Full<Bytes>;

/// Reads a request body, refusing more than `limit` bytes (413).
pub async fn read_body<B>(body: B, limit: usize) -> Result<Bytes, ApiError>
where
    B: hyper::body::Body<Data = Bytes>,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    match Limited::new(body, limit).collect().await {
        Ok(c) => Ok(c.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("request body larger than {limit} bytes"),
        )),
        Err(e) => Err(ApiError::bad_request(format!("reading request body: {e}"))),
    }
}

/// Parses a JSON body into `T`; a type error answers 400 naming the field (`targets[0]`).
/// An empty body parses as `{}`.
pub fn json<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    let body: &[u8] = if body.iter().all(u8::is_ascii_whitespace) {
        b"{}"
    } else {
        body
    };
    let de = &mut serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if inner.is_syntax() || inner.is_eof() {
            ApiError::bad_request(format!("request body is not valid JSON: {inner}"))
        } else if path == "." {
            // A missing or unknown field is reported at the object itself.
            let msg = inner.to_string();
            match msg.split('`').nth(1) {
                Some(f) => ApiError::field(f, &msg),
                None => ApiError::bad_request(msg),
            }
        } else {
            ApiError::field(path, inner)
        }
    })
}

/// Parses a query string into `T`; a bad value answers 400 naming the parameter.
pub fn query<T: DeserializeOwned>(q: Option<&str>) -> Result<T, ApiError> {
    let de = serde_urlencoded::Deserializer::new(form_urlencoded::parse(
        q.unwrap_or_default().as_bytes(),
    ));
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let msg = inner.to_string();
        if path == "." {
            match msg.split('`').nth(1) {
                Some(f) => ApiError::field(f, &msg),
                None => ApiError::bad_request(msg),
            }
        } else {
            ApiError::field(path, msg)
        }
    })
}

/// A reply before CORS and logging.
pub struct Reply {
    /// Status.
    pub status: StatusCode,
    /// Content type.
    pub content_type: &'static str,
    /// Body bytes.
    pub body: Bytes,
}

impl Reply {
    /// JSON with a status.
    pub fn json(status: StatusCode, v: &impl serde::Serialize) -> Reply {
        match serde_json::to_vec(v) {
            Ok(b) => Reply {
                status,
                content_type: "application/json",
                body: b.into(),
            },
            Err(e) => Reply::error(&ApiError::internal(format!("encoding the reply: {e}"))),
        }
    }

    /// 200 JSON.
    pub fn ok(v: &impl serde::Serialize) -> Reply {
        Reply::json(StatusCode::OK, v)
    }

    /// Plain text (Prometheus exposition format and the like).
    pub fn text(content_type: &'static str, body: String) -> Reply {
        Reply {
            status: StatusCode::OK,
            content_type,
            body: body.into(),
        }
    }

    /// An error reply.
    pub fn error(e: &ApiError) -> Reply {
        Reply {
            status: e.status,
            content_type: "application/json",
            body: e.body().into(),
        }
    }

    /// The hyper response.
    pub fn into_response(self) -> Response<Body> {
        let mut r = Response::new(Full::new(self.body));
        *r.status_mut() = self.status;
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(self.content_type),
        );
        r
    }
}

/// Adds CORS headers when `origin` is one of the configured origins (exact match).
/// Requests from other origins get no CORS headers, so browsers refuse to hand them the reply.
pub fn cors(resp: &mut Response<Body>, origin: Option<&HeaderValue>, allowed: &[String]) {
    let Some(origin) = origin else { return };
    let Ok(o) = origin.to_str() else { return };
    if !allowed.iter().any(|a| a == o) {
        return;
    }
    let h = resp.headers_mut();
    h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
    h.insert(header::VARY, HeaderValue::from_static("Origin"));
    h.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("GET, POST, PUT, DELETE, OPTIONS"),
    );
    h.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static("authorization, content-type"),
    );
    h.insert(
        header::ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from_static("600"),
    );
}
