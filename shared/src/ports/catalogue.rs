//! The catalogue and favourites (adapters/dynamodb/catalogue.rs).

use async_trait::async_trait;

use super::PortError;
use crate::domain::{Category, Template, TemplateId, UnixTime, UserId};

/// The style catalogue, read whole into a container cache and written by the admin tool.
#[async_trait]
pub trait CatalogueStore: Send + Sync {
    /// Every category and template, inactive ones included.
    async fn load_catalogue(&self) -> Result<(Vec<Category>, Vec<Template>), PortError>;
    async fn put_category(&self, category: &Category) -> Result<(), PortError>;
    async fn put_template(&self, template: &Template) -> Result<(), PortError>;
    /// `false` when there is no such template.
    async fn set_template_active(&self, id: &TemplateId, active: bool) -> Result<bool, PortError>;
}

/// A template a user marked as favourite.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Favorite {
    pub template_id: TemplateId,
    pub created_at: UnixTime,
}

/// A user's favourite templates. Adding and removing are idempotent.
#[async_trait]
pub trait FavoritesStore: Send + Sync {
    async fn add_favorite(&self, user: &UserId, template: &TemplateId, now: UnixTime) -> Result<(), PortError>;
    async fn remove_favorite(&self, user: &UserId, template: &TemplateId) -> Result<(), PortError>;
    /// All of the user's favourites, in no particular order.
    async fn favorites(&self, user: &UserId) -> Result<Vec<Favorite>, PortError>;
}
