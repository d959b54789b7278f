//! Characters: saved sets of prepared photos, and the per-user count that caps them
//! (adapters/dynamodb/characters.rs).

use async_trait::async_trait;

use super::PortError;
use crate::domain::{Character, CharacterId, UnixTime, UserId};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CreateCharacterOutcome {
    Created,
    /// The user already has `max` characters: nothing was written.
    LimitReached,
    /// The account is being (or was) deleted: nothing was written. Checked in the same transaction, since a
    /// create spends seconds preparing photos after the request's own deleted-account check.
    AccountDeleted,
}

/// A page of a user's characters, newest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CharacterPage {
    pub items: Vec<Character>,
    pub more: bool,
}

/// A user's characters. Creating and deleting one changes the user's count in the same transaction, so the
/// cap holds under concurrency and the count is the profile's `stats.characters`.
#[async_trait]
pub trait CharacterStore: Send + Sync {
    /// Records the character and counts it, only while the user has fewer than `max` and the account has no
    /// deletion tombstone.
    async fn create_character(&self, character: &Character, max: u32) -> Result<CreateCharacterOutcome, PortError>;
    async fn character(&self, user: &UserId, id: &CharacterId) -> Result<Option<Character>, PortError>;
    /// How many characters the user has (an early answer for a full account; the create is the real check).
    async fn character_count(&self, user: &UserId) -> Result<u64, PortError>;
    /// At most `limit` characters older than `before`, newest first.
    async fn characters_page(
        &self,
        user: &UserId,
        limit: usize,
        before: Option<&CharacterId>,
    ) -> Result<CharacterPage, PortError>;
    /// Renames the character; `None` when it does not exist.
    async fn rename_character(
        &self,
        user: &UserId,
        id: &CharacterId,
        name: &str,
        now: UnixTime,
    ) -> Result<Option<Character>, PortError>;
    /// Deletes the record and uncounts it, once; `false` when it did not exist (or a concurrent delete won).
    async fn delete_character(&self, user: &UserId, id: &CharacterId) -> Result<bool, PortError>;
}
