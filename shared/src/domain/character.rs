//! A character: a saved set of one person's prepared photos, rendered again and again without re-uploading.

use serde::{Deserialize, Serialize};

use super::{InvalidValue, UnixTime, UserId};

/// A character's id: a ULID the server issued.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct CharacterId(String);

impl CharacterId {
    pub fn new() -> Self {
        Self(super::new_id())
    }

    pub fn parse(s: &str) -> Result<Self, InvalidValue> {
        ulid::Ulid::from_string(s).map(|u| Self(u.to_string())).map_err(|_| InvalidValue("not a valid character id"))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for CharacterId {
    fn default() -> Self {
        Self::new()
    }
}

impl TryFrom<String> for CharacterId {
    type Error = InvalidValue;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}

impl From<CharacterId> for String {
    fn from(id: CharacterId) -> Self {
        id.0
    }
}

impl std::fmt::Display for CharacterId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A character's name: trimmed, 1–40 characters, no control characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CharacterName(String);

impl CharacterName {
    pub const MAX_CHARS: usize = 40;

    pub fn parse(s: &str) -> Result<Self, InvalidValue> {
        let s = s.trim();
        if s.is_empty() {
            return Err(InvalidValue("name must not be empty"));
        }
        if s.chars().count() > Self::MAX_CHARS {
            return Err(InvalidValue("name must be at most 40 characters"));
        }
        if s.chars().any(char::is_control) {
            return Err(InvalidValue("name must not contain control characters"));
        }
        Ok(Self(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A character record. Its photos live at [`super::object_keys::character_photo`] `0..photo_count`, prepared
/// once (upright, without metadata, downsized JPEG) when it was created.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Character {
    pub id: CharacterId,
    pub user_id: UserId,
    pub name: String,
    pub photo_count: u32,
    pub created_at: UnixTime,
    pub updated_at: UnixTime,
}

impl Character {
    /// The most photos a character holds, and the fewest.
    pub const MAX_PHOTOS: usize = 6;
    pub const MIN_PHOTOS: usize = 1;

    /// The object keys of its photos, in the order they were given.
    pub fn photo_keys(&self) -> Vec<String> {
        (0..self.photo_count).map(|i| super::object_keys::character_photo(&self.user_id, &self.id, i)).collect()
    }
}

/// What a user's profile counts (`GET /v1/me`'s `stats`): the generations they have (any status), how many
/// of those succeeded, their favourite templates and their characters. Kept as counters in the writes that
/// change them, so reading them costs no scan.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProfileStats {
    pub generations: u64,
    pub succeeded: u64,
    pub favorites: u64,
    pub characters: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn name_rules() {
        assert_eq!(CharacterName::parse("  Ada  ").unwrap().as_str(), "Ada");
        assert!(CharacterName::parse(" \t ").is_err());
        assert!(CharacterName::parse(&"é".repeat(40)).is_ok());
        assert!(CharacterName::parse(&"é".repeat(41)).is_err());
        assert!(CharacterName::parse("a\nb").is_err());
        assert!(CharacterName::parse("a\u{7f}b").is_err());
    }

    #[test]
    fn ids_are_ulids() {
        assert!(CharacterId::parse("01HZZZZZZZZZZZZZZZZZZZZZZZ").is_ok());
        assert!(CharacterId::parse("../../etc").is_err());
        assert!(CharacterId::parse("").is_err());
    }

    #[test]
    fn photo_keys_are_under_the_owners_prefix() {
        let user = UserId::new();
        let c = Character {
            id: CharacterId::new(),
            user_id: user.clone(),
            name: "A".into(),
            photo_count: 3,
            created_at: 0,
            updated_at: 0,
        };
        let keys = c.photo_keys();
        assert_eq!(keys.len(), 3);
        assert!(keys.iter().all(|k| k.starts_with(&format!("characters/{user}/{}/", c.id))));
        assert_ne!(keys[0], keys[2]);
    }
}
