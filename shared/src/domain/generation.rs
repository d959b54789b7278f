//! A generation: one paid render of one uploaded photo in one template's style.

use serde::{Deserialize, Serialize};

use super::{CharacterId, GenerationSpec, InvalidValue, TemplateId, UnixTime, UserId};

/// Where a generation is in its life. `Succeeded` and `Failed` are final.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GenerationStatus {
    Queued,
    Processing,
    Succeeded,
    Failed,
}

impl GenerationStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Processing => "processing",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
        }
    }

    /// Queued or processing: the job holds one of the user's in-flight slots and may still be refunded.
    pub fn in_flight(self) -> bool {
        matches!(self, Self::Queued | Self::Processing)
    }
}

/// An upload's id: a ULID the server issued. The object lives under the owner's prefix, so an id alone
/// never reaches another user's photo.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct UploadId(String);

impl UploadId {
    pub fn new() -> Self {
        Self(super::new_id())
    }

    pub fn parse(s: &str) -> Result<Self, InvalidValue> {
        ulid::Ulid::from_string(s).map(|u| Self(u.to_string())).map_err(|_| InvalidValue("not a valid upload id"))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for UploadId {
    fn default() -> Self {
        Self::new()
    }
}

impl TryFrom<String> for UploadId {
    type Error = InvalidValue;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}

impl From<UploadId> for String {
    fn from(id: UploadId) -> Self {
        id.0
    }
}

impl std::fmt::Display for UploadId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// What a generation renders: exactly one of an uploaded photo, a saved character's photos, or the output of
/// an earlier succeeded generation of the same user (restyled). Stored as one of the record's fields
/// `uploadId`, `characterId` or `parentGenerationId` (records from before characters have `uploadId`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum GenerationSource {
    #[serde(rename = "uploadId")]
    Upload(UploadId),
    #[serde(rename = "characterId")]
    Character(CharacterId),
    #[serde(rename = "parentGenerationId")]
    Generation(String),
}

impl GenerationSource {
    /// `upload`, `character` or `generation`, as the API names the kinds.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Upload(_) => "upload",
            Self::Character(_) => "character",
            Self::Generation(_) => "generation",
        }
    }

    pub fn id(&self) -> &str {
        match self {
            Self::Upload(id) => id.as_str(),
            Self::Character(id) => id.as_str(),
            Self::Generation(id) => id,
        }
    }
}

/// Object keys in the images bucket. Everything of a user's lives under `…/<userId>/`, which is what
/// account deletion removes and what the uploads lifecycle rule expires.
pub mod object_keys {
    use super::{CharacterId, UploadId, UserId};

    pub const UPLOADS: &str = "uploads/";
    pub const WORK: &str = "work/";
    pub const OUTPUTS: &str = "outputs/";
    pub const CHARACTERS: &str = "characters/";

    /// The photo as the app uploaded it.
    pub fn upload(user: &UserId, upload: &UploadId) -> String {
        format!("{UPLOADS}{user}/{upload}")
    }

    /// The prepared photo (oriented, stripped of metadata, downsized) handed to a provider that fetches its
    /// input by URL.
    pub fn work(user: &UserId, generation: &str) -> String {
        format!("{WORK}{user}/{generation}.jpg")
    }

    /// The rendered result.
    pub fn output(user: &UserId, generation: &str, extension: &str) -> String {
        format!("{OUTPUTS}{user}/{generation}.{extension}")
    }

    /// The `index`-th prepared photo of a character (kept until the character or the account is deleted).
    pub fn character_photo(user: &UserId, character: &CharacterId, index: u32) -> String {
        format!("{CHARACTERS}{user}/{character}/{index}.jpg")
    }

    /// Every prefix a user's objects live under.
    pub fn user_prefixes(user: &UserId) -> [String; 4] {
        [
            format!("{UPLOADS}{user}/"),
            format!("{WORK}{user}/"),
            format!("{OUTPUTS}{user}/"),
            format!("{CHARACTERS}{user}/"),
        ]
    }
}

/// How long each step of a successful job took, in milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Timings {
    /// Queued → picked up by the worker.
    pub queued_ms: u64,
    /// Download, decode, orient, strip, resize, encode.
    pub prepare_ms: u64,
    /// The provider call, retries included.
    pub provider_ms: u64,
    /// Storing the output.
    pub store_ms: u64,
}

/// Who fails a job, which decides the state it may be failed from (see [`Generation::can_fail`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FailFrom {
    /// The worker holding this claim token.
    Claim(String),
    /// The reconciler: a job whose deadline is at or before this time and that no live claim holds (queued,
    /// or processing under a claim that ran out by then): a worker still inside its claim is left to finish.
    DeadlinePassed(UnixTime),
    /// The provider's callback for this prediction: a job handed to the provider that awaits exactly it.
    Callback(String),
}

/// A generation record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Generation {
    /// A ULID: a user's generations sort newest first by id.
    pub id: String,
    pub user_id: UserId,
    pub template_id: TemplateId,
    /// What is rendered (one of `uploadId`, `characterId`, `parentGenerationId` in the record).
    #[serde(flatten)]
    pub source: GenerationSource,
    /// The objects the worker reads as its input photos, fixed when the job started (a character's photos;
    /// the parent's output). Empty in records from before characters: the upload is the input.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub input_keys: Vec<String>,
    /// The template's generation settings as they were when the user paid: a template edited or retired
    /// meanwhile still renders what was bought. Server-side only.
    pub spec: GenerationSpec,
    pub status: GenerationStatus,
    pub credits_charged: u64,
    /// Whether the credits were given back (set in the same transaction as the refund).
    pub refunded: bool,
    /// Key of the output object once succeeded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_key: Option<String>,
    /// Shown to the user when failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_reason: Option<String>,
    pub created_at: UnixTime,
    /// When the reconciler fails and refunds the job if it is still queued or processing.
    pub deadline: UnixTime,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<UnixTime>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<UnixTime>,
    /// How many times a worker claimed the job.
    #[serde(default)]
    pub attempts: u32,
    /// The current worker's claim token (a worker may only finish a job it holds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claim: Option<String>,
    /// Until when that claim holds; afterwards another delivery of the job may take it over.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claim_until: Option<UnixTime>,
    /// The delivery (the stream record's `eventID`) the claim was taken for. Lambda redelivers a record only
    /// after the invocation that had it ended (crashed or timed out), so a redelivery of the same record may
    /// take the claim over at once instead of waiting for it to run out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claim_delivery: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timings: Option<Timings>,
    /// The provider's id of the render, once handed to a provider that calls back (Replicate's prediction):
    /// from then on the job waits for that callback and no worker claims it again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prediction: Option<String>,
}

impl Generation {
    /// The objects the worker reads, in order.
    pub fn inputs(&self) -> Vec<String> {
        match (&self.source, self.input_keys.is_empty()) {
            (GenerationSource::Upload(upload), true) => vec![object_keys::upload(&self.user_id, upload)],
            _ => self.input_keys.clone(),
        }
    }

    /// Whether the inputs were prepared already (a character's photos): else the worker prepares them.
    pub fn inputs_prepared(&self) -> bool {
        matches!(self.source, GenerationSource::Character(_))
    }

    /// The objects deleting this generation removes: the photo it was uploaded with (a character's photos and
    /// a parent's output belong to them), its prepared copy and its output.
    pub fn owned_keys(&self) -> Vec<String> {
        let mut keys = Vec::with_capacity(3);
        if let GenerationSource::Upload(upload) = &self.source {
            keys.push(object_keys::upload(&self.user_id, upload));
        }
        keys.push(object_keys::work(&self.user_id, &self.id));
        keys.extend(self.output_key.clone());
        keys
    }
}

/// The rules of a job's transitions. The memory store applies them directly; the DynamoDB store writes each
/// as a condition expression beside a pointer here (adapters/dynamodb/generations.rs), and
/// shared/tests/rules.rs holds every condition to its rule on the same cases.
impl Generation {
    /// Whether a worker may take the job at `now`, for the stream record `delivery` (`None`: handed over in
    /// process). Before its deadline only, never once handed to a provider that calls back, and: queued; or processing under a claim that ran out; or
    /// processing under a claim taken for this same delivery (Lambda redelivers a record only after the
    /// invocation that had it ended, so the claim's holder is gone).
    pub fn claimable(&self, delivery: Option<&str>, now: UnixTime) -> bool {
        let redelivered = delivery.is_some() && self.claim_delivery.as_deref() == delivery;
        self.deadline > now
            && self.prediction.is_none()
            && (self.status == GenerationStatus::Queued
                || (self.status == GenerationStatus::Processing
                    && (self.claim_until.is_some_and(|until| until <= now) || redelivered)))
    }

    /// Whether the worker with claim `token` holds the job: only it may succeed, release or fail it.
    pub fn held_by(&self, token: &str) -> bool {
        self.status == GenerationStatus::Processing && self.claim.as_deref() == Some(token)
    }

    /// Whether the job waits for the callback of `prediction`: only that callback may succeed or fail it
    /// (or the reconciler, once the deadline has passed).
    pub fn awaits(&self, prediction: &str) -> bool {
        self.status == GenerationStatus::Processing && self.prediction.as_deref() == Some(prediction)
    }

    /// Whether `from` may fail the job (and refund it). The claim's holder may; the reconciler may once the
    /// deadline has passed, unless a worker is still inside its claim. A finished job never.
    pub fn can_fail(&self, from: &FailFrom) -> bool {
        match from {
            FailFrom::Claim(token) => self.held_by(token),
            FailFrom::Callback(prediction) => self.awaits(prediction),
            FailFrom::DeadlinePassed(at) => {
                self.deadline <= *at
                    && (self.status == GenerationStatus::Queued
                        || (self.status == GenerationStatus::Processing
                            && self.claim_until.is_some_and(|until| until <= *at)))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(source: serde_json::Value) -> serde_json::Value {
        let mut g = serde_json::json!({
            "id": "01KARH98PRTEWH0AVNH9DN65R6",
            "userId": "01KAFC0S00GP1XF3A7QYFR6F0D",
            "templateId": "neon-noir",
            "spec": {"provider": "openai", "model": "gpt-image-1", "prompt": "p"},
            "status": "queued",
            "creditsCharged": 1,
            "refunded": false,
            "createdAt": 1,
            "deadline": 901
        });
        for (k, v) in source.as_object().unwrap() {
            g[k] = v.clone();
        }
        g
    }

    #[test]
    fn a_record_from_before_sources_reads_as_an_upload_whose_input_is_the_upload() {
        let g: Generation =
            serde_json::from_value(record(serde_json::json!({"uploadId": "01KARH8AE071HFE865V215DE1C"}))).unwrap();
        let upload = UploadId::parse("01KARH8AE071HFE865V215DE1C").unwrap();
        assert_eq!(g.source, GenerationSource::Upload(upload.clone()));
        assert_eq!(g.inputs(), [object_keys::upload(&g.user_id, &upload)]);
        assert!(!g.inputs_prepared());
        assert_eq!(g.owned_keys()[0], object_keys::upload(&g.user_id, &upload));
        // And it is written back the same way.
        assert_eq!(serde_json::to_value(&g).unwrap()["uploadId"], "01KARH8AE071HFE865V215DE1C");
    }

    #[test]
    fn each_source_is_one_field_and_a_record_needs_exactly_one() {
        let c: Generation = serde_json::from_value(record(serde_json::json!({
            "characterId": "01KARJ3Q5M8V7ZB2C4D6E8F0GH",
            "inputKeys": ["characters/u/c/0.jpg", "characters/u/c/1.jpg"]
        })))
        .unwrap();
        assert_eq!(c.source.kind(), "character");
        assert!(c.inputs_prepared());
        assert_eq!(c.inputs().len(), 2);
        assert!(c.owned_keys().iter().all(|k| !k.starts_with("characters/")), "a character's photos are its own");
        let p: Generation =
            serde_json::from_value(record(serde_json::json!({"parentGenerationId": "01KARH98PRTEWH0AVNH9DN65R7"})))
                .unwrap();
        assert_eq!((p.source.kind(), p.source.id()), ("generation", "01KARH98PRTEWH0AVNH9DN65R7"));
        assert!(serde_json::from_value::<Generation>(record(serde_json::json!({}))).is_err(), "no source");
    }
}
