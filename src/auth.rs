//! API keys: who may call what.
//!
//! Optional Bearer keys (`--api-key` / `API_KEY`, comma-separated for several) guard every
//! endpoint but `/health`, `/ready` and `/metrics` (probes and scrapers carry no keys) and every
//! gRPC method but health checking. Admin endpoints (anything that changes the service's
//! state) need the separate `--admin-api-key` / `ADMIN_API_KEY` and do not exist when it is
//! unset. A key is compared with every configured key in constant time (`subtle`), so timing
//! does not reveal how much of a guess was right or which key matched. Keys are held as
//! [`Secret`]s, whose `Debug` is redacted, and are never logged or shown in `/info`.
//!
//! Status semantics: no key or an unknown key is 401 (who are you?); a valid API key on an
//! admin endpoint is 403 (known, not allowed).

use std::fmt;

use subtle::ConstantTimeEq;

/// A key; prints as `[redacted]`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl std::str::FromStr for Secret {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let key = s.trim();
        // An empty value (`API_KEY=`) means no key; `ApiKeys::new` drops it.
        if !key.is_empty() && key.len() < 16 {
            return Err("an API key must be at least 16 characters".into());
        }
        if key.chars().any(|c| c.is_whitespace() || c == ',') {
            return Err("an API key cannot contain whitespace or commas".into());
        }
        Ok(Secret(key.to_string()))
    }
}

/// What a request presented, decided against the configured keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Caller {
    Anonymous,
    Unknown,
    Client,
    Admin,
}

#[derive(Debug, Clone, Default)]
pub struct ApiKeys {
    client: Vec<Secret>,
    admin: Vec<Secret>,
}

impl ApiKeys {
    pub fn new(client: Vec<Secret>, admin: Vec<Secret>) -> ApiKeys {
        let present = |keys: Vec<Secret>| keys.into_iter().filter(|k| !k.0.is_empty()).collect();
        ApiKeys {
            client: present(client),
            admin: present(admin),
        }
    }

    /// Whether client endpoints require a key.
    pub fn required(&self) -> bool {
        !self.client.is_empty()
    }

    /// Whether admin endpoints exist.
    pub fn admin_enabled(&self) -> bool {
        !self.admin.is_empty()
    }

    pub fn client_key_count(&self) -> usize {
        self.client.len()
    }

    /// Identifies the caller from an `Authorization` header value, if any.
    pub fn identify(&self, authorization: Option<&[u8]>) -> Caller {
        let Some(header) = authorization else {
            return Caller::Anonymous;
        };
        let token = match header.get(..7) {
            Some(scheme) if scheme.eq_ignore_ascii_case(b"bearer ") => header[7..].trim_ascii(),
            _ => return Caller::Unknown,
        };
        // Every key is compared, whatever matched earlier.
        let admin = self
            .admin
            .iter()
            .fold(0u8, |hit, k| hit | k.0.as_bytes().ct_eq(token).unwrap_u8());
        let client = self
            .client
            .iter()
            .fold(0u8, |hit, k| hit | k.0.as_bytes().ct_eq(token).unwrap_u8());
        if admin == 1 {
            Caller::Admin
        } else if client == 1 {
            Caller::Client
        } else {
            Caller::Unknown
        }
    }

    /// Whether `caller` may use client endpoints (an admin key may too).
    pub fn allows_client(&self, caller: Caller) -> bool {
        !self.required() || matches!(caller, Caller::Client | Caller::Admin)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> ApiKeys {
        ApiKeys::new(
            vec![
                "client-key-0123456789".parse().unwrap(),
                "client-key-abcdefghij".parse().unwrap(),
            ],
            vec!["admin-key-0123456789".parse().unwrap()],
        )
    }

    #[test]
    fn identifies_callers() {
        let k = keys();
        assert_eq!(k.identify(None), Caller::Anonymous);
        assert_eq!(
            k.identify(Some(b"Bearer client-key-abcdefghij")),
            Caller::Client
        );
        assert_eq!(
            k.identify(Some(b"bearer client-key-0123456789")),
            Caller::Client
        );
        assert_eq!(
            k.identify(Some(b"Bearer admin-key-0123456789")),
            Caller::Admin
        );
        assert_eq!(
            k.identify(Some(b"Bearer client-key-012345678")),
            Caller::Unknown
        );
        assert_eq!(
            k.identify(Some(b"Basic client-key-0123456789")),
            Caller::Unknown
        );
        assert_eq!(k.identify(Some(b"Bearer")), Caller::Unknown);
        assert_eq!(k.identify(Some(b"")), Caller::Unknown);
    }

    #[test]
    fn secrets_never_print() {
        let secret: Secret = "client-key-0123456789".parse().unwrap();
        assert_eq!(format!("{secret:?}"), "[redacted]");
        assert_eq!(format!("{:?}", keys()).matches("[redacted]").count(), 3);
        assert!("short".parse::<Secret>().is_err());
        let empty = ApiKeys::new(vec!["".parse().unwrap()], vec![]);
        assert!(!empty.required() && !empty.admin_enabled());
    }
}
