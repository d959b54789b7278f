//! The style catalogue: list, search, categories and favourites, served from a per-container snapshot.
//!
//! The catalogue is small (tens to hundreds of templates) and read on every app launch, so each container
//! keeps the whole active catalogue in memory and reads it again only after `ttl_secs`: a warm list request
//! makes no DynamoDB call. One refresh runs at a time; the others keep serving the previous snapshot.

use std::collections::HashSet;
use std::sync::{Arc, RwLock};

use serde::{Deserialize, Serialize};

use crate::domain::{Category, CategoryId, Template, TemplateId, UnixTime, UserId};
use crate::ports::{CatalogueStore, Clock, FavoritesStore, PortError};

/// The whole active catalogue at one instant.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// Active templates, ordered by (sortOrder, id).
    templates: Vec<Template>,
    /// Categories that have active templates, with their counts, ordered by (sortOrder, id).
    categories: Vec<(Category, usize)>,
}

/// Where a page of templates ends: the (sortOrder, id) of its last item.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TemplateKey(pub i64, pub String);

/// Where a page of favourites ends: (favourited at, template id) of its last item.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FavoriteKey(pub UnixTime, pub String);

/// A list request's filters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TemplateFilter {
    pub category: Option<CategoryId>,
    /// Lower-case search text, matched against names and tags.
    pub query: Option<String>,
    pub trending_only: bool,
}

impl TemplateFilter {
    /// Search text: trimmed, lower-cased, at most 100 characters; empty means no search.
    pub fn search(q: &str) -> Result<Option<String>, crate::domain::InvalidValue> {
        let q = q.trim();
        if q.chars().count() > 100 {
            return Err(crate::domain::InvalidValue("q must be at most 100 characters"));
        }
        Ok((!q.is_empty()).then(|| q.to_lowercase()))
    }

    fn matches(&self, t: &Template) -> bool {
        self.category.as_ref().is_none_or(|c| *c == t.category)
            && (!self.trending_only || t.trending)
            && self.query.as_deref().is_none_or(|q| {
                t.name.to_lowercase().contains(q) || t.tags.iter().any(|tag| tag.to_lowercase().contains(q))
            })
    }

    /// Identifies the query a cursor belongs to.
    pub fn scope(&self) -> String {
        format!(
            "templates|{}|{}|{}",
            self.category.as_ref().map_or("", CategoryId::as_str),
            self.query.as_deref().unwrap_or(""),
            self.trending_only
        )
    }
}

/// One page and where the next one starts.
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T, K> {
    pub items: Vec<T>,
    pub next: Option<K>,
}

impl Snapshot {
    pub fn new(categories: Vec<Category>, templates: Vec<Template>) -> Self {
        let mut templates: Vec<Template> = templates.into_iter().filter(|t| t.active).collect();
        templates.sort_by(|a, b| (a.sort_order, &a.id).cmp(&(b.sort_order, &b.id)));
        let mut categories: Vec<(Category, usize)> = categories
            .into_iter()
            .map(|c| {
                let count = templates.iter().filter(|t| t.category == c.id).count();
                (c, count)
            })
            .filter(|(_, count)| *count > 0)
            .collect();
        categories.sort_by(|(a, _), (b, _)| (a.sort_order, &a.id).cmp(&(b.sort_order, &b.id)));
        Self { templates, categories }
    }

    pub fn get(&self, id: &TemplateId) -> Option<&Template> {
        self.templates.iter().find(|t| t.id == *id)
    }

    pub fn categories(&self) -> &[(Category, usize)] {
        &self.categories
    }

    /// Up to `limit` matching templates after `after`.
    pub fn list(
        &self,
        filter: &TemplateFilter,
        after: Option<&TemplateKey>,
        limit: usize,
    ) -> Page<&Template, TemplateKey> {
        let mut matching = self
            .templates
            .iter()
            .filter(|t| after.is_none_or(|k| (t.sort_order, t.id.as_str()) > (k.0, k.1.as_str())))
            .filter(|t| filter.matches(t));
        let items: Vec<&Template> = matching.by_ref().take(limit).collect();
        let next = match (items.last(), matching.next()) {
            (Some(last), Some(_)) => Some(TemplateKey(last.sort_order, last.id.to_string())),
            _ => None,
        };
        Page { items, next }
    }
}

struct Cached {
    snapshot: Arc<Snapshot>,
    loaded_at: UnixTime,
}

pub struct CatalogueService {
    pub store: Arc<dyn CatalogueStore>,
    pub favorites: Arc<dyn FavoritesStore>,
    pub clock: Arc<dyn Clock>,
    pub ttl_secs: i64,
    cache: RwLock<Option<Cached>>,
    refreshing: tokio::sync::Mutex<()>,
}

/// Why a favourite could not be added.
#[derive(Debug, thiserror::Error)]
pub enum FavoriteError {
    #[error("no such template")]
    NotFound,
    #[error(transparent)]
    Port(#[from] PortError),
}

impl CatalogueService {
    pub fn new(
        store: Arc<dyn CatalogueStore>,
        favorites: Arc<dyn FavoritesStore>,
        clock: Arc<dyn Clock>,
        ttl_secs: i64,
    ) -> Self {
        Self { store, favorites, clock, ttl_secs, cache: RwLock::new(None), refreshing: tokio::sync::Mutex::new(()) }
    }

    fn fresh(&self, now: UnixTime) -> Option<Arc<Snapshot>> {
        let cache = self.cache.read().unwrap_or_else(|e| e.into_inner());
        cache.as_ref().filter(|c| now - c.loaded_at < self.ttl_secs).map(|c| c.snapshot.clone())
    }

    fn stale(&self) -> Option<Arc<Snapshot>> {
        self.cache.read().unwrap_or_else(|e| e.into_inner()).as_ref().map(|c| c.snapshot.clone())
    }

    /// The current snapshot, read from the store when the cached one is older than the TTL. While one
    /// request refreshes, the others serve the previous snapshot; if the store fails and a previous snapshot
    /// exists, it is served (and the failure logged) rather than failing the request.
    pub async fn snapshot(&self) -> Result<Arc<Snapshot>, PortError> {
        let now = self.clock.now();
        if let Some(s) = self.fresh(now) {
            return Ok(s);
        }
        let _guard = match self.refreshing.try_lock() {
            Ok(guard) => guard,
            Err(_) => match self.stale() {
                Some(s) => return Ok(s),
                None => self.refreshing.lock().await,
            },
        };
        // Someone else may have refreshed while this request waited.
        if let Some(s) = self.fresh(self.clock.now()) {
            return Ok(s);
        }
        match self.store.load_catalogue().await {
            Ok((categories, templates)) => {
                let snapshot = Arc::new(Snapshot::new(categories, templates));
                let mut cache = self.cache.write().unwrap_or_else(|e| e.into_inner());
                *cache = Some(Cached { snapshot: snapshot.clone(), loaded_at: now });
                Ok(snapshot)
            }
            Err(e) => match self.stale() {
                Some(s) => {
                    tracing::warn!(error = %e, "catalogue refresh failed; serving the previous snapshot");
                    Ok(s)
                }
                None => Err(e),
            },
        }
    }

    /// The ids of `user`'s favourites.
    pub async fn favorite_ids(&self, user: &UserId) -> Result<HashSet<TemplateId>, PortError> {
        Ok(self.favorites.favorites(user).await?.into_iter().map(|f| f.template_id).collect())
    }

    /// Marks an active template as a favourite (idempotent).
    pub async fn add_favorite(&self, user: &UserId, id: &TemplateId) -> Result<(), FavoriteError> {
        if self.snapshot().await?.get(id).is_none() {
            return Err(FavoriteError::NotFound);
        }
        Ok(self.favorites.add_favorite(user, id, self.clock.now()).await?)
    }

    /// Removes a favourite (idempotent; works for templates retired since).
    pub async fn remove_favorite(&self, user: &UserId, id: &TemplateId) -> Result<(), PortError> {
        self.favorites.remove_favorite(user, id).await
    }

    /// `user`'s favourite active templates, most recently favourited first.
    pub async fn favorites(
        &self,
        user: &UserId,
        after: Option<&FavoriteKey>,
        limit: usize,
    ) -> Result<Page<Template, FavoriteKey>, PortError> {
        let (snapshot, favorites) = tokio::try_join!(self.snapshot(), self.favorites.favorites(user))?;
        let mut favorites: Vec<(UnixTime, &Template)> =
            favorites.iter().filter_map(|f| snapshot.get(&f.template_id).map(|t| (f.created_at, t))).collect();
        // Newest first; ties by id so the order is total and pages never overlap.
        let order = |at: UnixTime, id: &str| (std::cmp::Reverse(at), id.to_owned());
        favorites.sort_by_key(|(at, t)| order(*at, t.id.as_str()));
        let mut rest =
            favorites.into_iter().filter(|(at, t)| after.is_none_or(|k| order(*at, t.id.as_str()) > order(k.0, &k.1)));
        let items: Vec<(UnixTime, &Template)> = rest.by_ref().take(limit).collect();
        let next = match (items.last(), rest.next()) {
            (Some((at, t)), Some(_)) => Some(FavoriteKey(*at, t.id.to_string())),
            _ => None,
        };
        Ok(Page { items: items.into_iter().map(|(_, t)| t.clone()).collect(), next })
    }
}

/// Loads a seed catalogue file into `store` (upserts: templates and categories are replaced by the file's, and
/// nothing else — favourites, balances — is touched). Returns the catalogue it wrote.
pub async fn seed_catalogue(
    store: &dyn CatalogueStore,
    path: &std::path::Path,
) -> Result<crate::domain::SeedCatalogue, String> {
    let yaml = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let catalogue = crate::domain::CatalogueFile::parse(&yaml)?;
    for c in &catalogue.categories {
        store.put_category(c).await.map_err(|e| e.to_string())?;
    }
    for t in &catalogue.templates {
        store.put_template(t).await.map_err(|e| e.to_string())?;
    }
    Ok(catalogue)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{GenerationSpec, Provider};

    pub(crate) fn template(id: &str, category: &str, sort: i64, trending: bool, tags: &[&str]) -> Template {
        Template {
            id: TemplateId::parse(id).unwrap(),
            name: format!("Style {id}"),
            description: "d".into(),
            category: CategoryId::parse(category).unwrap(),
            tags: tags.iter().map(|t| (*t).to_owned()).collect(),
            preview: format!("previews/{id}.jpg"),
            cost_credits: 1,
            trending,
            sort_order: sort,
            active: true,
            generation: GenerationSpec {
                provider: Provider::Openai,
                model: "m".into(),
                prompt: "p".into(),
                params: Default::default(),
            },
        }
    }

    fn category(id: &str, sort: i64) -> Category {
        Category { id: CategoryId::parse(id).unwrap(), name: id.to_uppercase(), sort_order: sort }
    }

    #[test]
    fn lists_in_order_and_pages_without_gaps_or_duplicates() {
        // Equal sort orders: the id breaks the tie, so paging stays total.
        let templates: Vec<Template> =
            (0..23).map(|i| template(&format!("t{i:02}"), "a", i % 5, i % 3 == 0, &["x"])).collect();
        let s = Snapshot::new(vec![category("a", 1)], templates);
        for limit in 1..=24 {
            let (mut seen, mut after) = (Vec::new(), None);
            loop {
                let page = s.list(&TemplateFilter::default(), after.as_ref(), limit);
                assert!(page.items.len() <= limit);
                seen.extend(page.items.iter().map(|t| t.id.to_string()));
                match page.next {
                    Some(k) => after = Some(k),
                    None => break,
                }
            }
            let expected: Vec<String> = s.templates.iter().map(|t| t.id.to_string()).collect();
            assert_eq!(seen, expected, "limit {limit}");
        }
    }

    #[test]
    fn filters_by_category_search_and_trending() {
        let mut hidden = template("hidden", "b", 0, true, &["neon"]);
        hidden.active = false;
        let s = Snapshot::new(
            vec![category("a", 2), category("b", 1), category("empty", 0)],
            vec![
                template("neon-noir", "a", 1, true, &["Night", "cinematic"]),
                template("ink", "b", 2, false, &["neon-ink"]),
                template("oil", "b", 3, true, &["painting"]),
                hidden,
            ],
        );
        let ids = |f: TemplateFilter| -> Vec<String> {
            s.list(&f, None, 50).items.iter().map(|t| t.id.to_string()).collect()
        };
        let q = |q: &str| TemplateFilter { query: TemplateFilter::search(q).unwrap(), ..Default::default() };
        assert_eq!(ids(TemplateFilter::default()), ["neon-noir", "ink", "oil"], "inactive hidden");
        assert_eq!(ids(q("NEON")), ["neon-noir", "ink"], "name or tag, any case");
        assert_eq!(ids(q("night")), ["neon-noir"], "tag, any case");
        assert_eq!(ids(q("zzz")), Vec::<String>::new());
        assert_eq!(ids(TemplateFilter { trending_only: true, ..Default::default() }), ["neon-noir", "oil"]);
        let b = TemplateFilter { category: Some(CategoryId::parse("b").unwrap()), ..Default::default() };
        assert_eq!(ids(b.clone()), ["ink", "oil"]);
        assert_eq!(ids(TemplateFilter { trending_only: true, ..b }), ["oil"]);
        // Categories: ordered, counted over active templates, empty ones left out.
        let cats: Vec<(String, usize)> = s.categories().iter().map(|(c, n)| (c.id.to_string(), *n)).collect();
        assert_eq!(cats, [("b".to_owned(), 2), ("a".to_owned(), 1)]);
        assert!(s.get(&TemplateId::parse("hidden").unwrap()).is_none());
        assert!(TemplateFilter::search(&"x".repeat(101)).is_err());
        assert_eq!(TemplateFilter::search("   ").unwrap(), None);
    }
}
