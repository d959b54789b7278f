//! The generate function's use cases: upload slots, starting a paid generation (charge, idempotency key,
//! in-flight slot in one transaction), reading and deleting generations.

use std::sync::Arc;

use crate::config::GenerationConfig;
use crate::domain::{
    new_id, object_keys, Generation, GenerationSource, GenerationStatus, TemplateId, UploadId, UserId,
};
use crate::metrics::{Metric, Metrics};
use crate::ports::{
    CharacterStore, Clock, CreditsStore, DeleteOutcome, Dispatcher, GenerationPage, GenerationStore, IdempotencyRecord,
    JobRef, NewGeneration, ObjectStore, PortError, PresignedUpload, StartOutcome,
};
use crate::services::catalogue::CatalogueService;

/// The largest photo the app may upload.
pub const MAX_UPLOAD_BYTES: u64 = 10 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    #[error("content type not accepted")]
    UnsupportedType,
    #[error("HEIC is not accepted")]
    Heic,
    #[error("empty upload")]
    Empty,
    #[error("upload too large")]
    TooLarge,
    #[error(transparent)]
    Port(#[from] PortError),
}

/// A created upload slot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upload {
    pub upload_id: UploadId,
    pub presigned: PresignedUpload,
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("no such active template")]
    UnknownTemplate,
    #[error("no uploaded photo under this id")]
    NoUpload,
    /// No such character, or no such generation, of this user's (another user's answers the same).
    #[error("no such source")]
    SourceNotFound,
    /// The parent generation has no output to restyle (not succeeded).
    #[error("the parent generation has not succeeded")]
    ParentNotSucceeded,
    #[error("insufficient credits")]
    Insufficient { balance: u64, cost: u64 },
    #[error("too many generations in flight")]
    TooManyInFlight,
    #[error("idempotency key reused with another request")]
    KeyReused,
    #[error("idempotency key belongs to a generation that was deleted")]
    KeyOfDeletedGeneration,
    #[error("the account is being deleted")]
    AccountDeleted,
    #[error(transparent)]
    Port(#[from] PortError),
}

/// A started (or replayed) generation and the balance right after its charge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Started {
    pub generation: Generation,
    pub balance: u64,
    /// True when this answers a repeat of an earlier request with the same idempotency key.
    pub replayed: bool,
}

/// The generate function's use cases.
pub struct Generations {
    pub store: Arc<dyn GenerationStore>,
    /// Characters a generation may be made from.
    pub characters: Arc<dyn CharacterStore>,
    /// The balance, read beside the other reads of a start so the charge need not read it again.
    pub credits: Arc<dyn CreditsStore>,
    pub objects: Arc<dyn ObjectStore>,
    pub catalogue: Arc<CatalogueService>,
    pub dispatcher: Arc<dyn Dispatcher>,
    pub clock: Arc<dyn Clock>,
    pub metrics: Arc<dyn Metrics>,
    pub config: GenerationConfig,
}

/// The fields of a generation as they were when it started: what a replayed request answers with.
fn as_started(mut g: Generation) -> Generation {
    g.status = GenerationStatus::Queued;
    g.refunded = false;
    g.output_key = None;
    g.failure_reason = None;
    g.started_at = None;
    g.completed_at = None;
    g.attempts = 0;
    g.claim = None;
    g.claim_until = None;
    g.claim_delivery = None;
    g.timings = None;
    g.prediction = None;
    g
}

fn hex_sha256(parts: &[&str]) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, parts.join("\u{1f}").as_bytes());
    digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

impl Generations {
    /// A presigned upload of `content_length` bytes of `content_type` under the user's prefix.
    pub async fn create_upload(
        &self,
        user: &UserId,
        content_type: &str,
        content_length: u64,
    ) -> Result<Upload, UploadError> {
        match content_type {
            "image/jpeg" | "image/png" => {}
            // The contract lists HEIC, but nothing on Lambda decodes it; refusing here beats charging for a
            // job that must fail. The app sends JPEG (iOS converts natively).
            "image/heic" => return Err(UploadError::Heic),
            _ => return Err(UploadError::UnsupportedType),
        }
        if content_length == 0 {
            return Err(UploadError::Empty);
        }
        if content_length > MAX_UPLOAD_BYTES {
            return Err(UploadError::TooLarge);
        }
        let upload_id = UploadId::new();
        let key = object_keys::upload(user, &upload_id);
        let presigned = self
            .objects
            .presign_upload(&key, content_type, content_length, self.config.upload_url_secs, self.clock.now())
            .await?;
        Ok(Upload { upload_id, presigned })
    }

    /// The input objects of a generation of `source`: the upload (if it was uploaded), the character's
    /// photos, or the parent's output (if it succeeded). Only the caller's own: another user's id is not found.
    async fn inputs(
        &self,
        user: &UserId,
        source: &GenerationSource,
    ) -> Result<Result<Vec<String>, StartError>, PortError> {
        Ok(match source {
            GenerationSource::Upload(upload) => {
                let key = object_keys::upload(user, upload);
                match self.objects.head(&key).await? {
                    Some(_) => Ok(vec![key]),
                    None => Err(StartError::NoUpload),
                }
            }
            GenerationSource::Character(id) => match self.characters.character(user, id).await? {
                Some(character) => Ok(character.photo_keys()),
                None => Err(StartError::SourceNotFound),
            },
            GenerationSource::Generation(id) => match self.store.generation(user, id).await? {
                None => Err(StartError::SourceNotFound),
                Some(parent) => match (parent.status, parent.output_key) {
                    (GenerationStatus::Succeeded, Some(output)) => Ok(vec![output]),
                    _ => Err(StartError::ParentNotSucceeded),
                },
            },
        })
    }

    /// Charges and queues a generation of `source` in `template`'s style, once per idempotency key.
    /// `account_deleted` is the caller's deleted-account check: it runs beside the reads a start makes (the
    /// idempotency record, the source, the balance, the catalogue), and nothing is written unless it answers
    /// `false`. So a start waits on two round trips: those reads together, then one transaction.
    pub async fn start(
        &self,
        user: &UserId,
        idempotency_key: &str,
        template: &TemplateId,
        source: &GenerationSource,
        account_deleted: impl std::future::Future<Output = Result<bool, PortError>>,
    ) -> Result<Started, StartError> {
        let key_hash = hex_sha256(&[idempotency_key]);
        // The key covers the source. An upload hashes as it did before there were other sources, so a key
        // recorded then still matches its repeat.
        let request_hash = match source {
            GenerationSource::Upload(upload) => {
                hex_sha256(&["POST /v1/generations", template.as_str(), upload.as_str()])
            }
            other => hex_sha256(&["POST /v1/generations", template.as_str(), other.kind(), other.id()]),
        };
        let (deleted, record, snapshot, inputs, balance) = tokio::join!(
            account_deleted,
            self.store.idempotency_record(user, &key_hash),
            self.catalogue.snapshot(),
            self.inputs(user, source),
            self.credits.balance(user),
        );
        if deleted? {
            return Err(StartError::AccountDeleted);
        }
        // A repeat answers from the record without touching the balance (the other reads go unused).
        if let Some(record) = record? {
            return self.replay(user, &record, &request_hash).await;
        }
        let snapshot = snapshot?;
        let template = snapshot.get(template).ok_or(StartError::UnknownTemplate)?;
        let input_keys = inputs??;
        let now = self.clock.now();
        let generation = Generation {
            id: new_id(),
            user_id: user.clone(),
            template_id: template.id.clone(),
            source: source.clone(),
            input_keys,
            spec: template.generation.clone(),
            status: GenerationStatus::Queued,
            credits_charged: template.cost_credits,
            refunded: false,
            output_key: None,
            failure_reason: None,
            created_at: now,
            deadline: now + self.config.deadline_secs,
            started_at: None,
            completed_at: None,
            attempts: 0,
            claim: None,
            claim_until: None,
            claim_delivery: None,
            timings: None,
            prediction: None,
        };
        let new = NewGeneration {
            generation: generation.clone(),
            idempotency: IdempotencyRecord {
                key_hash: key_hash.clone(),
                request_hash: request_hash.clone(),
                generation_id: generation.id.clone(),
                balance: 0,
                created_at: now,
            },
            max_in_flight: self.config.max_in_flight,
            balance_read: Some(balance?),
        };
        match self.store.start_generation(&new, now).await? {
            StartOutcome::Started { balance } => {
                self.metrics.count(Metric::GenerationsStarted);
                self.metrics.record(Metric::CreditsSpent, generation.credits_charged as f64);
                self.dispatcher.dispatch(JobRef { user_id: user.clone(), generation_id: generation.id.clone() });
                Ok(Started { generation, balance, replayed: false })
            }
            StartOutcome::KeyUsed(record) => self.replay(user, &record, &request_hash).await,
            StartOutcome::Insufficient { balance } => {
                // A concurrent request with the same key may have taken the last credits: it answers for both.
                match self.store.idempotency_record(user, &key_hash).await? {
                    Some(record) => self.replay(user, &record, &request_hash).await,
                    None => Err(StartError::Insufficient { balance, cost: generation.credits_charged }),
                }
            }
            StartOutcome::TooManyInFlight => Err(StartError::TooManyInFlight),
        }
    }

    async fn replay(
        &self,
        user: &UserId,
        record: &IdempotencyRecord,
        request_hash: &str,
    ) -> Result<Started, StartError> {
        if record.request_hash != request_hash {
            return Err(StartError::KeyReused);
        }
        match self.store.generation(user, &record.generation_id).await? {
            Some(g) => Ok(Started { generation: as_started(g), balance: record.balance, replayed: true }),
            None => Err(StartError::KeyOfDeletedGeneration),
        }
    }

    pub async fn get(&self, user: &UserId, id: &str) -> Result<Option<Generation>, PortError> {
        self.store.generation(user, id).await
    }

    pub async fn page(&self, user: &UserId, limit: usize, before: Option<&str>) -> Result<GenerationPage, PortError> {
        self.store.generations_page(user, limit, before).await
    }

    /// A short-lived download URL of a succeeded generation's output.
    pub async fn output_url(&self, g: &Generation) -> Result<Option<String>, PortError> {
        match (&g.status, &g.output_key) {
            (GenerationStatus::Succeeded, Some(key)) => {
                Ok(Some(self.objects.presign_download(key, self.config.output_url_secs, self.clock.now()).await?))
            }
            _ => Ok(None),
        }
    }

    /// Deletes a finished generation: its images first (the photo it was uploaded with, any prepared copy,
    /// the output; a character's photos and a parent's output stay with them), then the record, so a failure half-way leaves a record the user can delete again rather than
    /// an image nobody can reach. Other generations of the same photo that are still queued then fail and
    /// are refunded (the photo is gone, as the user asked).
    pub async fn delete(&self, user: &UserId, id: &str) -> Result<DeleteOutcome, PortError> {
        match self.store.generation(user, id).await? {
            Some(g) => self.delete_found(user, g).await,
            None => Ok(DeleteOutcome::NotFound),
        }
    }

    /// [`Generations::delete`] of a generation the caller has read (with [`Generations::get`]).
    pub async fn delete_found(&self, user: &UserId, g: Generation) -> Result<DeleteOutcome, PortError> {
        // Read for this user, so always theirs; checked all the same, since it decides whose images go.
        if g.user_id != *user {
            return Ok(DeleteOutcome::NotFound);
        }
        if g.status.in_flight() {
            return Ok(DeleteOutcome::InFlight);
        }
        self.objects.delete(&g.owned_keys()).await?;
        self.store.delete_generation(&g).await
    }
}
