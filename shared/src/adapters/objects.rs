//! The images bucket on S3 (its in-memory twin is adapters/memory/objects.rs).
//!
//! Uploads never pass through a Lambda: the app PUTs the photo to a presigned URL whose signature covers the
//! content type and length, so S3 itself refuses anything else. Outputs are downloaded through short-lived
//! presigned GET URLs.

use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_s3::presigning::PresigningConfig;
use aws_sdk_s3::primitives::ByteStream;

use crate::domain::UnixTime;
use crate::ports::{ObjectInfo, ObjectStore, PortError, PresignedUpload};

const WHAT: &str = "images bucket";

/// The deployed bucket.
#[derive(Clone, Debug)]
pub struct S3Objects {
    client: aws_sdk_s3::Client,
    bucket: String,
}

impl S3Objects {
    pub fn new(client: aws_sdk_s3::Client, bucket: impl Into<String>) -> Self {
        Self { client, bucket: bucket.into() }
    }
}

fn s3_error<E, R>(err: aws_sdk_s3::error::SdkError<E, R>) -> PortError
where
    E: aws_sdk_s3::error::ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    use aws_sdk_s3::error::SdkError;
    match &err {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            PortError::unavailable(WHAT, aws_sdk_s3::error::DisplayErrorContext(&err).to_string())
        }
        SdkError::ServiceError(e) => {
            let code = e.err().code().unwrap_or("UnknownError");
            let text = format!("{code}: {}", e.err().message().unwrap_or("no message"));
            if matches!(code, "SlowDown" | "ServiceUnavailable" | "InternalError" | "RequestTimeout") {
                PortError::unavailable(WHAT, text)
            } else {
                PortError::internal(WHAT, text)
            }
        }
        _ => PortError::internal(WHAT, aws_sdk_s3::error::DisplayErrorContext(&err).to_string()),
    }
}

fn presigning(expires_in_secs: u64) -> Result<PresigningConfig, PortError> {
    PresigningConfig::expires_in(Duration::from_secs(expires_in_secs)).map_err(|e| PortError::internal(WHAT, e))
}

#[async_trait]
impl ObjectStore for S3Objects {
    async fn presign_upload(
        &self,
        key: &str,
        content_type: &str,
        content_length: u64,
        expires_in_secs: u64,
        now: UnixTime,
    ) -> Result<PresignedUpload, PortError> {
        let length = i64::try_from(content_length).map_err(|e| PortError::internal(WHAT, e))?;
        let request = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .content_type(content_type)
            .content_length(length)
            .presigned(presigning(expires_in_secs)?)
            .await
            .map_err(s3_error)?;
        let headers = request.headers().map(|(k, v)| (k.to_owned(), v.to_owned())).collect();
        let expires_at = now.saturating_add(i64::try_from(expires_in_secs).unwrap_or(i64::MAX));
        Ok(PresignedUpload { url: request.uri().to_owned(), headers, expires_at })
    }

    async fn presign_download(&self, key: &str, expires_in_secs: u64, _now: UnixTime) -> Result<String, PortError> {
        let request = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .presigned(presigning(expires_in_secs)?)
            .await
            .map_err(s3_error)?;
        Ok(request.uri().to_owned())
    }

    async fn head(&self, key: &str) -> Result<Option<ObjectInfo>, PortError> {
        match self.client.head_object().bucket(&self.bucket).key(key).send().await {
            Ok(out) => Ok(Some(ObjectInfo {
                content_type: out.content_type,
                length: out.content_length.and_then(|l| u64::try_from(l).ok()).unwrap_or(0),
            })),
            Err(e) if e.as_service_error().is_some_and(|se| se.is_not_found()) => Ok(None),
            Err(e) => Err(s3_error(e)),
        }
    }

    async fn get(&self, key: &str, max_bytes: u64) -> Result<Option<Vec<u8>>, PortError> {
        let out = match self.client.get_object().bucket(&self.bucket).key(key).send().await {
            Ok(out) => out,
            Err(e) if e.as_service_error().is_some_and(|se| se.is_no_such_key()) => return Ok(None),
            Err(e) => return Err(s3_error(e)),
        };
        let length = out.content_length.and_then(|l| u64::try_from(l).ok()).unwrap_or(0);
        if length > max_bytes {
            return Err(PortError::internal(WHAT, format!("object of {length} bytes exceeds {max_bytes}")));
        }
        let bytes = out.body.collect().await.map_err(|e| PortError::unavailable(WHAT, e))?.to_vec();
        Ok(Some(bytes))
    }

    async fn put(&self, key: &str, bytes: Vec<u8>, content_type: &str) -> Result<(), PortError> {
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .content_type(content_type)
            .body(ByteStream::from(bytes))
            .send()
            .await
            .map_err(s3_error)?;
        Ok(())
    }

    /// One `DeleteObjects` call per 1,000 keys (S3's maximum), not a call per key. A key that is not there
    /// counts as deleted; a key S3 could not delete fails the call (so the caller's step is re-run).
    async fn delete(&self, keys: &[String]) -> Result<(), PortError> {
        use aws_sdk_s3::types::{Delete, ObjectIdentifier};
        for chunk in keys.chunks(1000) {
            let objects = chunk
                .iter()
                .map(|key| ObjectIdentifier::builder().key(key).build().map_err(|e| PortError::internal("images", e)))
                .collect::<Result<Vec<_>, _>>()?;
            let delete = Delete::builder()
                .set_objects(Some(objects))
                .quiet(true)
                .build()
                .map_err(|e| PortError::internal("images", e))?;
            let out =
                self.client.delete_objects().bucket(&self.bucket).delete(delete).send().await.map_err(s3_error)?;
            if let Some(failed) = out.errors.as_deref().and_then(<[_]>::first) {
                return Err(PortError::unavailable(
                    "images",
                    format!(
                        "{} of {} objects were not deleted (first: {})",
                        out.errors.as_deref().map_or(0, <[_]>::len),
                        chunk.len(),
                        failed.code().unwrap_or("no code")
                    ),
                ));
            }
        }
        Ok(())
    }

    async fn delete_prefix(&self, prefix: &str) -> Result<usize, PortError> {
        let mut deleted = 0;
        let mut pages = self.client.list_objects_v2().bucket(&self.bucket).prefix(prefix).into_paginator().send();
        while let Some(page) = pages.next().await {
            let keys: Vec<String> =
                page.map_err(s3_error)?.contents.unwrap_or_default().into_iter().filter_map(|o| o.key).collect();
            deleted += keys.len();
            self.delete(&keys).await?;
        }
        Ok(deleted)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn query(url: &str) -> HashMap<String, String> {
        url::Url::parse(url).unwrap().query_pairs().map(|(k, v)| (k.into_owned(), v.into_owned())).collect()
    }

    #[tokio::test]
    async fn a_presigned_s3_upload_signs_the_content_type_and_length() {
        let sdk = aws_sdk_s3::Config::builder()
            .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
            .region(aws_sdk_s3::config::Region::new("us-east-1"))
            .credentials_provider(aws_sdk_s3::config::Credentials::new("AKIDEXAMPLE", "secret", None, None, "test"))
            .build();
        let store = S3Objects::new(aws_sdk_s3::Client::from_conf(sdk), "facemake-dev-images");
        let signed = store.presign_upload("uploads/u/1", "image/jpeg", 1234, 900, 1000).await.unwrap();
        let q = query(&signed.url);
        let signed_headers: Vec<&str> = q["X-Amz-SignedHeaders"].split(';').collect();
        assert!(signed_headers.contains(&"content-type"), "{signed_headers:?}");
        assert!(signed_headers.contains(&"content-length"), "{signed_headers:?}");
        assert_eq!(q["X-Amz-Expires"], "900");
        let headers: HashMap<_, _> = signed.headers.iter().map(|(k, v)| (k.to_lowercase(), v.as_str())).collect();
        assert_eq!(headers.get("content-type"), Some(&"image/jpeg"));
        assert_eq!(headers.get("content-length"), Some(&"1234"));
        assert_eq!(signed.expires_at, 1900);
        assert!(signed.url.contains("uploads/u/1"));
    }
}
