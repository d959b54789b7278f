//! The images bucket in memory (twin of adapters/objects.rs), served by the local API.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use secrecy::{ExposeSecret, SecretSlice};

use crate::domain::UnixTime;
use crate::ports::{ObjectInfo, ObjectStore, PortError, PresignedUpload};

const WHAT: &str = "images bucket";

/// A stored object in memory.
#[derive(Debug, Clone)]
struct MemObject {
    bytes: Arc<Vec<u8>>,
    content_type: String,
}

/// Why the local upload endpoint refused a PUT (what S3 would answer 403/400 for).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LocalUploadError {
    #[error("the upload URL's signature does not match")]
    BadSignature,
    #[error("the upload URL has expired")]
    Expired,
    #[error("Content-Type must be {expected}")]
    WrongContentType { expected: String },
    #[error("the body must be exactly {expected} bytes")]
    WrongLength { expected: u64 },
}

/// The images bucket in memory, with URLs served by the local API (`PUT /_local/uploads/…`,
/// `GET /_local/objects/…`) and signed like S3's: an HMAC over the key, method, expiry and, for uploads, the
/// content type and length.
pub struct MemoryObjects {
    base_url: String,
    key: SecretSlice<u8>,
    objects: Mutex<HashMap<String, MemObject>>,
}

impl MemoryObjects {
    /// `base_url`: where the local API listens (`http://127.0.0.1:3000`).
    pub fn new(base_url: &str) -> Result<Self, PortError> {
        let key = crate::crypto::random_bytes::<32>().map_err(|e| PortError::internal(WHAT, e))?;
        Ok(Self {
            base_url: base_url.trim_end_matches('/').to_owned(),
            key: SecretSlice::from(key.to_vec()),
            objects: Mutex::new(HashMap::new()),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, MemObject>> {
        self.objects.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn signature(&self, parts: &[&str]) -> String {
        crate::crypto::short_mac(self.key.expose_secret(), parts)
    }

    fn signed(&self, parts: &[&str], tag: &str) -> bool {
        crate::crypto::short_mac_matches(self.key.expose_secret(), parts, tag)
    }

    /// Stores a PUT to the local upload URL of `key` after checking what S3 would check.
    pub fn accept_upload(
        &self,
        key: &str,
        query: &HashMap<String, String>,
        content_type: Option<&str>,
        body: &[u8],
        now: UnixTime,
    ) -> Result<(), LocalUploadError> {
        let get = |name: &str| query.get(name).map(String::as_str).unwrap_or_default();
        let (expires, ct, length) = (get("expires"), get("contentType"), get("contentLength"));
        if !self.signed(&["PUT", key, expires, ct, length], get("signature")) {
            return Err(LocalUploadError::BadSignature);
        }
        if expires.parse::<UnixTime>().map_or(true, |e| e < now) {
            return Err(LocalUploadError::Expired);
        }
        if content_type != Some(ct) {
            return Err(LocalUploadError::WrongContentType { expected: ct.to_owned() });
        }
        let expected_length: u64 = length.parse().unwrap_or(0);
        if body.len() as u64 != expected_length {
            return Err(LocalUploadError::WrongLength { expected: expected_length });
        }
        let object = MemObject { bytes: Arc::new(body.to_vec()), content_type: ct.to_owned() };
        self.lock().insert(key.to_owned(), object);
        Ok(())
    }

    /// The object behind a local download URL, if the URL is valid and unexpired.
    pub fn download(
        &self,
        key: &str,
        query: &HashMap<String, String>,
        now: UnixTime,
    ) -> Option<(Arc<Vec<u8>>, String)> {
        let get = |name: &str| query.get(name).map(String::as_str).unwrap_or_default();
        let valid = self.signed(&["GET", key, get("expires")], get("signature"))
            && get("expires").parse::<UnixTime>().is_ok_and(|e| e >= now);
        if !valid {
            return None;
        }
        self.lock().get(key).map(|o| (o.bytes.clone(), o.content_type.clone()))
    }

    /// Every key stored (tests check what is left of a user).
    pub fn keys(&self) -> Vec<String> {
        let mut keys: Vec<String> = self.lock().keys().cloned().collect();
        keys.sort();
        keys
    }
}

fn encode(value: &str) -> String {
    url::form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

#[async_trait]
impl ObjectStore for MemoryObjects {
    async fn presign_upload(
        &self,
        key: &str,
        content_type: &str,
        content_length: u64,
        expires_in_secs: u64,
        now: UnixTime,
    ) -> Result<PresignedUpload, PortError> {
        let expires_at = now.saturating_add(i64::try_from(expires_in_secs).unwrap_or(i64::MAX));
        let (expires, length) = (expires_at.to_string(), content_length.to_string());
        let signature = self.signature(&["PUT", key, &expires, content_type, &length]);
        let url = format!(
            "{}/_local/uploads/{key}?expires={expires}&contentType={}&contentLength={length}&signature={signature}",
            self.base_url,
            encode(content_type),
        );
        let headers = vec![("content-type".to_owned(), content_type.to_owned()), ("content-length".to_owned(), length)];
        Ok(PresignedUpload { url, headers, expires_at })
    }

    async fn presign_download(&self, key: &str, expires_in_secs: u64, now: UnixTime) -> Result<String, PortError> {
        let expires = now.saturating_add(i64::try_from(expires_in_secs).unwrap_or(i64::MAX)).to_string();
        let signature = self.signature(&["GET", key, &expires]);
        Ok(format!("{}/_local/objects/{key}?expires={expires}&signature={signature}", self.base_url))
    }

    async fn head(&self, key: &str) -> Result<Option<ObjectInfo>, PortError> {
        Ok(self
            .lock()
            .get(key)
            .map(|o| ObjectInfo { content_type: Some(o.content_type.clone()), length: o.bytes.len() as u64 }))
    }

    async fn get(&self, key: &str, max_bytes: u64) -> Result<Option<Vec<u8>>, PortError> {
        match self.lock().get(key) {
            None => Ok(None),
            Some(o) if o.bytes.len() as u64 > max_bytes => {
                Err(PortError::internal(WHAT, format!("object of {} bytes exceeds {max_bytes}", o.bytes.len())))
            }
            Some(o) => Ok(Some(o.bytes.as_ref().clone())),
        }
    }

    async fn put(&self, key: &str, bytes: Vec<u8>, content_type: &str) -> Result<(), PortError> {
        let object = MemObject { bytes: Arc::new(bytes), content_type: content_type.to_owned() };
        self.lock().insert(key.to_owned(), object);
        Ok(())
    }

    async fn delete(&self, keys: &[String]) -> Result<(), PortError> {
        let mut objects = self.lock();
        for key in keys {
            objects.remove(key);
        }
        Ok(())
    }

    async fn delete_prefix(&self, prefix: &str) -> Result<usize, PortError> {
        let mut objects = self.lock();
        let before = objects.len();
        objects.retain(|k, _| !k.starts_with(prefix));
        Ok(before - objects.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(url: &str) -> HashMap<String, String> {
        url::Url::parse(url).unwrap().query_pairs().map(|(k, v)| (k.into_owned(), v.into_owned())).collect()
    }

    #[tokio::test]
    async fn a_local_upload_url_only_takes_what_it_was_signed_for() {
        let store = MemoryObjects::new("http://127.0.0.1:3000").unwrap();
        let key = "uploads/u/1";
        let signed = store.presign_upload(key, "image/jpeg", 4, 900, 1000).await.unwrap();
        let q = query(&signed.url);
        assert_eq!(
            store.accept_upload(key, &q, Some("image/png"), b"abcd", 1000),
            Err(LocalUploadError::WrongContentType { expected: "image/jpeg".into() })
        );
        assert_eq!(
            store.accept_upload(key, &q, Some("image/jpeg"), b"abcde", 1000),
            Err(LocalUploadError::WrongLength { expected: 4 })
        );
        assert_eq!(store.accept_upload(key, &q, Some("image/jpeg"), b"abcd", 1901), Err(LocalUploadError::Expired));
        assert_eq!(
            store.accept_upload("uploads/other/1", &q, Some("image/jpeg"), b"abcd", 1000),
            Err(LocalUploadError::BadSignature)
        );
        let mut forged = q.clone();
        forged.insert("contentLength".into(), "5".into());
        assert_eq!(
            store.accept_upload(key, &forged, Some("image/jpeg"), b"abcde", 1000),
            Err(LocalUploadError::BadSignature)
        );
        assert_eq!(store.head(key).await.unwrap(), None);
        store.accept_upload(key, &q, Some("image/jpeg"), b"abcd", 1000).unwrap();
        assert_eq!(
            store.head(key).await.unwrap(),
            Some(ObjectInfo { content_type: Some("image/jpeg".into()), length: 4 })
        );
    }

    #[tokio::test]
    async fn a_local_download_url_expires_and_names_one_key() {
        let store = MemoryObjects::new("http://127.0.0.1:3000/").unwrap();
        store.put("outputs/u/g.png", vec![1, 2, 3], "image/png").await.unwrap();
        let url = store.presign_download("outputs/u/g.png", 600, 1000).await.unwrap();
        assert!(url.starts_with("http://127.0.0.1:3000/_local/objects/outputs/u/g.png?"), "{url}");
        let q = query(&url);
        assert_eq!(
            store.download("outputs/u/g.png", &q, 1600).map(|(b, t)| (b.to_vec(), t)),
            Some((vec![1, 2, 3], "image/png".into()))
        );
        assert!(store.download("outputs/u/g.png", &q, 1601).is_none());
        assert!(store.download("outputs/u/h.png", &q, 1000).is_none());
    }
}
