//! Reading a re-rank body: JSON, with the documents counted while they are parsed.
//!
//! A body is at most `--max-body-bytes`, but that alone lets an 8 MiB body of empty strings
//! become 2.8 million documents (and 260 MB) before anything counts them. The document lists
//! of every dialect are read through [`Counted`], which stops the parse at the first document
//! past `--max-documents`: the request is refused with 413 having allocated at most that many
//! strings. Everything else is serde's: syntax errors are 400 (`invalid_json`), a field of the
//! wrong type or a missing one is 422 naming its path (`documents[3]: invalid type ...`), a
//! body that is not `application/json` is 415, as axum's own `Json` extractor answers.

use std::cell::Cell;
use std::fmt;
use std::marker::PhantomData;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::http::{header, HeaderMap, StatusCode};
use serde::de::{self, DeserializeOwned, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};

use super::{ApiError, AppState};

thread_local! {
    /// The document limit of the parse running on this thread, and whether it was passed.
    static LIMIT: Cell<Option<usize>> = const { Cell::new(None) };
    static PASSED: Cell<bool> = const { Cell::new(false) };
}

/// A list of documents that refuses to grow past the limit of the parse reading it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Counted<T>(pub Vec<T>);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Counted<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct CountingVisitor<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for CountingVisitor<T> {
            type Value = Counted<T>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a list of documents")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Counted<T>, A::Error> {
                let limit = LIMIT.with(Cell::get).unwrap_or(usize::MAX);
                let mut items = Vec::new();
                while let Some(item) = seq.next_element()? {
                    if items.len() == limit {
                        PASSED.with(|p| p.set(true));
                        return Err(de::Error::custom(format!("more than {limit} documents")));
                    }
                    items.push(item);
                }
                Ok(Counted(items))
            }
        }
        deserializer.deserialize_seq(CountingVisitor(PhantomData))
    }
}

/// Whether the body is declared JSON (`application/json` or `application/*+json`).
fn is_json(headers: &HeaderMap) -> bool {
    let Some(content_type) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let essence = content_type.split(';').next().unwrap_or("").trim();
    let essence = essence.to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// `bytes` as JSON of type `T`, reading at most `max_documents` documents per list.
pub fn from_slice<T: DeserializeOwned>(bytes: &[u8], max_documents: usize) -> Result<T, ApiError> {
    LIMIT.with(|l| l.set(Some(max_documents)));
    PASSED.with(|p| p.set(false));
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let parsed: Result<T, _> = serde_path_to_error::deserialize(&mut deserializer);
    LIMIT.with(|l| l.set(None));
    let passed = PASSED.with(|p| p.replace(false));
    let value = parsed.map_err(|error| {
        if passed {
            return ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                crate::rerank::too_many_documents(
                    &format!("more than {max_documents}"),
                    max_documents,
                ),
            );
        }
        let path = error.path().to_string();
        let inner = error.into_inner();
        let located = if path == "." || path.is_empty() {
            inner.to_string()
        } else {
            format!("{path}: {inner}")
        };
        classified(&inner, located)
    })?;
    // Nothing but whitespace may follow the value.
    deserializer
        .end()
        .map_err(|error| classified(&error, error.to_string()))?;
    Ok(value)
}

/// Syntax is 400, a value of the wrong shape 422 (as axum's `Json` answers).
fn classified(error: &serde_json::Error, located: String) -> ApiError {
    match error.classify() {
        serde_json::error::Category::Data => ApiError::validation(format!(
            "Failed to deserialize the JSON body into the target type: {located}"
        )),
        _ => ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_json",
            format!("Failed to parse the request body as JSON: {located}"),
        ),
    }
}

/// The request body as JSON of type `T`, or the error that says what is wrong with it
/// (counted in `te_request_failure`).
pub fn parse<T: DeserializeOwned>(
    state: &AppState,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<T, ApiError> {
    let refuse = |error: ApiError| super::refuse(state, error);
    let bytes = body.map_err(|rejection| {
        let status = rejection.status();
        let detail = rejection.body_text();
        refuse(if status == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                status,
                "too_large",
                format!("{detail}: the request body is over the size limit; send fewer or shorter documents"),
            )
            .payload()
        } else {
            ApiError::new(status, "invalid_json", detail)
        })
    })?;
    if !is_json(headers) {
        return Err(refuse(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "Expected request with `Content-Type: application/json`: send the body as JSON with `Content-Type: application/json`",
        )));
    }
    from_slice(&bytes, state.service.limits.max_documents).map_err(refuse)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    struct Body {
        documents: Counted<String>,
    }

    #[test]
    fn documents_are_counted_while_parsing() {
        let ok: Body = from_slice(br#"{"documents": ["a", "b"]}"#, 2).unwrap();
        assert_eq!(ok.documents.0, vec!["a", "b"]);
        let error = from_slice::<Body>(br#"{"documents": ["a", "b", "c"]}"#, 2).unwrap_err();
        assert_eq!(error.status, StatusCode::PAYLOAD_TOO_LARGE);
        assert!(
            error.message.contains("more than 2 documents"),
            "{}",
            error.message
        );
        // A later parse on the same thread is not limited by this one.
        let ok: Body = from_slice(br#"{"documents": ["a", "b", "c"]}"#, 3).unwrap();
        assert_eq!(ok.documents.0.len(), 3);
    }

    #[test]
    fn syntax_is_400_and_types_are_422_with_the_path() {
        let error = from_slice::<Body>(br#"{"documents": ["a", 1]}"#, 10).unwrap_err();
        assert_eq!(error.status, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(error.message.contains("documents[1]"), "{}", error.message);
        let error = from_slice::<Body>(br#"{"documents": ["a""#, 10).unwrap_err();
        assert_eq!(error.status, StatusCode::BAD_REQUEST);
        let error = from_slice::<Body>(br#"{"documents": []} x"#, 10).unwrap_err();
        assert_eq!(error.status, StatusCode::BAD_REQUEST);
        let error = from_slice::<Body>(br#"{}"#, 10).unwrap_err();
        assert_eq!(error.status, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(error.message.contains("documents"), "{}", error.message);
    }
}
