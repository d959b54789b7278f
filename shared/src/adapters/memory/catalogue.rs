//! The catalogue and favourites in memory (twin of adapters/dynamodb/catalogue.rs).

use async_trait::async_trait;

use crate::domain::{Category, Template, TemplateId, UnixTime, UserId};
use crate::ports::{CatalogueStore, Favorite, FavoritesStore, PortError};

use super::MemoryStore;

#[async_trait]
impl CatalogueStore for MemoryStore {
    async fn load_catalogue(&self) -> Result<(Vec<Category>, Vec<Template>), PortError> {
        let inner = self.lock();
        Ok((inner.categories.values().cloned().collect(), inner.templates.values().cloned().collect()))
    }

    async fn put_category(&self, category: &Category) -> Result<(), PortError> {
        self.lock().categories.insert(category.id.to_string(), category.clone());
        Ok(())
    }

    async fn put_template(&self, template: &Template) -> Result<(), PortError> {
        self.lock().templates.insert(template.id.clone(), template.clone());
        Ok(())
    }

    async fn set_template_active(&self, id: &TemplateId, active: bool) -> Result<bool, PortError> {
        Ok(self.lock().templates.get_mut(id).map(|t| t.active = active).is_some())
    }
}

#[async_trait]
impl FavoritesStore for MemoryStore {
    async fn add_favorite(&self, user: &UserId, template: &TemplateId, now: UnixTime) -> Result<(), PortError> {
        let mut inner = self.lock();
        // As the DynamoDB store: the favourite goes with the profile's count, so without a profile, nothing.
        if inner.users.contains_key(user) {
            inner.favorites.entry(user.clone()).or_default().entry(template.clone()).or_insert(now);
        }
        Ok(())
    }

    async fn remove_favorite(&self, user: &UserId, template: &TemplateId) -> Result<(), PortError> {
        if let Some(f) = self.lock().favorites.get_mut(user) {
            f.remove(template);
        }
        Ok(())
    }

    async fn favorites(&self, user: &UserId) -> Result<Vec<Favorite>, PortError> {
        let inner = self.lock();
        Ok(inner
            .favorites
            .get(user)
            .map(|f| f.iter().map(|(t, at)| Favorite { template_id: t.clone(), created_at: *at }).collect())
            .unwrap_or_default())
    }
}
