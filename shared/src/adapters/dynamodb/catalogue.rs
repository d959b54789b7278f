//! The catalogue (catalogue table) and favourites (users table).

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use aws_sdk_dynamodb::types::{Delete, Put, TransactWriteItem, Update};

use super::accounts::{user_pk, PROFILE};
use super::{from_item, key, n, s, sdk_error, to_item, DynamoStore, Item};
use crate::domain::{Category, Template, TemplateId, UnixTime, UserId};
use crate::ports::{CatalogueStore, Favorite, FavoritesStore, PortError};

const TEMPLATE: &str = "TEMPLATE";
const CATEGORY: &str = "CATEGORY";

#[derive(Serialize, Deserialize)]
struct TemplateItem {
    pk: String,
    sk: String,
    #[serde(flatten)]
    template: Template,
}

#[derive(Serialize, Deserialize)]
struct CategoryItem {
    pk: String,
    sk: String,
    #[serde(flatten)]
    category: Category,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct FavoriteItem {
    pk: String,
    sk: String,
    template_id: TemplateId,
    created_at: UnixTime,
}

fn template_pk(id: &TemplateId) -> String {
    format!("TEMPLATE#{id}")
}

fn favorite_sk(id: &TemplateId) -> String {
    format!("FAV#{id}")
}

impl DynamoStore {
    /// `write` (a favourite's conditional put or delete) and the profile's favourites count changed by `delta`,
    /// in one transaction. A write whose condition fails (already a favourite; not one) changes nothing, which
    /// is the idempotent answer; so does an account whose profile is gone.
    async fn favorite_write(&self, user: &UserId, write: TransactWriteItem, delta: i64) -> Result<(), PortError> {
        let count = Update::builder()
            .table_name(&self.tables.users)
            .set_key(Some(key(user_pk(user), PROFILE)))
            .condition_expression("attribute_exists(pk)")
            .update_expression("ADD favorites :delta")
            .expression_attribute_values(":delta", n(delta))
            .build()
            .map_err(|e| PortError::internal("favorites", e))?;
        let items = vec![write, TransactWriteItem::builder().update(count).build()];
        for attempt in 0..super::generations::MAX_ATTEMPTS {
            match self.transact("favorites", items.clone()).await? {
                None => return Ok(()),
                Some(codes) if codes.iter().any(|c| c.as_deref() == Some("TransactionConflict")) => {
                    super::credits::backoff(attempt).await
                }
                Some(codes) if codes.iter().any(|c| c.as_deref() == Some("ConditionalCheckFailed")) => return Ok(()),
                Some(codes) => return Err(PortError::internal("favorites", format!("cancelled: {codes:?}"))),
            }
        }
        Err(PortError::unavailable("favorites", "favourite write kept conflicting; retry"))
    }

    /// An unconditional put (an upsert) into the catalogue table.
    async fn put_catalogue_item(&self, item: &impl Serialize) -> Result<(), PortError> {
        self.client
            .put_item()
            .table_name(&self.tables.catalogue)
            .set_item(Some(to_item("catalogue", item)?))
            .send()
            .await
            .map_err(|e| sdk_error("catalogue", e))?;
        Ok(())
    }
}

#[async_trait]
impl CatalogueStore for DynamoStore {
    async fn load_catalogue(&self) -> Result<(Vec<Category>, Vec<Template>), PortError> {
        let (mut categories, mut templates) = (Vec::new(), Vec::new());
        let mut start: Option<Item> = None;
        loop {
            let out = self
                .client
                .scan()
                .table_name(&self.tables.catalogue)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| sdk_error("catalogue", e))?;
            for item in out.items.unwrap_or_default() {
                match item.get("sk").and_then(|v| v.as_s().ok()).map(String::as_str) {
                    Some(TEMPLATE) => templates.push(from_item::<TemplateItem>("catalogue", item)?.template),
                    Some(CATEGORY) => categories.push(from_item::<CategoryItem>("catalogue", item)?.category),
                    _ => {}
                }
            }
            match out.last_evaluated_key {
                Some(k) if !k.is_empty() => start = Some(k),
                _ => return Ok((categories, templates)),
            }
        }
    }

    async fn put_category(&self, category: &Category) -> Result<(), PortError> {
        let pk = format!("CATEGORY#{}", category.id);
        self.put_catalogue_item(&CategoryItem { pk, sk: CATEGORY.to_owned(), category: category.clone() }).await
    }

    async fn put_template(&self, template: &Template) -> Result<(), PortError> {
        let pk = template_pk(&template.id);
        self.put_catalogue_item(&TemplateItem { pk, sk: TEMPLATE.to_owned(), template: template.clone() }).await
    }

    async fn set_template_active(&self, id: &TemplateId, active: bool) -> Result<bool, PortError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.tables.catalogue)
            .set_key(Some(key(template_pk(id), TEMPLATE)))
            .update_expression("SET active = :active")
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_values(":active", aws_sdk_dynamodb::types::AttributeValue::Bool(active))
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(e) if e.as_service_error().is_some_and(|se| se.is_conditional_check_failed_exception()) => Ok(false),
            Err(e) => Err(sdk_error("catalogue", e)),
        }
    }
}

#[async_trait]
impl FavoritesStore for DynamoStore {
    async fn add_favorite(&self, user: &UserId, template: &TemplateId, now: UnixTime) -> Result<(), PortError> {
        let item = FavoriteItem {
            pk: user_pk(user),
            sk: favorite_sk(template),
            template_id: template.clone(),
            created_at: now,
        };
        // Idempotent: a repeat keeps the original time (so the favourites order does not jump) and is not
        // counted again.
        let put = Put::builder()
            .table_name(&self.tables.users)
            .set_item(Some(to_item("favorites", &item)?))
            .condition_expression("attribute_not_exists(pk)")
            .build()
            .map_err(|e| PortError::internal("favorites", e))?;
        self.favorite_write(user, TransactWriteItem::builder().put(put).build(), 1).await
    }

    async fn remove_favorite(&self, user: &UserId, template: &TemplateId) -> Result<(), PortError> {
        let delete = Delete::builder()
            .table_name(&self.tables.users)
            .set_key(Some(key(user_pk(user), favorite_sk(template))))
            .condition_expression("attribute_exists(pk)")
            .build()
            .map_err(|e| PortError::internal("favorites", e))?;
        self.favorite_write(user, TransactWriteItem::builder().delete(delete).build(), -1).await
    }

    async fn favorites(&self, user: &UserId) -> Result<Vec<Favorite>, PortError> {
        let mut favorites = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let out = self
                .client
                .query()
                .table_name(&self.tables.users)
                .key_condition_expression("pk = :pk AND begins_with(sk, :fav)")
                .expression_attribute_values(":pk", s(user_pk(user)))
                .expression_attribute_values(":fav", s("FAV#"))
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| sdk_error("favorites", e))?;
            for item in out.items.unwrap_or_default() {
                let f: FavoriteItem = from_item("favorites", item)?;
                favorites.push(Favorite { template_id: f.template_id, created_at: f.created_at });
            }
            match out.last_evaluated_key {
                Some(k) if !k.is_empty() => start = Some(k),
                _ => return Ok(favorites),
            }
        }
    }
}
