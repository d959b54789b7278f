//! The characters function's use cases: saving a set of one person's photos, prepared once, to render again
//! and again; listing, renaming and deleting them.

use std::sync::Arc;

use futures_util::stream::{self, StreamExt, TryStreamExt};

use crate::domain::{object_keys, Character, CharacterId, CharacterName, UploadId, UserId};
use crate::imaging::{prepare, PrepareLimits};
use crate::ports::{CharacterPage, CharacterStore, Clock, CreateCharacterOutcome, ObjectStore, PortError};
use crate::services::generation::MAX_UPLOAD_BYTES;

/// Photos prepared at once: each decode may take a few hundred MB at the pixel limit.
const PREPARE_CONCURRENCY: usize = 2;

#[derive(Debug, thiserror::Error)]
pub enum CreateError {
    #[error("a character takes 1 to 6 photos")]
    PhotoCount,
    /// The same upload twice; `index` is the second.
    #[error("upload listed twice")]
    DuplicateUpload { index: usize },
    /// Not uploaded (or not this user's, or expired): `index` into `uploadIds`.
    #[error("no uploaded photo under this id")]
    NoUpload { index: usize },
    /// Not a usable photo; `reason` is for the user.
    #[error("not a usable photo")]
    NotAPhoto { index: usize, reason: String },
    #[error("the user has the most characters allowed")]
    LimitReached { max: u32 },
    #[error("the account is being deleted")]
    AccountDeleted,
    #[error(transparent)]
    Port(#[from] PortError),
}

/// The characters function's use cases.
pub struct Characters {
    pub store: Arc<dyn CharacterStore>,
    pub objects: Arc<dyn ObjectStore>,
    pub clock: Arc<dyn Clock>,
    /// Characters a user may keep.
    pub max_characters: u32,
    /// Lifetime of a thumbnail URL.
    pub url_secs: u64,
    pub limits: PrepareLimits,
}

impl Characters {
    /// Makes a character of the caller's `uploads`: each must be uploaded and decode as a photo, and is
    /// prepared once (sniffed format, pixel limit, EXIF orientation, metadata stripped, downsized) into the
    /// character's own objects, so the uploads may expire. `account_deleted` runs beside the count read, and
    /// both answer before any photo is read: a deleted or full account costs no decode. The record's
    /// transaction checks the tombstone again (the preparation takes seconds). The photos are written before
    /// the record, so a record never names a missing photo; a refused record takes its photos back out.
    pub async fn create(
        &self,
        user: &UserId,
        name: &CharacterName,
        uploads: &[UploadId],
        account_deleted: impl std::future::Future<Output = Result<bool, PortError>>,
    ) -> Result<Character, CreateError> {
        if !(Character::MIN_PHOTOS..=Character::MAX_PHOTOS).contains(&uploads.len()) {
            return Err(CreateError::PhotoCount);
        }
        if let Some(index) = (1..uploads.len()).find(|&i| uploads[..i].contains(&uploads[i])) {
            return Err(CreateError::DuplicateUpload { index });
        }
        let (deleted, count) = tokio::join!(account_deleted, self.store.character_count(user));
        if deleted? {
            return Err(CreateError::AccountDeleted);
        }
        // A full account is refused before any photo is read or decoded (the create's condition decides).
        if count? >= u64::from(self.max_characters) {
            return Err(CreateError::LimitReached { max: self.max_characters });
        }
        // Owned items: a stream over borrowed keys trips the compiler's higher-ranked `Send` check.
        let keys: Vec<String> = uploads.iter().map(|u| object_keys::upload(user, u)).collect();
        let prepared: Vec<Vec<u8>> = stream::iter(keys.into_iter().enumerate())
            .map(|(index, key)| self.prepare_one(index, key))
            .buffered(PREPARE_CONCURRENCY)
            .try_collect()
            .await?;
        let now = self.clock.now();
        let character = Character {
            id: CharacterId::new(),
            user_id: user.clone(),
            name: name.as_str().to_owned(),
            photo_count: u32::try_from(prepared.len()).map_err(|e| PortError::internal("characters", e))?,
            created_at: now,
            updated_at: now,
        };
        let photo_keys = character.photo_keys();
        let written = self.put_photos(&photo_keys, prepared).await;
        let outcome = match written {
            Ok(()) => self.store.create_character(&character, self.max_characters).await,
            Err(e) => Err(e),
        };
        match outcome {
            Ok(CreateCharacterOutcome::Created) => {
                tracing::info!(character = %character.id, photos = character.photo_count, "character created");
                Ok(character)
            }
            Ok(CreateCharacterOutcome::LimitReached) => {
                self.discard(&photo_keys).await;
                Err(CreateError::LimitReached { max: self.max_characters })
            }
            Ok(CreateCharacterOutcome::AccountDeleted) => {
                self.discard(&photo_keys).await;
                Err(CreateError::AccountDeleted)
            }
            // No definite answer (a timeout may have come after the commit): the photos go only if no record
            // names them. If even that read fails they stay, under the user's prefix, rather than be lost.
            Err(e) => match self.store.character(user, &character.id).await {
                Ok(Some(_)) => {
                    tracing::warn!(character = %character.id, error = %e, "character create answered an error but committed");
                    Ok(character)
                }
                Ok(None) => {
                    self.discard(&photo_keys).await;
                    Err(e.into())
                }
                Err(read) => {
                    tracing::warn!(character = %character.id, error = %read, "could not tell whether the create committed; photos kept");
                    Err(e.into())
                }
            },
        }
    }

    /// Reads and prepares the `index`-th upload.
    async fn prepare_one(&self, index: usize, key: String) -> Result<Vec<u8>, CreateError> {
        // Gone since its head was read (expired at that moment): the same answer as never uploaded.
        let Some(original) = self.objects.get(&key, MAX_UPLOAD_BYTES).await? else {
            return Err(CreateError::NoUpload { index });
        };
        let limits = self.limits.clone();
        let prepared = tokio::task::spawn_blocking(move || prepare(&original, &limits))
            .await
            .map_err(|e| PortError::internal("characters", e))?;
        match prepared {
            Ok(p) => Ok(p.jpeg),
            Err(e) => Err(CreateError::NotAPhoto { index, reason: e.user_reason() }),
        }
    }

    async fn put_photos(&self, keys: &[String], photos: Vec<Vec<u8>>) -> Result<(), PortError> {
        let puts = keys.iter().zip(photos).map(|(key, jpeg)| self.objects.put(key, jpeg, "image/jpeg"));
        futures_util::future::try_join_all(puts).await.map(|_| ())
    }

    /// Removes photos no record will name (best effort: they sit under the user's prefix, which account
    /// deletion removes whole).
    async fn discard(&self, keys: &[String]) {
        if let Err(e) = self.objects.delete(keys).await {
            tracing::warn!(error = %e, "deleting the photos of a character that was not created failed");
        }
    }

    pub async fn get(&self, user: &UserId, id: &CharacterId) -> Result<Option<Character>, PortError> {
        self.store.character(user, id).await
    }

    pub async fn page(
        &self,
        user: &UserId,
        limit: usize,
        before: Option<&CharacterId>,
    ) -> Result<CharacterPage, PortError> {
        self.store.characters_page(user, limit, before).await
    }

    pub async fn rename(
        &self,
        user: &UserId,
        id: &CharacterId,
        name: &CharacterName,
    ) -> Result<Option<Character>, PortError> {
        self.store.rename_character(user, id, name.as_str(), self.clock.now()).await
    }

    /// Deletes a character found with [`Characters::get`]: its photos first, then the record, so a failure
    /// half-way leaves a record the user can delete again rather than photos nobody can reach. Generations
    /// made from it keep their outputs; one still queued fails and is refunded (its photos are gone).
    /// `false` when a concurrent delete removed the record first.
    pub async fn delete_found(&self, character: &Character) -> Result<bool, PortError> {
        self.objects.delete(&character.photo_keys()).await?;
        self.store.delete_character(&character.user_id, &character.id).await
    }

    /// A short-lived URL of the character's first photo.
    pub async fn thumbnail_url(&self, character: &Character) -> Result<Option<String>, PortError> {
        match character.photo_keys().first() {
            Some(key) => Ok(Some(self.objects.presign_download(key, self.url_secs, self.clock.now()).await?)),
            None => Ok(None),
        }
    }
}
