//! Characters in memory (twin of adapters/dynamodb/characters.rs).

use async_trait::async_trait;

use crate::domain::{Character, CharacterId, UnixTime, UserId};
use crate::ports::{CharacterPage, CharacterStore, CreateCharacterOutcome, PortError};

use super::MemoryStore;

#[async_trait]
impl CharacterStore for MemoryStore {
    async fn create_character(&self, character: &Character, max: u32) -> Result<CreateCharacterOutcome, PortError> {
        let mut inner = self.lock();
        if inner.deleted.contains_key(&crate::domain::deletion_key(&character.user_id)) {
            return Ok(CreateCharacterOutcome::AccountDeleted);
        }
        let mine = inner.characters.entry(character.user_id.clone()).or_default();
        if mine.len() >= max as usize {
            return Ok(CreateCharacterOutcome::LimitReached);
        }
        if mine.contains_key(character.id.as_str()) {
            return Err(PortError::internal("characters", "a new character id already existed"));
        }
        mine.insert(character.id.to_string(), character.clone());
        Ok(CreateCharacterOutcome::Created)
    }

    async fn character(&self, user: &UserId, id: &CharacterId) -> Result<Option<Character>, PortError> {
        Ok(self.lock().characters.get(user).and_then(|c| c.get(id.as_str())).cloned())
    }

    async fn character_count(&self, user: &UserId) -> Result<u64, PortError> {
        Ok(self.lock().characters.get(user).map_or(0, |c| c.len() as u64))
    }

    async fn characters_page(
        &self,
        user: &UserId,
        limit: usize,
        before: Option<&CharacterId>,
    ) -> Result<CharacterPage, PortError> {
        let inner = self.lock();
        let mut items: Vec<Character> = inner
            .characters
            .get(user)
            .map(|c| {
                c.values()
                    .rev()
                    .filter(|c| before.is_none_or(|b| c.id.as_str() < b.as_str()))
                    .take(limit + 1)
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        let more = items.len() > limit;
        items.truncate(limit);
        Ok(CharacterPage { items, more })
    }

    async fn rename_character(
        &self,
        user: &UserId,
        id: &CharacterId,
        name: &str,
        now: UnixTime,
    ) -> Result<Option<Character>, PortError> {
        let mut inner = self.lock();
        Ok(inner.characters.get_mut(user).and_then(|c| c.get_mut(id.as_str())).map(|c| {
            c.name = name.to_owned();
            c.updated_at = now;
            c.clone()
        }))
    }

    async fn delete_character(&self, user: &UserId, id: &CharacterId) -> Result<bool, PortError> {
        Ok(self.lock().characters.get_mut(user).and_then(|c| c.remove(id.as_str())).is_some())
    }
}
