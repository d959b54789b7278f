//! The images bucket (adapters/objects.rs).

use async_trait::async_trait;

use super::PortError;
use crate::domain::UnixTime;

/// A presigned upload: the app sends exactly these headers with a PUT of the photo to `url`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresignedUpload {
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub expires_at: UnixTime,
}

/// What is stored under a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    pub content_type: Option<String>,
    pub length: u64,
}

/// The images bucket (S3 when deployed, memory in the local API and tests).
#[async_trait]
pub trait ObjectStore: Send + Sync {
    /// A URL the client PUTs `content_length` bytes of `content_type` to; the signature covers both.
    async fn presign_upload(
        &self,
        key: &str,
        content_type: &str,
        content_length: u64,
        expires_in_secs: u64,
        now: UnixTime,
    ) -> Result<PresignedUpload, PortError>;
    /// A short-lived URL to download `key`.
    async fn presign_download(&self, key: &str, expires_in_secs: u64, now: UnixTime) -> Result<String, PortError>;
    async fn head(&self, key: &str) -> Result<Option<ObjectInfo>, PortError>;
    /// The object, or `None` if absent. More than `max_bytes` is an error (never read into memory).
    async fn get(&self, key: &str, max_bytes: u64) -> Result<Option<Vec<u8>>, PortError>;
    async fn put(&self, key: &str, bytes: Vec<u8>, content_type: &str) -> Result<(), PortError>;
    /// Deletes the objects (absent ones are fine).
    async fn delete(&self, keys: &[String]) -> Result<(), PortError>;
    /// Deletes every object under `prefix`; returns how many.
    async fn delete_prefix(&self, prefix: &str) -> Result<usize, PortError>;
}
