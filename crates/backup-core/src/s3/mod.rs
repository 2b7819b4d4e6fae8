//! A small S3 REST client for what `object_store` cannot do: user metadata, object tags and
//! bucket configuration (policy, versioning, lifecycle, CORS, tags).
//!
//! Requests use path-style addressing (`<endpoint>/<bucket>/<key>`), which MinIO, Ceph's RADOS
//! Gateway and AWS all accept, and are signed with AWS Signature Version 4 by the `aws-sigv4`
//! crate. Every request body is in memory and its SHA-256 is signed (`x-amz-content-sha256`),
//! so a body damaged in transit is rejected by the server; bodies are bounded by the caller
//! (multipart parts, configuration documents). Responses are streamed ([`S3Client::get_object`]).
//! Idempotent retries: 5xx, 429 and connection errors are retried with exponential backoff.
//!
//! XML bodies are the S3 API's (API reference, "Actions"): `ListBuckets`, `ListObjectsV2`
//! (with `encoding-type=url`, so any key survives XML), `GetObjectTagging`,
//! `CreateMultipartUpload`, `CompleteMultipartUpload`, and the `Error` document.
//!
//! Secrets never appear in messages: [`S3Settings`]'s `Debug` redacts the secret key, and
//! errors name the endpoint, bucket and key, never credentials or signed headers.

pub mod settings;

use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{
    sign, PayloadChecksumKind, PercentEncodingMode, SessionTokenMode, SignableBody,
    SignableRequest, SigningSettings, UriPathNormalizationMode,
};
use aws_sigv4::sign::v4;
use bytes::Bytes;
use futures::StreamExt;
use percent_encoding::{percent_decode, utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use reqwest::StatusCode;
use serde::Deserialize;

pub use reqwest::Method;
pub use settings::S3Settings;

use crate::error::{Error, Result};

/// Characters kept as they are in a query value (RFC 3986 unreserved; everything else is
/// `%XX`, as SigV4's canonical form requires).
const QUERY: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');
/// Characters kept in a path: unreserved and `/` (the key's own slashes).
const PATH: &AsciiSet = &QUERY.remove(b'/');

/// Attempts per request (1 + retries) on 5xx, 429 and connection errors.
const ATTEMPTS: u32 = 5;

/// Percent-encodes a query name or value (strict: only unreserved characters stay).
pub fn encode_query(s: &str) -> String {
    utf8_percent_encode(s, QUERY).to_string()
}

/// Decodes an `application/x-www-form-urlencoded`-style value (`+` is a space): the form S3
/// uses for keys in listings with `encoding-type=url` and for `x-amz-tagging`.
pub fn decode_form(s: &str) -> Vec<u8> {
    let spaced = s.replace('+', " ");
    percent_decode(spaced.as_bytes()).collect()
}

/// One S3 request. `key` is raw bytes of the object key (S3 keys are UTF-8).
#[derive(Debug, Clone)]
pub struct S3Request<'a> {
    /// HTTP method.
    pub method: Method,
    /// Bucket, or `None` for service-level calls (`ListBuckets`).
    pub bucket: Option<&'a str>,
    /// Object key, or `None` for bucket-level calls.
    pub key: Option<&'a str>,
    /// Query parameters (unencoded); an empty value is sent as a bare name (`?policy`).
    pub query: Vec<(&'a str, String)>,
    /// Extra headers (lower-case names).
    pub headers: Vec<(String, String)>,
    /// Request body (its SHA-256 is signed).
    pub body: Bytes,
}

impl<'a> S3Request<'a> {
    /// A request without query, headers or body.
    pub fn new(method: Method, bucket: Option<&'a str>, key: Option<&'a str>) -> Self {
        S3Request {
            method,
            bucket,
            key,
            query: Vec::new(),
            headers: Vec::new(),
            body: Bytes::new(),
        }
    }

    /// Adds a query parameter.
    pub fn query(mut self, name: &'a str, value: impl Into<String>) -> Self {
        self.query.push((name, value.into()));
        self
    }

    /// Adds a header.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Sets the body.
    pub fn body(mut self, body: impl Into<Bytes>) -> Self {
        self.body = body.into();
        self
    }

    /// `bucket/key` for messages.
    pub fn resource(&self) -> String {
        match (self.bucket, self.key) {
            (Some(b), Some(k)) => format!(
                "{b}/{}",
                crate::repository::tree::escape_bytes(k.as_bytes())
            ),
            (Some(b), None) => b.to_string(),
            _ => "/".to_string(),
        }
    }
}

/// A signed S3 client for one endpoint.
#[derive(Clone)]
pub struct S3Client {
    http: reqwest::Client,
    settings: S3Settings,
    /// `scheme://host[:port]` as `url` normalizes it, without a trailing `/`.
    base: String,
}

impl std::fmt::Debug for S3Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "S3Client({})", self.base)
    }
}

/// The `Error` document of a failed S3 call.
#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
struct ErrorDoc {
    #[serde(default)]
    code: String,
    #[serde(default)]
    message: String,
}

impl S3Client {
    /// A client for `settings`.
    ///
    /// Errors: [`Error::InvalidInput`] for an endpoint URL that does not parse or has a path.
    pub fn new(settings: S3Settings) -> Result<S3Client> {
        let url = reqwest::Url::parse(&settings.endpoint).map_err(|e| {
            Error::InvalidInput(format!("S3 endpoint {:?}: {e}", settings.endpoint))
        })?;
        if url.path() != "/" || url.query().is_some() {
            return Err(Error::InvalidInput(format!(
                "S3 endpoint {}: give only scheme, host and port (buckets are addressed path-style)",
                settings.endpoint
            )));
        }
        let base = url.as_str().trim_end_matches('/').to_string();
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .read_timeout(Duration::from_secs(120))
            .build()
            .map_err(|e| Error::InvalidInput(format!("S3 client for {base}: {e}")))?;
        Ok(S3Client {
            http,
            settings,
            base,
        })
    }

    /// The endpoint (`http://127.0.0.1:7480`), for messages and snapshot paths.
    pub fn endpoint(&self) -> &str {
        &self.base
    }

    /// The settings in use.
    pub fn settings(&self) -> &S3Settings {
        &self.settings
    }

    fn url(&self, req: &S3Request<'_>) -> Result<String> {
        let mut url = self.base.clone();
        url.push('/');
        if let Some(b) = req.bucket {
            url.push_str(&utf8_percent_encode(b, QUERY).to_string());
            if let Some(k) = req.key {
                url.push('/');
                url.push_str(&utf8_percent_encode(k, PATH).to_string());
            }
        }
        if !req.query.is_empty() {
            let q: Vec<String> = req
                .query
                .iter()
                .map(|(n, v)| {
                    if v.is_empty() {
                        encode_query(n)
                    } else {
                        format!("{}={}", encode_query(n), encode_query(v))
                    }
                })
                .collect();
            url.push('?');
            url.push_str(&q.join("&"));
        }
        Ok(url)
    }

    fn signed(&self, req: &S3Request<'_>, url: &str) -> Result<reqwest::Request> {
        let parsed = reqwest::Url::parse(url).map_err(|e| {
            Error::InvalidInput(format!("S3 {}: bad request URL: {e}", req.resource()))
        })?;
        // `url` resolves `.` and `..` path segments (also `%2E`); such a key cannot be
        // addressed without changing it, so refuse rather than touch another object.
        let want_path = url[self.base.len()..].split('?').next().unwrap_or("/");
        if parsed.path() != want_path {
            return Err(Error::S3 {
                resource: req.resource(),
                status: 0,
                code: "UnaddressableKey".into(),
                message: "the key has a `.` or `..` segment, which HTTP clients resolve; it cannot be read or written exactly".into(),
            });
        }
        let identity = Credentials::new(
            &self.settings.access_key_id,
            self.settings.secret_access_key.expose(),
            self.settings
                .session_token
                .as_ref()
                .map(|t| t.expose().to_string()),
            None,
            "dbm-settings",
        )
        .into();
        let mut ss = SigningSettings::default();
        ss.percent_encoding_mode = PercentEncodingMode::Single;
        ss.uri_path_normalization_mode = UriPathNormalizationMode::Disabled;
        ss.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
        ss.session_token_mode = SessionTokenMode::Include;
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region(&self.settings.region)
            .name("s3")
            .time(SystemTime::now())
            .settings(ss)
            .build()
            .map_err(|e| Error::InvalidInput(format!("S3 signing parameters: {e}")))?
            .into();
        let signable = SignableRequest::new(
            req.method.as_str(),
            parsed.as_str(),
            req.headers.iter().map(|(n, v)| (n.as_str(), v.as_str())),
            SignableBody::Bytes(&req.body),
        )
        .map_err(|e| {
            Error::InvalidInput(format!("S3 {}: cannot sign request: {e}", req.resource()))
        })?;
        let (instructions, _) = sign(signable, &params)
            .map_err(|e| {
                Error::InvalidInput(format!("S3 {}: cannot sign request: {e}", req.resource()))
            })?
            .into_parts();
        let mut builder = self.http.request(req.method.clone(), parsed);
        for (n, v) in &req.headers {
            builder = builder.header(n.as_str(), v.as_str());
        }
        for (n, v) in instructions.headers() {
            builder = builder.header(n, v);
        }
        if req.method == Method::PUT || req.method == Method::POST {
            // An empty body is otherwise sent without a length, which S3 refuses (411).
            builder = builder.header(reqwest::header::CONTENT_LENGTH, req.body.len());
        }
        builder
            .body(req.body.clone())
            .build()
            .map_err(|e| Error::InvalidInput(format!("S3 {}: {e}", req.resource())))
    }

    /// Sends a request (retrying 5xx, 429 and connection errors) and returns the response
    /// whatever its status; see [`S3Client::call`] for one that fails on non-2xx.
    pub async fn send(&self, req: &S3Request<'_>) -> Result<reqwest::Response> {
        let url = self.url(req)?;
        let mut delay = Duration::from_millis(200);
        let mut attempt = 1;
        loop {
            let r = self.signed(req, &url)?;
            let retry_reason = match self.http.execute(r).await {
                Ok(resp)
                    if resp.status().is_server_error()
                        || resp.status() == StatusCode::TOO_MANY_REQUESTS =>
                {
                    if attempt >= ATTEMPTS {
                        return Ok(resp);
                    }
                    format!("HTTP {}", resp.status().as_u16())
                }
                Ok(resp) => return Ok(resp),
                Err(e) => {
                    if attempt >= ATTEMPTS {
                        return Err(Error::S3 {
                            resource: format!("{} at {}", req.resource(), self.base),
                            status: 0,
                            code: "ConnectionFailed".into(),
                            message: format!("{} after {ATTEMPTS} attempts", error_chain(&e)),
                        });
                    }
                    error_chain(&e)
                }
            };
            tracing::debug!(
                "S3 {} {}: {retry_reason}; retrying in {delay:?}",
                req.method,
                req.resource()
            );
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(5));
            attempt += 1;
        }
    }

    /// Sends a request and fails with [`Error::S3`] (naming the bucket/key, the S3 error code
    /// and message) unless the status is 2xx.
    pub async fn call(&self, req: &S3Request<'_>) -> Result<reqwest::Response> {
        let resp = self.send(req).await?;
        if resp.status().is_success() {
            return Ok(resp);
        }
        Err(failure(req.resource(), resp).await)
    }

    /// Like [`S3Client::call`], and reads the (small) response body.
    pub async fn call_bytes(&self, req: &S3Request<'_>) -> Result<Bytes> {
        let resp = self.call(req).await?;
        resp.bytes().await.map_err(|e| Error::S3 {
            resource: req.resource(),
            status: 0,
            code: "ReadFailed".into(),
            message: error_chain(&e),
        })
    }

    /// `ListBuckets`: the names of every bucket the credentials own.
    pub async fn list_buckets(&self) -> Result<Vec<String>> {
        #[derive(Deserialize)]
        #[serde(rename_all = "PascalCase")]
        struct Doc {
            #[serde(default)]
            buckets: Buckets,
        }
        #[derive(Deserialize, Default)]
        #[serde(rename_all = "PascalCase")]
        struct Buckets {
            #[serde(default)]
            bucket: Vec<B>,
        }
        #[derive(Deserialize)]
        #[serde(rename_all = "PascalCase")]
        struct B {
            name: String,
        }
        let body = self
            .call_bytes(&S3Request::new(Method::GET, None, None))
            .await?;
        let doc: Doc = parse_xml("ListBuckets", &body)?;
        let mut names: Vec<String> = doc.buckets.bucket.into_iter().map(|b| b.name).collect();
        names.sort();
        Ok(names)
    }

    /// One page of `ListObjectsV2` under `prefix`, grouped by `delimiter` when given. Keys
    /// are decoded from `encoding-type=url`.
    pub async fn list_page(
        &self,
        bucket: &str,
        prefix: &str,
        delimiter: Option<&str>,
        token: Option<&str>,
    ) -> Result<ListPage> {
        let mut req = S3Request::new(Method::GET, Some(bucket), None)
            .query("list-type", "2")
            .query("encoding-type", "url")
            .query("prefix", prefix);
        if let Some(d) = delimiter {
            req = req.query("delimiter", d);
        }
        if let Some(t) = token {
            req = req.query("continuation-token", t);
        }
        let body = self.call_bytes(&req).await?;
        let doc: ListDoc = parse_xml("ListObjectsV2", &body)?;
        let encoded = doc.encoding_type.as_deref() == Some("url");
        let key = |s: String| -> Result<String> {
            if !encoded {
                return Ok(s);
            }
            String::from_utf8(decode_form(&s)).map_err(|_| Error::S3 {
                resource: bucket.to_string(),
                status: 0,
                code: "InvalidListing".into(),
                message: format!("listed key {s:?} is not UTF-8 once decoded"),
            })
        };
        let mut page = ListPage::default();
        for o in doc.contents {
            page.objects.push(ListedObject {
                key: key(o.key)?,
                etag: o.etag,
                size: o.size,
                last_modified: o.last_modified,
            });
        }
        for p in doc.common_prefixes {
            page.prefixes.push(key(p.prefix)?);
        }
        page.next = if doc.is_truncated {
            Some(doc.next_continuation_token.ok_or_else(|| Error::S3 {
                resource: bucket.to_string(),
                status: 0,
                code: "InvalidListing".into(),
                message: "truncated listing without a continuation token".into(),
            })?)
        } else {
            None
        };
        Ok(page)
    }

    /// `GetObject` of `key`, streamed; with `if_match`, the server answers 412 if the object's
    /// ETag changed since it was listed.
    pub async fn get_object(
        &self,
        bucket: &str,
        key: &str,
        if_match: Option<&str>,
    ) -> Result<reqwest::Response> {
        let mut req = S3Request::new(Method::GET, Some(bucket), Some(key));
        if let Some(e) = if_match {
            req = req.header("if-match", e);
        }
        self.call(&req).await
    }

    /// A bucket sub-resource document (`policy`, `versioning`, `lifecycle`, `cors`, `tagging`),
    /// or `None` when it is not set (404 with a `NoSuch…`/`…NotFound…` code) or the server does
    /// not implement it (501).
    pub async fn get_bucket_config(&self, bucket: &str, sub: &str) -> Result<Option<Bytes>> {
        let req = S3Request::new(Method::GET, Some(bucket), None).query(sub, "");
        match self.call_bytes(&req).await {
            Ok(b) => Ok(Some(b)),
            Err(Error::S3 { status, code, .. })
                if (status == 404 && (code.starts_with("NoSuch") || code.contains("NotFound")))
                    || status == 501
                    || code == "NotImplemented" =>
            {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// `GetObjectTagging`: the tag set of `key` in request order.
    pub async fn get_object_tagging(
        &self,
        bucket: &str,
        key: &str,
    ) -> Result<Vec<(String, String)>> {
        let req = S3Request::new(Method::GET, Some(bucket), Some(key)).query("tagging", "");
        let body = self.call_bytes(&req).await?;
        parse_tagging(&body)
    }

    /// Whether `bucket` exists (`HeadBucket`).
    pub async fn bucket_exists(&self, bucket: &str) -> Result<bool> {
        let req = S3Request::new(Method::HEAD, Some(bucket), None);
        let resp = self.send(&req).await?;
        match resp.status() {
            s if s.is_success() => Ok(true),
            StatusCode::NOT_FOUND => Ok(false),
            _ => Err(failure(req.resource(), resp).await),
        }
    }

    /// `CreateBucket`; an existing bucket of the same owner is not an error.
    pub async fn create_bucket(&self, bucket: &str) -> Result<()> {
        let mut req = S3Request::new(Method::PUT, Some(bucket), None);
        if self.settings.region != "us-east-1" {
            req = req.body(format!(
                "<CreateBucketConfiguration xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><LocationConstraint>{}</LocationConstraint></CreateBucketConfiguration>",
                xml_escape(&self.settings.region)
            ));
        }
        match self.call(&req).await {
            Ok(_) => Ok(()),
            Err(Error::S3 { code, .. }) if code == "BucketAlreadyOwnedByYou" => Ok(()),
            Err(e) => Err(e),
        }
    }
}

/// One listed object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedObject {
    /// Full key.
    pub key: String,
    /// ETag as listed, with its quotes.
    pub etag: String,
    /// Size in bytes.
    pub size: u64,
    /// Last-modified time as listed (ISO 8601, UTC).
    pub last_modified: String,
}

/// One page of a listing.
#[derive(Debug, Clone, Default)]
pub struct ListPage {
    /// Objects, in key order.
    pub objects: Vec<ListedObject>,
    /// Common prefixes (each ends with the delimiter).
    pub prefixes: Vec<String>,
    /// Continuation token of the next page.
    pub next: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ListDoc {
    #[serde(default)]
    contents: Vec<ListDocObject>,
    #[serde(default)]
    common_prefixes: Vec<ListDocPrefix>,
    #[serde(default)]
    is_truncated: bool,
    #[serde(default)]
    next_continuation_token: Option<String>,
    #[serde(default)]
    encoding_type: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ListDocObject {
    key: String,
    #[serde(rename = "ETag", default)]
    etag: String,
    #[serde(default)]
    size: u64,
    #[serde(default)]
    last_modified: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ListDocPrefix {
    prefix: String,
}

/// Parses a `Tagging` document into (key, value) pairs.
pub fn parse_tagging(body: &[u8]) -> Result<Vec<(String, String)>> {
    #[derive(Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct Doc {
        #[serde(default)]
        tag_set: TagSet,
    }
    #[derive(Deserialize, Default)]
    #[serde(rename_all = "PascalCase")]
    struct TagSet {
        #[serde(default)]
        tag: Vec<Tag>,
    }
    #[derive(Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct Tag {
        key: String,
        #[serde(default)]
        value: String,
    }
    let doc: Doc = parse_xml("Tagging", body)?;
    Ok(doc
        .tag_set
        .tag
        .into_iter()
        .map(|t| (t.key, t.value))
        .collect())
}

/// Parses an XML response body.
pub fn parse_xml<T: serde::de::DeserializeOwned>(what: &str, body: &[u8]) -> Result<T> {
    let text = std::str::from_utf8(body).map_err(|_| Error::S3 {
        resource: what.to_string(),
        status: 0,
        code: "InvalidResponse".into(),
        message: "response is not UTF-8".into(),
    })?;
    quick_xml::de::from_str(text).map_err(|e| Error::S3 {
        resource: what.to_string(),
        status: 0,
        code: "InvalidResponse".into(),
        message: format!("cannot parse the {what} response: {e}"),
    })
}

/// Escapes text for an XML element.
pub fn xml_escape(s: &str) -> String {
    quick_xml::escape::escape(s).into_owned()
}

/// Turns a non-2xx response into [`Error::S3`] with the server's code and message.
pub async fn failure(resource: String, resp: reqwest::Response) -> Error {
    let status = resp.status().as_u16();
    let body = resp.bytes().await.unwrap_or_default();
    let doc: ErrorDoc =
        quick_xml::de::from_str(std::str::from_utf8(&body).unwrap_or("")).unwrap_or_default();
    let code = if doc.code.is_empty() {
        match status {
            404 => "NotFound".to_string(),
            403 => "AccessDenied".to_string(),
            412 => "PreconditionFailed".to_string(),
            _ => format!("HTTP{status}"),
        }
    } else {
        doc.code
    };
    Error::S3 {
        resource,
        status,
        code,
        message: doc.message,
    }
}

/// The error and its causes, joined (reqwest's own message hides the cause).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// A blocking [`std::io::Read`] over a streamed response body, for the engine's reader
/// threads. Fails at EOF if fewer or more bytes than `expected` arrived (a cut transfer must
/// never look like a complete object). Call only on a blocking thread.
pub struct BlockingBody {
    rt: tokio::runtime::Handle,
    stream: futures::stream::BoxStream<'static, reqwest::Result<Bytes>>,
    buf: Bytes,
    read: u64,
    expected: Option<u64>,
    resource: String,
}

impl BlockingBody {
    /// Wraps `resp`'s body; `expected` is the object size if known.
    pub fn new(
        rt: tokio::runtime::Handle,
        resp: reqwest::Response,
        expected: Option<u64>,
        resource: String,
    ) -> BlockingBody {
        BlockingBody {
            rt,
            stream: resp.bytes_stream().boxed(),
            buf: Bytes::new(),
            read: 0,
            expected,
            resource,
        }
    }
}

impl std::io::Read for BlockingBody {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        while self.buf.is_empty() {
            match self.rt.block_on(self.stream.next()) {
                Some(Ok(b)) => self.buf = b,
                Some(Err(e)) => {
                    return Err(std::io::Error::other(format!(
                        "S3 {}: body read failed after {} bytes: {}",
                        self.resource,
                        self.read,
                        error_chain(&e)
                    )))
                }
                None => {
                    if let Some(want) = self.expected.filter(|w| *w != self.read) {
                        return Err(std::io::Error::other(format!(
                            "S3 {}: body has {} bytes, the listing said {want}",
                            self.resource, self.read
                        )));
                    }
                    return Ok(0);
                }
            }
        }
        let n = out.len().min(self.buf.len());
        out[..n].copy_from_slice(&self.buf[..n]);
        self.buf = self.buf.slice(n..);
        self.read += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listing_keys_decode_exactly() {
        assert_eq!(decode_form("a+b%2Bc%25d"), b"a b+c%d");
        assert_eq!(decode_form("%2F%2Fx"), b"//x");
        let e = "caf\u{e9}".to_string();
        assert_eq!(
            decode_form(&utf8_percent_encode(&e, QUERY).to_string()),
            e.as_bytes()
        );
    }

    #[test]
    fn list_document_parses() {
        let xml = r#"<?xml version="1.0" encoding="UTF-8"?><ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Name>b</Name><Prefix></Prefix><KeyCount>2</KeyCount><MaxKeys>1000</MaxKeys><Delimiter>%2F</Delimiter><IsTruncated>true</IsTruncated><NextContinuationToken>tok+1</NextContinuationToken><EncodingType>url</EncodingType><Contents><Key>a+b</Key><LastModified>2026-12-04T22:00:00.000Z</LastModified><ETag>&quot;abc-2&quot;</ETag><Size>7</Size><StorageClass>STANDARD</StorageClass></Contents><CommonPrefixes><Prefix>%2F</Prefix></CommonPrefixes></ListBucketResult>"#;
        let d: ListDoc = parse_xml("ListObjectsV2", xml.as_bytes()).unwrap();
        assert!(d.is_truncated);
        assert_eq!(d.contents[0].etag, "\"abc-2\"");
        assert_eq!(d.contents[0].size, 7);
        assert_eq!(d.common_prefixes[0].prefix, "%2F");
        assert_eq!(d.next_continuation_token.as_deref(), Some("tok+1"));
    }

    #[test]
    fn tagging_parses() {
        let xml = r#"<Tagging xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><TagSet><Tag><Key>k 1</Key><Value>v&amp;1</Value></Tag><Tag><Key>e</Key><Value></Value></Tag></TagSet></Tagging>"#;
        assert_eq!(
            parse_tagging(xml.as_bytes()).unwrap(),
            vec![("k 1".into(), "v&1".into()), ("e".into(), String::new())]
        );
        assert!(parse_tagging(b"<Tagging><TagSet></TagSet></Tagging>")
            .unwrap()
            .is_empty());
    }
}
